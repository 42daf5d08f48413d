"""Options declared once: every ``--ptq-*`` flag comes from a :class:`SuiteOptions` field's declaration."""

import argparse
from dataclasses import fields

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ptqcore.case import Precision
from ptqcore.options import parsers as types
from ptqcore.options.suite_options import SuiteOptions, flags, options_from_values


def test_no_flag_given_means_the_declared_defaults():
    assert options_from_values(lambda dest: None) == SuiteOptions()


def test_flags_are_unique_and_cover_every_field_but_the_library_only_ones():
    declared = flags()
    assert len({flag.name for _, flag in declared}) == len(declared)
    assert all(flag.name.startswith("--ptq-") and flag.help for _, flag in declared)
    library_only = {f.name for f in fields(SuiteOptions)} - {name for name, _ in declared}
    assert library_only == {"latency_max_rounds", "warmup_calls"}


def test_a_given_flag_sets_its_field_and_a_store_false_flag_turns_it_off():
    given_values = {"ptq_precisions": types.precisions("int8,fp16"), "ptq_no_telemetry": False}
    options = options_from_values(given_values.get)
    assert options.precisions == (Precision.INT8, Precision.FP16) and options.telemetry is False


@given(st.lists(st.integers(-5, 50), min_size=1, max_size=6), st.integers(0, 3))
def test_integer_lists_parse_or_name_the_value_below_the_minimum(values, low):
    text = ",".join(map(str, values))
    if min(values) >= low:
        assert types.ints_at_least(low)(text) == tuple(values)
    else:
        with pytest.raises(argparse.ArgumentTypeError, match=f"{next(v for v in values if v < low)} is below"):
            types.ints_at_least(low)(text)
