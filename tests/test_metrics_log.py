"""A run's metrics row (throughput, MFU, columns) by hand, the NaN/inf abort, and progress when the output is
not a terminal: a line at the start, at evaluations, at the end and every 30 s."""

from __future__ import annotations

import json
import math
import re

import pytest

from analysis import run_format
from scaling.metrics_log import MetricsLog, check_finite, metrics_row
from scaling.rundir import RunDir, RunFailed

CPU = {"device_kind": "cpu", "n_devices": 1}


class FakeTimer:
    """One second per training step, so the expected lines can be counted by hand."""

    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _train(tmp_path, total: int, evals=(), **kwargs) -> None:
    timer = FakeTimer()
    log = MetricsLog(RunDir(tmp_path / "run"), flops_per_token=1e6, tokens_per_step=512, total_steps=total,
                     start_step=0, device=CPU, progress=False, log_every=1, timer=timer, **kwargs)
    for step in range(1, total + 1):
        timer.t += 1.0
        log.record(step, {"train_loss": 5.0 - step / total, "grad_norm": 1.0, "lr": 1e-3},
                   eval_loss=4.0 if step in evals else None)
    log.close()


def test_lines_at_start_evaluations_end_and_every_30_seconds(tmp_path, capsys):
    _train(tmp_path, 100, evals=(50,))
    lines = capsys.readouterr().err.splitlines()
    steps = [int(re.match(r"step (\d+)/100", line).group(1)) for line in lines]
    # 1-3: the first three; 33: 30 s after step 3; 50: an evaluation; 80: 30 s after it; 100: the end.
    assert steps == [1, 2, 3, 33, 50, 80, 100]


def test_a_line_gives_step_tokens_loss_throughput_and_eta(tmp_path, capsys):
    _train(tmp_path, 100, evals=(50,))
    lines = capsys.readouterr().err.splitlines()
    first, at_33, at_50 = lines[0], lines[3], lines[4]
    assert "tok/s" not in first and "ETA" not in first  # one row does not make a rate
    # 512 tokens per step at one step per second; 67 steps left at one second each.
    assert re.fullmatch(r"step 33/100  tokens 1\.69e\+04  loss 4\.6700  tok/s 512  ETA 1m07s", at_33), at_33
    assert "eval 4.0000" in at_50 and "ETA 50s" in at_50


def test_no_interval_lines_with_a_long_interval(tmp_path, capsys):
    _train(tmp_path, 100, report_every_s=1e9)
    steps = [int(re.match(r"step (\d+)", line).group(1)) for line in capsys.readouterr().err.splitlines()]
    assert steps == [1, 2, 3, 100]


@pytest.mark.parametrize("progress", [True, False])
def test_no_bar_when_stderr_is_not_a_terminal(tmp_path, capsys, progress):
    log = MetricsLog(RunDir(tmp_path / "run"), 1e6, 512, 10, 0, CPU, progress=progress)
    assert log.progress.bar.disable  # pytest's captured stderr is a file, as a batch job's or a sweep's is
    log.close()


VALUES = {"train_loss": 3.25, "grad_norm": 0.5, "lr": 6e-4}


def test_row_throughput_and_mfu_by_hand():
    # A GPT-2-small-like step: 2**19 tokens per step, 7.44e8 training FLOPs per token, on 8 H200s
    # (989 TFLOP/s dense bf16 each, NVIDIA's datasheet), 10 steps in 20 s since the previous row.
    row = metrics_row(100, VALUES, tokens_per_step=524_288, flops_per_token=7.44e8, window=(10, 20.0),
                      device_kind="NVIDIA H200", n_devices=8, wall_s=321.5)
    assert row[run_format.STEP] == 100
    assert row[run_format.TOKENS] == 52_428_800  # 100 x 524,288
    assert row[run_format.FLOPS] == pytest.approx(3.90070272e16, rel=1e-12)  # 52,428,800 x 7.44e8
    assert row[run_format.TOKENS_PER_S] == pytest.approx(262_144.0, rel=1e-12)  # 10 x 524,288 / 20
    assert row[run_format.TOKENS_PER_S_PER_DEVICE] == pytest.approx(32_768.0, rel=1e-12)  # / 8
    # 262,144 x 7.44e8 = 1.95035136e14 FLOP/s over 8 x 989e12 = 7.912e15 FLOP/s of peak.
    assert row[run_format.MFU] == pytest.approx(0.02465054803, rel=1e-9)
    assert row[run_format.WALL_S] == 321.5
    assert {k: row[k] for k in VALUES} == VALUES
    assert run_format.EVAL_LOSS not in row  # no evaluation at this step: no column, not a null
    assert set(row) <= run_format.METRIC_COLUMNS


