"""The technique options' parsers (argparse types: a bad value is a one-line usage error at option
parsing): ``--ptq-techniques``, ``--ptq-prune-levels``, ``--ptq-kd-student``, ``--ptq-kd-temperature``,
``--ptq-kd-alpha``. What they name is :mod:`ptqcore.models.techniques`."""

from __future__ import annotations

import argparse
from typing import Callable, Tuple

from ptqcore.models.techniques import TECHNIQUE_KINDS
from ptqcore.options.parsers import positive_float


def kinds(text: str) -> Tuple[str, ...]:
    """``--ptq-techniques``: kinds from :data:`TECHNIQUE_KINDS`, comma-separated, or ``all``."""
    items = [item.strip() for item in str(text).split(",") if item.strip()]
    if items == ["all"]:
        return TECHNIQUE_KINDS
    bad = [item for item in items if item not in TECHNIQUE_KINDS]
    if not items or bad:
        raise argparse.ArgumentTypeError(f"unknown technique {', '.join(bad) or repr(text)}; valid:"
                                         f" {', '.join(TECHNIQUE_KINDS)} or all")
    return tuple(dict.fromkeys(items))


def _converted(text: str, convert: Callable[[str], object], problem: str):
    """``convert(text)``, or an :class:`argparse.ArgumentTypeError` saying ``problem``."""
    try:
        return convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(problem) from None


def prune_levels(text: str) -> Tuple[int, ...]:
    """``--ptq-prune-levels``: percentages of weights to prune, whole numbers 1-99 (``50,80``)."""
    levels = []
    for item in [item.strip() for item in str(text).split(",") if item.strip()] or [str(text)]:
        level = _converted(item, int, f"{item!r} is not a whole percentage (e.g. 50,80)")
        if not 1 <= level <= 99:
            raise argparse.ArgumentTypeError(f"{level} is not a pruning level between 1 and 99 (percent)")
        levels.append(level)
    return tuple(dict.fromkeys(levels))


def student(text: str) -> str:
    """``--ptq-kd-student``: one registered model name (a torchvision classifier or ``tiny_cnn``)."""
    from ptqcore.errors import PtqError
    from ptqcore.models.registry import get_model_spec

    name = str(text).strip()
    try:
        spec = get_model_spec(name)
    except PtqError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if spec.factory is None:
        raise argparse.ArgumentTypeError(f"{name} cannot be trained as a student (no architecture to build)")
    return name


def temperature(text: str) -> float:
    """``--ptq-kd-temperature``: a finite number > 0."""
    return positive_float(text)


def alpha(text: str) -> float:
    """``--ptq-kd-alpha``: the weight of the soft (teacher) loss, a number in [0, 1]."""
    value = _converted(text, float, f"{text!r} is not a number between 0 and 1")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 and 1 (the soft-loss weight)")
    return value
