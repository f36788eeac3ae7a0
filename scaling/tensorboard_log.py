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

After a resume the event files are rebuilt from metrics.jsonl (``rebuild``), so TensorBoard, like
metrics.jsonl, holds each step once: steps a killed attempt logged past its checkpoint are gone.

A step is a signed 64-bit integer: FLOPs themselves would overflow it above 9.2e18 (a 1B-parameter
model at 20 tokens per parameter already uses 1.2e20), GFLOPs only above 9.2e27. The price is
resolution: a run of under about 1e11 FLOPs (a test-sized model) shows coarse steps on those tags.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from pathlib import Path

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from analysis import run_format as rf

FLOPS_UNIT = 1e9
LOSSES = (rf.TRAIN_LOSS, rf.EVAL_LOSS)


def scalars_of(row: dict) -> list[tuple[str, float, int]]:
    """``(tag, value, step)`` for every scalar a metrics row becomes (see the module docstring).

    ``row``: a metrics.jsonl row (``analysis.run_format`` columns; ``step``, ``tokens`` and ``flops``
    required). Values are floats; the step is the training step, or tokens, or FLOPs / ``FLOPS_UNIT``.
    """
    step = int(row[rf.STEP])
    out = [(key, float(value), step) for key, value in row.items()
           if key != rf.STEP and isinstance(value, (int, float)) and not isinstance(value, bool)
           and math.isfinite(value)]
    for loss in LOSSES:
        value = row.get(loss)
        if value is None:
            continue
        out.append((f"{loss}_vs_tokens", float(value), int(row[rf.TOKENS])))
        out.append((f"{loss}_vs_gflops", float(value), round(row[rf.FLOPS] / FLOPS_UNIT)))
    return out


class ScalarEvents:
    """An event file in ``logdir`` (created if missing) taking one metrics row at a time."""

    def __init__(self, logdir: str | Path):
        self._writer = EventFileWriter(str(logdir))

    def write_row(self, row: dict, wall_time: float | None = None) -> None:
        """Write a metrics row's scalars (``scalars_of``) as events stamped ``wall_time`` (Unix seconds;
        now when None), one event per distinct step. Buffered: ``flush`` or ``close`` puts them on disk."""
        wall_time = time.time() if wall_time is None else wall_time
        by_step: dict[int, list[summary_pb2.Summary.Value]] = {}
        for tag, value, step in scalars_of(row):
            by_step.setdefault(step, []).append(summary_pb2.Summary.Value(tag=tag, simple_value=value))
        for step, values in by_step.items():
            self._writer.add_event(event_pb2.Event(wall_time=wall_time, step=step,
                                                   summary=summary_pb2.Summary(value=values)))

    def flush(self) -> None:
        """Write buffered events to the file."""
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the file; no write after this."""
        self._writer.close()


def event_files(logdir: str | Path) -> list[Path]:
    """Event files in the order TensorBoard reads them (by name: creation time, then host)."""
    return sorted(p for p in Path(logdir).glob("*tfevents*") if p.is_file())


def rebuild(logdir: str | Path, rows) -> None:
    """Replace the event files in ``logdir`` with the events of ``rows`` (metrics.jsonl rows, in order).

    Why rebuild rather than cut: TensorBoard's own answer to a resume (a SessionLog START event that
    purges later steps) is honoured by some readers only, and it would purge the ``*_vs_tokens`` and
    ``*_vs_gflops`` tags, whose steps are tokens and FLOPs, not training steps. metrics.jsonl is the
    record of what the run kept, so the events are made from it. Wall times keep their spacing
    (``wall_s``), ending now. Crash-safe: the new file is written outside ``logdir`` and moved in
    before the old ones are removed, so a kill leaves duplicates for the next rebuild, never a loss.
    """
    logdir = Path(logdir)
    rows = list(rows)
    old = event_files(logdir)
    if rows:
        _write_beside(logdir, rows)
    for path in old:
        path.unlink()


def _write_beside(logdir: Path, rows: list[dict]) -> None:
    """Write ``rows`` into a new event file in ``logdir`` that appears there whole (or not at all)."""
    logdir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".tb-rebuild-", dir=logdir.parent))
    try:
        events = ScalarEvents(scratch)
        origin = time.time() - (rows[-1].get(rf.WALL_S) or 0.0) if rows else 0.0
        for row in rows:
            events.write_row(row, wall_time=origin + (row.get(rf.WALL_S) or 0.0))
        events.close()
        (made,) = event_files(scratch)
        # A name that sorts after every old file, so a reader that sees both reads the old ones first.
        os.replace(made, logdir / (made.name + ".rebuilt"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
