"""Measurement noise as the report states it: the evaluation sample's error, the paired error between runs on
the same batches, and the spread between seeds, each checked against numbers computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.load import Run, Sweep
from analysis.noise import EVAL_SE_LIMIT, describe, measurement_noise


def _run(run_id: str, n: float, budget: float, batches: np.ndarray) -> Run:
    empty = np.array([])
    return Run(run_id=run_id, sweep="s", path=run_id, n_params=n, n_params_non_embedding=n, n_params_embedding=0.0,
               tokens=budget / (6 * n), compute=budget, compute_6nd=budget, compute_target=budget,
               final_loss=float(batches.mean()), final_loss_source="eval", steps=empty, curve_tokens=empty,
               curve_flops=empty, train_loss=empty, eval_loss=empty,
               final_loss_se=float(batches.std(ddof=1) / np.sqrt(batches.size)), final_batch_losses=batches)


def test_paired_noise_removes_what_the_batches_share_and_seeds_give_their_spread():
    rng = np.random.default_rng(0)
    difficulty = rng.normal(2.0, 0.4, 200)  # per-batch difficulty: shared by every run on these batches
    best = _run("best", 1e5, 1e12, difficulty)
    worse = _run("worse", 2e5, 1e12, difficulty + 0.05 + rng.normal(0, 0.002, 200))
    other_budget = _run("other", 1e5, 2e12, difficulty - 0.1)
    noise = measurement_noise(Sweep("s", [best, worse, other_budget]))
    ev = noise["eval"]
    assert ev["median_relative_se"] == pytest.approx(np.median([r.final_loss_se / r.final_loss
                                                                 for r in (best, worse, other_budget)]))
    assert ev["median_relative_se"] > 0.01  # 0.4 / sqrt(200) / 2: the sample's own error is large...
    diff = worse.final_batch_losses - best.final_batch_losses
    assert ev["paired_runs"] == 1  # only runs of one budget are paired, the best with nothing
    assert ev["max_paired_relative_se"] == pytest.approx(diff.std(ddof=1) / np.sqrt(200) / worse.final_loss)
    assert ev["max_paired_relative_se"] < EVAL_SE_LIMIT and ev["within_limit"]  # ...the paired one is not
    assert noise["seeds"] is None

    repeats = [_run(f"seed{i}", 1e5, 1e12, difficulty + d) for i, d in enumerate((0.01, -0.02))]
    spread = measurement_noise(Sweep("s", [best, worse]), Sweep("seeds", repeats))["seeds"]
    losses = [difficulty.mean(), difficulty.mean() + 0.01, difficulty.mean() - 0.02]
    assert spread["runs"] == 3
    assert spread["relative_std"] == pytest.approx(np.std(losses, ddof=1) / np.mean(losses))
    lines = describe({"eval": ev, "seeds": spread})
    assert len(lines) == 3 and "seed-to-seed" in lines[2]


def test_a_noisy_paired_difference_is_called_out():
    rng = np.random.default_rng(1)
    base = rng.normal(2.0, 0.4, 50)
    runs = [_run("a", 1e5, 1e12, base), _run("b", 2e5, 1e12, base + rng.normal(0.05, 0.1, 50))]
    ev = measurement_noise(Sweep("s", runs))["eval"]
    assert not ev["within_limit"]
    assert "evaluate on more batches" in describe({"eval": ev})[1]
