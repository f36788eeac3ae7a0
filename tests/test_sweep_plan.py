"""Sweep files and the planner: what every axis expands to, before anything runs (no training here)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hand_count import training_flops_per_token
from scaling import cli, config, optim
from scaling.sweeps import child, estimate, planner, shapes, spec
from scaling.sweeps.hyper import PowerLaw
from scaling.sweeps.spec import SweepError

REPO = Path(__file__).resolve().parent.parent
# The vocabulary is given, so planning needs no dataset.
TINY = {"model": {"vocab_size": 257, "seq_len": 64, "n_layer": 2, "d_model": 64, "n_head": 2},
        "train": {"batch_size": 16}, "optim": {"warmup_steps": 10}}
TINY_LADDER = {"model": {"vocab_size": 257, "seq_len": 64}, "train": {"batch_size": 16}}  # shapes from the axes
SMALL_SHAPES = {"head_dim": 32, "multiple": 32, "aspect_ratio": [16, 64]}
GPT = {"model": {"vocab_size": 50304, "seq_len": 1024}, "train": {"batch_size": 64}}


def _plan(tmp_path, axes, base=TINY, count="total", **top) -> planner.SweepPlan:
    data = {"name": "t", "count": count, "base": base, "axes": axes, **top}
    return planner.plan(spec.from_dict(data), tmp_path)


def test_isoflop_runs_land_within_two_percent_of_their_budget_counted_exactly(tmp_path):
    budgets = [3e11, 1e12, 3e12]
    plan = _plan(tmp_path, [{"isoflop": {"budgets": budgets, "sizes": [2.5e4, 5e4, 1e5, 2e5]}}], base=TINY_LADDER,
                 count="non_embedding", shape=SMALL_SHAPES)
    assert len(plan.runs) == 12 and not plan.warnings
    for run in plan.runs:
        budget = run.tags["budget_flops"]
        assert abs(run.flops / budget - 1) < 0.02
        # Checked against a count by hand (Hoffmann et al. Appendix F, written out in the test), not the planner's own:
        # the steps trained are the nearest whole number to the budget, and C is what those steps cost.
        step_flops = run.cfg.train.batch_size * run.cfg.model.seq_len * training_flops_per_token(run.cfg.model)
        assert abs(run.cfg.train.steps * step_flops - budget) <= step_flops / 2
        assert run.flops == pytest.approx(run.cfg.train.steps * step_flops, rel=1e-12)  # the exact count, not 6ND
        assert run.flops_6nd == 6 * run.accounting.n_params * run.tokens
        assert abs(run.flops_6nd / run.flops - 1) > 0.03  # tiny models: 6ND is visibly off
    for budget in budgets:  # each budget spans the size ladder: small models see more tokens
        runs = sorted((r for r in plan.runs if r.tags["budget_flops"] == budget), key=lambda r: r.n)
        assert [r.tokens for r in runs] == sorted((r.tokens for r in runs), reverse=True)


def test_isoflop_tokens_per_param_window_drops_runs_and_says_so(tmp_path):
    plan = _plan(tmp_path, [{"isoflop": {"budgets": [1e12], "sizes": [2.5e4, 2e5], "tokens_per_param": [2, 100]}}],
                 base=TINY_LADDER, count="non_embedding", shape=SMALL_SHAPES)
    assert [r.tags["target_params"] for r in plan.runs] == [2e5]
    assert len(plan.skipped) == 1 and "2.5e4 parameters" in plan.skipped[0] and "outside [2, 100]" in plan.skipped[0]


def test_a_fixed_head_count_keeps_every_width_at_that_many_heads(tmp_path):
    plan = _plan(tmp_path, [{"model_sizes": [6e3, 1.4e4, 2.5e4, 4e4]}], base={**TINY_LADDER, "train": {
        "batch_size": 16, "tokens": 1e6}}, count="non_embedding",
                 shape={"n_head": 2, "multiple": 8, "aspect_ratio": [8, 64], "max_layers": 2})
    widths = sorted(run.cfg.model.d_model for run in plan.runs)
    assert widths == [16, 24, 32, 40]  # steps of 8, where heads of a fixed width (16) would allow only 16, 32
    assert all(run.cfg.model.n_head == 2 and run.cfg.model.n_layer == 2 for run in plan.runs)


def test_isoflop_sizes_per_budget_plan_exactly_those_pairs(tmp_path):
    per_budget = [[2.5e4, 5e4], [5e4, 1e5, 2e5]]
    plan = _plan(tmp_path, [{"isoflop": {"budgets": [3e11, 1e12], "sizes_per_budget": per_budget}}],
                 base=TINY_LADDER, count="non_embedding", shape=SMALL_SHAPES)
    assert [(r.tags["budget_flops"], r.tags["target_params"]) for r in plan.runs] == \
        [(3e11, 2.5e4), (3e11, 5e4), (1e12, 5e4), (1e12, 1e5), (1e12, 2e5)]


@pytest.mark.parametrize("count", ["total", "non_embedding"])
def test_model_sizes_hit_their_targets_within_five_percent(tmp_path, count):
    targets = [1e7, 2e7, 5e7, 1e8, 3e8]
    data = {"name": "t", "count": count, "base": {**GPT, "train": {"batch_size": 64, "tokens": 1e9}},
            "axes": [{"model_sizes": targets}]}
    plan = planner.plan(spec.from_dict(data), tmp_path)
    assert not plan.warnings and len(plan.runs) == len(targets)
    for run, target in zip(plan.runs, targets, strict=True):
        m = run.cfg.model
        counted = run.accounting.n_params if count == "total" else run.accounting.n_params_non_embedding
        assert run.n == counted and abs(counted / target - 1) < 0.05
        assert m.d_model % 64 == 0 and m.head_dim == 64 and m.n_head * 64 == m.d_model
        assert 32 <= m.d_model / m.n_layer <= 256 and m.ff_dim == 4 * m.d_model and m.preset is None


def test_shape_rule_prefers_the_middle_aspect_ratio_and_warns_on_a_miss(tmp_path):
    rule = shapes.ShapeRule(aspect_ratio=(32.0, 128.0))
    base = config.from_dict(GPT).model
    shape = shapes.fit(rule, base, 8.5e7, "non_embedding")  # 12x768 (GPT-2 small's body) is within 1%
    assert (shape.n_layer, shape.d_model) == (12, 768)
    plan = _plan(tmp_path, [{"model_sizes": [3e4]}], base={**TINY_LADDER, "train": {"steps": 10}})
    assert "target 3e4 total parameters" in plan.warnings[0] and "%" in plan.warnings[0]


def test_grid_sizes_token_multiples_and_hyperparameters_as_functions_of_n(tmp_path):
    axes = [{"grid": {"seed": [0, 1]}}, {"model_sizes": [1e7, 4e7]}, {"tokens": {"per_param": [5, 20]}}]
    plan = _plan(tmp_path, axes, base=GPT, hyperparameters={
                     "optim.lr": {"power_law": {"coef": 3e-3, "ref": 1e7, "exponent": -0.5}},
                     "train.batch_size": {"power_law": {"coef": 32, "ref": 1e7, "exponent": 0.5}, "multiple_of": 8}})
    assert len(plan.runs) == 8 and len({r.name for r in plan.runs}) == 8
    for run in plan.runs:
        assert run.cfg.optim.lr == pytest.approx(3e-3 * (run.n / 1e7) ** -0.5)
        assert run.cfg.train.batch_size % 8 == 0
        assert run.cfg.train.batch_size == pytest.approx(32 * (run.n / 1e7) ** 0.5, abs=4)
        assert abs(run.tokens - run.tags["tokens_per_param"] * run.n) <= run.tokens_per_step / 2
        assert run.cfg.seed == run.tags["seed"]


def test_editing_one_axis_value_keeps_the_other_runs_ids(tmp_path):
    before = _plan(tmp_path, [{"grid": {"optim.lr": [1e-3, 3e-3]}}, {"tokens": [1e6, 2e6]}])
    after = _plan(tmp_path, [{"grid": {"optim.lr": [1e-3, 1e-2]}}, {"tokens": [1e6, 2e6]}])
    kept = {r.name for r in before.runs} & {r.name for r in after.runs}
    assert len(kept) == 2 and all(r.cfg.optim.lr == 1e-3 for r in after.runs if r.name in kept)
    assert all(r.name == config.run_id(r.cfg) for r in after.runs)  # the id is the config's hash


def test_wsd_cooldowns_share_the_stable_schedule_up_to_their_branch(tmp_path):
    axes = [{"wsd_cooldowns": {"tokens": [1e6, 2e6, 4e6], "cooldown_fraction": 0.2}}]
    base = {**TINY, "optim": {"warmup_steps": 10, "cooldown_shape": "1-sqrt"}}
    plan = _plan(tmp_path, axes, base=base)
    stable, *cooldowns = plan.runs
    assert stable.tags["wsd_role"] == "stable" and len(cooldowns) == 3
    assert stable.cfg.optim.cooldown_fraction == 0 and stable.steps == max(c.after[1] for c in cooldowns)
    assert stable.cfg.train.keep_steps == sorted(c.after[1] for c in cooldowns)
    stable_lr = optim.schedule(stable.cfg.optim, stable.steps)
    for run in cooldowns:
        branch = run.after[1]
        assert run.after[0] == stable.name and run.cfg.train.init_step == branch
        assert Path(run.cfg.train.init_from) == stable.run_dir
        assert run.steps - branch == round(0.2 * run.steps) and run.trained_steps == run.steps - branch
        lr = optim.schedule(run.cfg.optim, run.steps)
        # Updates 0 .. branch-1 make steps 1 .. branch: shared; update `branch` is the cooldown's first.
        assert list(np.asarray(lr(np.arange(branch)))) == list(np.asarray(stable_lr(np.arange(branch))))
        assert float(lr(branch)) < float(stable_lr(branch)) and float(lr(run.steps - 1)) < float(lr(branch))
    # A cooldown's id names its stable run by id, not by where the runs directory is.
    elsewhere = _plan(tmp_path / "elsewhere", axes, base=base)
    assert [r.name for r in elsewhere.runs] == [r.name for r in plan.runs]


def test_wsd_needs_an_absolute_warmup(tmp_path):
    with pytest.raises(SweepError, match="warmup_steps"):
        _plan(tmp_path, [{"wsd_cooldowns": {"per_param": [5, 10], "cooldown_fraction": 0.2}}],
              base={**TINY, "optim": {"warmup_fraction": 0.1}})


@pytest.mark.parametrize("change, message", [
    ({"name": "../escape"}, "plain directory name"),
    ({"name": "a/b"}, "plain directory name"),
    ({"count": "all"}, "count"),
    ({"axes": [{"isoflops": {}}]}, "did you mean 'isoflop'"),
    ({"axes": [{"model_sizes": [1e6]}, {"grid": {"model.d_model": [64]}}]}, "model.d_model is decided by the sweep"),
    ({"axes": [{"grid": {"train.init_from": ["/elsewhere"]}}]}, "decided by the sweep"),
    ({"axes": [{"grid": {"optim.lrr": [1]}}]}, "did you mean 'optim.lr'"),
    ({"axes": [{"tokens": [1e6]}, {"isoflop": {"budgets": [1e12], "sizes": [1e5]}}]}, "both decide"),
    ({"axes": [{"isoflop": {"budgets": [1e12, 2e12], "sizes_per_budget": [[1e5]]}}]}, "1 lists for 2 budgets"),
    ({"axes": [{"isoflop": {"budgets": [1e12], "sizes": [1e5], "sizes_per_budget": [[1e5]]}}]}, "give either"),
    ({"axes": [{"isoflop": {"budgets": [1e12]}}]}, "give either"),
    ({"hyperparameters": {"optim.lr": "3e-3 * N ** -0.3"}}, "expected a mapping"),
    ({"hyperparameters": {"optim.lr": {"eval": "__import__('os')"}}}, "unknown key 'hyperparameters.optim.lr.eval'"),
    ({"hyperparameters": {"model.d_model": {"power_law": {"coef": 1, "ref": 1, "exponent": 1}}}}, "only training"),
    ({"base": {"runs_dir": "/tmp/x"}}, "runs_dir is decided"),
    ({"base": {"model": {"d_modle": 3}}}, "did you mean 'd_model'"),
])
def test_sweep_file_mistakes_are_one_line_errors(tmp_path, change, message):
    data = {"name": "t", "count": "total", "base": TINY, "axes": [{"tokens": [1e6]}], **change}
    with pytest.raises(SweepError, match=message):
        planner.plan(spec.from_dict(data), tmp_path)


def test_numbers_written_the_short_way_are_numbers(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: t\ncount: total\nbase: {model: {vocab_size: 257}}\naxes:\n  - tokens: [1e6, 2E6]\n")
    assert [r.tags["budget_tokens"] for r in planner.plan(spec.load(path), tmp_path).runs] == [1e6, 2e6]


def test_plan_command_lists_every_run_with_exact_and_6nd_flops(tmp_path, capsys):
    path = REPO / "sweeps" / "quickstart.yaml"
    code = cli.main(["sweep", "plan", str(path), "--runs-dir", str(tmp_path), "--device", "cpu", "--parallel", "2"])
    out = capsys.readouterr().out
    plan = planner.plan(spec.load(path), tmp_path)
    assert code == 0 and len(plan.runs) >= 9
    assert len({r.tags["budget_flops"] for r in plan.runs}) >= 3
    assert all(r.name in out for r in plan.runs)
    assert "C exact" in out and "C 6ND" in out and "to train:" in out and "--parallel 2" in out
    assert "estimated time on cpu" in out
    gpu = estimate.for_device("NVIDIA H100 80GB HBM3")
    assert gpu.flops_per_s == pytest.approx(989e12 * estimate.DEFAULT_MFU) and "MFU" in gpu.basis
    assert estimate.for_device("Mystery chip").seconds(10, 1e12) is None


@pytest.mark.parametrize("path", sorted((REPO / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_sweeps_plan_cleanly(path, tmp_path):
    plan = planner.plan(spec.load(path), tmp_path)
    assert plan.runs and not plan.warnings, plan.warnings
    assert all(abs(r.flops / r.tags["budget_flops"] - 1) < 0.02 for r in plan.runs if "budget_flops" in r.tags)


def test_compile_cache_is_set_for_runs_or_removed_when_off(tmp_path, monkeypatch):
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "/somewhere")
    on = child.environment(tmp_path)
    assert on["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path)
    assert on["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] == "0"
    assert on["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] == "-1"
    off = child.environment(None)
    assert not any(k.startswith(("JAX_COMPILATION_CACHE", "JAX_PERSISTENT_CACHE")) for k in off)


def test_power_law_hyperparameters_clamp_and_round():
    rules = spec.from_dict({"name": "t", "count": "total", "base": TINY, "axes": [{"tokens": [1e6]}],
                            "hyperparameters": {"train.batch_size": {
                                "power_law": {"coef": 100, "ref": 1e6, "exponent": 1}, "max": 1000,
                                "multiple_of": 64}}}).hyper
    rule = rules["train.batch_size"]
    assert rule(1e6) == 128 and rule(1e9) == 960 and rule(1) == 64 and isinstance(rule(1e6), int)
    assert math.isclose(PowerLaw(2.0, 10.0, -0.5)(40.0), 1.0)
