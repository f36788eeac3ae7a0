"""Extrapolation check: fit on the cheap runs, predict the expensive ones, report the miss.

A scaling law is used to extrapolate, so the fairest test of one is held-out
compute: everything below a threshold is fitted, everything above is
predicted, and the relative error and whether each truth fell inside the
bootstrap interval are reported.
"""

from __future__ import annotations

import numpy as np

from analysis.bootstrap import DEFAULT_BOOTSTRAP, Bootstrap
from analysis.chinchilla import fit_chinchilla
from analysis.errors import FitError
from analysis.predict import at_size


def extrapolation_check(N, D, loss, C, *, threshold: float | None = None, bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
                        **fit_options) -> dict:
    """Fit Approach 3 on points with C <= threshold and predict the rest.

    Without a threshold the points of the largest compute (within 10%) are held out.
    """
    N, D, loss, C = (np.asarray(a, dtype=np.float64) for a in (N, D, loss, C))
    if threshold is None:
        threshold = C.max() / 1.1
    held = C > threshold
    if not held.any() or held.all():
        raise FitError(f"extrapolation check: threshold {threshold:.3g} leaves no runs on one side")
    fit = fit_chinchilla(N[~held], D[~held], loss[~held], bootstrap=bootstrap, **fit_options)
    rows = []
    for n, d, l, c in zip(N[held], D[held], loss[held], C[held]):
        pred = at_size(fit, n, d)["loss"]
        lo, hi = pred["ci"]
        rows.append({"N": float(n), "D": float(d), "C": float(c), "loss": float(l), "predicted": pred["value"],
                     "ci": pred["ci"], "relative_error": (pred["value"] - l) / l,
                     "inside_interval": bool(lo <= l <= hi)})
    errors = np.array([r["relative_error"] for r in rows])
    return {"law": "chinchilla", "threshold": float(threshold), "fitted_points": int((~held).sum()),
            "held_out": rows, "mean_abs_relative_error": float(np.mean(np.abs(errors))),
            "max_abs_relative_error": float(np.max(np.abs(errors))),
            "fraction_inside_interval": float(np.mean([r["inside_interval"] for r in rows])),
            "fit_params": fit.params}
