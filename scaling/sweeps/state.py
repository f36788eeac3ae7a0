"""What the launcher keeps in each run directory besides the trainer's files, and how it is read back.

- ``launch.json``: the launcher's record of the latest attempt: executor, pid and host (local) or job
  id (SLURM), attempt number, exit code, the tail of stderr, and ``killed`` when the attempt was
  ended from outside (see ``record_kill``). Only the process holding the sweep lock writes it, and
  the trainer never does, so the two never race on one file.
- ``stdout.log`` / ``stderr.log``: the training process's output, appended across attempts, each
  attempt opened by a header line so the tail of the latest one can be found.

``status`` reads these from another shell while a launch runs, so every write is atomic.

Killed versus failed, for every executor: a run whose process ends with the run's own verdict in
run.json (``done``, ``failed``, or ``interrupted`` after a SIGTERM/SIGINT it handled) is what it says.
A process that ends without one (killed by a signal it did not handle, or gone with no exit status
at all: an adopted pid that vanished, a job the scheduler no longer knows) was ended from outside:
``record_kill`` marks it ``killed`` in launch.json and run.json, and a relaunch resumes it from its
last checkpoint. Signals that report a crash of the process itself (``CRASH_SIGNALS``: a segfault, an
abort) are the run's own failure, not a kill.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import socket
from pathlib import Path

from analysis import run_format
from scaling.rundir import RunDir, now, write_json_atomic

LAUNCH, STDOUT, STDERR = run_format.LAUNCH, run_format.STDOUT, run_format.STDERR
_HEADER = "=== scaling sweep: attempt "
_TAIL_BYTES = 64 << 10

# What a run writes into run.json itself when it ends: its own verdict, never overwritten by a kill record.
VERDICTS = frozenset({run_format.DONE, "failed", "interrupted"})
# run.json says ``killed`` (resumable from its checkpoint, like ``interrupted``); ``kills`` keeps every kill.
KILLED_RUN_STATUS = "killed"
# Signals a process raises on itself when it crashes (a fault, an abort from a failed check): a bug or
# a bad config repeats them on every attempt, so they make a run failed, never killed.
CRASH_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT,
                           signal.SIGSYS, signal.SIGTRAP})


def read_launch(run_dir: Path) -> dict:
    """The run's launch.json ({} when absent or unreadable: a run never launched)."""
    try:
        return json.loads((run_dir / LAUNCH).read_text())
    except (OSError, ValueError):
        return {}


def update_launch(run_dir: Path, **fields) -> dict:
    """Merge ``fields`` into launch.json (written atomically, the directory created if need be); returns the record."""
    record = {**read_launch(run_dir), **fields}
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / LAUNCH, record)
    return record


def open_logs(run_dir: Path, attempt: int):
    """Both log files, opened for appending, each starting with this attempt's header."""
    files = []
    for name in (STDOUT, STDERR):
        f = (run_dir / name).open("ab")
        f.write(f"\n{_HEADER}{attempt} at {now()} ===\n".encode())
        f.flush()
        files.append(f)
    return files


def _tail_text(path: Path) -> str:
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - _TAIL_BYTES))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def stderr_tail(run_dir: Path, lines: int = 20) -> list[str]:
    """The last lines of the latest attempt's stderr (progress-bar carriage returns folded)."""
    text = _tail_text(run_dir / STDERR)
    text = text.rsplit(_HEADER, 1)[-1].split("\n", 1)[-1] if _HEADER in text else text
    kept = [line.rsplit("\r", 1)[-1] for line in text.splitlines()]
    return [line for line in kept if line.strip()][-lines:]


def latest_checkpoint(run_dir: Path) -> int | None:
    """The newest finished checkpoint's step, or None. Orbax writes a step under a temporary name and
    renames it to the bare step number when complete, so a save cut short is never counted."""
    try:
        return max((int(p.name) for p in (run_dir / run_format.CHECKPOINTS).iterdir() if p.name.isdigit()), default=None)
    except OSError:
        return None


def last_sign_of_life(run_dir: Path) -> str | None:
    """When the run last wrote a metrics row or a line of output (ISO time, UTC), or None: the best
    estimate of when a process that vanished unwatched died."""
    times = [p.stat().st_mtime for p in (run_dir / run_format.METRICS, run_dir / STDOUT, run_dir / STDERR) if p.exists()]
    if not times:
        return None
    return datetime.datetime.fromtimestamp(max(times), datetime.timezone.utc).isoformat(timespec="seconds")


def exit_signal(code: int | None) -> str | None:
    """The signal that ended a process, from its exit code (negative: ``Popen``'s convention), or None."""
    if code is None or code >= 0:
        return None
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def is_crash(code: int | None) -> bool:
    """Whether an exit code says the process crashed by itself (``CRASH_SIGNALS``)."""
    return code is not None and code < 0 and -code in CRASH_SIGNALS


def record_kill(run_dir: Path, signal_name: str | None, how: str, at: str | None = None) -> dict:
    """Record that the run's latest attempt was ended from outside, without a verdict of its own.

    ``signal_name`` is the signal's name (``"SIGKILL"``) or None when unknown (the process vanished);
    ``how`` one line for people (``"was killed by SIGKILL"``); ``at`` an ISO time (default: now).
    Writes ``killed`` = {signal, checkpoint_step, at, attempt, how} into launch.json, and into
    run.json status ``killed`` (resumable), an ``error`` line and the record appended to the
    run's ``kills`` (kept across attempts: a finished run shows how often it was killed). Call it
    only when no process of the run is alive and the attempt left no verdict of its own in run.json
    (``done``, ``failed``, ``interrupted``). Returns the record.
    """
    rd = RunDir(run_dir)
    step = latest_checkpoint(run_dir)
    record = {"signal": signal_name, "checkpoint_step": step, "at": at or now(),
              "attempt": read_launch(run_dir).get("attempt"), "how": how}
    update_launch(run_dir, killed=record)
    where = f"its last checkpoint, step {step}" if step is not None else "the start (no checkpoint yet)"
    rd.update_run(status=KILLED_RUN_STATUS, kills=[*(rd.read_run().get(run_format.KILLS) or []), record], finished=record["at"],
                  error=f"killed from outside: the training process {how}; a relaunch resumes it from {where}")
    return record


def hostname() -> str:
    """This machine's host name, as recorded beside a local run's pid (a pid means nothing on another host)."""
    return socket.gethostname()


def process_alive(pid: int | None, host: str | None, marker: str) -> bool:
    """Whether a process recorded on this host still runs and is still ours (``marker`` in its
    command line, where /proc can tell: a recycled pid belongs to somebody else)."""
    if not pid or host != hostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        try:
            return marker in cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return False
    return True
