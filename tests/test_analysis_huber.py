"""Summing versus averaging the Huber loss: the bug Besiroglu et al. (2024) found in the Chinchilla fit.

With SciPy's L-BFGS-B default tolerances (gradient 1e-5, relative decrease
2.2e-9), which the original fit used, dividing the objective by the number of
points shrinks its gradient below the tolerance long before the optimum.
"""

import numpy as np

from analysis.bootstrap import Bootstrap
from analysis.chinchilla import fit_chinchilla
from analysis.synthetic import CHINCHILLA, sample_points

SCIPY_DEFAULTS = {"gtol": 1e-5, "ftol": 2.2e-9}


def _error(fit):
    return max(abs(fit.params[k] - CHINCHILLA[k]) / CHINCHILLA[k] for k in ("E", "A", "B", "alpha", "beta"))


def test_averaged_objective_stops_early_where_summed_converges():
    N, D, L = sample_points(250, noise=0.0, seed=1)
    summed = fit_chinchilla(N, D, L, bootstrap=Bootstrap(0), **SCIPY_DEFAULTS)  # summing is the default
    assert summed.convergence["reduction"] == "sum"
    averaged = fit_chinchilla(N, D, L, bootstrap=Bootstrap(0), reduction="mean", **SCIPY_DEFAULTS)

    assert _error(summed) < 1e-4
    assert _error(averaged) > 0.05
    # the averaged run reports success: it stopped on the gradient test, far from the optimum
    assert averaged.convergence["converged"]
    assert averaged.convergence["iterations"] < summed.convergence["iterations"]
    sq = lambda f: float(np.sum(np.square(f.residuals)))
    assert sq(averaged) > 1e4 * sq(summed)
