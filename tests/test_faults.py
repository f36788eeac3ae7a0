"""Locks that die with their holder, sweep records that move, TensorBoard cut back on resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from scaling import lockfile, tensorboard_log
from scaling.tensorboard_log import ScalarEvents
from scaling.sweeps import sweepdir
from scaling.sweeps.spec import SweepError

REPO = Path(__file__).resolve().parents[1]


def test_a_lock_refuses_a_second_holder_and_leaves_no_file(tmp_path):
    path = tmp_path / "run.lock"
    with lockfile.DirLock(path, "run x", "wait for it"):
        assert lockfile.is_held(path)
        with pytest.raises(lockfile.Locked, match=r"run x is in use by pid \d+ on host .*; wait for it"):
            lockfile.DirLock(path, "run x", "wait for it").acquire()
    assert not path.exists() and not lockfile.is_held(path)


def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path):
    path = tmp_path / "run.lock"
    code = ("import os, signal, sys; from scaling import lockfile\n"
            f"lockfile.DirLock({str(path)!r}, 'run x').acquire(); os.kill(os.getpid(), signal.SIGKILL)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={"PYTHONPATH": str(REPO)})
    assert proc.returncode == -signal.SIGKILL
    assert path.exists() and lockfile.read_holder(path)["pid"] > 0  # the file stays, its flock is gone
    with lockfile.DirLock(path, "run x"):
        assert lockfile.read_holder(path)["pid"] == os.getpid()


def test_a_finished_launch_leaves_no_lock_and_moves_updated(tmp_path):
    sweepdir.write_record(tmp_path, name="t", launched="then")
    first = json.loads((tmp_path / sweepdir.RECORD).read_text())["updated"]
    time.sleep(1.1)  # the record's times have one-second resolution
    with sweepdir.SweepLock(tmp_path):
        assert sweepdir.holder(tmp_path) is not None
        with pytest.raises(SweepError, match="another launch is running, pid"):
            sweepdir.SweepLock(tmp_path).__enter__()
    record = json.loads((tmp_path / sweepdir.RECORD).read_text())
    assert not (tmp_path / sweepdir.LOCK).exists() and sweepdir.holder(tmp_path) is None
    assert record["updated"] > first and record["launch_ended"] == record["updated"]


def _scalars(tb: Path, tag: str) -> list[tuple[int, float]]:
    events = EventAccumulator(str(tb), size_guidance={"scalars": 0}, purge_orphaned_data=False)
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def _row(step: int) -> dict:
    return {"step": step, "tokens": 100 * step, "flops": 1e11 * step, "train_loss": float(step), "wall_s": 0.5 * step}


def test_tensorboard_is_rebuilt_from_the_kept_metrics_rows(tmp_path):
    tb = tmp_path / "tb"
    for steps in (range(1, 9), range(4, 7)):  # a run that died at 8, and a resume from 3 that died at 6
        events = ScalarEvents(tb)
        for s in steps:
            events.write_row(_row(s))
        events.close()
        time.sleep(1.1)  # a new event file per second, as separate processes make them
    assert len(tensorboard_log.event_files(tb)) == 2
    tensorboard_log.rebuild(tb, [_row(s) for s in range(1, 6)])  # metrics.jsonl cut back to step 5
    assert len(tensorboard_log.event_files(tb)) == 1
    assert _scalars(tb, "train_loss") == [(s, float(s)) for s in range(1, 6)]
    # the tags whose x is tokens or FLOPs keep every kept row too (a purge by step would drop them)
    assert _scalars(tb, "train_loss_vs_tokens") == [(100 * s, float(s)) for s in range(1, 6)]
    assert _scalars(tb, "train_loss_vs_gflops") == [(100 * s, float(s)) for s in range(1, 6)]
    tensorboard_log.rebuild(tb, [])
    assert tensorboard_log.event_files(tb) == []


def test_evaluation_steps_take_no_memory_proportional_to_the_run():
    import tracemalloc

    from scaling.train import EvalSteps

    tracemalloc.start()
    steps = EvalSteps(10**9, 100, 8)
    used = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert used < 100_000
    assert 1 in steps and 100 in steps and 10**9 in steps and 101 not in steps and 0 not in steps
    assert sorted(s for s in range(1, 1001) if s in EvalSteps(1000, 300, 4)) == [1, 10, 100, 300, 600, 900, 1000]
