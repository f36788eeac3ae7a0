"""Per-step bookkeeping of a run: a NaN/inf check, one metrics row, and the sinks that write it.

One logged step goes through four separate pieces:

- ``check_finite``: the abort on a non-finite training loss or gradient norm, on every step;
- ``metrics_row``: a pure function making the row (``analysis.run_format`` columns) from the step,
  its values, the throughput window and the chip's peak;
- the sinks: metrics.jsonl (``RunDir.append_metrics``), TensorBoard (``tensorboard_log.ScalarEvents``)
  and the progress display (``Progress``), all fed the same row;
- ``MetricsLog``, which owns the clocks and decides which steps are logged.

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
from typing import Callable

import jax
from tqdm import tqdm

from analysis import run_format as rf
from scaling import hardware
from scaling.rundir import RunDir, RunFailed
from scaling.tensorboard_log import ScalarEvents

FIRST_REPORTS = 3
REPORT_EVERY_S = 30.0


def check_finite(step: int, values: dict[str, float]) -> None:
    """Abort the run on a non-finite training loss or gradient norm.

    ``values`` is one step's host-side metrics (``train_loss``, ``grad_norm``, ...). Raises ``RunFailed``
    (carrying ``step``) when either is NaN or infinite: the step's state must not be saved, and the
    newest checkpoint, written before it, is the last good one.
    """
    loss, norm = values[rf.TRAIN_LOSS], values[rf.GRAD_NORM]
    if not math.isfinite(loss) or not math.isfinite(norm):
        raise RunFailed(f"non-finite loss at step {step} (train_loss={loss}, grad_norm={norm}); "
                        "the last good checkpoint is kept", step=step)


def metrics_row(step: int, values: dict[str, float], *, tokens_per_step: int, flops_per_token: float,
                window: tuple[int, float] | None, device_kind: str, n_devices: int, wall_s: float,
                eval_loss: float | None = None) -> dict:
    """The metrics.jsonl row of ``step``: a pure function of its arguments.

    In: ``values`` the step's metrics (``train_loss`` in nats per tokenizer unit, ``grad_norm``,
    ``lr``), copied into the row as given; ``tokens_per_step`` tokens (D) and ``flops_per_token``
    training FLOPs (exact count) per step and per token; ``window`` = (steps trained, seconds they
    took) since the previous logged row, or None on a process's first row (it includes compilation);
    ``device_kind``, ``n_devices`` the chips that trained it; ``wall_s`` seconds since the run started,
    summed over its attempts; ``eval_loss`` the validation loss, if this step evaluated.

    Out: ``step``, ``tokens`` = step x tokens_per_step, ``flops`` = tokens x flops_per_token, the values,
    ``tokens_per_s`` = window steps x tokens_per_step / window seconds, ``tokens_per_s_per_device``,
    ``mfu`` = tokens_per_s x flops_per_token / (n_devices x the chip's dense bf16 peak, from
    ``hardware.peak_flops``), ``wall_s``, and ``eval_loss`` only when given. Throughput and MFU are None
    without a window; MFU is None on a chip with no known peak (never a guessed peak).
    """
    tokens = step * tokens_per_step
    tokens_per_s = None if window is None else window[0] * tokens_per_step / window[1]
    mfu = None if tokens_per_s is None else hardware.mfu(tokens_per_s * flops_per_token, device_kind, n_devices)
    row = {rf.STEP: step, rf.TOKENS: tokens, rf.FLOPS: tokens * flops_per_token, **values,
           rf.TOKENS_PER_S: tokens_per_s,
           rf.TOKENS_PER_S_PER_DEVICE: tokens_per_s / n_devices if tokens_per_s else None,
           rf.MFU: mfu, rf.WALL_S: wall_s}
    if eval_loss is not None:
        row[rf.EVAL_LOSS] = eval_loss
    return row


def progress_line(row: dict, total_steps: int, eta_s: float | None) -> str:
    """One report line for a metrics row: ``step 33/100  tokens 1.69e+04  loss 4.6700  tok/s 512  ETA 1m07s``
    (``eval`` after the loss on evaluation steps; no rate on a first row, no ETA without ``eta_s``)."""
    parts = [f"step {row[rf.STEP]}/{total_steps}", f"tokens {row[rf.TOKENS]:.3g}", f"loss {row[rf.TRAIN_LOSS]:.4f}"]
    if row.get(rf.EVAL_LOSS) is not None:
        parts.append(f"eval {row[rf.EVAL_LOSS]:.4f}")
    if row[rf.TOKENS_PER_S]:
        parts.append(f"tok/s {row[rf.TOKENS_PER_S]:.3g}")
    if eta_s is not None:
        parts.append(f"ETA {_duration(eta_s)}")
    return "  ".join(parts)


class Progress:
    """The progress sink on stderr: a tqdm bar on a terminal, report lines otherwise (module docstring).

    ``bar``: a bar is wanted (``train.progress``); tqdm still drops it when stderr is not a terminal,
    and lines are printed instead. ``quiet``: nothing at all (every process but the first of a
    multi-process run). ``report_every_s``: seconds between interval lines.
    """

    def __init__(self, total_steps: int, start_step: int, bar: bool = True, quiet: bool = False,
                 report_every_s: float = REPORT_EVERY_S):
        self.total_steps = total_steps
        self.quiet = quiet
        self.report_every_s = report_every_s
        self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True,
                        disable=None if bar and not quiet else True, file=sys.stderr)
        self.first: tuple[int, float] | None = None  # (step, time) of this process's first row: the ETA's origin
        self.reports = 0
        self.last_report = -math.inf

    def advance(self) -> None:
        """One more step trained (every step, logged or not)."""
        self.bar.update(1)

    def write(self, row: dict, now: float) -> None:
        """Show a logged row that arrived at ``now`` (the log's timer, seconds)."""
        if self.quiet:
            return
        step, eval_loss = row[rf.STEP], row.get(rf.EVAL_LOSS)
        if self.first is None:
            self.first = (step, now)
        postfix = {"tokens": f"{row[rf.TOKENS]:.3g}", "loss": f"{row[rf.TRAIN_LOSS]:.4f}"}
        if row[rf.TOKENS_PER_S] is not None:
            postfix["tok/s"] = f"{row[rf.TOKENS_PER_S]:.3g}"
        if eval_loss is not None:
            postfix["eval"] = f"{eval_loss:.4f}"
        self.bar.set_postfix(postfix, refresh=False)
        if self.bar.disable and (self.reports < FIRST_REPORTS or eval_loss is not None or step == self.total_steps
                                 or now - self.last_report >= self.report_every_s):
            self.reports += 1
            self.last_report = now
            first_step, first_time = self.first
            eta_s = (self.total_steps - step) * (now - first_time) / (step - first_step) if step > first_step else None
            print(progress_line(row, self.total_steps, eta_s), file=sys.stderr, flush=True)

    def close(self) -> None:
        """Close the bar (a no-op for lines)."""
        self.bar.close()


class MetricsLog:
    """A run's metrics: checks every step, and writes a row on log steps, evaluations and the last step
    to metrics.jsonl, TensorBoard and the progress display (on the writing process only).

    In: the run directory ``rd``; ``flops_per_token`` (exact training FLOPs), ``tokens_per_step``,
    ``total_steps``, the step this process resumes from (``start_step``), ``device`` as
    ``hardware.describe`` gives it (``device_kind``, ``n_devices``), ``progress`` (a bar on a terminal),
    ``log_every`` (steps between rows), ``report_every_s`` (seconds between progress lines in a log),
    ``timer`` (seconds, monotonic; replaceable so tests can count time by hand). ``wall_s`` continues
    from the run's last row, so it sums the attempts of a resumed run.
    """

    def __init__(self, rd: RunDir, flops_per_token: float, tokens_per_step: int, total_steps: int,
                 start_step: int, device: dict, progress: bool = True, log_every: int = 1,
                 report_every_s: float = REPORT_EVERY_S, timer: Callable[[], float] = time.perf_counter):
        self.rd = rd
        self.flops_per_token = flops_per_token
        self.tokens_per_step = tokens_per_step
        self.total_steps = total_steps
        self.log_every = log_every
        self.device = device
        last = rd.last_metrics()
        self.wall_offset = last[rf.WALL_S] if last else 0.0
        self.timer = timer
        self.t_start = timer()
        self.clock: tuple[int, float] | None = None  # (step, time) the current throughput window opened
        self.rate_sum, self.rate_count = 0.0, 0  # a running mean: nothing here grows with the run's length
        self.tb = ScalarEvents(rd.tb_path) if rd.writes else None
        self.progress = Progress(total_steps, start_step, bar=progress, quiet=not rd.writes,
                                 report_every_s=report_every_s)

    def record(self, step: int, metrics: dict, eval_loss: float | None = None, paused_s: float = 0.0) -> None:
        """Read one step's metrics (blocking on that step only); write a row on log and eval steps.

        ``metrics``: the train step's device scalars; ``eval_loss``: the validation loss if ``step``
        evaluated; ``paused_s``: seconds spent on something other than training since the step was
        dispatched (evaluation), left out of the throughput. Raises ``RunFailed`` on a non-finite loss
        or gradient norm (``check_finite``), before anything of the step is written.
        """
        values = {k: float(v) for k, v in jax.device_get(metrics).items()}
        check_finite(step, values)
        now = self.timer()
        self.progress.advance()
        if not (step % self.log_every == 0 or eval_loss is not None or step == self.total_steps):
            return
        row = metrics_row(step, values, tokens_per_step=self.tokens_per_step, flops_per_token=self.flops_per_token,
                          window=self._window(step, now, paused_s), device_kind=self.device["device_kind"],
                          n_devices=self.device["n_devices"], wall_s=self.wall_offset + now - self.t_start,
                          eval_loss=eval_loss)
        if row[rf.TOKENS_PER_S] is not None:
            self.rate_sum, self.rate_count = self.rate_sum + row[rf.TOKENS_PER_S], self.rate_count + 1
        self.rd.append_metrics(row)
        if self.tb is not None:
            self.tb.write_row(row)
        self.progress.write(row, now)

    def _window(self, step: int, now: float, paused_s: float) -> tuple[int, float] | None:
        """(steps, training seconds) since the previous logged row, restarting the window at ``step``;
        None for this process's first row, which only starts the clock."""
        if self.clock is None:
            self.clock = (step, now)
            return None
        if step <= self.clock[0]:
            return None
        window = (step - self.clock[0], now - self.clock[1] - paused_s)
        self.clock = (step, now)
        return window

    def mean_tokens_per_s(self) -> float | None:
        """The mean of this process's row throughputs (tokens/s), or None before the second logged row."""
        return self.rate_sum / self.rate_count if self.rate_count else None

    def close(self) -> None:
        """Close the progress display and flush and close the TensorBoard events."""
        self.progress.close()
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
