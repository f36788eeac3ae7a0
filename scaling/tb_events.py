"""Cut a run's TensorBoard event files back to a step, as metrics.jsonl is cut on resume.

A resumed run redoes the steps after its checkpoint, so without this TensorBoard would show them
twice. TensorBoard's own answer (a SessionLog START marker that readers may honour by purging
later steps) is left to each reader; rewriting the files makes every reader, including plain
event-file parsers, see each step once.

The rewrite is crash-safe in the sense that matters: the kept events are written to a temporary
file outside the log directory, which atomically replaces the first event file; only then are the
other files removed. A kill between those moments leaves duplicates of kept steps, which the next
call removes (events are deduplicated by step and tag), never a lost step.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.summary.writer.event_file_writer import EventFileWriter


def event_files(tb_dir: Path) -> list[Path]:
    """Event files in the order TensorBoard reads them (by name: creation time, then host)."""
    return sorted(p for p in Path(tb_dir).glob("*tfevents*") if p.is_file())


def truncate(tb_dir: Path, last_step: int) -> int:
    """Keep only events at steps <= ``last_step``, each (step, tag) once; returns how many were dropped."""
    files = event_files(tb_dir)
    if not files:
        return 0
    kept, seen, dropped = [], set(), 0
    for path in files:
        for event in EventFileLoader(str(path)).Load():
            if event.HasField("file_version"):
                continue  # the writer adds its own
            key = (event.step, tuple(v.tag for v in event.summary.value)) if event.HasField("summary") else None
            if event.step > last_step or (key is not None and key in seen):
                dropped += 1
                continue
            seen.add(key)
            kept.append(event)
    if not dropped:
        return 0
    if not kept:
        for path in files:
            path.unlink()
        return dropped
    scratch = Path(tempfile.mkdtemp(prefix=".tb-rewrite-", dir=Path(tb_dir).parent))
    try:
        writer = EventFileWriter(str(scratch))
        for event in kept:
            writer.add_event(event)
        writer.close()
        (rewritten,) = event_files(scratch)
        os.replace(rewritten, files[0])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for path in files[1:]:
        path.unlink()
    return dropped
