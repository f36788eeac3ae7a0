"""The sweep directory ``<runs>/<sweep>/``: one launch at a time, and a record of what it holds.

Two launches of one sweep would start the same run twice, so a launch holds an exclusive
``flock`` on ``.launch.lock``. The kernel drops the lock when its holder dies, however it dies
(SIGKILL included), so a relaunch after a crash never finds a stale lock, and ``status`` learns
whether a launch is alive by trying to take the lock itself.

``sweep.json`` records the latest launch and every planned run with its tags, for readers that
have the runs directory but not the sweep file (an analysis on another machine).
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from scaling.rundir import now, write_json_atomic
from scaling.sweeps.spec import SweepError

LOCK = ".launch.lock"
RECORD = "sweep.json"


class SweepLock:
    def __init__(self, sweep_dir: Path):
        self.path = sweep_dir / LOCK
        self.fd: int | None = None

    def __enter__(self) -> SweepLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SweepError(f"another launch of this sweep is running (pid {holder(self.path.parent)}); "
                             "watch it with `scaling sweep status`") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock
            self.fd = None


def holder(sweep_dir: Path) -> int | None:
    """The pid of the live launch holding the sweep's lock, or None when no launch runs."""
    path = sweep_dir / LOCK
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        text = path.read_text().strip()
        return int(text) if text.isdigit() else -1
    else:
        return None
    finally:
        os.close(fd)


def write_record(sweep_dir: Path, **fields) -> None:
    write_json_atomic(sweep_dir / RECORD, {**read_record(sweep_dir), **fields, "updated": now()})


def read_record(sweep_dir: Path) -> dict:
    try:
        return json.loads((sweep_dir / RECORD).read_text())
    except (OSError, ValueError):
        return {}
