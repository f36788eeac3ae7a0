"""Validated arrays for one fit: the checks, outlier dropping and weights every fitter shares."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.bootstrap import drop_highest
from analysis.errors import FitError, as_positive, require_points, same_length


@dataclass(frozen=True)
class Points:
    """Columns that passed validation, the weights that go with them, and what was dropped."""

    cols: dict[str, np.ndarray]
    weights: np.ndarray
    dropped: np.ndarray

    def __getitem__(self, name: str) -> np.ndarray:
        return self.cols[name]

    def __len__(self) -> int:
        return len(self.weights)

    def notes(self) -> list[str]:
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
    keep = drop_highest(arrays["loss"], drop_top)
    dropped = np.flatnonzero(~keep)
    arrays = {k: v[keep] for k, v in arrays.items()}
    require_points(int(keep.sum()), min_points, what)
    return Points(cols=arrays, weights=w[keep], dropped=dropped)
