"""Validated arrays for one fit: the checks, duplicate and outlier dropping, and weights every fitter shares.

Exact duplicate rows are dropped with a warning: a row pasted twice counts
twice in the objective and shrinks bootstrap intervals by about sqrt(2) for
nothing (a repeated *measurement*, say another seed, differs in its loss and
is kept).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.bootstrap import drop_highest
from analysis.errors import FitError, as_positive, require_points, same_length
from analysis.verdict import diagnostic


@dataclass(frozen=True)
class Points:
    """Columns that passed validation, the weights that go with them, and what was dropped."""

    cols: dict[str, np.ndarray]
    weights: np.ndarray
    dropped: np.ndarray
    diagnostics: tuple = ()

    def __getitem__(self, name: str) -> np.ndarray:
        return self.cols[name]

    def __len__(self) -> int:
        return len(self.weights)

    def notes(self) -> list[str]:
        """A line naming the highest-loss points ``drop_top`` removed (original indices), or [] if none."""
        if not len(self.dropped):
            return []
        return [f"dropped the {len(self.dropped)} highest-loss point(s) at original index {self.dropped.tolist()}"]


def prepare(what: str, min_points: int, *, loss, drop_top: int = 0, weights=None, **cols) -> Points:
    """Check, drop outliers from and weight the columns of one fit, or raise FitError saying why not."""
    arrays = {name: as_positive(f"{what}: {name}", values) for name, values in cols.items()}
    arrays["loss"] = as_positive(f"{what}: loss", loss)
    n = same_length(**arrays)
    if weights is None:
        w = np.ones(n)
    else:
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        if len(w) != n or not np.all(np.isfinite(w)) or np.any(w < 0) or not np.any(w > 0):
            raise FitError(f"{what}: weights must be {n} finite, non-negative numbers, not all zero")
    first = _first_occurrences(arrays)
    diagnostics = ()
    if len(first) < n:
        dup = np.setdiff1d(np.arange(n), first)
        diagnostics = (diagnostic(
            "duplicate_rows", f"{len(dup)} row(s) repeat an earlier row exactly (rows {_rows(dup)}, counting from 1) "
            "and were dropped: a pasted-twice row would count twice and shrink the intervals for nothing"),)
    original = first
    arrays = {k: v[first] for k, v in arrays.items()}
    w = w[first]
    keep = drop_highest(arrays["loss"], drop_top)
    dropped = original[~keep]
    arrays = {k: v[keep] for k, v in arrays.items()}
    require_points(int(keep.sum()), min_points, what)
    return Points(cols=arrays, weights=w[keep], dropped=dropped, diagnostics=diagnostics)


def _first_occurrences(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Sorted indices of the first occurrence of every distinct row across all columns."""
    rows = np.stack(list(arrays.values()), axis=1)
    _, first = np.unique(rows, axis=0, return_index=True)
    return np.sort(first)


def _rows(index: np.ndarray, shown: int = 8) -> str:
    """1-based row numbers, abbreviated after ``shown``."""
    text = ", ".join(str(i + 1) for i in index[:shown])
    return text + (f" and {len(index) - shown} more" if len(index) > shown else "")


# C / (6 N D) for real transformers: 6ND omits attention and the output layer, so the exact count is
# 0.99-1.10x 6ND from 73M to 6.8B parameters (Hoffmann et al. 2022, appendix F) and higher for tiny models.
COMPUTE_RATIO_RANGE = (0.7, 1.5)
COMPUTE_RATIO_SPREAD = 1.5  # rows whose ratio departs from the median by more than this factor are named


def compute_consistency(N, D, C) -> list[dict]:
    """Diagnostics when given compute disagrees with 6ND: a units error, or rows that depart from the rest."""
    ratio = np.asarray(C, dtype=np.float64) / (6.0 * np.asarray(N, dtype=np.float64) * np.asarray(D, dtype=np.float64))
    median = float(np.median(ratio))
    out = []
    lo, hi = COMPUTE_RATIO_RANGE
    if not lo <= median <= hi:
        units = " (a units error: D or C in other units than tokens and FLOPs?)" if not 0.1 <= median <= 10 else ""
        out.append(diagnostic("compute_units",
                              f"C / (6 N D) is {median:.3g} on the typical row, not {lo}-{hi} as for a transformer"
                              f"{units}; fix the columns, or leave C out to use 6ND"))
    off = np.flatnonzero((ratio > median * COMPUTE_RATIO_SPREAD) | (ratio < median / COMPUTE_RATIO_SPREAD))
    if off.size:
        shown = ", ".join(f"{r:.3g}" for r in ratio[off][:4]) + ("..." if off.size > 4 else "")
        out.append(diagnostic("compute_inconsistent_rows",
                              f"{off.size} row(s) have C / (6 N D) far from the typical {median:.3g} (rows "
                              f"{_rows(off)}, counting from 1, with ratios {shown}): N, D or C is wrong on them"))
    return out
