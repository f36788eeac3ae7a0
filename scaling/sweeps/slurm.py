"""Runs as SLURM array jobs through submitit (an optional extra: ``pip install -e ".[slurm]"``).

Each job runs one ``scaling train`` process. Before a time limit (or on preemption) SLURM sends
the job submitit's signal; submitit then calls ``TrainJob.checkpoint``, which stops the training
process with SIGTERM (it saves a checkpoint and exits) and hands back the job to requeue. The
requeued job starts the same command, which resumes from that checkpoint.

submitit pickles the job object into its own folder; it holds only paths and numbers.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

try:
    import submitit
except ImportError as e:  # pragma: no cover - depends on the installation
    raise ImportError("--executor slurm needs submitit: pip install -e \".[slurm]\"") from e

from scaling.rundir import now
from scaling.sweeps import child, state
from scaling.sweeps.planner import PlannedRun
from scaling.sweeps.spec import SweepError

STOP_GRACE_S = 120.0
_POLL_S = 1.0
_ACTIVE = {"RUNNING", "PENDING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED"}


class TrainJob(submitit.helpers.Checkpointable):
    """The callable a SLURM job runs: one training process, stopped cleanly when the job must end."""

    def __init__(self, run_dir: Path, attempt: int, compile_cache: Path | None):
        self.run_dir = Path(run_dir)
        self.attempt = attempt
        self.compile_cache = compile_cache
        self._process: subprocess.Popen | None = None

    def __call__(self) -> int:
        self._process = child.spawn(self.run_dir, self.attempt, child.environment(self.compile_cache))
        # Poll rather than block in wait(): submitit's signal handler calls checkpoint() in this
        # thread, and a blocking wait() would hold the lock that checkpoint() needs to wait.
        while (code := self._process.poll()) is None:
            time.sleep(_POLL_S)
        return code

    def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
        self.attempt += 1
        return super().checkpoint(*args, **kwargs)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_process"}

    def __setstate__(self, values: dict) -> None:
        self.__dict__.update(values, _process=None)


class SlurmExecutor:
    name = "slurm"
    capacity = None  # submit every ready run; SLURM (array_parallelism) decides how many run at once

    def __init__(self, folder: Path, parameters: dict, compile_cache: Path | None, parallel: int | None = None,
                 cluster: str = "slurm"):
        """``cluster="local"`` runs the same jobs through submitit's local executor (used by the tests)."""
        self.folder = Path(folder)
        self.cluster = cluster
        self.compile_cache = compile_cache
        try:
            self.executor = submitit.AutoExecutor(folder=self.folder, cluster=cluster)
        except RuntimeError as e:  # no srun/sbatch here
            raise SweepError(f"--executor slurm: {e}") from None
        params = dict(parameters)
        if parallel is not None:
            params.setdefault("slurm_array_parallelism", parallel)
        try:
            self.executor.update_parameters(**params)
        except (NameError, AssertionError, TypeError, ValueError) as e:
            raise SweepError(f"slurm parameters: {e}") from None
        self.running: dict[str, tuple[PlannedRun, submitit.Job]] = {}

    def start(self, runs: list[tuple[PlannedRun, int]]) -> None:
        try:
            jobs = self.executor.submit_array([TrainJob(run.run_dir, attempt, self.compile_cache)
                                               for run, attempt in runs])
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            raise SweepError(f"SLURM refused the jobs ({e}); jobs already submitted keep running, "
                             "relaunch to follow them") from None
        for (run, attempt), job in zip(runs, jobs, strict=True):
            state.update_launch(run.run_dir, executor=self.name, job_id=job.job_id, folder=str(self.folder),
                                pid=None, host=None, attempt=attempt, started=now(), finished=None, exit_code=None)
            self.running[run.name] = (run, job)

    def adopt(self, run: PlannedRun, launch: dict) -> bool:
        """Pick up a job an earlier launch submitted that SLURM still runs or queues."""
        if self.cluster != "slurm" or launch.get("executor") != self.name or not launch.get("job_id"):
            return False
        job = submitit.SlurmJob(folder=launch.get("folder") or self.folder, job_id=launch["job_id"])
        if job.state not in _ACTIVE:
            return False
        self.running[run.name] = (run, job)
        return True

    def active(self) -> int:
        return len(self.running)

    def finished(self) -> list[tuple[PlannedRun, int | None, str | None]]:
        ended = []
        for name, (run, job) in list(self.running.items()):
            if not job.done():
                continue
            del self.running[name]
            try:
                ended.append((run, job.result(), None))
            except Exception as e:  # submitit re-raises whatever ended the job, with its traceback
                ended.append((run, None, f"job {job.job_id}: {str(e).strip().splitlines()[-1] if str(e) else e!r}"))
        return ended

    def stop(self) -> None:
        """Jobs keep running without the launcher; the next launch picks them up."""
        print(f"{len(self.running)} SLURM jobs keep running; run the same launch again to follow them", flush=True)

