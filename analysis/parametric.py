"""Fitting a two-variable law L(N, D) to log-loss with a Huber loss: grid, polish, bootstrap.

This is the Chinchilla Approach 3 recipe (Hoffmann et al. 2022, corrected by
Besiroglu et al. 2024), shared with Kaplan's joint L(N, D):

* the objective is the Huber loss (delta = 1e-3) of log-prediction minus
  log-loss, **summed** over points: averaging divides the gradient by the
  number of points, and an absolute gradient tolerance then stops the
  optimiser early (``reduction="mean"`` exists only to demonstrate that);
* L-BFGS is started from every point of a grid; every start gets
  ``grid_iterations`` iterations, the ``polish`` lowest continue to full
  convergence, and the best is kept.  Convergence of the winner (why it
  stopped, gradient norm, iterations) and how many polished starts agree
  with it are reported;
* each bootstrap resample is refitted from the distinct minima the polished
  starts found (at most ``MAX_WARM_STARTS``), keeping the best, all resamples
  in one vmapped batch.

Objectives have the signature ``objective(x, w, logN, logD, logL, scale)``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from analysis.bootstrap import Bootstrap
from analysis.errors import FitError
from analysis.optimize import STATUS_NAMES, minimize

HUBER_DELTA = 1e-3
MAX_WARM_STARTS = 4
GTOL = 1e-9
FTOL = 1e-14


def huber(r, delta=HUBER_DELTA):
    """Huber's (1964) loss, elementwise: r^2/2 within delta of zero, delta (|r| - delta/2) beyond.

    Robust to the odd bad run. delta = 1e-3 on log-loss residuals is Hoffmann et al. 2022 §3.3's.
    """
    a = jnp.abs(r)
    return jnp.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


@dataclass(frozen=True)
class ParametricFit:
    """Best point ``x``, bootstrap refits ``samples``, and the polished starts (for the identifiability checks).

    With P parameters: ``x`` [P]; ``samples`` [R, P] (a row of NaN where a resample failed;
    [0, P] without a bootstrap); ``polished_x`` [S, P] and ``polished_f`` [S] for the S polished
    starts; ``data`` the objective's (logN, logD, logL, scale) and ``weights`` [n].
    """

    x: np.ndarray
    samples: np.ndarray
    convergence: dict
    polished_x: np.ndarray
    polished_f: np.ndarray
    data: tuple
    weights: np.ndarray


@functools.cache
def _profiled(objective):
    """``objective`` on x = (theta, mask): the coordinates where mask is 1 stay at their start value.

    Both halves go through ``stop_gradient`` where fixed, so their gradient is
    exactly zero and L-BFGS never moves them; one compiled function then serves
    every (parameter, value) lane of a profile.  Cached so jit sees one object.
    """
    def fixed(x, w, *data):
        k = x.shape[0] // 2
        mask = jax.lax.stop_gradient(x[k:])
        theta = jnp.where(mask > 0, jax.lax.stop_gradient(x[:k]), x[:k])
        return objective(theta, w, *data)
    return fixed


def profile(fit: ParametricFit, objective, fixed: list[tuple[int, np.ndarray]], *, maxiter: int = 500) -> list:
    """Profile of the objective: for each (index, values), the minimum over the other coordinates.

    Each fixed value is re-minimised from the distinct polished minima (at most
    ``MAX_WARM_STARTS``) and the best kept.  Returns one array of minima per
    entry of ``fixed``, matching ``values``.  Computed once on the point fit:
    it is a property of the data, not something to repeat per resample.
    """
    starts = _distinct(fit.polished_x[np.argsort(fit.polished_f)], MAX_WARM_STARTS)
    dim = starts.shape[1]
    lanes = []
    for index, values in fixed:
        mask = np.zeros(dim)
        mask[index] = 1.0
        for v in values:
            for s in starts:
                theta = s.copy()
                theta[index] = v
                lanes.append(np.concatenate([theta, mask]))
    res = minimize(_profiled(objective), np.array(lanes), fit.weights[None, :], fit.data, maxiter=maxiter,
                   gtol=GTOL, ftol=FTOL)
    f = np.where(np.isfinite(res.f), res.f, np.inf).reshape(-1, len(starts)).min(axis=1)
    out, at = [], 0
    for _, values in fixed:
        out.append(f[at:at + len(values)])
        at += len(values)
    return out


def _distinct(xs: np.ndarray, limit: int) -> np.ndarray:
    """The first ``limit`` rows that differ from every earlier kept row by more than 1e-4."""
    kept: list[np.ndarray] = []
    for x in xs:
        if all(np.max(np.abs(x - k)) > 1e-4 for k in kept):
            kept.append(x)
        if len(kept) == limit:
            break
    return np.array(kept)


def fit_huber_grid(objective, grid: np.ndarray, logs: tuple[np.ndarray, np.ndarray, np.ndarray],
                   weights: np.ndarray, bootstrap: Bootstrap, *, reduction: str = "sum",
                   grid_iterations: int = 50, polish: int = 32, gtol: float = GTOL, ftol: float = FTOL,
                   maxiter: int = 2000) -> ParametricFit:
    """Best-of-grid fit of ``objective`` to (logN, logD, logL) plus bootstrap refits.

    ``grid`` is [starts, P]; ``logs`` three [n] arrays of natural logs; ``weights`` [n].
    ``reduction`` is "sum" (correct) or "mean" (the early-stopping flaw Besiroglu et al. 2024
    found in the printed Chinchilla fit). Raises FitError for another reduction, or when every
    start diverges.
    """
    if reduction not in ("sum", "mean"):
        raise FitError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    n = len(weights)
    scale = np.full(n, 1.0 if reduction == "sum" else 1.0 / weights.sum())
    data = (*logs, scale)
    tol = {"gtol": gtol, "ftol": ftol}

    coarse = minimize(objective, grid, weights[None, :], data, maxiter=grid_iterations, **tol)
    order = np.argsort(np.where(np.isfinite(coarse.f), coarse.f, np.inf))[:polish]
    fine = minimize(objective, coarse.x[order], weights[None, :], data, maxiter=maxiter, **tol)
    ranked = np.argsort(np.where(np.isfinite(fine.f), fine.f, np.inf))
    best = ranked[0]
    if not np.isfinite(fine.f[best]):
        raise FitError("the fit diverged from every starting point")
    agree = np.abs(fine.f - fine.f[best]) <= 1e-6 * max(abs(fine.f[best]), 1e-300) + 1e-15
    convergence = {
        "converged": bool(fine.converged[best]),
        "reason": STATUS_NAMES.get(int(fine.status[best]), "running"),
        "iterations": int(coarse.iterations[order[best]] + fine.iterations[best]),
        "grad_norm": float(fine.grad_norm[best]),
        "objective": float(fine.f[best]),
        "reduction": reduction, "gtol": gtol, "ftol": ftol,
        "starts": len(grid), "polished": len(order),
        "polished_agreeing_with_best": int(agree.sum()),
    }

    samples = np.empty((0, grid.shape[1]))
    if bootstrap.resamples:
        starts = _distinct(fine.x[ranked], MAX_WARM_STARTS)
        counts = bootstrap.counts(n) * weights[None, :]
        k = len(starts)
        boot = minimize(objective, np.tile(starts, (bootstrap.resamples, 1)), np.repeat(counts, k, axis=0),
                        data, maxiter=maxiter, **tol)
        f = np.where(np.isfinite(boot.f), boot.f, np.inf).reshape(bootstrap.resamples, k)
        pick = np.argmin(f, axis=1)
        rows = np.arange(bootstrap.resamples) * k + pick
        samples = np.where(np.isfinite(f.min(axis=1))[:, None], boot.x[rows], np.nan)
        convergence["bootstrap_converged_fraction"] = float(boot.converged[rows].mean())
        convergence["bootstrap_warm_starts"] = int(k)
    return ParametricFit(x=fine.x[best], samples=samples, convergence=convergence, polished_x=fine.x,
                         polished_f=fine.f, data=data, weights=weights)
