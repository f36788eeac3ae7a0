"""Every fitter gives back the parameters of the law its data was drawn from.

Without noise the recovery must be tight; with noise the truth must sit inside
the bootstrap interval for most seeds (a 95% interval may miss now and then).
"""

import itertools

import numpy as np
import pytest

from analysis import chinchilla
from analysis.bootstrap import Bootstrap
from analysis.chinchilla import fit_chinchilla
from analysis.errors import FitError
from analysis.extrapolate import extrapolation_check
from analysis.frontier import fit_approach1, fit_frontier, make_curves
from analysis.isoflop import fit_isoflop
from analysis.kaplan import (
    fit_kaplan_compute,
    fit_kaplan_d,
    fit_kaplan_n,
    fit_kaplan_nd,
    nd_loss,
)
from analysis.synthetic import (
    CHINCHILLA,
    chinchilla_loss,
    isoflop_design,
    sample_points,
)

TRUE_A = CHINCHILLA["beta"] / (CHINCHILLA["alpha"] + CHINCHILLA["beta"])
TRUE_B = 1 - TRUE_A
KAPLAN_ND = {"alpha_N": 0.076, "alpha_D": 0.095, "N_c": 8.8e13, "D_c": 5.4e13}
# A coarser grid than Hoffmann et al.'s 4,500 starts keeps the many-seed tests fast; the
# noise-free test below uses the full grid.
SMALL_GRID = np.array(list(itertools.product((0.0, 10.0, 20.0), (0.0, 10.0, 20.0), (-1.0, 0.0, 1.0),
                                             (0.5, 1.0), (0.5, 1.0))))


def _inside(fit, truth):
    return {k: fit.intervals[k][0] <= v <= fit.intervals[k][1] for k, v in truth.items()}


@pytest.mark.parametrize("fitter,var,exp,scale,truth", [
    (fit_kaplan_n, "N", "alpha_N", "N_c", (0.076, 8.8e13)),
    (fit_kaplan_d, "D", "alpha_D", "D_c", (0.095, 5.4e13)),
    (fit_kaplan_compute, "C", "alpha_C", "C_c", (0.050, 3.1e8 * 8.64e19)),
])
def test_kaplan_single_laws(fitter, var, exp, scale, truth):
    alpha, xc = truth
    x = np.geomspace(1e6, 1e10, 12) * (1e10 if var == "C" else 1)
    exact = fitter(x, (xc / x) ** alpha, bootstrap=Bootstrap(0))
    assert exact.params[exp] == pytest.approx(alpha, rel=1e-9)
    assert exact.params[scale] == pytest.approx(xc, rel=1e-6)

    covered = 0
    for seed in range(10):
        noisy = (xc / x) ** alpha * np.exp(np.random.default_rng(seed).normal(0, 0.01, len(x)))
        fit = fitter(x, noisy, bootstrap=Bootstrap(300, seed=seed))
        covered += all(_inside(fit, {exp: alpha, scale: xc}).values())
    assert covered >= 7


def test_kaplan_joint_law():
    N, D = (g.ravel() for g in np.meshgrid(np.geomspace(1e6, 1e9, 6), np.geomspace(1e7, 1e10, 6)))
    exact = fit_kaplan_nd(N, D, nd_loss(KAPLAN_ND, N, D), bootstrap=Bootstrap(0))
    for k, v in KAPLAN_ND.items():
        assert exact.params[k] == pytest.approx(v, rel=1e-4), k

    covered = 0
    for seed in range(3):
        L = nd_loss(KAPLAN_ND, N, D) * np.exp(np.random.default_rng(seed).normal(0, 0.005, len(N)))
        fit = fit_kaplan_nd(N, D, L, bootstrap=Bootstrap(100, seed=seed))
        covered += _inside(fit, {"alpha_N": 0.076, "alpha_D": 0.095})["alpha_N"]
    assert covered >= 2


def test_chinchilla_recovers_exact_law_with_full_grid():
    N, D, L = sample_points(60, noise=0.0, seed=3)
    fit = fit_chinchilla(N, D, L, bootstrap=Bootstrap(0))
    for k, v in CHINCHILLA.items():
        assert fit.params[k] == pytest.approx(v, rel=1e-6), k
    assert fit.params["a"] == pytest.approx(TRUE_A, rel=1e-6)
    assert fit.convergence["converged"] and fit.convergence["starts"] == 4500
    assert fit.convergence["polished_agreeing_with_best"] >= 2


def test_chinchilla_noisy_truth_inside_interval_for_most_seeds():
    covered = {k: 0 for k in CHINCHILLA}
    for seed in range(5):
        N, D, L = sample_points(120, noise=0.01, seed=seed)
        fit = fit_chinchilla(N, D, L, bootstrap=Bootstrap(100, seed=seed), grid=SMALL_GRID)
        for k, ok in _inside(fit, CHINCHILLA).items():
            covered[k] += ok
    assert all(c >= 4 for c in covered.values()), covered


def test_compute_optimal_allocation_minimises_loss_on_the_isoflop_line():
    C = 1e21
    opt = chinchilla.compute_optimal(CHINCHILLA, C)
    assert 6 * opt["N_opt"] * opt["D_opt"] == pytest.approx(C, rel=1e-9)
    n = opt["N_opt"] * np.geomspace(0.5, 2.0, 401)
    line = chinchilla_loss(n, C / (6 * n))
    assert n[np.argmin(line)] == pytest.approx(opt["N_opt"], rel=0.01)
    assert opt["loss"] == pytest.approx(line.min(), rel=1e-6)


