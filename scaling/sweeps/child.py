"""How one run's training process is started, the same way by the local launcher and inside a SLURM job.

Every run is a separate ``scaling train <run>/config.yaml`` process: a crash, a NaN or an
out-of-memory kill ends that process only, and the run directory records why.

Tiny models compile for longer than they train, so sweeps turn on JAX's persistent compilation
cache: runs of the same shapes (the same model at several budgets, a relaunch) load the compiled
step instead of compiling it again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from analysis import run_format
from scaling.sweeps import state

CACHE_VARIABLES = {
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",  # cache every compile: tiny ones are the ones repeated
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
}


def default_compile_cache() -> Path:
    """``$JAX_COMPILATION_CACHE_DIR`` if set, else next to the prepared datasets (``$SCALING_CACHE/jax``)."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return Path(os.environ["JAX_COMPILATION_CACHE_DIR"])
    from scaling.data.cache import cache_root

    return cache_root() / "jax"


def environment(compile_cache: Path | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment with the compilation cache set, or removed when ``None``."""
    env = {k: v for k, v in os.environ.items()
           if k not in CACHE_VARIABLES and k != "JAX_COMPILATION_CACHE_DIR"}
    if compile_cache is not None:
        env.update(CACHE_VARIABLES, JAX_COMPILATION_CACHE_DIR=str(compile_cache))
    env.update(extra or {})
    return env


def command(run_dir: Path) -> list[str]:
    """The argv that trains (or resumes) the run in ``run_dir``: ``<this python> -m scaling.cli train
    <run_dir>/config.yaml``."""
    return [sys.executable, "-m", "scaling.cli", "train", str(run_dir / run_format.CONFIG)]


def spawn(run_dir: Path, attempt: int, env: dict[str, str], blocked: tuple[signal.Signals, ...] = ()) -> subprocess.Popen:
    """Start the run. If the launcher dies the run carries on, and the next launch finds it alive and
    follows it instead of starting it twice (Ctrl-C reaches the whole process group and stops both).

    ``blocked`` signals never reach the training process: SLURM sends its time-limit signal to every
    process of a job, and the process that started this one turns it into SIGTERM (the trainer then
    saves and exits) instead of letting it kill the trainer before it saves. A blocked signal stays
    blocked across exec, so the trainer needs no code for it, and blocking (unlike ignoring, which
    needs code in the forked child) is set here, in this thread, only while the child is forked: a
    signal meant for this process in that moment is delivered as soon as it is unblocked.
    """
    stdout, stderr = state.open_logs(run_dir, attempt)
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, blocked) if blocked else None
    try:
        with stdout, stderr:
            return subprocess.Popen(command(run_dir), stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
                                    env=env)
    finally:
        if previous is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
