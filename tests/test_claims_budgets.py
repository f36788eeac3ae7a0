"""Budgets become optimizer steps by one rule, checked against counts made by hand.

The README promises: a D (tokens) or C (FLOPs, the exact count, never 6N) budget becomes the
NEAREST whole number of steps, at least one; a single run and a sweep point with the same budget
train the same steps; an IsoFLOP run's FLOPs land within 2% of its budget, and ``plan`` warns
otherwise. Every expected step count below is worked out from ``hand_count`` (Hoffmann et al.
2022, Appendix F, written out in the test) and the batch shape, not read back from the planner.
"""

from __future__ import annotations

import dataclasses

import pytest

from hand_count import training_flops_per_token
from scaling import accounting, config, planning
from scaling.data import TokenDataset
from scaling.sweeps import planner, spec

# A made-up accounting: 1,000 exact FLOPs per token, where 6N would say 600.
ACCT = accounting.Accounting(n_params=100, n_params_embedding=0, n_params_non_embedding=100,
                             flops_per_token=1000.0, flops_per_token_6n=600.0, forward_flops_per_token=1000.0 / 3)


@pytest.mark.parametrize("kind,budget,steps", [
    ("tokens", 2.4 * 64, 2),  # rounds down below half a step ...
    ("tokens", 2.6 * 64, 3),  # ... and up above it: neither floor nor ceil
    ("tokens", 0.2 * 64, 1),  # at least one step
    ("flops", 10.4 * 64 * 1000, 10),  # the exact count: with 6N it would be 17
    ("flops", 10.6 * 64 * 1000, 11),
    ("steps", 7, 7),
])
def test_a_budget_is_the_nearest_whole_number_of_steps(kind, budget, steps):
    assert planning.budget_steps(kind, budget, 64, ACCT) == steps


def _tiny(tiny_data, tmp_path, *extra):
    return config.load(None, ["model.preset=tiny-d64", f"data.path={tiny_data}", f"runs_dir={tmp_path}",
                              "train.batch_size=8", "model.seq_len=32", "train.steps=null", *extra])


@pytest.mark.parametrize("fraction", [0.3, 0.7])
def test_a_flops_budget_is_the_same_hand_counted_steps_for_a_run_and_a_sweep_point(tiny_data, tmp_path, fraction):
    model = dataclasses.replace(_tiny(tiny_data, tmp_path).model, vocab_size=TokenDataset(tiny_data).vocab_size)
    step_flops = 8 * 32 * training_flops_per_token(model)
    six_n = 8 * 32 * 6 * accounting.count(model).n_params
    # A step count that the 6N conversion would get wrong, a fraction of a step past it.
    steps = next(k for k in range(4, 60) if round((k + fraction) * step_flops / six_n) != round(k + fraction))
    budget = (steps + fraction) * step_flops
    expected = round(steps + fraction)  # nearest: `steps` for 0.3 over, `steps + 1` for 0.7 over

    single = planning.resolve(_tiny(tiny_data, tmp_path, f"train.flops={budget!r}"))
    assert single.total_steps == expected
    assert single.tokens_target == expected * 8 * 32

    base = {"model": {"preset": "tiny-d64", "seq_len": 32}, "data": {"path": str(tiny_data)},
            "train": {"batch_size": 8, "steps": None, "flops": budget}}
    sweep_spec = spec.from_dict({"name": "t", "count": "total", "base": base, "axes": [{"grid": {"seed": [0]}}]})
    (run,) = planner.plan(sweep_spec, tmp_path).runs
    assert run.steps == expected and run.flops == pytest.approx(expected * step_flops, rel=1e-12)


def _isoflop(tmp_path, budgets):
    shape = {"head_dim": 32, "multiple": 32, "aspect_ratio": [16, 64]}
    base = {"model": {"vocab_size": 257, "seq_len": 64}, "train": {"batch_size": 16}}
    return planner.plan(spec.from_dict({"name": "t", "count": "non_embedding", "base": base, "shape": shape,
                                        "axes": [{"isoflop": {"budgets": budgets, "sizes": [5e4]}}]}), tmp_path)


def test_an_isoflop_run_further_than_two_percent_from_its_budget_is_warned_about(tmp_path):
    (run,) = _isoflop(tmp_path, [1e12]).runs
    step_flops = 16 * 64 * training_flops_per_token(run.cfg.model)
    # 5.4 steps: 5 are trained, 7% short of the budget; 50.2 steps: 50 are, 0.4% short.
    far, near = 5.4 * step_flops, 50.2 * step_flops
    plan = _isoflop(tmp_path, [far, near])
    assert [r.steps for r in plan.runs] == [5, 50]
    assert len(plan.warnings) == 1 and plan.runs[0].name in plan.warnings[0], plan.warnings
    assert "-7.4%" in plan.warnings[0]


@pytest.mark.parametrize("key,limit", [("train.steps", 10**9), ("train.tokens", 1e16), ("train.flops", 1e30)])
def test_budgets_beyond_any_real_run_are_refused_and_the_limit_itself_is_not(key, limit):
    unset = [f"train.{k}=null" for k in ("steps", "tokens", "flops")]
    assert getattr(config.load(None, [*unset, f"{key}={limit!r}"]).train, key.split(".")[1]) == limit
    with pytest.raises(config.ConfigError, match=key):
        config.load(None, [*unset, f"{key}={limit * 2!r}"])
