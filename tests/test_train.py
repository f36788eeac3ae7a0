"""End-to-end runs of `scaling train` in subprocesses: resume, signals, NaN, corrupt checkpoints."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import run_scaling, scaling_cmd, tiny_run_args

pytestmark = pytest.mark.slow


def _run_dir(runs_dir: Path) -> Path:
    (run,) = [p.parent for p in runs_dir.glob("*/*/run.json")]
    return run


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _checkpoint_steps(run: Path) -> list[int]:
    return sorted(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit())


def _wait_for_checkpoint(run_parent: Path, proc: subprocess.Popen, at_least: int = 1, timeout: float = 120) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for ckpts in run_parent.glob("*/*/checkpoints"):
            if len([p for p in ckpts.iterdir() if p.name.isdigit()]) >= at_least:
                return ckpts.parent
        assert proc.poll() is None, f"run ended before a checkpoint appeared: {proc.stderr.read()}"
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared")


RESUME_ARGS = ["train.steps=240", "train.checkpoint_every=40", "train.log_every=1", "train.eval_every=60",
               "train.keep_checkpoints=2", "model.dropout=0.1"]


@pytest.fixture(scope="module")
def uninterrupted(tiny_data, tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("uninterrupted")
    run_scaling("train", "tiny-d64", *tiny_run_args(tiny_data, runs, *RESUME_ARGS))
    return _run_dir(runs)


def test_run_directory_contract(uninterrupted):
    run = uninterrupted
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "done" and info["run_id"] == run.name and info["final_step"] == 240
    for key in ("n_params", "n_params_embedding", "n_params_non_embedding", "flops_per_token", "tokens_target",
                "compute_target", "started", "finished", "versions", "seed", "sweep"):
        assert key in info, key
    rows = _metrics(run)
    assert [r["step"] for r in rows] == list(range(1, 241))
    for key in ("tokens", "flops", "train_loss", "lr", "grad_norm", "tokens_per_s", "mfu", "wall_s"):
        assert key in rows[-1]
    evaluated = [r["step"] for r in rows if "eval_loss" in r]
    assert {60, 120, 180, 240, 1} <= set(evaluated)  # regular, log-spaced and final evaluations
    assert rows[-1]["eval_loss"] < rows[0]["eval_loss"] - 0.5
    assert (run / "config.yaml").exists()
    assert _checkpoint_steps(run) == [200, 240]  # keep the last 2
    events = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    tb_loss = [(e.step, e.value) for e in events.Scalars("train_loss")]
    assert [s for s, _ in tb_loss] == [r["step"] for r in rows]
    assert all(abs(v - r["train_loss"]) < 1e-6 for (_, v), r in zip(tb_loss, rows))
    assert "eval_loss" in events.Tags()["scalars"]


def test_resume_after_sigkill_and_sigterm_is_exact(uninterrupted, tiny_data, tmp_path):
    args = tiny_run_args(tiny_data, tmp_path, *RESUME_ARGS)
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    # 1. SIGKILL right after the first checkpoint lands.
    proc = subprocess.Popen(scaling_cmd("train", "tiny-d64", *args), stderr=subprocess.PIPE, text=True, env=env)
    run = _wait_for_checkpoint(tmp_path, proc)
    proc.kill()
    proc.wait()
    assert json.loads((run / "run.json").read_text())["status"] == "running"
    killed_at = len(_metrics(run))
    assert killed_at < 240
    # 2. Resume, then SIGTERM after the next checkpoint: it saves, exits non-zero and says so.
    proc = subprocess.Popen(scaling_cmd("train", "tiny-d64", *args), stderr=subprocess.PIPE, text=True, env=env)
    _wait_for_checkpoint(tmp_path, proc, at_least=2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "SIGTERM" in err and "resume" in err
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "interrupted" and max(_checkpoint_steps(run)) == info["failed_step"]
    # 3. Run to the end.
    run_scaling("train", "tiny-d64", *args)
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "done" and info["resumed_from"] > 0
    resumed, reference = _metrics(run), _metrics(uninterrupted)
    assert [r["step"] for r in resumed] == list(range(1, 241))  # each step exactly once
    assert [r["train_loss"] for r in resumed] == [r["train_loss"] for r in reference]  # bitwise on CPU
    assert [r.get("eval_loss") for r in resumed] == [r.get("eval_loss") for r in reference]
    # 4. The same command once more does nothing.
    proc = run_scaling("train", "tiny-d64", *args)
    assert len(_metrics(run)) == 240 and "done" in proc.stdout


def test_corrupt_newest_checkpoint_is_skipped(uninterrupted, tiny_data, tmp_path):
    run = tmp_path / "default" / uninterrupted.name
    shutil.copytree(uninterrupted, run)
    for f in (run / "checkpoints" / "240").rglob("*"):
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(b"\0" * 7)  # cut short and garbled, as a crash mid-write on a bad disk leaves it
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "status": "running"}))  # as if it died after saving 240
    proc = run_scaling("train", "tiny-d64", *tiny_run_args(tiny_data, tmp_path, *RESUME_ARGS))
    assert "step 240 could not be restored" in proc.stderr
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "done" and info["resumed_from"] == 200
    assert [r["train_loss"] for r in _metrics(run)] == [r["train_loss"] for r in _metrics(uninterrupted)]


def test_non_finite_loss_fails_the_run_and_keeps_the_last_good_checkpoint(tiny_data, tmp_path):
    # Linear warm-up from 0 to 1e36: step 1 changes nothing, step 2 blows the weights up to ~1e36,
    # and the forward pass of step 3 overflows.
    args = tiny_run_args(tiny_data, tmp_path, "train.steps=50", "train.checkpoint_every=2", "optim.lr=1e37",
                         "optim.warmup_steps=10", "optim.grad_clip=0", "optim.schedule=constant")
    proc = run_scaling("train", "tiny-d64", *args, check=False)
    assert proc.returncode == 1 and "non-finite loss" in proc.stderr
    run = _run_dir(tmp_path)
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "failed" and "non-finite" in info["error"]
    assert info["failed_step"] >= 3
    steps = _checkpoint_steps(run)
    assert steps and max(steps) < info["failed_step"]


def test_config_errors_are_one_line_and_name_the_key(tiny_data, tmp_path):
    proc = run_scaling("train", "tiny-d64", *tiny_run_args(tiny_data, tmp_path, "train.stpes=5"), check=False)
    assert proc.returncode == 2
    assert "train.stpes" in proc.stderr and "steps" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_scaling("train", "tiny-d64", *tiny_run_args(tiny_data, tmp_path), check=False)
    assert proc.returncode == 2 and "set a budget" in proc.stderr


def test_wsd_cooldown_branched_from_a_stable_run_equals_training_it_from_scratch(tiny_data, tmp_path):
    common = ["optim.schedule=wsd", "optim.warmup_steps=10", "train.log_every=1", "train.eval_every=1000",
              "train.checkpoint_every=50"]
    stable_args = tiny_run_args(tiny_data, tmp_path / "stable", *common, "train.steps=100",
                                "optim.cooldown_fraction=0", "train.keep_checkpoints=1", "train.keep_steps=[60]")
    run_scaling("train", "tiny-d64", *stable_args)
    stable = _run_dir(tmp_path / "stable")
    assert _checkpoint_steps(stable) == [60, 100]  # the branch point survives garbage collection
    cooldown = ["train.steps=80", "optim.cooldown_fraction=0.25"]  # decays over steps 61..80
    run_scaling("train", "tiny-d64", *tiny_run_args(tiny_data, tmp_path / "branch", *common, *cooldown,
                                                    f"train.init_from={stable}", "train.init_step=60"))
    run_scaling("train", "tiny-d64", *tiny_run_args(tiny_data, tmp_path / "scratch", *common, *cooldown))
    branch, scratch = _run_dir(tmp_path / "branch"), _run_dir(tmp_path / "scratch")
    assert json.loads((branch / "run.json").read_text())["initialized_from"]["step"] == 60
    branch_rows, scratch_rows, stable_rows = _metrics(branch), _metrics(scratch), _metrics(stable)
    assert [r["step"] for r in branch_rows] == list(range(1, 81))
    assert [r["train_loss"] for r in branch_rows[:60]] == [r["train_loss"] for r in stable_rows[:60]]
    assert [r["train_loss"] for r in branch_rows] == [r["train_loss"] for r in scratch_rows]
    assert branch_rows[70]["lr"] < stable_rows[70]["lr"]
