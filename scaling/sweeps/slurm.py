"""Runs as SLURM array jobs through submitit (an optional extra: ``pip install -e ".[slurm]"``).

Each job runs one ``scaling train`` process. Before a time limit (``--signal=USR2@90``, what submitit
asks for) or on preemption SLURM signals every process of the job step. The training process is
started with that signal blocked, so it never dies of it; submitit catches it in the job's own
process and calls ``TrainJob.checkpoint``, which stops the training process with SIGTERM (it saves
at the step it is on and exits) and hands back the job to requeue. The requeued job starts the same
command, which resumes from that step. ``scancel`` and ``scontrol requeue`` send SIGTERM to every
process, which the training process handles the same way.

The launcher follows jobs by what SLURM says about them (``slurm_jobs``), never by files alone:
a job SLURM lists as pending, running or requeued is alive, whatever result file an earlier attempt
of it left; a job that ended is read from its result file, which each attempt deletes when it starts,
so a result is always the latest attempt's; a job that ended without one was killed, and the
trainer's own record (run.json) says where it can resume.

submitit pickles the job object into its own folder; it holds only paths and numbers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

try:
    import submitit
except ImportError as e:  # pragma: no cover - depends on the installation
    raise ImportError("--executor slurm needs submitit: pip install -e \".[slurm]\"") from e

from analysis import run_format
from scaling.rundir import RunDir, now
from scaling.sweeps import child, slurm_jobs, state
from scaling.sweeps.planner import PlannedRun
from scaling.sweeps.spec import SweepError

STOP_GRACE_S = 120.0
_POLL_S = 1.0


class TrainJob(submitit.helpers.Checkpointable):
    """The callable a SLURM job runs: one training process, stopped cleanly when the job must end.

    ``attempt`` is the launcher's attempt number; every restart of the same job (a requeue by
    submitit or by anyone with ``scontrol requeue``) adds one, as SLURM counts them in
    ``SLURM_RESTART_COUNT``. submitit's local executor (tests without SLURM) has no such count, so
    there the requeues that ``checkpoint`` asked for are counted instead.
    """

    def __init__(self, run_dir: Path, attempt: int, compile_cache: Path | None):
        self.run_dir = Path(run_dir)
        self.attempt = attempt
        self.compile_cache = compile_cache
        self.checkpoints = 0
        self._process: subprocess.Popen | None = None

    def __call__(self) -> int:
        environment = submitit.JobEnvironment()
        # A result left by an earlier attempt of this job (requeued after it wrote one) must not be
        # taken for this attempt's: the launcher reads a result only once SLURM says the job ended.
        environment.paths.result_pickle.unlink(missing_ok=True)
        restarts = int(os.environ.get("SLURM_RESTART_COUNT", self.checkpoints))
        timeout_signal = signal.Signals["SIG" + environment.USR_SIG]
        self._process = child.spawn(self.run_dir, self.attempt + restarts,
                                    child.environment(self.compile_cache), blocked=(timeout_signal,))
        # Poll rather than block in wait(): submitit's signal handler calls checkpoint() in this
        # thread, and a blocking wait() would hold the lock that checkpoint() needs to wait.
        while (code := self._process.poll()) is None:
            time.sleep(_POLL_S)
        return code

    def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
        """submitit's hook on a time-limit or preemption signal: SIGTERM the training process, wait up to
        ``STOP_GRACE_S`` seconds for its checkpoint (then kill it), and return this job to requeue."""
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
        self.checkpoints += 1
        return super().checkpoint(*args, **kwargs)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_process"}

    def __setstate__(self, values: dict) -> None:
        self.__dict__.update(values, _process=None)


def _outcome(job: submitit.Job) -> tuple[int | None, str | None] | None:
    """(exit code of the training process, or of the job's own process if that raised; error or None)
    from the job's result file, or None if it left none."""
    path = job.paths.result_pickle
    if not path.exists():
        return None
    try:
        outcome, value = submitit.core.utils.pickle_load(path)
    except Exception:  # cut short: the job was killed while writing it, as good as none
        return None
    if outcome == "success":
        return value, None
    # The job's own process raised (it exits 1 with it): a failure with a known cause, not a kill.
    lines = str(value).strip().splitlines()  # submitit's traceback of what ended the job
    return 1, f"job {job.job_id}: {lines[-1] if lines else 'failed'}"


class SlurmExecutor:
    """Submits runs as a SLURM array of ``TrainJob`` through submitit and follows them by SLURM's own state.

    ``folder`` holds submitit's pickles and logs; ``parameters`` are submitit executor parameters
    (the sweep file's ``slurm`` mapping); ``parallel`` caps the array's parallelism. Raises
    SweepError when no SLURM is reachable or a parameter is invalid. The launcher drives it as it
    does ``LocalExecutor``.
    """

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
        """Submit (run, attempt number) pairs as one array and record each job id in the run's launch record.

        Raises SweepError when SLURM refuses the submission.
        """
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
        """Pick up a job an earlier launch submitted that SLURM still runs, queues or will requeue."""
        if self.cluster != "slurm" or launch.get("executor") != self.name or not launch.get("job_id"):
            return False
        if not slurm_jobs.active(slurm_jobs.JOBS.state(launch["job_id"])):
            return False
        job = submitit.SlurmJob(folder=launch.get("folder") or self.folder, job_id=launch["job_id"])
        self.running[run.name] = (run, job)
        return True

    def active(self) -> int:
        """Jobs submitted or adopted that have not been reported by ``finished`` yet."""
        return len(self.running)

    def _ended(self) -> dict[str, str | None]:
        """The jobs that ended since the last call, with SLURM's last word on each (None: no record)."""
        if self.cluster != "slurm":  # submitit's local executor: its job objects know
            return {name: "ENDED" for name, (_, job) in self.running.items() if job.done()}
        ids = {job.job_id for _, job in self.running.values()}
        slurm_jobs.JOBS.refresh(ids)
        states = {name: slurm_jobs.JOBS.state(job.job_id) for name, (_, job) in self.running.items()}
        return {name: s for name, s in states.items() if not slurm_jobs.active(s)}

    def finished(self) -> list[tuple[PlannedRun, int | None, str | None]]:
        """Runs whose job ended: (run, the training process's exit code or None, error or None).

        A job that ended without a result (killed with its job, or by SLURM) and whose run left no
        verdict of its own is recorded as killed (``state.record_kill``, naming SLURM's last state for
        it) and given as (run, None, None): resumable, never failed.
        """
        ended = []
        for name, slurm_state in self._ended().items():
            run, job = self.running.pop(name)
            outcome = _outcome(job)
            if outcome is None:
                outcome = None, None
                if RunDir(run.run_dir).read_run().get(run_format.STATUS) not in state.VERDICTS:
                    last = f"ended {slurm_state}" if slurm_state else "is no longer known to SLURM"
                    state.record_kill(run.run_dir, None, f"died with SLURM job {job.job_id}, which {last} "
                                                         "and left no result")
            ended.append((run, *outcome))
        return ended

    def stop(self) -> None:
        """Jobs keep running without the launcher; the next launch picks them up."""
        print(f"{len(self.running)} SLURM jobs keep running; run the same launch again to follow them", flush=True)

