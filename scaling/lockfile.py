"""An exclusive lock on a directory that dies with its holder: one run or one sweep launch at a time.

The lock is an ``flock`` on a small file that names its holder (pid, host, start time). The kernel
drops an flock when the holding process dies, however it dies (SIGKILL included), so a lock left
by a killed process never blocks the next one. The file is removed on release, so a finished run
or launch leaves nothing behind; since a waiter may have opened the file just before it was
removed, a process that wins the flock checks that the path still names the file it locked and
starts over if not (otherwise two processes could each hold a lock on a different file).
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
from pathlib import Path

from scaling.errors import UserError


class Locked(UserError):
    """Another live process holds the lock."""


def read_holder(path: Path) -> dict:
    """What the lock file says about its holder ({} if absent or unreadable)."""
    try:
        holder = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def describe(holder: dict) -> str:
    """A lock holder (as ``read_holder`` returns it) in words for an error message: "pid P on host H (since T)"."""
    if not holder:
        return "an unknown process"
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} (since {holder.get('since', '?')})"


def is_held(path: Path) -> bool:
    """Whether a live process holds the lock at ``path`` (tries to take it shared, and lets go)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


class DirLock:
    """``with DirLock(path, what):`` holds the lock file ``path``; a second holder gets ``Locked``."""

    def __init__(self, path: Path, what: str, hint: str = ""):
        self.path = Path(path)
        self.what = what  # "run runs/x/y", for the message
        self.hint = hint
        self.fd: int | None = None

    def acquire(self) -> DirLock:
        """Take the lock without waiting and write this process's pid, host and UTC start time into it.

        Returns self. Raises ``Locked`` (a UserError naming the holder, plus ``hint``) when another
        live process holds it.
        """
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise Locked(f"{self.what} is in use by {describe(read_holder(self.path))}"
                             + (f"; {self.hint}" if self.hint else "")) from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the previous holder removed the file after we opened it: lock the new one
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "since": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(holder).encode())
        self.fd = fd
        return self

    def release(self) -> None:
        """Remove the lock file and drop the lock; a no-op when not held."""
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still holding it, so no one locks a file about to vanish
        except OSError:
            pass  # a read-only directory: the stale file is harmless, the kernel drops the lock below
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> DirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
