"""Every fit says whether the data identify it: one test per known failure, and clean data stays ok.

The CSVs under tests/data/cases are small published subsets (OLMo ladder,
Porian et al. 2024) or made-up points, each built to fail one way; see
tests/data/README.md.  Verdict codes are the stable part of a diagnostic;
messages are for people.
"""

import csv
from pathlib import Path

import numpy as np
import pytest

from analysis import chinchilla
from analysis.bootstrap import Bootstrap
from analysis.chinchilla import fit_chinchilla
from analysis.isoflop import fit_isoflop
from analysis.kaplan import converged_minimum, fit_kaplan_n, flag_confounded
from analysis.points import compute_consistency
from analysis.synthetic import CHINCHILLA, chinchilla_loss, isoflop_design

DATA = Path(__file__).parent / "data"
NO_BOOT = Bootstrap(0)


def _table(name, **where):
    with open(DATA / name, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if all(r[k] == v for k, v in where.items())]
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0] if k not in ("run", "size", "rerun",
                                                                                   "dataset", "hparams", "warmup",
                                                                                   "decay", "param_count",
                                                                                   "loss_split", "run_name")}


def _codes(fit):
    return {d["code"] for d in fit.diagnostics}


def _chinchilla(name, bootstrap=NO_BOOT):
    t = _table(name)
    return fit_chinchilla(t["N"], t["D"], t["loss"], bootstrap=bootstrap)


def _isoflop(t, bootstrap, **kw):
    return fit_isoflop(t["N"], t["D"], t["loss"], t["C"], bootstrap=bootstrap, **kw)


# --- the parametric law -------------------------------------------------------------------------------------------

def test_two_model_sizes_are_unidentified():
    fit = _chinchilla("cases/two_sizes.csv")
    assert fit.status == "unidentified"
    assert {"few_distinct_N", "flat_profile"} <= _codes(fit)
    assert "only 2 distinct N; need at least 3" in fit.diagnostics[0]["message"]


def test_olmo_190m_to_1b_has_a_flat_direction_in_E_and_alpha():
    fit = _chinchilla("cases/olmo_190m_to_1b.csv")
    assert fit.status == "unidentified" and "flat_profile" in _codes(fit)
    flat = next(d["message"] for d in fit.diagnostics if d["code"] == "flat_profile")
    assert "E anywhere from" in flat and "alpha anywhere from" in flat
    # the profile itself: fixing E at half the lowest loss costs well under 1% of the objective
    prof = fit.extra["profiles"]["E"]
    lowest = min(fit.data["loss"])
    half = np.argmin(np.abs(np.array(prof["values"]) - 0.5 * lowest))
    assert prof["relative_rise"][half] < 0.01


def test_one_tokens_per_parameter_ratio_cannot_separate_alpha_and_beta():
    N = np.geomspace(5e7, 5e9, 8)
    D = 20 * N
    L = chinchilla_loss(N, D) * np.exp(np.random.default_rng(0).normal(0, 0.01, len(N)))
    fit = fit_chinchilla(N, D, L, bootstrap=NO_BOOT)
    assert fit.status == "unidentified" and "single_ratio" in _codes(fit)


def test_E_above_the_lowest_fitted_loss_is_flagged():
    # Porian et al. 2024, RefinedWeb, final configuration: the fit puts E above the lowest loss observed.
    t = _table("porian2024_isoflop_points_tuned.csv", dataset="rw")
    fit = fit_chinchilla(t["n"], t["tokens"], t["loss"], bootstrap=NO_BOOT)
    assert fit.params["E"] > t["loss"].min()
    assert fit.status == "unidentified" and "E_above_lowest_loss" in _codes(fit)


