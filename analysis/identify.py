"""Can the data identify a parametric law?  Checks on the design, the optimum and its profile.

The rules (thresholds in capitals below; sources in docs/analysis.md):

* design: at least 3 distinct N and 3 distinct D (with 2 sizes,
  E + A/N^alpha is a one-parameter family of equally good fits), and N and D
  varied independently (runs at one tokens-per-parameter ratio, or log N and
  log D nearly collinear, make the N and D terms two power laws of one
  variable: alpha and beta trade off);
* profile: each of E and the exponents is fixed on a grid and the other
  parameters re-minimised; if the objective rises by less than
  ``FLAT_RISE`` over a wide range (a third of [0, lowest loss] for E, a
  factor ``FLAT_FACTOR`` for an exponent), that parameter is not identified
  (Raue et al. 2009, profile-likelihood identifiability);
* the polished starts: near-equal objectives at far-apart parameters are the
  cheap symptom of the same flat direction;
* physics: E must lie in (0, lowest fitted loss); E driven to zero or an
  exponent outside the published range is a boundary solution.

The profile costs one batched minimisation on the point fit only, never per
bootstrap resample.
"""

from __future__ import annotations

import numpy as np

from analysis.parametric import ParametricFit, profile
from analysis.verdict import UNIDENTIFIED, diagnostic

MIN_DISTINCT = 3           # fewer distinct N (or D): unidentified
FEW_DISTINCT = 5           # fewer than this: a warning
MIN_RATIO_SPREAD = 1.5     # max/min tokens per parameter below this: one ratio, unidentified
MAX_COLLINEARITY = 0.98    # |corr(log N, log D)| above this: unidentified
FLAT_RISE = 0.01           # profile rise (relative to the optimum's objective) that counts as flat
FLAT_E_SPAN = 1 / 3        # E is unidentified if flat over this fraction of [0, lowest loss]
FLAT_FACTOR = 2.5          # an exponent is unidentified if flat over values spanning this factor
STARTS_NEAR = 1e-3         # polished starts within this relative objective of the best ...
STARTS_SPREAD = 0.2        # ... whose E or exponents differ by more than this (relative): a warning
E_FLOOR = 0.01             # E below this fraction of the lowest loss: driven to its bound at zero
MAX_EXPONENT = 3.0         # exponents above this are outside anything published (0.05 to 1)

E_GRID = np.array([0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.98])
EXPONENT_GRID = np.array([0.25, 0.4, 0.6, 0.8, 1.25, 1.6, 2.5, 4.0])


def design(N: np.ndarray, D: np.ndarray) -> list[dict]:
    """Diagnostics on where the points sit in (N, D), before any fit."""
    out = []
    for name, v, fix in (("N", N, "model sizes"), ("D", D, "training lengths")):
        k = len(np.unique(np.round(np.log(v), 9)))
        if k < MIN_DISTINCT:
            out.append(diagnostic(f"few_distinct_{name}",
                                  f"only {k} distinct {name}; need at least {MIN_DISTINCT} (better "
                                  f"{FEW_DISTINCT}+) {fix}: with {k} the law has a flat direction and E, the scale "
                                  "and the exponent trade off", UNIDENTIFIED))
        elif k < FEW_DISTINCT:
            out.append(diagnostic(f"few_distinct_{name}",
                                  f"only {k} distinct {name}; with fewer than {FEW_DISTINCT} {fix} the exponent "
                                  "rests on very few points (check the profile diagnostics)"))
    ratio = D / N
    spread = ratio.max() / ratio.min()
    corr = float(np.corrcoef(np.log(N), np.log(D))[0, 1]) if np.ptp(np.log(N)) and np.ptp(np.log(D)) else 1.0
    if spread < MIN_RATIO_SPREAD:
        out.append(diagnostic("single_ratio",
                              f"every point has nearly the same tokens per parameter (D/N from {ratio.min():.3g} to "
                              f"{ratio.max():.3g}): the N and D terms are two power laws of one variable, so alpha "
                              "and beta cannot be separated; train some sizes on more and on fewer tokens",
                              UNIDENTIFIED))
    elif abs(corr) > MAX_COLLINEARITY:
        out.append(diagnostic("collinear_N_D",
                              f"log N and log D are almost collinear (correlation {corr:+.3f}): N and D were not "
                              "varied independently, so their exponents trade off; add runs off that line",
                              UNIDENTIFIED))
    return out


