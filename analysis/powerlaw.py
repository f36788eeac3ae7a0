"""Straight lines in log-log space: every single power law in the package goes through here.

Kaplan's L(N), L(D) and L(C_min) and the N_opt(C), D_opt(C) laws of
Chinchilla Approaches 1 and 2 are all ``log y = intercept + slope * log x``,
so they are fitted by weighted least squares in closed form.  The batched form
takes one weight row per bootstrap resample (draw counts times point weights)
and solves all of them at once, which is what makes 1,000 resamples free.
"""

from __future__ import annotations

import numpy as np


def fit_lines(u: np.ndarray, v: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least-squares slope and intercept of v on u, one per row: each a float64 [rows].

    ``u``, ``v`` and ``weights`` broadcast against each other as rows of points
    (1-D means shared by all rows); NaN entries of u or v get zero weight.  A row whose
    weighted points do not span two distinct u values gets NaN, which the
    percentile intervals then skip.
    """
    w, u, v = (np.atleast_2d(np.asarray(a, dtype=np.float64)) for a in (weights, u, v))
    shape = np.broadcast_shapes(w.shape, u.shape, v.shape)
    w, u, v = (np.broadcast_to(a, shape) for a in (w, u, v))
    ok = np.isfinite(u) & np.isfinite(v)
    w = np.where(ok, w, 0.0)
    u, v = np.where(ok, u, 0.0), np.where(ok, v, 0.0)
    sw = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = (w * u).sum(axis=1) / sw
        mv = (w * v).sum(axis=1) / sw
        du = u - mu[:, None]
        suu = (w * du * du).sum(axis=1)
        suv = (w * du * (v - mv[:, None])).sum(axis=1)
        spread = suu / sw
        slope = np.where(spread > 1e-12, suv / suu, np.nan)
    intercept = mv - slope * mu
    return slope, intercept
