"""Runs as subprocesses of the launcher, spread over the visible GPUs one run per device.

With more parallel runs than GPUs the runs share devices round-robin, and each is told to take
only its share of the device's memory (JAX would otherwise preallocate 75% in every process).
The GPUs are listed without initialising JAX (``CUDA_VISIBLE_DEVICES``, else ``nvidia-smi``):
the launcher must not hold an accelerator its runs need.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import subprocess
import time

from scaling.rundir import now
from scaling.sweeps import child, state
from scaling.sweeps.planner import PlannedRun
from scaling.sweeps.status import is_alive

STOP_GRACE_S = 120.0  # a SIGTERMed run finishes its step and saves a checkpoint within this


def visible_gpus() -> list[str]:
    """GPU ids as ``CUDA_VISIBLE_DEVICES`` lists them (-1 and blanks dropped), else as ``nvidia-smi`` does;
    [] when neither says (no GPU, or nvidia-smi fails or takes over 20 s). Never initialises JAX."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            return []
        return [line.strip() for line in out.splitlines() if line.strip()]
    return []


class _Adopted:
    """A run an earlier launch started whose process is still alive: watched, not owned."""

    def __init__(self, run: PlannedRun, launch: dict):
        self.run, self.launch, self.pid = run, launch, launch["pid"]

    def poll(self) -> int | None:
        return None if is_alive(self.run, self.launch) else -1

    def send_signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)


def cpu_slots(parallel: int) -> list[frozenset[int]]:
    """The cores each of ``parallel`` concurrent CPU runs gets to itself: an equal share of the cores this
    process may use, or none (``[]``) when there are fewer cores than runs or only one run at a time.

    Why: a process of a tiny model cannot keep two cores busy, and two unpinned runs trip over each
    other's threads; on a 2-core VM two runs pinned one core each trained 1.7-1.9x as fast as one run,
    unpinned 1.35x (benchmarks/RESULTS.md).
    """
    cores = sorted(os.sched_getaffinity(0))
    if parallel < 2 or parallel > len(cores):
        return []
    per = len(cores) // parallel
    return [frozenset(cores[i * per:(i + 1) * per]) for i in range(parallel)]


class LocalExecutor:
    """Runs as child processes of this one, at most ``parallel`` at a time: one per GPU (round-robin
    when there are more runs than GPUs), or on CPUs each pinned to its own cores (``cpu_slots``).

    ``env`` is the environment every run starts with (``child.environment``); ``gpus`` the device
    ids to spread over ([] for CPU). The launcher drives it through ``start``, ``adopt``,
    ``active``, ``finished`` and ``stop``, as it does ``SlurmExecutor``.
    """

    name = "local"

    def __init__(self, parallel: int, env: dict[str, str], gpus: list[str]):
        self.capacity = parallel
        self.env = env
        self.gpus = gpus
        self.share = math.ceil(parallel / len(gpus)) if gpus else 1
        self.slots = [] if gpus else cpu_slots(parallel)
        self.slot_of: dict[str, frozenset[int]] = {}
        self.running: dict[str, tuple[PlannedRun, subprocess.Popen | _Adopted, str | None]] = {}

    def _pin(self, name: str, pid: int) -> None:
        """Pin a just-started run to a free slot's cores. The child is still starting Python, before JAX
        creates its threads, which inherit the affinity; a run that already ended is left alone."""
        free = [slot for slot in self.slots if slot not in self.slot_of.values()]
        if not free:
            return
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, free[0])
            self.slot_of[name] = free[0]

    def _device(self) -> str | None:
        if not self.gpus:
            return None
        load = {gpu: 0 for gpu in self.gpus}
        for _, _, gpu in self.running.values():
            if gpu in load:
                load[gpu] += 1
        return min(self.gpus, key=lambda gpu: load[gpu])

    def start(self, runs: list[tuple[PlannedRun, int]]) -> None:
        """Spawn each (run, attempt number) and record its pid, host and device in the run's launch record."""
        for run, attempt in runs:
            gpu = self._device()
            env = dict(self.env)
            if gpu is not None:
                env["CUDA_VISIBLE_DEVICES"] = gpu
                if self.share > 1:
                    env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.9 / self.share:.2f}"
            proc = child.spawn(run.run_dir, attempt, env)
            self._pin(run.name, proc.pid)
            state.update_launch(run.run_dir, executor=self.name, pid=proc.pid, host=state.hostname(), job_id=None,
                                device=gpu, attempt=attempt, started=now(), finished=None, exit_code=None)
            self.running[run.name] = (run, proc, gpu)

    def adopt(self, run: PlannedRun, launch: dict) -> bool:
        """Watch a run an earlier local launch started, if its process is still alive; True when adopted."""
        if launch.get("executor") != self.name or not is_alive(run, launch):
            return False
        self.running[run.name] = (run, _Adopted(run, launch), launch.get("device"))
        return True

    def active(self) -> int:
        """Runs started or adopted that have not been reported by ``finished`` yet."""
        return len(self.running)

    def finished(self) -> list[tuple[PlannedRun, int | None, str | None]]:
        """Runs whose process ended since the last call: (run, exit code or None if unknown, error)."""
        ended = []
        for name, (run, proc, _) in list(self.running.items()):
            code = proc.poll()
            if code is not None:
                del self.running[name]
                self.slot_of.pop(name, None)
                ended.append((run, code if isinstance(proc, subprocess.Popen) else None, None))
        return ended

    def stop(self) -> None:
        """SIGTERM every run (each saves a checkpoint and marks itself interrupted) and wait for them."""
        for _, proc, _ in self.running.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for _, proc, _ in self.running.values():
            try:
                proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
