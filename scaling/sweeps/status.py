"""The state of every planned run, read from its run directory: what `sweep status` and the launcher's
progress line show, and what a relaunch decides from.

A run is ``running`` while the process the launcher recorded for it is alive, whatever run.json
says yet: for a SLURM job, while SLURM lists it as pending, running or requeued (``slurm_jobs``).
``killed``: its process was ended from outside without a verdict of its own (launch.json holds the
record, see ``state.record_kill``; a SLURM job that SLURM no longer knows and that left no result is
one), or run.json still says ``running`` with no live process (it died with its launcher, and nobody
was left to record it). ``resumable``: it stopped itself cleanly on SIGTERM/SIGINT. The next launch
resumes both from their last checkpoint; ``failed`` runs only with --retry-failed.
"""

from __future__ import annotations

import dataclasses

from analysis import run_format
from scaling.rundir import RunDir
from scaling.sweeps import slurm_jobs, state
from scaling.sweeps.planner import PlannedRun

STATUSES = ("done", "running", "failed", "killed", "resumable", "pending", "blocked")


@dataclasses.dataclass(frozen=True)
class RunState:
    """What a run directory says about one planned run right now.

    ``status`` is one of ``STATUSES``; ``step`` the newest logged optimizer step (the final one
    when done); losses in nats/token (``eval_loss`` only once done); ``error`` and ``exit_code``
    from run.json and launch.json.
    """

    run: PlannedRun
    status: str
    step: int
    train_loss: float | None
    eval_loss: float | None
    error: str | None
    exit_code: int | None
    killed: dict | None = None  # launch.json's record of the kill (state.record_kill); None if not recorded yet
    gave_up: str | None = None  # why the launch stopped restarting it, when it did

    @property
    def trained_tokens(self) -> int:
        """Tokens this run has computed itself (a cooldown's steps before its branch are its stable run's)."""
        return max(0, self.step - (self.run.steps - self.run.trained_steps)) * self.run.tokens_per_step


def is_alive(run: PlannedRun, launch: dict) -> bool:
    """Whether the attempt ``launch`` (the run's launch.json) records still runs: its SLURM job is pending,
    running or requeued, or its local process lives on this host and still trains this run."""
    if launch.get("executor") == "slurm":
        return bool(launch.get("job_id")) and slurm_jobs.active(slurm_jobs.JOBS.state(launch["job_id"]))
    return state.process_alive(launch.get("pid"), launch.get("host"), str(run.run_dir / run_format.CONFIG))


def read(run: PlannedRun) -> RunState:
    """The run's state from its run.json, launch.json and last metrics row (see the module docstring).

    Raises UserError when run.json is damaged.
    """
    info = RunDir(run.run_dir).read_run()
    launch = state.read_launch(run.run_dir)
    status = info.get(run_format.STATUS) or "pending"
    if status not in ("done", "failed") and launch and is_alive(run, launch):
        status = "running"  # also a process that has not yet written run.json: never start it twice
    elif status not in ("done", "failed") and (launch.get("killed") or status == "running"):
        status = "killed"
    elif status == "interrupted":
        status = "resumable"
    row = RunDir(run.run_dir).last_metrics() if status != "pending" else None
    step = info.get(run_format.FINAL_STEP) if status == "done" else (row or {}).get(run_format.STEP, 0)
    return RunState(run, status, step or 0, (row or {}).get(run_format.TRAIN_LOSS),
                    info.get(run_format.FINAL_EVAL_LOSS) if status == "done" else None,
                    info.get(run_format.ERROR), launch.get("exit_code"),
                    launch.get("killed") if status == "killed" else None,
                    launch.get("gave_up") if status == "killed" else None)


def collect(runs: list[PlannedRun]) -> list[RunState]:
    """``read`` for every run (SLURM asked once for all of them); a pending cooldown whose stable run
    failed is ``blocked``. Same order as ``runs``."""
    launches = [state.read_launch(r.run_dir) for r in runs]
    if job_ids := [x["job_id"] for x in launches if x.get("executor") == "slurm" and x.get("job_id")]:
        slurm_jobs.JOBS.refresh(job_ids)  # one question to SLURM for the whole sweep
    states = [read(r) for r in runs]
    failed = {s.run.name for s in states if s.status == "failed"}
    return [dataclasses.replace(s, status="blocked", error=f"its stable run {s.run.after[0]} failed")
            if s.status == "pending" and s.run.after and s.run.after[0] in failed else s for s in states]


def counts(states: list[RunState]) -> dict[str, int]:
    """How many runs are in each of ``STATUSES`` (every status present, zeros included)."""
    return {name: sum(s.status == name for s in states) for name in STATUSES}
