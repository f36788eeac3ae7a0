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

from conftest import run_scaling, scaling_cmd, tiny_run_args, unshare_tmpfs_works

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


def _tb_scalars(run: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) of one scalar as TensorBoard's own reader returns it (purging nothing itself)."""
    events = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0}, purge_orphaned_data=False)
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


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
    assert (run / "run.lock").exists()  # left by the killed process; the kernel released its flock
    killed_at = len(_metrics(run))
    assert killed_at < 240
    # 2. Resume, then SIGTERM after the next checkpoint: it saves, exits non-zero and says so.
    proc = subprocess.Popen(scaling_cmd("train", "tiny-d64", *args), stderr=subprocess.PIPE, text=True, env=env)
    _wait_for_checkpoint(tmp_path, proc, at_least=2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    info = json.loads((run / "run.json").read_text())
    step = info["interrupted_step"]
    assert f"interrupted at step {step}; run the same command to resume" in err
    assert "error:" not in err and "Traceback" not in err  # an interruption is not an error
    assert info["status"] == "interrupted" and max(_checkpoint_steps(run)) == step
    assert info.get("error") is None and info.get("failed_step") is None
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
    # 5. TensorBoard, like metrics.jsonl, holds each step once, with the uninterrupted run's values.
    assert _tb_scalars(run, "train_loss") == _tb_scalars(uninterrupted, "train_loss")
    assert _tb_scalars(run, "lr") == [(r["step"], pytest.approx(r["lr"])) for r in reference]
    assert not (run / "run.lock").exists()


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
    # Linear warm-up to 1e37 over 10 updates: update 1 (rate 1e36) blows the weights up to ~1e36,
    # and the forward pass of step 2 overflows; step 1's checkpoint is the last good one.
    args = tiny_run_args(tiny_data, tmp_path, "train.steps=50", "train.checkpoint_every=1", "optim.lr=1e37",
                         "optim.warmup_steps=10", "optim.grad_clip=0", "optim.schedule=constant")
    proc = run_scaling("train", "tiny-d64", *args, check=False)
    assert proc.returncode == 1 and "non-finite loss" in proc.stderr
    run = _run_dir(tmp_path)
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "failed" and "non-finite" in info["error"]
    assert info["failed_step"] >= 2
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


def test_keep_one_checkpoint_survives_a_kill_while_the_next_is_written(tiny_data, tmp_path):
    """keep_checkpoints=1: the previous checkpoint is deleted only after the next one commits."""
    args = tiny_run_args(tiny_data, tmp_path, "train.steps=90", "train.checkpoint_every=3",
                         "train.keep_checkpoints=1", "train.log_every=1")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen(scaling_cmd("train", "tiny-d64", *args), stderr=subprocess.PIPE, text=True, env=env)
    run = _wait_for_checkpoint(tmp_path, proc)
    ckpts, deadline = run / "checkpoints", time.time() + 120
    while time.time() < deadline:  # kill the moment a later save is in flight, after one was committed
        if any("orbax-checkpoint-tmp" in p.name for p in ckpts.iterdir()):
            time.sleep(0.05)  # well inside the save (about 0.4 s here), after any deletion at its start
            proc.kill()
            break
        assert proc.poll() is None, "the run ended before a kill landed in a save window"
    proc.wait()
    assert _checkpoint_steps(run), "no complete checkpoint survived"
    kept = max(_checkpoint_steps(run))
    run_scaling("train", "tiny-d64", *args)
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "done" and info["resumed_from"] == kept > 0
    assert [r["step"] for r in _metrics(run)] == list(range(1, 91))
    assert _checkpoint_steps(run) == [90]


def test_a_flipped_bit_in_the_newest_checkpoint_is_detected_and_quarantined(uninterrupted, tiny_data, tmp_path):
    run = tmp_path / "default" / uninterrupted.name
    shutil.copytree(uninterrupted, run)
    data = max((p for p in (run / "checkpoints" / "240").rglob("*") if p.is_file() and p.parent.name == "d"),
               key=lambda p: p.stat().st_size)
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0x04  # one bit, in the middle of the largest array file
    data.write_bytes(bytes(raw))
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "status": "running"}))  # as if it died after saving 240
    proc = run_scaling("train", "tiny-d64", *tiny_run_args(tiny_data, tmp_path, *RESUME_ARGS))
    assert "step 240 could not be restored (checksum mismatch" in proc.stderr
    assert (run / "corrupt_checkpoints" / "240").is_dir()
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "done" and info["resumed_from"] == 200
    assert [r["train_loss"] for r in _metrics(run)] == [r["train_loss"] for r in _metrics(uninterrupted)]