def _flat_span(values: np.ndarray, rise: np.ndarray, at: float) -> tuple[float, float]:
    """The contiguous range of grid ``values`` around ``at`` (where rise is 0) whose rise stays under FLAT_RISE."""
    v = np.append(values, at)
    r = np.append(rise, 0.0)
    order = np.argsort(v)
    v, r = v[order], r[order]
    i = int(np.flatnonzero(order == len(values))[0])
    lo = hi = i
    while lo > 0 and r[lo - 1] < FLAT_RISE:
        lo -= 1
    while hi < len(v) - 1 and r[hi + 1] < FLAT_RISE:
        hi += 1
    return float(v[lo]), float(v[hi])


def optimum(fit: ParametricFit, objective, *, loss: np.ndarray, exponents: dict[str, int],
            log_e: int | None = None) -> tuple[list[dict], dict]:
    """Diagnostics on the fitted optimum, and the profiles behind them (for fits.json).

    ``exponents`` maps parameter names to their index in the optimiser's
    vector; ``log_e`` is the index of log E (None for laws without E).
    """
    out: list[dict] = []
    x, f0 = fit.x, float(fit.convergence["objective"])
    lowest = float(np.min(loss))
    fixed, names = [], []
    if log_e is not None:
        fixed.append((log_e, np.log(lowest * E_GRID)))
        names.append("E")
    for name, i in exponents.items():
        fixed.append((i, x[i] * EXPONENT_GRID))
        names.append(name)
    minima = profile(fit, objective, fixed)
    scale = max(f0, 1e-12)
    profiles, flat = {}, []
    for name, (i, values), m in zip(names, fixed, minima):
        rise = (m - f0) / scale
        shown = np.exp(values) if name == "E" else values
        profiles[name] = {"values": shown.tolist(), "relative_rise": rise.tolist()}
        lo, hi = _flat_span(shown, rise, float(np.exp(x[i]) if name == "E" else x[i]))
        wide = (hi - lo >= FLAT_E_SPAN * lowest) if name == "E" else (hi / lo >= FLAT_FACTOR)
        if wide:
            flat.append(f"{name} anywhere from {lo:.3g} to {hi:.3g}")
    if flat:
        out.append(diagnostic("flat_profile",
                              f"not identified: fixing {'; '.join(flat)} and re-fitting the other parameters "
                              f"changes the objective by less than {100 * FLAT_RISE:g}%, so the data cannot tell "
                              "these laws apart; more model sizes and training lengths over a wider range (5+ of "
                              "each, spanning 10x or more) would pin them down", UNIDENTIFIED))

    near = fit.polished_f <= fit.polished_f.min() * (1 + STARTS_NEAR) + 1e-15
    idx = ([log_e] if log_e is not None else []) + list(exponents.values())
    pts = fit.polished_x[near][:, idx].copy()
    if log_e is not None:
        pts[:, 0] = np.exp(pts[:, 0])
    spread = (pts.max(axis=0) - pts.min(axis=0)) / np.maximum(np.abs(pts).max(axis=0), 1e-12)
    if near.sum() > 1 and np.any(spread > STARTS_SPREAD):
        which = [n for n, s in zip((["E"] if log_e is not None else []) + list(exponents), spread) if s > STARTS_SPREAD]
        out.append(diagnostic("starts_disagree",
                              f"{int(near.sum())} polished starts reach objectives within {100 * STARTS_NEAR:g}% of "
                              f"the best at far-apart values of {', '.join(which)}: a flat direction in the fit"))

    if log_e is not None:
        E = float(np.exp(x[log_e]))
        if E >= lowest:
            out.append(diagnostic("E_above_lowest_loss",
                                  f"E = {E:.4g} lies above the lowest loss it was fitted to ({lowest:.4g}): the law "
                                  "says loss can never reach values already observed, so it cannot be right; the "
                                  "losses may not follow one law (check for mixed settings or outliers)",
                                  UNIDENTIFIED))
        elif E < E_FLOOR * lowest:
            out.append(diagnostic("E_at_bound",
                                  f"E = {E:.3g} was driven to its bound at zero: a boundary solution, not an "
                                  "estimate of the irreducible loss; the other parameters compensate for it"))
    high = [f"{n} = {x[i]:.3g}" for n, i in exponents.items() if x[i] > MAX_EXPONENT]
    if high:
        out.append(diagnostic("exponent_at_bound",
                              f"{', '.join(high)} is far outside the published range (0.05 to 1): a boundary "
                              "solution where the term vanishes over the data", UNIDENTIFIED))
    return out, profiles
