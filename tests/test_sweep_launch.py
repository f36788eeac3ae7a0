"""Launching sweeps end to end: failures, kills, retries, a killed launcher, SLURM requeues and WSD branches.

Each test trains a handful of 2-layer d=32 models for tens to hundreds of steps in subprocesses,
sharing one compilation cache so only the first run of each shape compiles.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from conftest import scaling_cmd
from scaling import cli
from scaling.sweeps import launcher, planner, spec, state

pytestmark = pytest.mark.slow

TOKENS_PER_STEP = 8 * 32


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("jax_cache")


@pytest.fixture(autouse=True)
def cpu_only(monkeypatch):
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")


def write_sweep(path: Path, data: Path, axes: list, **train) -> Path:
    base = {"data": {"path": str(data), "eval_batches": 2},
            "model": {"n_layer": 2, "d_model": 32, "n_head": 2, "seq_len": 32},
            "optim": {"lr": 3e-3, "schedule": "constant", "warmup_steps": 5, "grad_clip": 0.0},
            "train": {"batch_size": 8, "log_every": 1, "eval_every": 10_000, "eval_log_points": 0,
                      "checkpoint_every": 10, "progress": False, **train}}
    path.write_text(yaml.safe_dump({"name": "t", "count": "total", "base": base, "axes": axes}))
    return path


def launch_args(sweep: Path, runs: Path, cache: Path, *extra: str) -> list[str]:
    return ["sweep", "launch", str(sweep), "--runs-dir", str(runs), "--parallel", "2", "--compile-cache", str(cache),
            *extra]


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def checkpoint_steps(run_dir: Path) -> list[int]:
    ckpts = run_dir / "checkpoints"
    return sorted(int(p.name) for p in ckpts.iterdir() if p.name.isdigit()) if ckpts.is_dir() else []


def wait_for(condition, timeout: float = 120, what: str = "a condition") -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_failed_run_never_stops_the_others_and_is_retried_only_when_asked(tiny_data, tmp_path, cache, capsys):
    sweep = write_sweep(tmp_path / "s.yaml", tiny_data, [{"grid": {"optim.lr": [3e-3, 1e-3, 1.0e+37]}}], steps=30)
    runs = tmp_path / "runs"
    args = launch_args(sweep, runs, cache)
    assert cli.main(args) == 1
    out = capsys.readouterr().out
    by_lr = {r.cfg.optim.lr: r for r in planner.plan(spec.load(sweep), runs).runs}
    good, bad = [by_lr[3e-3], by_lr[1e-3]], by_lr[1e37]
    assert all(read(r.run_dir / "run.json")["status"] == "done" for r in good)
    info, record = read(bad.run_dir / "run.json"), read(bad.run_dir / "launch.json")
    assert info["status"] == "failed" and "non-finite" in info["error"]
    assert record["exit_code"] == 1 and any("non-finite" in line for line in record["stderr_tail"])
    assert "non-finite" in (bad.run_dir / "stderr.log").read_text()
    assert f"FAILED   {bad.name}" in out and any(cache.iterdir())  # compiled steps were cached
    assert read(runs / "t" / "sweep.json")["runs"][bad.name] == {"optim.lr": 1e37}

    assert cli.main(["sweep", "status", str(sweep), "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "2/3 done" in out and "1 failed" in out and "non-finite" in out and "no launch is running" in out

    finished = {r.name: (r.run_dir / "metrics.jsonl").stat().st_mtime_ns for r in good}
    assert cli.main(args) == 1  # unchanged: nothing runs, the failure stays recorded
    out = capsys.readouterr().out
    assert "0 to run" in out and "1 failed (not retried" in out and "start" not in out

    assert cli.main(args + ["--retry-failed"]) == 1  # retried, and fails again: the value is still bad
    assert "attempt 2" in capsys.readouterr().out and read(bad.run_dir / "launch.json")["attempt"] == 2

    write_sweep(sweep, tiny_data, [{"grid": {"optim.lr": [3e-3, 1e-3, 1.0e-2]}}], steps=30)  # the value fixed
    assert cli.main(args + ["--retry-failed"]) == 0
    out = capsys.readouterr().out
    fixed = {r.cfg.optim.lr: r for r in planner.plan(spec.load(sweep), runs).runs}[1e-2]
    assert read(fixed.run_dir / "run.json")["status"] == "done" and out.count("start ") == 1
    assert {r.name: (r.run_dir / "metrics.jsonl").stat().st_mtime_ns for r in good} == finished

    assert cli.main(args) == 0
    assert "start" not in capsys.readouterr().out


def test_a_killed_launch_resumes_every_run_from_its_checkpoint(tiny_data, tmp_path, cache, capsys):
    steps = 400
    sweep = write_sweep(tmp_path / "s.yaml", tiny_data, [{"grid": {"seed": [0, 1, 2]}}], steps=steps,
                        checkpoint_every=25)
    runs = tmp_path / "runs"
    plan = planner.plan(spec.load(sweep), runs)
    proc = subprocess.Popen(scaling_cmd(*launch_args(sweep, runs, cache)), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        wait_for(lambda: any(checkpoint_steps(r.run_dir) for r in plan.runs) or proc.poll() is not None,
                 what="a checkpoint")
        assert proc.poll() is None, proc.stdout.read()
        assert cli.main(["sweep", "status", str(sweep), "--runs-dir", str(runs)]) == 0  # from another "shell"
        out = capsys.readouterr().out
        assert f"a launch is running (pid {proc.pid})" in out and "running" in out
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and the runs it started, with no warning
        proc.wait()
    pids = [read(r.run_dir / "launch.json")["pid"] for r in plan.runs if (r.run_dir / "launch.json").exists()]
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() and b"scaling" in Path(f"/proc/{pid}/cmdline").read_bytes()
                             for pid in pids), timeout=30, what="the killed runs to disappear")
    before = {r.name: checkpoint_steps(r.run_dir) for r in plan.runs}
    assert any(before.values()) and not all(read(r.run_dir / "run.json").get("status") == "done" for r in plan.runs)

    assert cli.main(["sweep", "status", str(sweep), "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "killed (signal unknown: its process vanished)" in out and "no launch is running" in out

    assert cli.main(launch_args(sweep, runs, cache)) == 0
    assert "killed earlier: resumed from their checkpoints" in capsys.readouterr().out
    for run in plan.runs:
        info = read(run.run_dir / "run.json")
        assert info["status"] == "done"
        assert [row["step"] for row in metrics(run.run_dir)] == list(range(1, steps + 1))  # none twice
        if before[run.name] and max(before[run.name]) < steps:
            assert info["resumed_from"] in before[run.name]  # not step 0
            (kill,) = info["kills"]  # recorded by the relaunch: nobody was left to see it die
            assert kill["signal"] is None and kill["checkpoint_step"] == max(before[run.name])


# Stand-ins for the training process, each ending one way (argv[1] is the run's config.yaml, as for
# the trainer, so the launcher recognises the process as the run's).
ENDINGS = {
    "its own failure": "RunDir(run).update_run(status='failed', error='non-finite loss at step 3'); sys.exit(1)",
    "its own stop": "RunDir(run).update_run(status='interrupted', error='stopped by SIGTERM'); sys.exit(143)",
    "a crash": "os.kill(os.getpid(), signal.SIGSEGV)",
    "an exit without a verdict": "sys.exit(2)",
    "the OOM killer": "os.kill(os.getpid(), signal.SIGKILL)",
    "a SIGTERM before the handler": "os.kill(os.getpid(), signal.SIGTERM)",
    "done": "RunDir(run).update_run(status='done')",
}


def test_how_a_process_ends_decides_between_failed_killed_and_stopped(tiny_data, tmp_path, monkeypatch):
    from scaling.sweeps import child, status
    from scaling.sweeps.local import LocalExecutor

    sweep = write_sweep(tmp_path / "s.yaml", tiny_data, [{"grid": {"seed": list(range(len(ENDINGS)))}}], steps=10)
    plan = planner.plan(spec.load(sweep), tmp_path / "runs")
    ending = {run.name: script for run, script in zip(plan.runs, ENDINGS.values(), strict=True)}
    prelude = "import os, signal, sys; from pathlib import Path; from scaling.rundir import RunDir; "
    monkeypatch.setattr(child, "command", lambda run_dir: [
        sys.executable, "-c", prelude + "run = Path(sys.argv[1]).parent; " + ending[run_dir.name],
        str(run_dir / "config.yaml")])
    out = io.StringIO()
    assert launcher.launch(plan, LocalExecutor(len(ENDINGS), dict(os.environ), []), out=out, max_restarts=1) == 1
    got = {how: s for how, s in zip(ENDINGS, status.collect(plan.runs), strict=True)}
    assert {how: s.status for how, s in got.items()} == {
        "its own failure": "failed", "its own stop": "resumable", "a crash": "failed",
        "an exit without a verdict": "failed", "the OOM killer": "killed",
        "a SIGTERM before the handler": "killed", "done": "done"}
    assert "crashed with SIGSEGV" in got["a crash"].error and "code 2" in got["an exit without a verdict"].error
    assert got["its own failure"].error == "non-finite loss at step 3"  # the run's verdict, kept as it said
    for how in ("the OOM killer", "a SIGTERM before the handler"):  # restarted once, then given up
        name = got[how].run.name
        signal_name = "SIGKILL" if how == "the OOM killer" else "SIGTERM"
        assert got[how].killed["signal"] == signal_name and got[how].killed["checkpoint_step"] is None
        assert got[how].gave_up.startswith(
            f"gave up on {name}: killed 2 times before its first checkpoint ({signal_name} each time)")
        assert read(got[how].run.run_dir / "launch.json")["attempt"] == 2
    for how in ("its own failure", "a crash", "an exit without a verdict", "its own stop"):
        assert read(got[how].run.run_dir / "launch.json")["attempt"] == 1  # none of these is restarted
        assert "kills" not in read(got[how].run.run_dir / "run.json")


class KillAtCheckpoint(threading.Thread):
    """Plays the OOM killer for one run: SIGKILLs its training process whenever one is alive and the
    run has a checkpoint. After the first kill every attempt dies while starting, so at the same step."""

    def __init__(self, run_dir: Path, most: int = 5):
        super().__init__(daemon=True)
        self.run_dir, self.most, self.stopped, self.killed = run_dir, most, threading.Event(), []

    def run(self) -> None:
        marker = str(self.run_dir / "config.yaml")
        while not self.stopped.is_set() and len(self.killed) < self.most:  # a launcher that never gives up ends
            launch = state.read_launch(self.run_dir)
            pid = launch.get("pid")
            if (state.latest_checkpoint(self.run_dir) is not None and pid not in self.killed
                    and state.process_alive(pid, launch.get("host"), marker)):
                os.kill(pid, signal.SIGKILL)
                self.killed.append(pid)
            time.sleep(0.02)


def test_a_run_killed_at_one_step_is_given_up_and_a_run_that_fails_is_not_killed(tiny_data, tmp_path, cache, capsys):
    steps = 60
    sweep = write_sweep(tmp_path / "s.yaml", tiny_data, [{"grid": {"optim.lr": [3e-3, 2e-3, 1.0e+37]}}], steps=steps)
    runs = tmp_path / "runs"
    by_lr = {r.cfg.optim.lr: r for r in planner.plan(spec.load(sweep), runs).runs}
    victim, good, bad = by_lr[3e-3], by_lr[2e-3], by_lr[1e37]
    killer = KillAtCheckpoint(victim.run_dir)
    killer.start()
    try:
        assert cli.main(launch_args(sweep, runs, cache, "--max-restarts", "1")) == 1
    finally:
        killer.stopped.set()
        killer.join()
    out = capsys.readouterr().out
    assert len(killer.killed) == 2  # the first attempt and one restart, then it is given up
    info, record = read(victim.run_dir / "run.json"), read(victim.run_dir / "launch.json")
    step = record["killed"]["checkpoint_step"]
    assert step in (10, 20, 30, 40, 50) and [k["checkpoint_step"] for k in info["kills"]] == [step, step]
    assert [k["signal"] for k in info["kills"]] == ["SIGKILL", "SIGKILL"] and all(k["at"] for k in info["kills"])
    assert info["status"] == "killed" and "SIGKILL" in info["error"]
    assert record["attempt"] == 2 and record["restarts"] == 1 and record["exit_code"] == -signal.SIGKILL
    assert "restarting it from there (restart 1 of 1 from this point)" in out
    assert (f"GAVE UP  gave up on {victim.name}: killed 2 times from checkpoint step {step} (SIGKILL each time)"
            in out) and record["gave_up"] in out
    assert read(good.run_dir / "run.json")["status"] == "done"  # the sweep went on with the others
    bad_info = read(bad.run_dir / "run.json")
    assert bad_info["status"] == "failed" and "non-finite" in bad_info["error"] and "kills" not in bad_info
    assert f"FAILED   {bad.name}" in out and read(bad.run_dir / "launch.json").get("killed") is None

    assert cli.main(["sweep", "status", str(sweep), "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith((victim.name, bad.name))}
    assert rows[victim.name].split()[1] == "killed" and f"resumes it from step {step}; its launch gave up" in rows[
        victim.name]
    assert rows[bad.name].split()[1] == "failed"
    assert "1/3 done, 0 running, 1 failed, 1 killed" in out

    assert cli.main(launch_args(sweep, runs, cache)) == 1  # plain: resumes the killed run, not the failed one
    out = capsys.readouterr().out
    assert "1 to run (1 killed earlier" in out and "1 failed (not retried" in out and f"start    {bad.name}" not in out
    info = read(victim.run_dir / "run.json")
    assert info["status"] == "done" and info["resumed_from"] == step and len(info["kills"]) == 2
    assert [row["step"] for row in metrics(victim.run_dir)] == list(range(1, steps + 1))
    assert read(bad.run_dir / "launch.json")["attempt"] == 1


def test_runs_outliving_a_killed_launcher_are_followed_not_started_twice(tiny_data, tmp_path, cache, capsys):
    steps = 800  # long enough to still be running when the relaunch looks
    sweep = write_sweep(tmp_path / "s.yaml", tiny_data, [{"grid": {"seed": [0, 1]}}], steps=steps)
    runs = tmp_path / "runs"
    plan = planner.plan(spec.load(sweep), runs)
    proc = subprocess.Popen(scaling_cmd(*launch_args(sweep, runs, cache)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT, start_new_session=True)
    wait_for(lambda: all(checkpoint_steps(r.run_dir) for r in plan.runs), what="both runs to checkpoint")
    proc.kill()  # the launcher only: its runs carry on
    proc.wait()
    assert cli.main(launch_args(sweep, runs, cache)) == 0
    assert "2 still running from an earlier launch" in capsys.readouterr().out
    for run in plan.runs:
        assert read(run.run_dir / "launch.json")["attempt"] == 1 and read(run.run_dir / "run.json")["status"] == "done"
        assert [row["step"] for row in metrics(run.run_dir)] == list(range(1, steps + 1))


def _job_processes(config_path: Path) -> list[int]:
    """This run's `scaling train` process and the submitit worker that started it: what SLURM signals."""
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(config_path).encode() in (proc / "cmdline").read_bytes():
                status = (proc / "status").read_text()
                return [int(proc.name), int(next(line.split()[1] for line in status.splitlines()
                                                 if line.startswith("PPid:")))]
        except OSError:
            continue
    return []


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the job's process through /proc")
def test_slurm_jobs_requeue_on_timeout_and_resume_from_their_checkpoint(tiny_data, tmp_path, cache):
    pytest.importorskip("submitit")
    from scaling.sweeps.slurm import SlurmExecutor

    steps = 300
    sweep = write_sweep(tmp_path / "s.yaml", tiny_data, [{"grid": {"seed": [0]}}], steps=steps, checkpoint_every=20)
    plan = planner.plan(spec.load(sweep), tmp_path / "runs")
    (run,) = plan.runs
    executor = SlurmExecutor(plan.sweep_dir / ".submitit", {"timeout_min": 10}, cache, cluster="local")
    signalled: list[int] = []

    def play_slurm():
        """Near a job's time limit SLURM sends submitit's signal (USR2) to every process of the job: do that
        after a checkpoint (tests/test_slurm_real.py does it with a real SLURM)."""
        wait_for(lambda: checkpoint_steps(run.run_dir), what="a checkpoint")
        processes = _job_processes(run.run_dir / "config.yaml")
        signalled.append(max(checkpoint_steps(run.run_dir)))
        for pid in processes:
            os.kill(pid, signal.SIGUSR2)

    thread = threading.Thread(target=play_slurm, daemon=True)
    thread.start()
    out = io.StringIO()
    assert launcher.launch(plan, executor, out=out) == 0, out.getvalue()
    thread.join(timeout=5)
    info = read(run.run_dir / "run.json")
    assert signalled and info["status"] == "done" and info["resumed_from"] >= signalled[0] > 0
    log = (run.run_dir / "stderr.log").read_text()
    assert "attempt 2" in log  # the requeued job
    # the training process lived through USR2 and saved where the worker's SIGTERM found it
    assert [int(step) for step in re.findall(r"stopped by SIGTERM at step (\d+)", log)] == [info["resumed_from"]]
    submitit_logs = "".join(p.read_text() for p in (plan.sweep_dir / ".submitit").glob("*_log.*"))
    assert "timed-out" in submitit_logs and "Requeued" in submitit_logs
    assert [row["step"] for row in metrics(run.run_dir)] == list(range(1, steps + 1))
    assert read(run.run_dir / "launch.json")["executor"] == "slurm"


