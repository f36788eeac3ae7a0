"""A run's tb/ read back with TensorBoard's own EventAccumulator: every metric is a real scalar."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import tiny_run_args
from scaling import config, train
from scaling.rundir import RunDir
from scaling.tensorboard_log import ScalarEvents

STEPS, LOG_EVERY, EVAL_EVERY = 30, 4, 10


def _events(tb: Path) -> EventAccumulator:
    events = EventAccumulator(str(tb), size_guidance={"scalars": 0})  # 0: keep every point
    events.Reload()
    return events


@pytest.fixture(scope="module")
def run(tiny_data, tmp_path_factory) -> RunDir:
    """A real training run, in this process: logged every 4 steps, evaluated every 10 and at the end."""
    runs = tmp_path_factory.mktemp("tb_runs")
    cfg = config.load(None, ["model.preset=tiny-d64", *tiny_run_args(
        tiny_data, runs, f"train.steps={STEPS}", f"train.log_every={LOG_EVERY}", f"train.eval_every={EVAL_EVERY}",
        "train.eval_log_points=0")])
    result = train.run(cfg)
    assert result["status"] == "done"
    (path,) = [p.parent for p in runs.glob("*/*/run.json")]
    return RunDir(path)


@pytest.mark.slow
def test_every_metric_is_a_scalar_with_one_point_per_row_that_has_it(run):
    rows = run.read_metrics()
    # Logged steps: every 4th, every evaluation (10, 20, 30) and the last.
    assert [r["step"] for r in rows] == [4, 8, 10, 12, 16, 20, 24, 28, 30]
    events = _events(run.tb_path)
    assert events.Tags()["tensors"] == []  # nothing hidden where the Scalars API and the UI's chart do not look
    keys = {k for r in rows for k, v in r.items() if v is not None} - {"step"}
    assert {"tokens", "flops", "train_loss", "eval_loss", "lr", "grad_norm", "tokens_per_s",
            "tokens_per_s_per_device", "wall_s"} <= keys
    for key in keys:
        expected = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
        got = [(e.step, e.value) for e in events.Scalars(key)]
        assert [s for s, _ in got] == [s for s, _ in expected], key
        assert [v for _, v in got] == pytest.approx([v for _, v in expected], rel=1e-6), key
    assert len(events.Scalars("eval_loss")) == 3


@pytest.mark.slow
def test_losses_are_also_plotted_against_tokens_and_flops(run):
    rows = run.read_metrics()
    events = _events(run.tb_path)
    for loss in ("train_loss", "eval_loss"):
        kept = [r for r in rows if r.get(loss) is not None]
        vs_tokens = [(e.step, e.value) for e in events.Scalars(f"{loss}_vs_tokens")]
        assert vs_tokens == [(r["tokens"], pytest.approx(r[loss], rel=1e-6)) for r in kept]
        vs_flops = [(e.step, e.value) for e in events.Scalars(f"{loss}_vs_gflops")]
        assert vs_flops == [(round(r["flops"] / 1e9), pytest.approx(r[loss], rel=1e-6)) for r in kept]
    # Tokens are steps times batch times sequence (8 x 32 here), checked by hand, not by the code's own formula.
    assert [e.step for e in events.Scalars("train_loss_vs_tokens")][:2] == [4 * 8 * 32, 8 * 8 * 32]
    info = json.loads(run.run_json_path.read_text())
    assert rows[-1]["flops"] == pytest.approx(STEPS * 8 * 32 * info["flops_per_token"])


def test_mfu_and_huge_flop_counts_are_written(tmp_path):
    """MFU is null on a CPU, so a GPU-like row checks it; 1e24 FLOPs must not overflow the int64 step."""
    row = {"step": 7, "tokens": 7_000_000, "flops": 1e24, "train_loss": 2.5, "mfu": 0.41, "tokens_per_s": None}
    writer = ScalarEvents(tmp_path)
    writer.write_row(row)
    writer.close()
    events = _events(tmp_path)
    assert [(e.step, e.value) for e in events.Scalars("mfu")] == [(7, pytest.approx(0.41))]
    assert [e.step for e in events.Scalars("train_loss_vs_gflops")] == [10**15]
    assert "tokens_per_s" not in events.Tags()["scalars"]  # a null is not written as a zero