def test_a_second_train_of_the_same_run_is_refused_naming_the_holder(tiny_data, tmp_path):
    args = tiny_run_args(tiny_data, tmp_path, "train.steps=5000", "train.checkpoint_every=5000", "train.log_every=1")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    first = subprocess.Popen(scaling_cmd("train", "tiny-d64", *args), stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.time() + 120
        while not list(tmp_path.glob("*/*/metrics.jsonl")) or not _metrics(_run_dir(tmp_path)):
            assert first.poll() is None and time.time() < deadline, first.stderr.read()
            time.sleep(0.1)
        run = _run_dir(tmp_path)
        second = run_scaling("train", "tiny-d64", *args, check=False)
        rows_before = len(_metrics(run))
    finally:
        first.kill()
        first.wait()
    assert second.returncode == 2
    errors = [line for line in second.stderr.splitlines() if "error:" in line]
    assert errors == [line for line in second.stderr.splitlines() if line.strip()], second.stderr
    assert len(errors) == 1 and f"is in use by pid {first.pid} on host" in errors[0]
    steps = [r["step"] for r in _metrics(run)]
    assert len(steps) >= rows_before and steps == sorted(set(steps))  # the refused process wrote nothing


@pytest.mark.skipif(not unshare_tmpfs_works(), reason="needs unshare -rm to mount a small tmpfs")
def test_a_full_disk_fails_the_run_with_one_line_and_keeps_the_last_checkpoint(tiny_data, tmp_path):
    """A real full disk: the runs dir is a 700 KiB tmpfs (in a private mount namespace) that one
    checkpoint of this model fills; the second save does not fit."""
    runs, out = tmp_path / "runs", tmp_path / "out"
    runs.mkdir()
    out.mkdir()
    args = tiny_run_args(tiny_data, runs, "train.steps=100", "train.checkpoint_every=10", "train.keep_checkpoints=5")
    command = " ".join(scaling_cmd("train", "tiny-d64", *args))
    script = (f"mount -t tmpfs -o size=700k tmpfs {runs} && {command}; code=$?; "
              f"cp -r {runs}/. {out}/; exit $code")
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("step ")]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "No space left on device" in lines[0], lines
    assert str(runs) in lines[0]  # names the path
    run = _run_dir(out)
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "failed" and "No space left on device" in info["error"]
    assert not list(run.rglob("*.tmp")) and not list(run.rglob("*orbax-checkpoint-tmp*"))
    assert _checkpoint_steps(run) == [10]
    assert (run / "checkpoints" / "10" / "sha256sums.json").is_file()


@pytest.mark.parametrize("schedule,shape", [("constant", "linear"), ("cosine", "linear"), ("wsd", "linear"),
                                            ("wsd", "cosine"), ("wsd", "1-sqrt")])
def test_logged_rates_start_above_zero_and_end_at_the_floor(tiny_data, tmp_path, schedule, shape):
    """On the rates a real run logs: update 1 uses lr/W, the last update lr * min_lr_ratio."""
    from scaling import config, train

    cfg = config.load(None, ["model.preset=tiny-d64", *tiny_run_args(tiny_data, tmp_path, "train.steps=12",
                             "model.n_layer=1", "model.seq_len=8", "train.batch_size=2", "data.eval_batches=1",
                             "train.log_every=1", "train.checkpoint_every=100", "train.eval_every=100",
                             "train.eval_log_points=0", "optim.lr=0.004", "optim.min_lr_ratio=0.25",
                             "optim.warmup_steps=4", "optim.cooldown_fraction=0.5", f"optim.schedule={schedule}",
                             f"optim.cooldown_shape={shape}")])
    train.run(cfg)
    rates = [r["lr"] for r in _metrics(_run_dir(tmp_path))]
    assert len(rates) == 12
    assert rates[0] == pytest.approx(0.001, rel=1e-6) and rates[3] == pytest.approx(0.004, rel=1e-6)
    assert rates[-1] == pytest.approx(0.004 if schedule == "constant" else 0.001, rel=1e-6)


@pytest.mark.skipif(not unshare_tmpfs_works(), reason="needs unshare -rm to mount a small tmpfs")
def test_a_read_only_runs_dir_is_one_line_naming_the_path(tiny_data, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    command = " ".join(scaling_cmd("train", "tiny-d64", *tiny_run_args(tiny_data, runs, "train.steps=5")))
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o ro tmpfs {runs} && {command}"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: cannot write the run directory: {runs}/") and "Read-only file system" in lines[0]
