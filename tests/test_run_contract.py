"""The run directory's contract, and one real tiny run trained to a FLOP budget through the CLI, checked two ways:

- its step count against a hand count from ``scaling params --json`` (the exact FLOPs per token,
  never 6N), rounded to the nearest step;
- read back by ``analysis.load``: N, D, C, final loss and status as run.json and metrics.jsonl say.
"""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import pytest

from analysis import load, run_format
from scaling.rundir import RunDir
from conftest import run_scaling, tiny_run_args

PRESET = "tiny-d64"


def test_the_format_module_imports_nothing():
    tree = ast.parse(Path(run_format.__file__).read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]


def test_no_module_spells_a_run_directory_file_name_itself():
    """A renamed file changes in run_format only: the library and analysis spell no such name as a literal."""
    names = {run_format.CONFIG, run_format.RUN_JSON, run_format.METRICS, run_format.TENSORBOARD,
             run_format.CHECKPOINTS, run_format.CORRUPT_CHECKPOINTS, run_format.LOCK, run_format.LAUNCH,
             run_format.STDOUT, run_format.STDERR}
    root = Path(run_format.__file__).parents[1]
    spelled = [f"{path.relative_to(root)}:{node.lineno} {node.value!r}"
               for package in ("scaling", "analysis") for path in sorted((root / package).rglob("*.py"))
               if path.name != "run_format.py"
               for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, ast.Constant) and node.value in names]
    assert spelled == []


def test_writers_refuse_keys_the_format_does_not_define(tmp_path):
    rd = RunDir(tmp_path / "run")
    with pytest.raises(ValueError, match="RUN_KEYS"):
        rd.update_run(n_parms=1)
    with pytest.raises(ValueError, match="METRIC_COLUMNS"):
        rd.append_metrics({run_format.STEP: 1, "los": 2.0})
    assert not rd.path.exists()  # refused before anything is written
    rd.update_run(**{run_format.STATUS: "pending"})
    assert (tmp_path / "run" / run_format.RUN_JSON).is_file()


@pytest.fixture(scope="module")
def flops_run(tiny_data, tmp_path_factory):
    """(run directory, hand-counted steps, tokens per step, exact FLOPs per token, budget)."""
    runs = tmp_path_factory.mktemp("runs")
    args = tiny_run_args(tiny_data, runs, "train.eval_every=1000", "train.checkpoint_every=1000")
    counts = json.loads(run_scaling("params", PRESET, *args, "--json").stdout)
    exact, approx = counts["flops_per_token"], counts["flops_per_token_6n"]
    tokens_per_step = 8 * 32  # train.batch_size x model.seq_len in tiny_run_args
    # The first step count that the 6N conversion would miss, so that the check below tells them apart.
    steps = next(k for k in range(4, 40) if round((k + 0.3) * exact / approx) != k)
    # 0.3 of a step over: nearest-step rounding trains `steps`, rounding up would train one more.
    budget = (steps + 0.3) * exact * tokens_per_step
    run_scaling("train", PRESET, *args, f"train.flops={budget!r}")
    (run_dir,) = [p.parent for p in runs.rglob("run.json")]
    return run_dir, steps, tokens_per_step, exact, budget


@pytest.mark.slow
def test_flops_budget_becomes_the_hand_counted_steps(flops_run):
    run_dir, steps, tokens_per_step, exact, budget = flops_run
    run = json.loads((run_dir / "run.json").read_text())
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert run["total_steps"] == steps == rows[-1]["step"]
    assert rows[-1]["tokens"] == steps * tokens_per_step
    assert rows[-1]["flops"] == pytest.approx(steps * tokens_per_step * exact, rel=1e-12)
    assert abs(rows[-1]["flops"] / budget - 1) < 0.5 / steps  # within half a step of the budget


@pytest.mark.slow
def test_analysis_reads_back_what_training_wrote(flops_run):
    run_dir, steps, tokens_per_step, exact, _ = flops_run
    meta = json.loads((run_dir / "run.json").read_text())
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    run, notes = load.read_run(run_dir)
    assert run is not None, notes
    assert run.run_id == meta["run_id"] == run_dir.name
    assert run.status == meta["status"] == "done"
    assert run.n_params == meta["n_params"] and run.n_params_non_embedding == meta["n_params_non_embedding"]
    assert run.n_params_embedding == meta["n_params_embedding"]
    assert run.tokens == rows[-1]["tokens"] == steps * tokens_per_step
    assert run.compute == pytest.approx(steps * tokens_per_step * exact, rel=1e-12)
    assert run.compute_6nd == pytest.approx(6 * meta["n_params"] * run.tokens, rel=1e-12)
    assert run.final_loss_source == "eval"
    assert run.final_loss == rows[-1]["eval_loss"] == meta["final_eval_loss"]
    assert math.isfinite(run.final_loss) and run.final_loss > 0
    assert list(run.steps) == [r["step"] for r in rows]
    assert run.loss_unit == "nats per byte"
    assert set(meta) <= run_format.RUN_KEYS and set(rows[-1]) <= run_format.METRIC_COLUMNS
    sweep = load.load_runs(run_dir.parent.parent)
    assert [r.run_id for r in sweep.runs] == [meta["run_id"]]
