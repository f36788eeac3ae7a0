"""Progress when the output is not a terminal: a line at the start, at evaluations, at the end and every 30 s."""

from __future__ import annotations

import re

import pytest

from scaling.metrics_log import MetricsLog
from scaling.rundir import RunDir

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
    assert log.bar.disable  # pytest's captured stderr is a file, as a batch job's or a sweep's is
    log.close()


def test_every_row_counts_tokens_and_flops_from_the_step(tmp_path):
    # D = step x tokens per step (512 here), C = D x the exact FLOPs per token (1e6 here): what analysis reads.
    _train(tmp_path, 10)
    rows = list(RunDir(tmp_path / "run").iter_metrics())
    assert [r["step"] for r in rows] == list(range(1, 11))
    assert all(r["tokens"] == 512 * r["step"] and r["flops"] == 512e6 * r["step"] for r in rows)
