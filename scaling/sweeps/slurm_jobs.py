"""What SLURM itself says about the jobs a sweep submitted, read through its command-line tools.

slurmctld (``squeue``) is asked first: it holds every pending, running or requeued job and, for
``MinJobAge`` after one ends (300 s by default), its final state, and it is never behind. Accounting
(``sacct``) is asked only about the jobs slurmctld has forgotten: slurmdbd is fed asynchronously, so
it can lag a requeue, and on clusters without slurmdbd it does not work at all (a warning says so,
once per process). A job neither of them knows has no record in SLURM: its state is ``None``.

Job ids are submitit's: ``1234``, or ``1234_5`` for task 5 of array job 1234. This module needs
no submitit, so ``scaling sweep status`` works without it.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterable

# States after which SLURM will not run the job again by itself. Anything else it reports (PENDING,
# RUNNING, REQUEUED, COMPLETING, SUSPENDED, a hold, a state added by a later SLURM) counts as alive:
# a job that might still run must never be submitted a second time.
ENDED = frozenset({"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
                   "DEADLINE", "OUT_OF_MEMORY", "REVOKED"})
QUERY_EVERY_S = 5.0  # how stale an answer may be: one squeue per launcher per 5 s is light for slurmctld
_TIMEOUT_S = 60.0
_ARRAY_RANGE = re.compile(r"^(\d+)_\[([\d,\-]+)(?:%\d+)?\]$")  # sacct's pending array tasks: 12_[0-3,5%2]


class SlurmUnavailable(RuntimeError):
    """slurmctld did not answer: nothing can be said about any job (raised by :func:`query`)."""


def active(state: str | None) -> bool:
    """Whether a job in this state is queued, running, or going to run again (``None``: no record)."""
    return state is not None and state not in ENDED


_warned: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        print(f"warning: {message}", file=sys.stderr, flush=True)


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=_TIMEOUT_S)
    except FileNotFoundError:
        return subprocess.CompletedProcess(argv, 127, "", f"{argv[0]}: command not found")
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 124, "", f"{argv[0]} did not answer within {_TIMEOUT_S:.0f} s")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _expand(job_id: str) -> list[str]:
    """``12_[0-2,5%2]`` (how sacct lists array tasks that have not started) -> 12_0, 12_1, 12_2, 12_5."""
    match = _ARRAY_RANGE.match(job_id)
    if not match:
        return [job_id]
    ids = []
    for part in match.group(2).split(","):
        first, _, last = part.partition("-")
        ids += [f"{match.group(1)}_{i}" for i in range(int(first), int(last or first) + 1)]
    return ids


def _parse(out: str) -> dict[str, str]:
    states = {}
    for line in out.splitlines():
        job_id, _, state = line.strip().partition("|")
        if job_id and state and "." not in job_id:  # "12.batch", "12.0": steps, not jobs
            for one in _expand(job_id):
                states[one] = state.split()[0]  # sacct says "CANCELLED by 0"
    return states


def from_slurmctld(job_ids: set[str]) -> dict[str, str]:
    """States of the jobs slurmctld still holds; raises :class:`SlurmUnavailable` if it does not answer."""
    arrays = sorted({j.split("_")[0] for j in job_ids})
    proc = _run(["squeue", "--noheader", "--array", "--states=all", "--format=%i|%T", f"--jobs={','.join(arrays)}"])
    if proc.returncode != 0:
        if "Invalid job id" in proc.stderr:  # none of them is known any more
            return {}
        raise SlurmUnavailable(f"squeue failed: {_last_line(proc.stderr)}")
    return _parse(proc.stdout)


def from_accounting(job_ids: set[str]) -> dict[str, str] | None:
    """States of the jobs accounting recorded, or None where ``sacct`` does not work."""
    arrays = sorted({j.split("_")[0] for j in job_ids})
    proc = _run(["sacct", "--noheader", "--parsable2", "--allocations", "--format=JobID,State",
                 f"--jobs={','.join(arrays)}"])
    if proc.returncode != 0:
        _warn_once("sacct", f"SLURM accounting does not answer (sacct: {_last_line(proc.stderr)}); jobs that "
                   "slurmctld has forgotten are judged by the result files they left")
        return None
    return _parse(proc.stdout)


def query(job_ids: Iterable[str]) -> dict[str, str | None]:
    """SLURM's state for each job id (None: no record in slurmctld nor in accounting).

    Raises :class:`SlurmUnavailable` when slurmctld does not answer: then nothing is known.
    """
    wanted = {str(j) for j in job_ids}
    if not wanted:
        return {}
    states: dict[str, str | None] = dict.fromkeys(wanted)
    known = from_slurmctld(wanted)
    states.update({j: s for j, s in known.items() if j in wanted})
    forgotten = {j for j in wanted if states[j] is None}
    if forgotten and (recorded := from_accounting(forgotten)) is not None:
        states.update({j: s for j, s in recorded.items() if j in forgotten})
    return states


class Jobs:
    """:func:`query` for many callers, asked at most every ``every_s`` seconds for the same jobs.

    ``state`` returns ``"UNKNOWN"`` (alive, as far as anyone can tell) while slurmctld does not answer,
    after a warning, once.
    """

    def __init__(self, every_s: float = QUERY_EVERY_S):
        self.every_s = every_s
        self._states: dict[str, str | None] = {}
        self._asked_at = -float("inf")

    def refresh(self, job_ids: Iterable[str]) -> None:
        """Ask SLURM about these jobs (and every job last seen alive) unless it was asked just now."""
        wanted = {str(j) for j in job_ids}
        if not wanted:
            return
        if time.monotonic() - self._asked_at < self.every_s and wanted <= self._states.keys():
            return
        try:
            self._states.update(query(wanted | {j for j, s in self._states.items() if active(s)}))
        except SlurmUnavailable as e:
            _warn_once("squeue", f"{e}; SLURM jobs are taken to be alive until slurmctld answers")
            self._states.update(dict.fromkeys(wanted - self._states.keys(), "UNKNOWN"))
        self._asked_at = time.monotonic()

    def state(self, job_id: str) -> str | None:
        """SLURM's state of ``job_id`` (e.g. "RUNNING", "COMPLETED"; "UNKNOWN" while SLURM does not answer;
        None when SLURM has no record of it), refreshed at most every ``every_s`` seconds."""
        self.refresh([job_id])
        return self._states.get(str(job_id))


JOBS = Jobs()  # one per process: the launcher's executor and `status` share its answers
