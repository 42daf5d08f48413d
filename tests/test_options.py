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


#: Fields whose help names their default in words rather than by value (the value is the words' meaning).
DEFAULTS_IN_WORDS = {"file_mean": "ImageNet", "file_std": "ImageNet", "trt_int8": "(default)"}


def test_help_texts_show_each_default_from_its_field_never_by_hand():
    from dataclasses import MISSING

    from ptqcore.options.suite_options import DEFAULT_PLACEHOLDER, shown_default

    for f in fields(SuiteOptions):
        flag = f.metadata.get("flag")
        if flag is None or f.default is MISSING or f.default is None or isinstance(f.default, bool):
            continue  # a factory, a default that means "decide" (said in words), or a switch
        rendered = dict(flags())[f.name].help
        if f.name in DEFAULTS_IN_WORDS:
            assert DEFAULTS_IN_WORDS[f.name] in rendered
            continue
        assert DEFAULT_PLACEHOLDER in flag.help, f"--{flag.dest}: its help must say (default: {DEFAULT_PLACEHOLDER})"
        assert f"default: {shown_default(f.default)}" in rendered and DEFAULT_PLACEHOLDER not in rendered


def test_a_default_is_shown_as_it_is_typed():
    from ptqcore.options.suite_options import shown_default

    assert shown_default((Precision.BASE, Precision.INT8)) == "base,int8"
    assert shown_default((50, 80)) == "50,80" and shown_default(()) == "none"
    assert shown_default(1.0) == "1" and shown_default(99.999) == "99.999" and shown_default("auto") == "auto"
