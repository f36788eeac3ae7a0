"""Per-step bookkeeping of a run: metrics.jsonl, TensorBoard scalars, the progress bar, NaN detection.

Throughput is measured between logged rows from the moment a step's metrics arrive, and the first
step of each process (which includes compilation) only starts the clock.
"""

from __future__ import annotations

import math
import sys
import time

import jax
from tensorboard.summary import Writer
from tqdm import tqdm

from scaling import hardware
from scaling.rundir import RunDir, RunFailed


class MetricsLog:
    def __init__(self, rd: RunDir, flops_per_token: float, tokens_per_step: int, total_steps: int,
                 start_step: int, device: dict, progress: bool = True, log_every: int = 1):
        self.rd = rd
        self.flops_per_token = flops_per_token
        self.tokens_per_step = tokens_per_step
        self.total_steps = total_steps
        self.log_every = log_every
        self.device = device
        last = rd.last_metrics()
        self.wall_offset = last["wall_s"] if last else 0.0
        self.t_start = time.perf_counter()
        self.clock: tuple[int, float] | None = None  # (step, time) the current throughput window opened
        self.rate_sum, self.rate_count = 0.0, 0  # a running mean: nothing here grows with the run's length
        self.tb = Writer(str(rd.tb_path)) if rd.writes else None
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
        now = time.perf_counter()
        self.bar.update(1)
        is_last = step == self.total_steps
        if not (step % self.log_every == 0 or eval_loss is not None or is_last):
            return
        tokens_per_s = None
        if self.clock is None:
            self.clock = (step, now)
        elif step > self.clock[0]:
            tokens_per_s = (step - self.clock[0]) * self.tokens_per_step / (now - self.clock[1] - paused_s)
            self.rate_sum, self.rate_count = self.rate_sum + tokens_per_s, self.rate_count + 1
            self.clock = (step, now)
        mfu = None
        if tokens_per_s is not None:
            mfu = hardware.mfu(tokens_per_s * self.flops_per_token, self.device["device_kind"],
                               self.device["n_devices"])
        tokens = step * self.tokens_per_step
        row = {"step": step, "tokens": tokens, "flops": tokens * self.flops_per_token, **values,
               "tokens_per_s": tokens_per_s,
               "tokens_per_s_per_device": tokens_per_s / self.device["n_devices"] if tokens_per_s else None,
               "mfu": mfu, "wall_s": self.wall_offset + now - self.t_start}
        if eval_loss is not None:
            row["eval_loss"] = eval_loss
        self.rd.append_metrics(row)
        if self.tb is None:
            return
        for key in ("train_loss", "eval_loss", "lr", "grad_norm", "tokens_per_s", "mfu"):
            if row.get(key) is not None:
                self.tb.add_scalar(key, row[key], step=step)
        postfix = {"tokens": f"{tokens:.3g}", "loss": f"{values['train_loss']:.4f}"}
        if tokens_per_s is not None:
            postfix["tok/s"] = f"{tokens_per_s:.3g}"
        if eval_loss is not None:
            postfix["eval"] = f"{eval_loss:.4f}"
        self.bar.set_postfix(postfix, refresh=False)
        if self.bar.disable and (eval_loss is not None or is_last):
            print(f"step {step}/{self.total_steps} tokens {tokens:.3g} loss {values['train_loss']:.4f}"
                  + (f" eval {eval_loss:.4f}" if eval_loss is not None else "")
                  + (f" tok/s {tokens_per_s:.3g}" if tokens_per_s else ""), file=sys.stderr, flush=True)

    def mean_tokens_per_s(self) -> float | None:
        return self.rate_sum / self.rate_count if self.rate_count else None

    def close(self) -> None:
        self.bar.close()
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()
