"""Numeric option checks: one home for "a whole number >= 1", "a finite number > 0", ...

Used by the library (``ExtractOptions``, ``TrainConfig``, ``extract(limit=...)``) and by
the command line (the ``click`` parameter types below), so ``--limit -1``, ``--max-memory 0``
and ``nan`` are refused in one line naming the option before any work starts, instead of
reaching Python as a slice bound, a zero budget or a garbled comparison.  Keras-free.
"""
from __future__ import annotations

import math
import numbers

from .errors import OptionError

__all__ = ["seed_list", "whole", "number", "check_whole", "check_number", "IntRange", "FloatRange",
           "POSITIVE_INT", "NONNEGATIVE_INT", "POSITIVE_FLOAT", "NONNEGATIVE_FLOAT"]


def _bounds(low, high, low_open=False, high_open=False) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    return "" if high is None else f"{'<' if high_open else '<='} {high:g}"


def whole(name: str, value, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int, refusing non-whole numbers, booleans and values out of range."""
    ok = (isinstance(value, numbers.Integral) and not isinstance(value, bool)) or (
        isinstance(value, numbers.Real) and not isinstance(value, bool)
        and math.isfinite(value) and float(value).is_integer())
    if isinstance(value, str):
        try:
            return whole(name, int(value.strip()), low, high)
        except ValueError:
            ok = False
    if not ok:
        rule = _bounds(low, high)
        raise OptionError(f"{name} must be a whole number{' ' + rule if rule else ''}, "
                          f"got {value!r}")
    v = int(value)
    if (low is not None and v < low) or (high is not None and v > high):
        raise OptionError(f"{name} must be a whole number {_bounds(low, high)}, got {v}")
    return v


def number(name: str, value, low: float | None = None, high: float | None = None,
           low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite float within the bounds (``*_open``: the bound itself is out)."""
    try:
        v = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        v = None
    if v is None or isinstance(value, bool) or not math.isfinite(v):
        rule = _bounds(low, high, low_open, high_open)
        raise OptionError(f"{name} must be a finite number{' ' + rule if rule else ''}, "
                          f"got {value!r}")
    if ((low is not None and (v < low or (low_open and v == low)))
            or (high is not None and (v > high or (high_open and v == high)))):
        raise OptionError(f"{name} must be {_bounds(low, high, low_open, high_open)}, got {v:g}")
    return v


def check_whole(name, value, low=None, high=None, optional=False):
    """:func:`whole`, letting None through when ``optional``."""
    return None if optional and value is None else whole(name, value, low, high)


def check_number(name, value, low=None, high=None, low_open=False, high_open=False,
                 optional=False):
    """:func:`number`, letting None through when ``optional``."""
    if optional and value is None:
        return None
    return number(name, value, low, high, low_open, high_open)


try:  # the command line's parameter types (click is a dependency of the CLI only)
    import click

    class IntRange(click.ParamType):
        """A whole number within bounds; the refusal names the option (click adds it)."""

        name = "integer"

        def __init__(self, low=None, high=None):
            self.low, self.high = low, high

        def convert(self, value, param, ctx):
            if isinstance(value, int) and not isinstance(value, bool) and (
                    self.low is None or value >= self.low) and (
                    self.high is None or value <= self.high):
                return value
            try:
                return whole("value", value, self.low, self.high)
            except OptionError as err:
                self.fail(str(err).replace("value ", "", 1), param, ctx)

    class FloatRange(click.ParamType):
        """A finite number within bounds (NaN and infinities refused)."""

        name = "number"

        def __init__(self, low=None, high=None, low_open=False, high_open=False):
            self.low, self.high, self.low_open, self.high_open = low, high, low_open, high_open

        def convert(self, value, param, ctx):
            try:
                return number("value", value, self.low, self.high, self.low_open,
                              self.high_open)
            except OptionError as err:
                self.fail(str(err).replace("value ", "", 1), param, ctx)

    POSITIVE_INT = IntRange(1)
    NONNEGATIVE_INT = IntRange(0)
    POSITIVE_FLOAT = FloatRange(0, low_open=True)
    NONNEGATIVE_FLOAT = FloatRange(0)
except ImportError:  # pragma: no cover
    IntRange = FloatRange = None
    POSITIVE_INT = NONNEGATIVE_INT = POSITIVE_FLOAT = NONNEGATIVE_FLOAT = None


def seed_list(seeds, seed=0) -> tuple:
    """The seeds of a repeated cross-validation: a count ``S`` means ``seed, seed + 1, ...,
    seed + S - 1`` (``mlsp train --seed 5 --seeds 3`` and ``mlsp.cross_validate(seeds=3,
    seed=5)`` both run 5, 6, 7); a sequence is taken as given."""
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        n = whole("seeds", seeds, low=1)
        first = whole("seed", seed, low=0)
        return tuple(range(first, first + n))
    return tuple(whole("seeds", s, low=0) for s in seeds)

