"""What the launcher keeps in each run directory besides the trainer's files, and how it is read back.

- ``launch.json``: the launcher's record of the latest attempt: executor, pid and host (local) or job
  id (SLURM), attempt number, exit code, the tail of stderr. Only the process holding the sweep
  lock writes it, and the trainer never does, so the two never race on one file.
- ``stdout.log`` / ``stderr.log``: the training process's output, appended across attempts, each
  attempt opened by a header line so the tail of the latest one can be found.

``status`` reads these from another shell while a launch runs, so every write is atomic.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from scaling.rundir import now, write_json_atomic

LAUNCH = "launch.json"
STDOUT = "stdout.log"
STDERR = "stderr.log"
_HEADER = "=== scaling sweep: attempt "
_TAIL_BYTES = 64 << 10


def read_launch(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / LAUNCH).read_text())
    except (OSError, ValueError):
        return {}


def update_launch(run_dir: Path, **fields) -> dict:
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


def last_metrics(run_dir: Path) -> dict | None:
    """The newest complete row of metrics.jsonl, read from the end of the file."""
    for line in reversed(_tail_text(run_dir / "metrics.jsonl").splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


def hostname() -> str:
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