def test_E_driven_to_zero_is_a_boundary_solution():
    # data from a law with no irreducible term: the best fit pushes E towards its bound at 0
    N, D = (a.ravel() for a in np.meshgrid(np.geomspace(1e7, 1e9, 5), np.geomspace(1e9, 1e11, 5)))
    fit = fit_chinchilla(N, D, chinchilla_loss(N, D, {**CHINCHILLA, "E": 0.0}), bootstrap=NO_BOOT)
    assert fit.params["E"] < 0.01 * min(fit.data["loss"])
    assert "E_at_bound" in _codes(fit) and fit.status != "ok"


def test_duplicated_rows_are_warned_and_dropped():
    fit = _chinchilla("cases/duplicated_rows.csv")
    assert "duplicate_rows" in _codes(fit) and fit.status != "ok"
    assert len(fit.data["N"]) == 15  # 30 rows, each twice
    once = _table("cases/duplicated_rows.csv")
    first = fit_chinchilla(once["N"][:15], once["D"][:15], once["loss"][:15], bootstrap=NO_BOOT)
    assert fit.params == pytest.approx(first.params, rel=1e-9)
    assert "duplicate_rows" not in _codes(first)


# --- the IsoFLOP approach ----------------------------------------------------------------------------------------

def test_d_in_billions_is_a_units_error():
    t = _table("cases/isoflop_d_in_billions.csv")
    assert "compute_units" in {d["code"] for d in compute_consistency(t["N"], t["D"], t["C"])}
    fit = _isoflop(t, NO_BOOT)
    assert fit.status == "warning" and "compute_units" in _codes(fit)
    assert "1e+09" in next(d["message"] for d in fit.diagnostics if d["code"] == "compute_units")


def test_one_budget_with_d_off_by_ten_is_named():
    t = _table("porian2024_isoflop_points_tuned.csv", dataset="rw")
    D = t["tokens"].copy()
    wrong = t["flops"] == np.unique(t["flops"])[4]
    D[wrong] *= 10
    found = compute_consistency(t["n"], D, t["flops"])
    assert [d["code"] for d in found] == ["compute_inconsistent_rows"]
    rows = ", ".join(str(i + 1) for i in np.flatnonzero(wrong)[:8])
    assert rows in found[0]["message"]


def test_unbracketed_budget_is_left_out_by_default_and_kept_with_a_flag():
    t = _table("cases/isoflop_unbracketed.csv")
    fit = _isoflop(t, NO_BOOT)
    budget = next(b for b in fit.extra["budgets"] if b["C"] == pytest.approx(2e17))
    assert not budget["bracketed"] and not budget["used"] and budget["N_lowest_loss"] == budget["N_min"]
    assert all(b["bracketed"] for b in fit.extra["budgets"] if b is not budget)
    assert not np.isclose(fit.extra["minima"]["C"], 2e17).any()
    assert "unbracketed_budget" in _codes(fit) and fit.status == "warning"
    kept = _isoflop(t, NO_BOOT, keep_unbracketed=True)
    assert np.isclose(kept.extra["minima"]["C"], 2e17).any()
    assert "kept as asked" in kept.diagnostics[0]["message"]
    assert kept.params["a"] != pytest.approx(fit.params["a"], abs=1e-3)


@pytest.mark.parametrize("budgets", [2, 3])
def test_three_point_budgets_report_few_usable_resamples_and_no_zero_width_interval(budgets):
    t = _table("cases/isoflop_three_point_budgets.csv")
    keep = t["C"] <= sorted(set(t["C"]))[budgets - 1]
    fit = _isoflop({k: v[keep] for k, v in t.items()}, Bootstrap(300, seed=0))
    assert "bootstrap_failures" in _codes(fit)
    assert fit.usable_resamples < 0.9 * 300
    assert f"only {fit.usable_resamples} of 300" in next(d["message"] for d in fit.diagnostics
                                                          if d["code"] == "bootstrap_failures")
    for lo, hi in fit.intervals.values():
        assert np.isnan(lo) or hi > lo  # withheld, never zero-width


def test_a_zero_width_interval_is_flagged_and_withheld():
    from analysis.verdict import bootstrap_health
    found = bootstrap_health({"a": 0.72}, {"a": np.full(50, 0.72)}, 0.95)
    assert [d["code"] for d in found] == ["zero_width_interval"]


