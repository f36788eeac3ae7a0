"""Per-step bookkeeping of a run: metrics.jsonl, TensorBoard scalars, progress, NaN detection.

Throughput is measured between logged rows from the moment a step's metrics arrive, and the first
step of each process (which includes compilation) only starts the clock.

Progress: on a terminal, a tqdm bar. When the output goes to a file (a sweep's stderr.log, a batch
job, ``> log``) or ``train.progress=false``, one line per report instead, so a log shows the run is
alive: the first ``FIRST_REPORTS`` logged steps (compilation is over, the loss is moving), every
evaluation, the last step, and otherwise the first logged step at least ``REPORT_EVERY_S`` seconds
after the previous line. A line gives step, tokens, loss, tokens/s and the ETA, which is the time
per step so far in this process (evaluations included) times the steps left.
"""

from __future__ import annotations

import math
import sys
import time

import jax
from tqdm import tqdm

from analysis import run_format
from scaling import hardware
from scaling.rundir import RunDir, RunFailed
from scaling.tensorboard_log import ScalarEvents

FIRST_REPORTS = 3
REPORT_EVERY_S = 30.0


class MetricsLog:
    def __init__(self, rd: RunDir, flops_per_token: float, tokens_per_step: int, total_steps: int,
                 start_step: int, device: dict, progress: bool = True, log_every: int = 1,
                 report_every_s: float = REPORT_EVERY_S, timer=time.perf_counter):
        self.rd = rd
        self.flops_per_token = flops_per_token
        self.tokens_per_step = tokens_per_step
        self.total_steps = total_steps
        self.log_every = log_every
        self.device = device
        last = rd.last_metrics()
        self.wall_offset = last["wall_s"] if last else 0.0
        self.timer = timer
        self.t_start = timer()
        self.clock: tuple[int, float] | None = None  # (step, time) the current throughput window opened
        self.clock_start: tuple[int, float] | None = None  # (step, time) of this process's first logged row
        self.rate_sum, self.rate_count = 0.0, 0  # a running mean: nothing here grows with the run's length
        self.report_every_s = report_every_s
        self.reports = 0
        self.last_report = -math.inf
        self.tb = ScalarEvents(rd.tb_path) if rd.writes else None
        self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True,
                        disable=None if progress and rd.writes else True, file=sys.stderr)

    def record(self, step: int, metrics: dict, eval_loss: float | None = None, paused_s: float = 0.0) -> None:
        """Read one step's metrics (blocking on that step only); write a row on log and eval steps.

        ``paused_s`` is time spent on something other than training since the step was dispatched
        (evaluation); it is left out of the throughput.
        """
        values = {k: float(v) for k, v in jax.device_get(metrics).items()}
        if not math.isfinite(values["train_loss"]) or not math.isfinite(values["grad_norm"]):
            raise RunFailed(f"non-finite loss at step {step} (train_loss={values['train_loss']}, "
                            f"grad_norm={values['grad_norm']}); the last good checkpoint is kept", step=step)
        now = self.timer()
        self.bar.update(1)
        is_last = step == self.total_steps
        if not (step % self.log_every == 0 or eval_loss is not None or is_last):
            return
        tokens_per_s = None
        if self.clock is None:
            self.clock = self.clock_start = (step, now)
        elif step > self.clock[0]:
            tokens_per_s = (step - self.clock[0]) * self.tokens_per_step / (now - self.clock[1] - paused_s)
            self.rate_sum, self.rate_count = self.rate_sum + tokens_per_s, self.rate_count + 1
            self.clock = (step, now)
        mfu = None
        if tokens_per_s is not None:
            mfu = hardware.mfu(tokens_per_s * self.flops_per_token, self.device["device_kind"],
                               self.device["n_devices"])
        tokens = step * self.tokens_per_step
        row = {run_format.STEP: step, run_format.TOKENS: tokens, run_format.FLOPS: tokens * self.flops_per_token, **values,
               "tokens_per_s": tokens_per_s,
               "tokens_per_s_per_device": tokens_per_s / self.device["n_devices"] if tokens_per_s else None,
               "mfu": mfu, "wall_s": self.wall_offset + now - self.t_start}
        if eval_loss is not None:
            row[run_format.EVAL_LOSS] = eval_loss
        self.rd.append_metrics(row)
        if self.tb is None:
            return
        self.tb.write_row(row)
        postfix = {"tokens": f"{tokens:.3g}", "loss": f"{values['train_loss']:.4f}"}
        if tokens_per_s is not None:
            postfix["tok/s"] = f"{tokens_per_s:.3g}"
        if eval_loss is not None:
            postfix["eval"] = f"{eval_loss:.4f}"
        self.bar.set_postfix(postfix, refresh=False)
        if self.bar.disable and (self.reports < FIRST_REPORTS or eval_loss is not None or is_last
                                 or now - self.last_report >= self.report_every_s):
            self.reports += 1
            self.last_report = now
            print(self._line(row, now), file=sys.stderr, flush=True)

    def _line(self, row: dict, now: float) -> str:
        step = row["step"]
        parts = [f"step {step}/{self.total_steps}", f"tokens {row['tokens']:.3g}", f"loss {row['train_loss']:.4f}"]
        if row.get("eval_loss") is not None:
            parts.append(f"eval {row['eval_loss']:.4f}")
        if row["tokens_per_s"]:
            parts.append(f"tok/s {row['tokens_per_s']:.3g}")
        first_step, first_time = self.clock_start
        if step > first_step:
            left_s = (self.total_steps - step) * (now - first_time) / (step - first_step)
            parts.append(f"ETA {_duration(left_s)}")
        return "  ".join(parts)

    def mean_tokens_per_s(self) -> float | None:
        return self.rate_sum / self.rate_count if self.rate_count else None

    def close(self) -> None:
        self.bar.close()
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()


def _duration(seconds: float) -> str:
    """``42s``, ``3m07s``, ``2h05m``: short enough for a log line, exact enough for an ETA."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
