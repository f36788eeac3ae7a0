"""The quickstart's science, in miniature: an IsoFLOP grid whose losses follow a known law, the held-out size
chosen from the fit, and the held-out run predicted by the law fitted to the grid.

Training would take minutes, so the run directories are written with losses planted from a Chinchilla law
(``analysis.synthetic``), in the format training writes; everything after that is the product's code:
``scaling.quickstart.holdout_target``, ``holdout_spec`` and the planner, and ``analysis.analyze`` with the
held-out runs. The reference is the planted law itself (Hoffmann et al. 2022, eq. 4: a = beta/(alpha+beta)).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from analysis import chinchilla, extrapolate, run_format, synthetic
from analysis.analyze import analyze
from analysis.bootstrap import Bootstrap
from analysis.headline import headline
from analysis.results import FitResult
from scaling import quickstart
from scaling.sweeps import planner, shapes, spec

BUDGETS = (1e17, 2e17, 4e17, 8e17, 1.6e18)  # five budgets 2x apart, as the quickstart's grid
LAW = synthetic.CHINCHILLA
A_TRUE = LAW["beta"] / (LAW["alpha"] + LAW["beta"])


def _write_run(root, run_id: str, n: float, d: float, loss: float) -> None:
    """One finished run directory at (N, D) whose final validation loss is ``loss``, C = 6ND exactly."""
    run = root / run_id
    run.mkdir(parents=True)
    meta = {run_format.RUN_ID: run_id, run_format.N_PARAMS: n, run_format.N_PARAMS_NON_EMBEDDING: 0.9 * n,
            run_format.STATUS: run_format.DONE, run_format.FLOPS_PER_TOKEN: 6.0 * n,
            run_format.COMPUTE_TARGET: 6.0 * n * d, run_format.DATASET: {"tokenizer": {"kind": "byte"}}}
    (run / run_format.RUN_JSON).write_text(json.dumps(meta))
    rows = [{run_format.STEP: s, run_format.TOKENS: t, run_format.FLOPS: 6.0 * n * t,
             run_format.EVAL_LOSS: synthetic.chinchilla_loss(n, t) if s < 4 else loss}
            for s, t in enumerate(d * np.array([0.1, 0.3, 0.6, 1.0]), start=1)]
    (run / run_format.METRICS).write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    return synthetic.write_sweep(tmp_path_factory.mktemp("qs"), budgets=BUDGETS, sizes_per_budget=5,
                                 noise=0.002, sweep="grid", log_points=12)


def test_the_held_out_size_is_the_planted_laws_compute_optimum(grid):
    budget = quickstart.HOLDOUT_FACTOR * max(BUDGETS)
    target = quickstart.holdout_target(grid, budget)
    truth = chinchilla.compute_optimal(LAW, budget)
    assert target["status"] != "unidentified"
    assert target["N_opt"] == pytest.approx(truth["N_opt"], rel=0.15)
    assert target["N_opt"] * target["D_opt"] * 6 == pytest.approx(budget, rel=1e-6)


def test_the_held_out_run_is_predicted_and_the_three_approaches_agree(grid, tmp_path):
    budget = quickstart.HOLDOUT_FACTOR * max(BUDGETS)
    target = quickstart.holdout_target(grid, budget)
    n, d = target["N_opt"], budget / (6 * target["N_opt"])
    actual = synthetic.chinchilla_loss(n, d) * 1.001  # the truth, off by half the grid's 0.2% noise
    _write_run(tmp_path / "holdout", "held", n, d, actual)

    _, doc = analyze(grid, tmp_path / "out", bootstrap=Bootstrap(resamples=100),
                     holdout={"runs_dir": tmp_path / "holdout"})

    check = doc["extrapolation"]
    assert [r["C"] for r in check["held_out"]] == [pytest.approx(budget)]
    assert check["fitted_points"] == len(BUDGETS) * 5  # every grid run, and only those
    assert check["mean_abs_relative_error"] < 0.01
    assert check["fraction_inside_interval"] == 1.0
    assert check["verdict"].startswith("passed")
    exponents = {a["fit"]: a["a"] for a in doc["headline"]["approaches"]}
    assert set(exponents) == {"approach1", "isoflop", "chinchilla"}  # none left out as unidentified
    assert max(exponents.values()) - min(exponents.values()) < 0.1
    for a in exponents.values():
        assert a == pytest.approx(A_TRUE, abs=0.05)
    # the curve fits resample runs within the grid's budgets, as the IsoFLOP fit does
    assert f"within each of {len(BUDGETS)} compute budgets" in " ".join(doc["fits"]["approach1"]["notes"])
    html = (tmp_path / "out" / "report.html").read_text()
    assert html.index("three ways") < html.index("Hold-out check") < html.index("Fitted values")


def test_the_held_out_sweep_plans_seeds_of_one_run_at_the_budget_and_size(tmp_path):
    source = quickstart.sweep_path()
    grid_spec = spec.load(source)
    budget = quickstart.HOLDOUT_FACTOR * max(b for axis in grid_spec.axes if isinstance(axis, spec.IsoFlop)
                                             for b in axis.budgets)
    n_opt = 2.0e5
    held = planner.plan(quickstart.holdout_spec(source, n_opt, budget, tmp_path / "h.yaml"), tmp_path)
    assert [r.cfg.seed for r in held.runs] == list(range(quickstart.HOLDOUT_SEEDS))
    assert all(r.cfg.model == held.runs[0].cfg.model and r.flops == held.runs[0].flops for r in held.runs)
    run = held.runs[0]
    assert run.accounting.n_params == pytest.approx(n_opt, rel=0.3)  # total N: the nearest shape on the grid
    assert run.flops == pytest.approx(budget, rel=0.02)
    assert held.sweep_dir.name == quickstart.HOLDOUT_NAME
    # The grid's learning-rate rule reads the grid's count of N: the held-out run gets what it gives that size.
    grid = planner.plan(grid_spec, tmp_path)
    rule = grid_spec.hyper["optim.lr"]
    assert run.cfg.optim.lr == pytest.approx(rule(run.n))
    assert run.n == shapes.count_params(run.cfg.model, grid.spec.count)


def test_a_missed_hold_out_says_so_in_words():
    check = {"mean_abs_relative_error": 0.05, "fraction_inside_interval": 1.0,
             "held_out": [{"relative_error": 0.05}]}
    verdict = extrapolate.holdout_verdict(check)
    assert verdict.startswith("FAILED") and "5.00%" in verdict and "above" in verdict
    assert extrapolate.holdout_verdict({**check, "mean_abs_relative_error": 0.01}).startswith("passed")
    missed_interval = {**check, "mean_abs_relative_error": 0.01, "fraction_inside_interval": 0.5}
    assert "50% of the held-out losses" in extrapolate.holdout_verdict(missed_interval)


def _exponent_fit(a: float, spread: float) -> FitResult:
    samples = np.random.default_rng(0).normal(a, spread, 1000)
    return FitResult(law="isoflop", formula="", params={"a": a}, samples={"a": samples}, level=0.95, seed=0,
                     data={}, residuals=[], n_kind="total")


def test_agreement_within_wide_intervals_is_called_weak():
    narrow = headline({"isoflop": _exponent_fit(0.50, 0.02), "chinchilla": _exponent_fit(0.52, 0.02)})
    assert narrow["confidence"] == "consistent" and "say little" not in narrow["text"]
    wide = headline({"isoflop": _exponent_fit(0.50, 0.02), "chinchilla": _exponent_fit(0.52, 0.15)})
    assert wide["agree"] and wide["confidence"] == "tentative"
    assert "1 of the intervals span more than ±0.15" in wide["text"] and "agreement says little" in wide["text"]