def test_wsd_cooldowns_branch_from_the_stable_run_and_match_it_before_the_branch(tiny_data, tmp_path, cache, capsys):
    budgets = [80 * TOKENS_PER_STEP, 160 * TOKENS_PER_STEP]  # 80 and 160 steps, cooling down over the last 25%
    sweep = write_sweep(tmp_path / "s.yaml", tiny_data,
                        [{"wsd_cooldowns": {"tokens": budgets, "cooldown_fraction": 0.25}}])
    runs = tmp_path / "runs"
    assert cli.main(launch_args(sweep, runs, cache)) == 0
    stable, *cooldowns = planner.plan(spec.load(sweep), runs).runs
    stable_rows = metrics(stable.run_dir)
    assert [r.after[1] for r in cooldowns] == [60, 120] and len(stable_rows) == 120
    for run in cooldowns:
        branch = run.after[1]
        info, rows = read(run.run_dir / "run.json"), metrics(run.run_dir)
        assert info["status"] == "done" and info["initialized_from"]["step"] == branch
        assert info["sweep_tags"]["wsd_role"] == "cooldown"
        assert [r["step"] for r in rows] == list(range(1, run.steps + 1))
        assert [r["train_loss"] for r in rows[:branch]] == [r["train_loss"] for r in stable_rows[:branch]]
        assert rows[-1]["lr"] < stable_rows[branch - 1]["lr"]