def test_mfu_of_one_a100_by_hand():
    row = metrics_row(3, VALUES, tokens_per_step=2048, flops_per_token=1e9, window=(3, 1.5),
                      device_kind="NVIDIA A100-SXM4-80GB", n_devices=1, wall_s=2.0, eval_loss=3.5)
    assert row[run_format.TOKENS_PER_S] == pytest.approx(4096.0, rel=1e-12)  # 3 x 2048 / 1.5
    assert row[run_format.MFU] == pytest.approx(4096 * 1e9 / 312e12, rel=1e-12)  # A100: 312 TFLOP/s
    assert row[run_format.EVAL_LOSS] == 3.5


def test_no_made_up_throughput_or_peak():
    first = metrics_row(1, VALUES, tokens_per_step=512, flops_per_token=1e6, window=None,
                        device_kind="NVIDIA H200", n_devices=1, wall_s=9.0)
    assert first[run_format.TOKENS_PER_S] is first[run_format.TOKENS_PER_S_PER_DEVICE] is first[run_format.MFU] is None
    cpu = metrics_row(2, VALUES, tokens_per_step=512, flops_per_token=1e6, window=(1, 0.5),
                      device_kind="cpu", n_devices=1, wall_s=9.5)
    assert cpu[run_format.TOKENS_PER_S] == 1024.0 and cpu[run_format.MFU] is None  # no known peak: unknown


@pytest.mark.parametrize("bad", [{"train_loss": math.nan}, {"grad_norm": math.inf}, {"train_loss": -math.inf}])
def test_a_non_finite_loss_or_gradient_aborts_before_a_row_is_written(tmp_path, bad):
    values = {**VALUES, **bad}
    with pytest.raises(RunFailed, match=r"non-finite loss at step 7 \(train_loss=.*, grad_norm=.*\); "
                                        r"the last good checkpoint is kept") as failed:
        check_finite(7, values)
    assert failed.value.step == 7
    check_finite(7, VALUES)  # finite: no complaint
    log = MetricsLog(RunDir(tmp_path / "run"), 1e6, 512, 10, 0, CPU, progress=False)
    with pytest.raises(RunFailed):
        log.record(1, values)
    log.close()
    assert not (tmp_path / "run" / run_format.METRICS).exists()


def test_the_file_holds_the_row_of_the_training_time_only(tmp_path, capsys):
    """metrics.jsonl gets metrics_row's row, its window measured between logged rows minus evaluation time."""
    timer = FakeTimer()
    log = MetricsLog(RunDir(tmp_path / "run"), flops_per_token=1e6, tokens_per_step=512, total_steps=4,
                     start_step=0, device=CPU, progress=False, log_every=2, timer=timer)
    for step in range(1, 5):
        timer.t += 1.0
        log.record(step, VALUES, eval_loss=3.0 if step == 4 else None, paused_s=0.25 if step == 4 else 0.0)
    log.close()
    rows = [json.loads(line) for line in (tmp_path / "run" / run_format.METRICS).read_text().splitlines()]
    assert [r[run_format.STEP] for r in rows] == [2, 4]
    # Steps 3 and 4 took 2 s, of which 0.25 s evaluated: 2 x 512 tokens in 1.75 s of training.
    assert rows[1] == metrics_row(4, VALUES, tokens_per_step=512, flops_per_token=1e6, window=(2, 1.75),
                                  device_kind="cpu", n_devices=1, wall_s=4.0, eval_loss=3.0)
    assert rows[1][run_format.TOKENS_PER_S] == pytest.approx(1024 / 1.75)
    assert log.mean_tokens_per_s() == pytest.approx(1024 / 1.75)


def test_every_row_counts_tokens_and_flops_from_the_step(tmp_path):
    # D = step x tokens per step (512 here), C = D x the exact FLOPs per token (1e6 here): what analysis reads.
    _train(tmp_path, 10)
    rows = list(RunDir(tmp_path / "run").iter_metrics())
    assert [r["step"] for r in rows] == list(range(1, 11))
    assert all(r["tokens"] == 512 * r["step"] and r["flops"] == 512e6 * r["step"] for r in rows)
