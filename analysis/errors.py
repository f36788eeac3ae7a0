"""The one exception the analysis package raises for bad input, and the checks that raise it.

Fits are run on files a colleague handed over, so bad input is expected: the
command line turns a ``FitError`` into a one-line message and a non-zero exit
code instead of a traceback.  It subclasses ``ValueError`` so library callers
who already catch that keep working.
"""

from __future__ import annotations

import numpy as np


class FitError(ValueError):
    """Input that no fit can be made from, with a message a user can act on."""


def as_positive(name: str, values) -> np.ndarray:
    """A float array that is finite and strictly positive, or a FitError saying which entry is not.

    Every law here is fitted in log space, so zero, negative or NaN entries
    would otherwise turn into silent NaNs deep inside an optimiser.
    """
    try:
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise FitError(f"{name}: values are not numbers ({exc})") from None
    bad = ~np.isfinite(arr)
    if bad.any():
        raise FitError(f"{name}: {int(bad.sum())} value(s) are NaN or infinite (first at index {int(np.argmax(bad))})")
    bad = arr <= 0
    if bad.any():
        raise FitError(f"{name}: {int(bad.sum())} value(s) are zero or negative (first at index {int(np.argmax(bad))}); "
                       "scaling laws are fitted in log space")
    return arr


def same_length(**arrays) -> int:
    """The common length of several arrays, or a FitError naming the mismatch."""
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise FitError("arrays differ in length: " + ", ".join(f"{k}={n}" for k, n in lengths.items()))
    return next(iter(lengths.values()))


def require_points(n: int, minimum: int, what: str) -> None:
    """Refuse fits with fewer points than free parameters plus one: they fit anything."""
    if n < minimum:
        raise FitError(f"{what} needs at least {minimum} points, got {n}")


def require_distinct(name: str, values: np.ndarray, minimum: int, what: str) -> None:
    """Refuse fits whose regressor barely varies (e.g. a sweep with a single model size)."""
    distinct = len(np.unique(np.round(np.log(values), 9)))
    if distinct < minimum:
        raise FitError(f"{what} needs at least {minimum} distinct values of {name}, got {distinct}")
