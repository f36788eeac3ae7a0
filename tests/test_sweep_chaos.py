"""Chaos: a sweep whose training processes and launcher are SIGKILLed at seeded random moments,
relaunched with the same plain command until it is done, ends exactly as an undisturbed sweep.

The moments are drawn as "after this run has trained this many more steps", not as times, so the
same seed disturbs the same runs at about the same points whatever the machine's load.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import scaling_cmd
from scaling import cli
from scaling.rundir import RunDir
from scaling.sweeps import planner, spec, state
from test_sweep_launch import launch_args, metrics, read, wait_for, write_sweep

pytestmark = pytest.mark.slow

SEED = 15
STEPS = 400  # a relaunch takes seconds to start, and the runs it follows train on meanwhile
# What is killed, in order: the launcher's own child (it sees the signal), the launcher alone (its runs
# carry on and the relaunch follows them), a followed run (it vanishes: no exit status), everything at
# once (nobody is left to see the runs die), then the relaunch's own children again.
KINDS = ("training process", "launcher", "training process", "everything", "training process", "training process")


@pytest.fixture(autouse=True)
def cpu_only(monkeypatch):
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")


def _training_pid(run_dir: Path) -> int | None:
    launch = state.read_launch(run_dir)
    alive = state.process_alive(launch.get("pid"), launch.get("host"), str(run_dir / "config.yaml"))
    return launch["pid"] if alive else None


def _step(run_dir: Path) -> int:
    return (RunDir(run_dir).last_metrics() or {}).get("step", 0)


def _status(run_dir: Path) -> str | None:
    return read(run_dir / "run.json").get("status") if (run_dir / "run.json").exists() else None


def _done(run_dir: Path) -> bool:
    return _status(run_dir) == "done"


def _gone(pid: int, marker: str) -> bool:
    return not state.process_alive(pid, state.hostname(), marker)


def _tensorboard_losses(run_dir: Path) -> list[tuple[int, float]]:
    """(step, train_loss) of every train_loss event in the event files, in the order TensorBoard reads them."""
    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0}, purge_orphaned_data=False)
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars("train_loss")]


class Chaos:
    """Launches the sweep as a user would (a subprocess) and kills what the seeded draws say."""

    def __init__(self, sweep: Path, runs: Path, cache: Path, plan: planner.SweepPlan, logs: Path):
        self.command = scaling_cmd(*launch_args(sweep, runs, cache))
        self.plan, self.logs = plan, logs
        self.launcher: subprocess.Popen | None = None
        self.launches: list[int | None] = []  # exit codes, None for a killed launcher
        self.killed_training: list[str] = []  # runs whose training process was killed before it finished
        self.events: list[str] = []  # what was killed when, for failure messages

    def relaunch(self) -> None:
        """The plain command again; returns once it has said what it runs and what it follows."""
        path = self.logs / f"launch{len(self.launches)}.log"
        with path.open("w") as log:
            self.launcher = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                             start_new_session=True)
        self.launches.append(None)
        wait_for(lambda: "to run" in path.read_text() or self.launcher.poll() is not None, what="the relaunch")

    def launcher_ended(self) -> bool:
        code = self.launcher.poll()
        if code is not None:
            self.launches[-1] = code
        return code is not None

    def kill_training(self, run: planner.PlannedRun) -> None:
        pid = _training_pid(run.run_dir)
        if pid is None:
            return
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: _gone(pid, str(run.run_dir / "config.yaml")), timeout=30, what="the killed run to go")
        if not _done(run.run_dir):  # not too late: it had not finished
            self.killed_training.append(run.name)

    def kill_launcher(self) -> None:
        self.launcher.kill()
        self.launcher.wait()

    def event(self, kind: str, victim: planner.PlannedRun, gain: int) -> bool:
        """Wait until ``victim`` has trained ``gain`` more steps in a live process, then kill; False if it
        finished first."""
        start = _step(victim.run_dir)

        def ready() -> bool:
            assert _status(victim.run_dir) != "failed", f"{victim.name} was recorded failed after {self.events}"
            if self.launcher_ended():
                self.relaunch()
            return _done(victim.run_dir) or (_training_pid(victim.run_dir) and _step(victim.run_dir) >= start + gain)

        wait_for(ready, timeout=180, what=f"{victim.name} to train {gain} more steps")
        if _done(victim.run_dir):
            return False
        self.events.append(f"{kind} ({victim.name} at step {_step(victim.run_dir)})")
        if kind == "training process":
            self.kill_training(victim)
        elif kind == "launcher":
            self.kill_launcher()  # its runs carry on; the relaunch follows them
        else:  # the node rebooted: the launcher and every training process at once
            self.kill_launcher()
            for run in self.plan.runs:
                self.kill_training(run)
        return True


def test_a_sweep_killed_at_random_ends_done_and_identical_with_plain_relaunches(tiny_data, tmp_path):
    cache = tmp_path / "jax_cache"
    sweep = write_sweep(tmp_path / "s.yaml", tiny_data, [{"grid": {"seed": [0, 1]}}], steps=STEPS,
                        checkpoint_every=20)
    reference = tmp_path / "reference"
    assert cli.main(launch_args(sweep, reference, cache)) == 0  # undisturbed
    runs = tmp_path / "runs"
    plan = planner.plan(spec.load(sweep), runs)

    rng = random.Random(SEED)
    chaos = Chaos(sweep, runs, cache, plan, tmp_path)
    chaos.relaunch()
    landed = 0
    for kind in KINDS:
        unfinished = [r for r in plan.runs if not _done(r.run_dir)]
        assert unfinished, f"the sweep finished after {chaos.events}: make it longer"
        landed += chaos.event(kind, rng.choice(unfinished), gain=rng.randint(0, 20))
    assert landed == len(KINDS), chaos.events
    for _ in range(5):  # the plain command again until it says everything is done
        if chaos.launcher_ended():
            if chaos.launches[-1] == 0:
                break
            chaos.relaunch()
        wait_for(chaos.launcher_ended, timeout=300, what="the launch to end")
    outputs = "".join(p.read_text() for p in sorted(tmp_path.glob("launch*.log")))
    assert chaos.launches[-1] == 0, (chaos.events, chaos.launches, outputs)
    assert "FAILED" not in outputs and "failed (not retried" not in outputs, (chaos.events, outputs)

    kills = []
    for run in plan.runs:
        info = read(run.run_dir / "run.json")
        assert info["status"] == "done"
        rows = metrics(run.run_dir)
        assert [r["step"] for r in rows] == list(range(1, STEPS + 1))  # each step once
        expected = [r["train_loss"] for r in metrics(reference / "t" / run.name)]
        assert [r["train_loss"] for r in rows] == expected  # bit for bit
        # TensorBoard, like metrics.jsonl, holds every step once (a resume rebuilds it from the kept
        # rows), with metrics.jsonl's value (events store float32).
        assert _tensorboard_losses(run.run_dir) == [(r["step"], float(np.float32(r["train_loss"]))) for r in rows]
        kills += info.get("kills", [])
    # Every training process killed before it finished was recorded as killed, once: by SIGKILL when
    # its own launcher saw it die, with the signal unknown when it vanished.
    assert len(kills) == len(chaos.killed_training) and all(k["at"] for k in kills)
    assert {k["signal"] for k in kills} == {"SIGKILL", None}