def test_isoflop_recovers_allocation_exponents():
    budgets = np.geomspace(1e18, 1e21, 6)
    N, D = isoflop_design(budgets, 9, span=6.0)
    C = 6 * N * D
    exact = fit_isoflop(N, D, chinchilla_loss(N, D), C, bootstrap=Bootstrap(0))
    assert exact.params["a"] == pytest.approx(TRUE_A, abs=0.005)
    assert exact.params["b"] == pytest.approx(TRUE_B, abs=0.005)

    covered = 0
    for seed in range(6):
        L = chinchilla_loss(N, D) * np.exp(np.random.default_rng(seed).normal(0, 0.002, len(N)))
        fit = fit_isoflop(N, D, L, C, bootstrap=Bootstrap(300, seed=seed))
        covered += fit.intervals["a"][0] <= TRUE_A <= fit.intervals["a"][1]
    assert covered >= 4


def _long_curves(sizes, tokens_per_param_max=400.0):
    curves = []
    d_max = tokens_per_param_max * sizes.max()
    for n in sizes:
        t = np.geomspace(1e7, d_max, 120)
        curves.append((6 * n * t, t, chinchilla_loss(n, t)))
    return curves


def test_approach1_envelope_recovers_allocation_exponents():
    sizes = np.geomspace(1e7, 3e9, 40)
    fit = fit_approach1(make_curves(_long_curves(sizes), sizes), bootstrap=Bootstrap(50))
    assert fit.params["a"] == pytest.approx(TRUE_A, abs=0.02)
    assert fit.params["b"] == pytest.approx(TRUE_B, abs=0.02)
    assert fit.intervals["a"][0] <= fit.params["a"] <= fit.intervals["a"][1]


def test_curve_fits_resample_within_budgets_when_the_runs_have_them():
    sizes = np.geomspace(1e7, 3e9, 12)
    curves = _long_curves(sizes)
    curves.insert(5, (np.array([1e15]), np.array([1e7]), np.array([3.0])))  # one logged point: left out
    budgets = np.repeat([1.0, 2.0, 3.0], 4)
    grouped = make_curves(curves, np.insert(sizes, 5, 1e8), groups=np.insert(budgets, 5, 9.0))
    assert grouped.groups.tolist() == budgets.tolist()  # the labels follow the runs that were kept
    counts = grouped.resample(Bootstrap(200, seed=3))
    for b in (1.0, 2.0, 3.0):  # every resample keeps four draws in each budget
        assert np.all(counts[:, budgets == b].sum(axis=1) == 4)
    free = make_curves(curves, np.insert(sizes, 5, 1e8)).resample(Bootstrap(200, seed=3))
    assert np.any(free[:, budgets == 1.0].sum(axis=1) != 4)  # a free draw does not
    fit = fit_approach1(grouped, bootstrap=Bootstrap(50))
    assert "within each of 3 compute budgets" in " ".join(fit.notes)


def test_frontier_is_the_lower_envelope_of_the_curves():
    sizes = np.geomspace(1e6, 1e9, 12)
    curves = []
    for i, n in enumerate(sizes):  # runs of growing length on one power law, every third one 10% worse
        c = np.geomspace(1e12, 1e14 * (n / 1e6) ** 1.5, 80)
        curves.append((c, c / (6 * n), (3e26 / c) ** 0.05 * (1.1 if i % 3 == 1 else 1.0)))
    fit = fit_frontier(make_curves(curves, sizes), bootstrap=Bootstrap(50))
    assert fit.params["alpha_C"] == pytest.approx(0.05, rel=1e-6)
    assert fit.params["C_c"] == pytest.approx(3e26, rel=1e-4)


def test_dropping_outliers_and_weights_restore_the_fit():
    N, D, L = sample_points(80, noise=0.0, seed=5)
    L = L.copy()
    L[:3] *= 3.0  # three diverged runs
    options = {"bootstrap": Bootstrap(0), "grid": SMALL_GRID}
    spoiled = fit_chinchilla(N, D, L, **options)
    dropped = fit_chinchilla(N, D, L, drop_top=3, **options)
    weights = np.ones(len(L))
    weights[:3] = 0.0
    weighted = fit_chinchilla(N, D, L, weights=weights, **options)
    error = lambda f: max(abs(f.params[k] - v) / v for k, v in CHINCHILLA.items())
    assert error(spoiled) > 1e-3  # the Huber loss limits the damage but does not remove it
    assert error(dropped) < 1e-6 and error(weighted) < 1e-6
    assert "dropped the 3 highest-loss point(s)" in dropped.notes[0]


def test_extrapolation_check_predicts_held_out_budget():
    budgets = np.geomspace(1e18, 1e21, 5)
    N, D = isoflop_design(budgets, 7)
    L = chinchilla_loss(N, D) * np.exp(np.random.default_rng(0).normal(0, 0.002, len(N)))
    check = extrapolation_check(N, D, L, 6 * N * D, bootstrap=Bootstrap(50), grid=SMALL_GRID)
    assert check["fitted_points"] == 28 and len(check["held_out"]) == 7
    assert all(r["C"] > 1e20 for r in check["held_out"])
    assert check["mean_abs_relative_error"] < 0.01
    with pytest.raises(FitError):
        extrapolation_check(N, D, L, 6 * N * D, threshold=1e22, bootstrap=Bootstrap(0))
