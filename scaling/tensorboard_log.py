"""A run's TensorBoard events: every metrics.jsonl value as a classic scalar summary, no TensorFlow.

Each value is written as a ``simple_value`` summary, the form that TensorBoard's UI and its
``EventAccumulator`` (``Tags()['scalars']``, ``Scalars(tag)``) both read; ``tensorboard.summary.Writer``
stores tensors instead, which ``EventAccumulator`` lists only under ``tensors``.

Tags. Every numeric field of a metrics row except ``step`` is a tag of the same name, at the row's
step (``train_loss``, ``eval_loss``, ``lr``, ``grad_norm``, ``tokens``, ``flops``, ``tokens_per_s``,
``tokens_per_s_per_device``, ``mfu``, ``wall_s``); a field that is null in a row (MFU on a chip with
no known peak, the throughput of the first row) is left out of that row. Scaling plots are read
against data D and compute C, not steps, and TensorBoard's x axis is always the step, so the losses
are written a second and third time with another x:

- ``train_loss_vs_tokens``, ``eval_loss_vs_tokens``: step = training tokens seen;
- ``train_loss_vs_gflops``, ``eval_loss_vs_gflops``: step = training FLOPs / 1e9, rounded.

A step is a signed 64-bit integer: FLOPs themselves would overflow it above 9.2e18 (a 1B-parameter
model at 20 tokens per parameter already uses 1.2e20), GFLOPs only above 9.2e27. The price is
resolution: a run of under about 1e11 FLOPs (a test-sized model) shows coarse steps on those tags.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

FLOPS_UNIT = 1e9
LOSSES = ("train_loss", "eval_loss")


def scalars_of(row: dict) -> list[tuple[str, float, int]]:
    """``(tag, value, step)`` for every scalar a metrics row becomes (see the module docstring)."""
    step = int(row["step"])
    out = [(key, float(value), step) for key, value in row.items()
           if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool)
           and math.isfinite(value)]
    for loss in LOSSES:
        value = row.get(loss)
        if value is None:
            continue
        out.append((f"{loss}_vs_tokens", float(value), int(row["tokens"])))
        out.append((f"{loss}_vs_gflops", float(value), round(row["flops"] / FLOPS_UNIT)))
    return out


class ScalarEvents:
    """An event file in ``logdir`` (created if missing) taking one metrics row at a time."""

    def __init__(self, logdir: str | Path):
        self._writer = EventFileWriter(str(logdir))

    def write_row(self, row: dict, wall_time: float | None = None) -> None:
        wall_time = time.time() if wall_time is None else wall_time
        by_step: dict[int, list[summary_pb2.Summary.Value]] = {}
        for tag, value, step in scalars_of(row):
            by_step.setdefault(step, []).append(summary_pb2.Summary.Value(tag=tag, simple_value=value))
        for step, values in by_step.items():
            self._writer.add_event(event_pb2.Event(wall_time=wall_time, step=step,
                                                   summary=summary_pb2.Summary(value=values)))

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
