"""Errors raised for user mistakes.

A :class:`UserError` is a mistake in what the user asked for (an unknown name, an
out-of-range hyperparameter, a missing data file).  The command line prints its
one-line message and exits with code 2, without a traceback.  It subclasses
``ValueError`` so Python callers can catch it as the conventional type.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


class UserError(ValueError):
    """A user mistake: reported as one line, exit code 2 from the CLI."""


def unknown_choice(kind: str, name: str, valid: Iterable[str]) -> UserError:
    """Build the standard error for an unknown name, listing the valid choices."""
    choices = ", ".join(sorted(valid))
    return UserError(f"unknown {kind} '{name}'; valid choices: {choices}")


def check_choice(kind: str, value: object, valid: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``valid``, else the standard :func:`unknown_choice` error."""
    choices = list(valid)
    if not isinstance(value, str) or value not in choices:
        raise unknown_choice(kind, str(value), choices)
    return value


def check_range(name: str, value: object, *, low: float | None = None, high: float | None = None,
                low_inclusive: bool = True, high_inclusive: bool = True) -> float:
    """Return ``value`` as a float if it is a real number in the given interval, else raise :class:`UserError`.

    Booleans, strings, ``None``, NaN and infinity are refused.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{name} must be a number, got {value!r}")
    value = float(value)
    ok = True
    if low is not None:
        ok &= value >= low if low_inclusive else value > low
    if high is not None:
        ok &= value <= high if high_inclusive else value < high
    if not ok or not math.isfinite(value):
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        interval = ("[" if low_inclusive and low is not None else "(") + f"{lo}, {hi}" + (
            "]" if high_inclusive and high is not None else ")")
        raise UserError(f"{name} must be in {interval}, got {value!r}")
    return value


def check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    """Return ``value`` as an int if it is a whole number in ``[low, high]``, else raise :class:`UserError`.

    Booleans (``steps=True``), strings, NaN and infinity are refused.
    """
    if not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) \
            and int(value) == value and value >= low and (high is None or value <= high):
        return int(value)
    bound = f">= {low}" if high is None else f"in [{low}, {high}]"
    raise UserError(f"{name} must be an integer {bound}, got {value!r}")


#: the largest seed we accept: ``torch.manual_seed`` takes any 64-bit value (measured: [-2**63, 2**64 - 1],
#: negatives wrapping to the top half); [0, 2**63 - 1] keeps every seed distinct and leaves room for
#: ``seed + k`` offsets (one per attack of a suite) without overflow
MAX_SEED = 2**63 - 1


def check_seed(name: str, value: object) -> int:
    """Return ``value`` as an int if it is a valid seed, ``[0, 2**63 - 1]``, else raise :class:`UserError`."""
    try:
        return check_int(name, value, 0, MAX_SEED)
    except UserError:
        raise UserError(f"{name} must be an integer in [0, 2**63 - 1], got {value!r}") from None
