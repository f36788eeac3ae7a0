"""Sweeps through ``--executor slurm`` on a real one-node SLURM cluster: sbatch, squeue, sacct, scancel
and scontrol as users meet them, with jobs that are signalled, requeued, killed, and followed by a
launcher that is itself killed.

The cluster is the one ``tests/slurm/local_slurm.sh`` runs (Debian/Ubuntu, as root)::

    sudo tests/slurm/local_slurm.sh start --accounting
    pytest tests/test_slurm_real.py
    sudo tests/slurm/local_slurm.sh stop

When none is up and the tests run as root (or with password-less sudo) with the packages installed,
they start one themselves and stop it afterwards. They switch its accounting off and on (a few
seconds each), and hold jobs with ``scontrol suspend``, both as root. Anywhere else (a laptop, a
production cluster: these tests submit jobs and reconfigure SLURM) they are skipped, saying why. Each sweep has two runs of a tiny model
(``tiny_run_args``); the cluster holds a requeued job for 5 s rather than SLURM's default 120 s.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import scaling_cmd, tiny_run_args

from scaling.sweeps.state import latest_checkpoint

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).parent / "slurm" / "local_slurm.sh"
SCRIPT_ENV = {**os.environ, "SLURM_SKIP_APT": "1"}  # tests never install packages
LAUNCH_TIMEOUT_S = 240


def _as_root(argv: list[str]) -> list[str] | None:
    """``argv`` as root: directly when root, through password-less sudo otherwise, None when neither."""
    if os.geteuid() == 0:
        return argv
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return ["sudo", "-n", "--preserve-env=SLURM_SKIP_APT,SLURM_LOCAL_ROOT", *argv]
    return None


def _script(*args: str, root: bool = True) -> subprocess.CompletedProcess:
    argv = ["bash", str(SCRIPT), *args]
    argv = _as_root(argv) if root else argv
    if argv is None:
        pytest.skip(f"`tests/slurm/local_slurm.sh {args[0]}` takes root (or password-less sudo)")
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, env=SCRIPT_ENV)


class Cluster:
    """The one-node cluster, and switching its accounting (slurmdbd, hence sacct) on and off."""

    def __init__(self, accounting: bool):
        self.accounting = accounting

    def use_accounting(self, on: bool) -> None:
        if self.accounting == on:
            return
        proc = _script("start", *(["--accounting"] if on else []))  # skips where that takes a root it lacks
        if proc.returncode != 0 and "missing packages" in proc.stderr:
            pytest.skip(f"accounting needs packages not installed here: {proc.stderr.strip()}")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        self.accounting = on
        sacct = subprocess.run(["sacct", "--noheader", "--allocations"], capture_output=True, text=True)
        assert (sacct.returncode == 0) == on, sacct.stderr  # what the executor will meet


@pytest.fixture(scope="module")
def cluster():
    if not SCRIPT.exists() or not Path("/proc").is_dir():
        pytest.skip("the test cluster script needs bash and Linux")
    status = _script("status", root=False).stdout.strip()
    started_here = False
    if status.startswith("down"):
        if _as_root(["true"]) is None or not Path("/usr/sbin/slurmctld").exists():
            pytest.skip("no test SLURM cluster is running here; start one with "
                        "`sudo tests/slurm/local_slurm.sh start --accounting` (Debian/Ubuntu, root)")
        proc = _script("start")
        if proc.returncode != 0 and ("missing packages" in proc.stderr or "not written by" in proc.stderr):
            pytest.skip(f"cannot start the test SLURM cluster: {proc.stderr.strip()}")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        started_here, status = True, "up, accounting off"
    original = status.endswith("accounting on")
    c = Cluster(original)
    yield c
    if started_here:
        _script("stop")
    elif c.accounting != original:
        _script("start", *(["--accounting"] if original else []))


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("jax_cache")


class Sweep:
    """A 2-run sweep (seeds 0 and 1) of the tiny model, launched through SLURM as a user would."""

    def __init__(self, tmp_path: Path, data: Path, cache: Path, name: str, steps: int, checkpoint_every: int):
        self.name, self.steps = name, steps
        self.file, self.runs_dir = tmp_path / f"{name}.yaml", tmp_path / "runs"
        base = {"optim": {"lr": 3e-3, "schedule": "constant", "warmup_steps": 5, "grad_clip": 0.0},
                "train": {"steps": steps, "log_every": 1, "eval_every": 100_000, "eval_log_points": 0,
                          "checkpoint_every": checkpoint_every}}
        self.file.write_text(yaml.safe_dump({"name": name, "count": "total", "base": base,
                                             "axes": [{"grid": {"seed": [0, 1]}}], "slurm": {"timeout_min": 10}}))
        overrides = [a for a in tiny_run_args(data, self.runs_dir) if not a.startswith("runs_dir=")]
        self.launch_cmd = scaling_cmd("sweep", "launch", str(self.file), *overrides, "--runs-dir", str(self.runs_dir),
                                      "--executor", "slurm", "--parallel", "2", "--compile-cache", str(cache))
        self.status_cmd = scaling_cmd("sweep", "status", str(self.file), *overrides, "--runs-dir", str(self.runs_dir))
        self.env = {**os.environ, "JAX_PLATFORMS": "cpu"}  # sbatch hands the jobs this environment
        self.log = tmp_path / f"{name}-launches.log"

    def start(self) -> subprocess.Popen:
        with self.log.open("a") as log:
            return subprocess.Popen(self.launch_cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                    start_new_session=True)

    def finish(self, proc: subprocess.Popen) -> int:
        try:
            return proc.wait(timeout=LAUNCH_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError(f"the launch did not end in {LAUNCH_TIMEOUT_S} s:\n{self.output()}") from None

    def output(self) -> str:
        return self.log.read_text()

    def run_dirs(self) -> list[Path]:
        """Seed 0's run, then seed 1's."""
        dirs = [p for p in (self.runs_dir / self.name).iterdir() if (p / "config.yaml").exists()]
        return sorted(dirs, key=lambda p: yaml.safe_load((p / "config.yaml").read_text())["seed"])

    def status(self) -> str:
        proc = subprocess.run(self.status_cmd, capture_output=True, text=True, env=self.env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def statuses(self) -> dict[str, str]:
        """`scaling sweep status`: each run directory's name -> its status."""
        table = self.status()
        return {d.name: re.search(rf"^{d.name}\s+(\w+)", table, re.M).group(1) for d in self.run_dirs()}

    def jobs(self) -> list[str]:
        """Every job of this sweep slurmctld knows, finished ones included (kept for MinJobAge, 300 s)."""
        out = subprocess.run(["squeue", "--noheader", "--array", "--states=all", f"--name={self.name}",
                              "--format=%i"], capture_output=True, text=True, check=True).stdout
        return sorted(out.split())

    def cancel_leftovers(self) -> None:
        subprocess.run(["scancel", f"--name={self.name}"], capture_output=True)


