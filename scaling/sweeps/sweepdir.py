"""The sweep directory ``<runs>/<sweep>/``: one launch at a time, and a record of what it holds.

Two launches of one sweep would start the same run twice, so a launch holds an exclusive lock on
``.launch.lock`` (``scaling.lockfile``: an flock the kernel drops when its holder dies, however it
dies, so a relaunch after a crash never finds a stale lock). The file is removed when the launch
ends, and ``status`` learns whether a launch is alive by trying to take the lock itself.

``sweep.json`` records the latest launch and every planned run with its tags, for readers that
have the runs directory but not the sweep file (an analysis on another machine); its ``updated``
is the time of the last write, which happens when a launch starts and when it ends.
"""

from __future__ import annotations

import json
from pathlib import Path

from scaling import lockfile
from scaling.rundir import now, write_json_atomic
from scaling.sweeps.spec import SweepError

LOCK = ".launch.lock"
RECORD = "sweep.json"


class SweepLock:
    """Held for a whole launch; on release it stamps ``sweep.json`` with when the launch ended."""

    def __init__(self, sweep_dir: Path):
        self.sweep_dir = Path(sweep_dir)
        self.path = self.sweep_dir / LOCK
        self._lock = lockfile.DirLock(self.path, f"sweep {self.sweep_dir}",
                                      "watch it with `scaling sweep status`")

    def __enter__(self) -> SweepLock:
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except lockfile.Locked as e:
            raise SweepError(str(e).replace(" is in use by ", ": another launch is running, ")) from None
        return self

    def __exit__(self, *exc) -> None:
        try:
            if (self.sweep_dir / RECORD).exists():
                write_record(self.sweep_dir, launch_ended=now())
        finally:
            self._lock.release()


def holder(sweep_dir: Path) -> int | None:
    """The pid of the live launch holding the sweep's lock, or None when no launch runs (-1: unknown pid)."""
    path = Path(sweep_dir) / LOCK
    if not lockfile.is_held(path):
        return None
    pid = lockfile.read_holder(path).get("pid")
    return pid if isinstance(pid, int) else -1


def write_record(sweep_dir: Path, **fields) -> None:
    """Merge ``fields`` into sweep.json and stamp ``updated`` with the current UTC time (atomic write)."""
    write_json_atomic(sweep_dir / RECORD, {**read_record(sweep_dir), **fields, "updated": now()})


def read_record(sweep_dir: Path) -> dict:
    """sweep.json's contents ({} when absent or unreadable)."""
    try:
        return json.loads((sweep_dir / RECORD).read_text())
    except (OSError, ValueError):
        return {}
