"""Parsers of the ``--ptq-*`` option values: each turns text into the value or raises
:class:`argparse.ArgumentTypeError` naming the valid values, so that pytest reports a typo as a usage
error before anything is collected. Pure functions of the text (and the model registry)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Callable

from ptqcore.case import CALIBRATION_METHODS, Precision
from ptqcore.errors import PtqError
from ptqcore.models.class_map import load_class_map
from ptqcore.models.registry import looks_like_model_file, resolve_model_names


def csv(text: str) -> list:
    items = [item.strip() for item in str(text).split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return items


def names(text: str) -> tuple:
    """A comma-separated list of names (e.g. ONNX tensor names), kept in order."""
    return tuple(csv(text))


def choices(valid) -> Callable[[str], tuple]:
    def parse(text: str) -> tuple:
        items = csv(text)
        bad = [item for item in items if item not in valid]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(bad)}; valid: {', '.join(valid)}")
        return tuple(items)

    return parse


def calibrations(text: str) -> tuple:
    """Calibration methods, or ``all`` for every one."""
    return tuple(CALIBRATION_METHODS) if str(text).strip() == "all" else choices(CALIBRATION_METHODS)(text)


def percentile(text: str) -> float:
    value = positive_float(text)
    if value > 100:
        raise argparse.ArgumentTypeError(f"{value} is above 100 (a percentile, e.g. 99.999)")
    return value


def models(text: str) -> tuple:
    items = csv(text)
    try:
        resolve_model_names(items)
    except PtqError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    for item in items:
        if looks_like_model_file(item) and not Path(item).expanduser().is_file():
            raise argparse.ArgumentTypeError(f"model file {item} does not exist")
    return tuple(items)


def int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is below the minimum {low}")
        return value

    return parse


def ints_at_least(low: int) -> Callable[[str], tuple]:
    return lambda text: tuple(int_at_least(low)(item) for item in csv(text))


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{value} must be a finite number > 0")
    return value


def three_floats(text: str) -> tuple:
    try:
        values = tuple(float(item) for item in csv(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not three numbers") from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError("expected three comma-separated values (R,G,B)")
    if not all(math.isfinite(value) for value in values):
        raise argparse.ArgumentTypeError(f"{text!r}: every value must be a finite number")
    return values


def three_positive_floats(text: str) -> tuple:
    values = three_floats(text)
    if not all(value > 0 for value in values):
        raise argparse.ArgumentTypeError(f"{text!r}: a standard deviation must be > 0 (it divides the pixels)")
    return values


def class_map_file(text: str) -> Path:
    """A ``--ptq-class-map`` file that reads as one (:func:`~ptqcore.models.class_map.load_class_map`)."""
    try:
        load_class_map(Path(text))
    except PtqError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return Path(text).expanduser()


def existing_dir(text: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is not a directory")
    return path


def precisions(text: str) -> tuple:
    """Precision names, as :class:`~ptqcore.case.Precision` members."""
    return tuple(Precision(name) for name in choices(tuple(p.value for p in Precision))(text))


def path(text: str) -> Path:
    return Path(text).expanduser()