def test_an_estimate_on_the_edge_of_its_interval_is_flagged():
    from analysis.verdict import bootstrap_health
    samples = np.random.default_rng(0).uniform(0.5, 0.6, 200)
    assert [d["code"] for d in bootstrap_health({"a": 0.5}, {"a": samples}, 0.95)] == ["estimate_on_interval_edge"]
    assert bootstrap_health({"a": 0.55}, {"a": samples}, 0.95) == []


def test_L_of_N_on_an_isoflop_grid_is_meaningless_by_design():
    N, D = isoflop_design([1e18, 1e19, 1e20], 7)
    L = chinchilla_loss(N, D)
    idx = converged_minimum(N, L)  # each size's lowest loss, as scaling analyze does
    fit = fit_kaplan_n(N[idx], L[idx], bootstrap=NO_BOOT)
    assert fit.status == "ok"
    flag_confounded(fit, N[idx], D[idx])
    assert fit.status == "unidentified" and "confounded_design" in _codes(fit)
    # sizes trained at one tokens-per-parameter ratio are what L(N) needs: no flag
    same = fit_kaplan_n(N[idx], chinchilla_loss(N[idx], 20 * N[idx]), bootstrap=NO_BOOT)
    flag_confounded(same, N[idx], 20 * N[idx])
    assert same.status == "ok"


# --- clean data stays ok -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dataset", ["rw", "owt2"])
def test_porian_final_isoflop_points_are_ok(dataset):
    t = _table("porian2024_isoflop_points_tuned.csv", dataset=dataset)
    fit = fit_isoflop(t["n"], t["tokens"], t["loss"], t["flops"], bootstrap=Bootstrap(100), weighted=True)
    assert fit.status == "ok", fit.diagnostics
    assert all(b["bracketed"] for b in fit.extra["budgets"] if b["used"])


def test_muennighoff_single_epoch_points_are_ok():
    t = _table("muennighoff2023_c4_single_epoch.csv")
    fit = fit_chinchilla(t["N"], t["D"], t["loss"], bootstrap=Bootstrap(100))
    assert fit.status == "ok", fit.diagnostics


@pytest.mark.parametrize("seed", [0, 1])
def test_synthetic_law_with_one_percent_noise_on_a_5x5_grid_is_ok(seed):
    N, D = (a.ravel() for a in np.meshgrid(np.geomspace(1e7, 1e9, 5), np.geomspace(1e9, 1e11, 5)))
    L = chinchilla_loss(N, D) * np.exp(np.random.default_rng(seed).normal(0, 0.01, len(N)))
    fit = fit_chinchilla(N, D, L, bootstrap=Bootstrap(50))
    assert fit.status == "ok", fit.diagnostics


# --- compute-optimal allocation with the exact FLOP count --------------------------------------------------------

def test_exact_flop_allocation_minimises_loss_along_the_true_isoflop_line():
    # A FLOP count twice 6N per token for small models, falling to 1.2x at large N.
    model = chinchilla.flop_model([1e6, 1e8, 1e10], [6e6 * 2.0, 6e8 * 1.5, 6e10 * 1.2])
    C = 1e19
    got = chinchilla.compute_optimal(CHINCHILLA, C, model)
    n = np.geomspace(1e6, 1e11, 200_001)  # brute force along C = F(N) D
    ref = n[np.argmin(chinchilla.loss(CHINCHILLA, n, C / chinchilla.flops_per_token_at(model, n)))]
    assert got["N_opt"] == pytest.approx(ref, rel=1e-3)
    assert got["D_opt"] * chinchilla.flops_per_token_at(model, got["N_opt"]) == pytest.approx(C, rel=1e-9)
    closed = chinchilla.compute_optimal(CHINCHILLA, C)
    assert abs(got["N_opt"] / closed["N_opt"] - 1) > 0.05  # the 6ND answer would be visibly off
