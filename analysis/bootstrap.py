"""Resampling plans and percentile intervals shared by every fit.

Besiroglu et al. (2024) found the printed Chinchilla intervals far too narrow;
a nonparametric bootstrap over the fitted points is the honest default here.
Resamples are expressed as integer *count* vectors (how often each point is
drawn) rather than index lists: a count vector is a weight vector, so a
weighted objective evaluates a resample without copying data, and all
resamples share one array shape, which lets them be vmapped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.errors import FitError

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
DEFAULT_LEVEL = 0.95


@dataclass(frozen=True)
class Bootstrap:
    """How to resample: how many times, with which seed, and at what interval level."""

    resamples: int = DEFAULT_RESAMPLES
    seed: int = DEFAULT_SEED
    level: float = DEFAULT_LEVEL

    def __post_init__(self):
        if self.resamples < 0:
            raise FitError(f"bootstrap resamples must be >= 0, got {self.resamples}")
        if not 0 < self.level < 1:
            raise FitError(f"interval level must be between 0 and 1, got {self.level}")

    def counts(self, n: int, groups: np.ndarray | None = None) -> np.ndarray:
        """A (resamples, n) matrix of draw counts.

        With ``groups`` the draw is stratified: each group keeps its size, so an
        IsoFLOP budget cannot vanish from a resample and leave its parabola
        undefined.
        """
        rng = np.random.default_rng(self.seed)
        if groups is None:
            return rng.multinomial(n, np.full(n, 1.0 / n), size=self.resamples).astype(np.float64)
        counts = np.zeros((self.resamples, n))
        for g in np.unique(groups):
            idx = np.flatnonzero(groups == g)
            counts[:, idx] = rng.multinomial(len(idx), np.full(len(idx), 1.0 / len(idx)), size=self.resamples)
        return counts


DEFAULT_BOOTSTRAP = Bootstrap()


def interval(samples, level: float) -> list[float]:
    """Percentile interval of the finite bootstrap samples ([nan, nan] if there are none)."""
    s = np.asarray(samples, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return [float("nan"), float("nan")]
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(s, [tail, 100 - tail])
    return [float(lo), float(hi)]


def drop_highest(loss: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask keeping all but the ``k`` highest-loss points.

    Diverged or badly under-trained runs sit far above any law and, even with a
    Huber loss, pull the exponents; dropping the top k is the blunt remedy the
    literature uses (e.g. Muennighoff et al. 2023 drop points whose loss turns up).
    """
    if k < 0:
        raise FitError(f"--drop-top must be >= 0, got {k}")
    keep = np.ones(len(loss), dtype=bool)
    if k:
        if k >= len(loss):
            raise FitError(f"cannot drop the {k} highest-loss points out of {len(loss)}")
        keep[np.argsort(loss, kind="stable")[-k:]] = False
    return keep
