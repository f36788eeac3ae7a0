"""The fitting choices the README and docs/analysis.md name, checked against their definitions.

Hoffmann et al. 2022 (Approach 3): the Huber loss with delta = 1e-3 on log-loss residuals.
Bootstrap intervals are 95% percentile intervals unless asked otherwise. A prediction more than 10x
beyond the fitted data warns. Given compute outside 0.7-1.5 times 6ND is flagged.
"""

from __future__ import annotations

import numpy as np
import pytest

from analysis import chinchilla
from analysis.bootstrap import Bootstrap
from analysis.isoflop import fit_isoflop
from analysis.kaplan import fit_kaplan_compute, fit_kaplan_n
from analysis.parametric import huber
from analysis.points import compute_consistency
from analysis.predict import predict_fit
from analysis.synthetic import CHINCHILLA, chinchilla_loss, isoflop_design


@pytest.mark.parametrize("r", [0.0, 4e-4, -9e-4, 2e-3, -0.05, 1.0])
def test_the_huber_loss_has_hoffmann_et_al_s_delta_of_1e_3(r):
    delta = 1e-3
    expected = 0.5 * r * r if abs(r) <= delta else delta * (abs(r) - 0.5 * delta)
    assert float(huber(np.float64(r))) == pytest.approx(expected, rel=1e-6, abs=1e-15)


def test_default_intervals_are_95_percent_percentile_intervals():
    x = np.geomspace(1e6, 1e10, 12)
    loss = (8.8e13 / x) ** 0.076 * np.exp(np.random.default_rng(0).normal(0, 0.01, len(x)))
    fit = fit_kaplan_n(x, loss, bootstrap=Bootstrap(400, seed=0))
    samples = np.asarray(fit.samples["alpha_N"])
    assert fit.level == 0.95
    assert fit.intervals["alpha_N"] == pytest.approx(list(np.percentile(samples, [2.5, 97.5])), rel=1e-12)


def test_isoflop_minima_are_the_law_s_compute_optimal_sizes_when_the_ladder_is_off_centre():
    # Approach 2's parabola vertex, -b / 2c in log N, must land on the law's optimum at each budget even
    # when the optimum is not the middle size sampled (a ladder centred on it would hide a wrong vertex).
    budgets = np.geomspace(1e18, 1e21, 4)
    N, D = isoflop_design(budgets, 9, span=6.0)
    N, D = N * 1.5, D / 1.5  # the same budgets, each ladder shifted half a rung and more off the optimum
    fit = fit_isoflop(N, D, chinchilla_loss(N, D), 6 * N * D, bootstrap=Bootstrap(0))
    minima = fit.extra["minima"]
    truth = chinchilla.compute_optimal(CHINCHILLA, np.asarray(minima["C"]))["N_opt"]
    assert len(minima["C"]) == 4
    np.testing.assert_allclose(minima["N_opt"], truth, rtol=0.01)  # a parabola is exact to ~0.3% here


def test_a_prediction_more_than_ten_times_beyond_the_data_warns_by_default():
    C = np.geomspace(1e15, 1e19, 9)
    fit = fit_kaplan_compute(C, (3e26 / C) ** 0.05, bootstrap=Bootstrap(0))
    assert predict_fit(fit, compute=9e19)["warnings"] == []  # 9x beyond: no warning
    (warning,) = predict_fit(fit, compute=1.1e20)["warnings"]  # 11x beyond
    assert "11x beyond the fitted range" in warning


def test_compute_outside_0_7_to_1_5_times_6nd_is_flagged():
    # The exact count is 0.99-1.10x 6ND for real transformers (Hoffmann et al. 2022, Appendix F).
    N = np.geomspace(1e7, 1e9, 5)
    D = 20 * N
    for ratio, flagged in ((0.6, True), (0.75, False), (1.4, False), (2.0, True)):
        codes = {d["code"] for d in compute_consistency(N, D, ratio * 6 * N * D)}
        assert ("compute_units" in codes) == flagged, ratio