@pytest.fixture
def sweep(tiny_data, tmp_path, cache, request):
    made = []

    def make(steps: int, checkpoint_every: int) -> Sweep:
        # SLURM keeps finished jobs for a while: a name of its own lets each test count only its jobs
        name = f"{re.sub(r'[^a-z]', '', request.node.name)[-24:]}{time.time_ns() % 10**9}"
        s = Sweep(tmp_path, tiny_data, cache, name, steps, checkpoint_every)
        made.append(s)
        return s

    yield make
    for s in made:
        s.cancel_leftovers()


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def steps_logged(run_dir: Path) -> list[int]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line)["step"] for line in path.read_text().splitlines()] if path.exists() else []


def wait_for(condition, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def wait_training(s: Sweep, proc: subprocess.Popen, rows: int) -> list[Path]:
    """Both runs' jobs are up and training: each has logged ``rows`` steps."""
    wait_for(lambda: (s.runs_dir / s.name).is_dir() and len(s.run_dirs()) == 2 or proc.poll() is not None,
             what="the run directories")
    wait_for(lambda: all(len(steps_logged(d)) >= rows for d in s.run_dirs()) or proc.poll() is not None,
             what=f"both runs to log {rows} steps")
    assert proc.poll() is None, f"the launch ended early:\n{s.output()}"
    return s.run_dirs()


def attempts(run_dir: Path) -> list[int]:
    return [int(n) for n in re.findall(r"=== scaling sweep: attempt (\d+) ", (run_dir / "stderr.log").read_text())]


def restarts(job_id: str) -> int:
    out = subprocess.run(["scontrol", "show", "job", "--oneliner", job_id], capture_output=True, text=True,
                         check=True).stdout
    return int(re.search(r"\bRestarts=(\d+)", out).group(1))


def assert_resumed_at_the_stop(s: Sweep, run_dir: Path) -> int:
    """The run finished after one stop: it saved at the step it was stopped at and resumed there."""
    info = read(run_dir / "run.json")
    assert info["status"] == "done", info
    stop = re.findall(r"stopped by SIGTERM at step (\d+)", (run_dir / "stderr.log").read_text())
    assert len(stop) == 1 and info["resumed_from"] == int(stop[0]) > 0, (stop, info.get("resumed_from"))
    assert attempts(run_dir) == [1, 2]
    assert steps_logged(run_dir) == list(range(1, s.steps + 1))  # each step once, in order
    return info["resumed_from"]


def assert_undisturbed(s: Sweep, run_dir: Path) -> None:
    info = read(run_dir / "run.json")
    assert info["status"] == "done" and info.get("resumed_from") is None and attempts(run_dir) == [1]
    assert steps_logged(run_dir) == list(range(1, s.steps + 1))


def test_the_time_limit_signal_stops_the_run_where_it_is_and_the_requeued_job_resumes_there(cluster, sweep):
    cluster.use_accounting(False)
    s = sweep(steps=1500, checkpoint_every=100_000)  # no periodic checkpoint: only the stop itself saves
    proc = s.start()
    signalled, other = wait_training(s, proc, rows=100)
    job = read(signalled / "launch.json")["job_id"]
    at_signal = steps_logged(signalled)[-1]
    # What SLURM does at --signal=USR2@90: USR2 to every process of the job's steps (the batch shell aside).
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    assert s.finish(proc) == 0, s.output()

    resumed = assert_resumed_at_the_stop(s, signalled)
    assert resumed >= at_signal
    assert_undisturbed(s, other)
    assert restarts(job) == 1 and s.jobs() == sorted({job, read(other / "launch.json")["job_id"]})
    # submitit caught it (in the job's own process) and requeued the job: SLURM counted one restart
    # above. (Its `scontrol requeue` is often killed by the very requeue it asked for, so submitit's
    # own "Requeued job" line may be missing.)
    submitit_log = (s.runs_dir / s.name / ".submitit" / f"{job}_0_log.out").read_text()
    assert "Caught signal SIGUSR2" in submitit_log
    assert "stopped" not in s.output() and "FAILED" not in s.output() and "killed" not in s.output()


@pytest.mark.parametrize("accounting", [False, True], ids=["no-accounting", "accounting"])
def test_a_relaunch_after_the_launcher_is_killed_follows_its_jobs_and_submits_nothing_twice(cluster, sweep,
                                                                                           accounting):
    cluster.use_accounting(accounting)
    suspend, resume = _as_root(["scontrol", "suspend"]), _as_root(["scontrol", "resume"])
    if suspend is None:
        pytest.skip("holds the jobs with `scontrol suspend`, which takes a SLURM operator (root here)")
    s = sweep(steps=1500, checkpoint_every=250)
    proc = s.start()
    run_dirs = wait_training(s, proc, rows=50)
    proc.kill()  # the launcher only; its jobs are SLURM's
    proc.wait()
    jobs = s.jobs()
    assert len(jobs) == 2
    # Held mid-training, so the relaunch meets them alive however fast this machine trains.
    subprocess.run([*suspend, ",".join(jobs)], check=True)
    assert set(s.statuses().values()) == {"running"}
    relaunch = s.start()
    wait_for(lambda: "2 still running from an earlier launch" in s.output() or relaunch.poll() is not None,
             what="the relaunch to take up the jobs")
    subprocess.run([*resume, ",".join(jobs)], check=True)
    assert s.finish(relaunch) == 0, s.output()
    assert "2 still running from an earlier launch" in s.output() and "start " not in s.output().split("earlier")[1]
    assert s.jobs() == jobs  # nothing submitted again
    for run_dir in run_dirs:
        assert_undisturbed(s, run_dir)
        assert read(run_dir / "launch.json")["job_id"] in jobs


def test_a_job_requeued_with_scontrol_is_followed_until_it_is_done(cluster, sweep):
    cluster.use_accounting(True)
    s = sweep(steps=1500, checkpoint_every=100_000)
    proc = s.start()
    requeued, other = wait_training(s, proc, rows=100)
    job = read(requeued / "launch.json")["job_id"]
    subprocess.run(["scontrol", "requeue", job], check=True)
    wait_for(lambda: "stopped by SIGTERM" in (requeued / "stderr.log").read_text(), what="the requeued run to stop")
    # Its first attempt's result file (exit 143) is there while SLURM holds the job: neither the
    # launcher nor `status` may take the run for finished.
    assert s.statuses()[requeued.name] == "running"
    assert s.finish(proc) == 0, s.output()

    assert_resumed_at_the_stop(s, requeued)
    assert_undisturbed(s, other)
    assert restarts(job) == 1 and len(s.jobs()) == 2
    assert f"done     {requeued.name}" in s.output() and "stopped" not in s.output() and "FAILED" not in s.output()


def test_a_job_killed_outright_is_reported_killed_and_restarted_from_its_checkpoint(cluster, sweep):
    cluster.use_accounting(False)
    s = sweep(steps=1000, checkpoint_every=100)
    proc = s.start()
    killed, other = wait_training(s, proc, rows=150)
    # past its first checkpoint, committed (an async save under load can land well after its step)
    wait_for(lambda: latest_checkpoint(killed) is not None or proc.poll() is not None, what="a checkpoint")
    assert proc.poll() is None, f"the launch ended early:\n{s.output()}"
    job = read(killed / "launch.json")["job_id"]
    # SIGKILL to every process of the job at once, as the OOM killer or a node's death would: nothing
    # gets to write anything. (`scancel --signal=KILL` would not do: SLURM makes it a cancel, SIGTERM first.)
    own_id = subprocess.run(["squeue", "--noheader", f"--jobs={job}", "--format=%A"], capture_output=True,
                            text=True, check=True).stdout.strip()  # listpids takes 34, not 33_0
    out = subprocess.run(["scontrol", "listpids", own_id], capture_output=True, text=True, check=True).stdout
    for pid in {int(line.split()[0]) for line in out.splitlines()[1:] if line.split()}:
        os.kill(pid, signal.SIGKILL)
    # The launch itself restarts a killed run (--max-restarts, default 2) from its checkpoint, as a new job.
    assert s.finish(proc) == 0, s.output()
    assert re.search(rf"killed   {killed.name}: the training process died with SLURM job {job}, which ended \w+ "
                     r"and left no result \(last checkpoint: step [1-9]00\); restarting", s.output()), s.output()
    info = read(killed / "run.json")
    assert info["status"] == "done" and info["resumed_from"] > 0 and info["resumed_from"] % 100 == 0
    assert [k["checkpoint_step"] for k in info["kills"]] == [info["resumed_from"]]
    assert steps_logged(killed) == list(range(1, s.steps + 1)) and len(s.jobs()) == 3
    assert s.statuses() == {killed.name: "done", other.name: "done"}
    assert_undisturbed(s, other)


def test_squeue_and_sacct_agree_on_job_states_and_sacct_failing_is_said_once(cluster, capsys):
    from scaling.sweeps import slurm_jobs

    cluster.use_accounting(True)
    out = subprocess.run(["sbatch", "--parsable", "--array=0-2%1", "--output=/dev/null", "--wrap=sleep 120"],
                         capture_output=True, text=True, check=True).stdout
    array = out.strip().split(";")[0]
    tasks = {f"{array}_{i}" for i in range(3)}
    try:
        wait_for(lambda: slurm_jobs.from_slurmctld(tasks).get(f"{array}_0") == "RUNNING", what="the first task to run")
        wait_for(lambda: slurm_jobs.from_accounting(tasks).get(f"{array}_0") == "RUNNING", timeout=30,
                 what="accounting to see it")  # slurmdbd is told asynchronously
        # the two sources, read independently, agree; sacct lists the waiting tasks as one range, 12_[1-2%1]
        expected = {f"{array}_0": "RUNNING", f"{array}_1": "PENDING", f"{array}_2": "PENDING"}
        assert slurm_jobs.from_slurmctld(tasks) == expected == slurm_jobs.from_accounting(tasks)
    finally:
        subprocess.run(["scancel", array], check=True)
    wait_for(lambda: set(slurm_jobs.from_slurmctld(tasks).values()) == {"CANCELLED"}, what="the cancel")
    assert not any(slurm_jobs.active(s) for s in slurm_jobs.query(tasks).values())
    assert slurm_jobs.query({"999999"}) == {"999999": None}  # no record anywhere
    assert capsys.readouterr().err == ""

    cluster.use_accounting(False)
    assert slurm_jobs.from_accounting(tasks) is None and slurm_jobs.from_accounting(tasks) is None
    assert slurm_jobs.query({"999999"}) == {"999999": None}
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 1 and "accounting storage is disabled" in warnings[0], warnings
