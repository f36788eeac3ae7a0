"""Meshes over 8 simulated CPU devices and two real processes joined by jax.distributed (gloo)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import scaling_cmd, tiny_run_args

pytestmark = pytest.mark.slow

STEPS = ["train.steps=20", "train.log_every=1", "train.eval_every=10", "train.checkpoint_every=10",
         "train.keep_checkpoints=2", "model.d_model=64", "model.n_head=4", "train.batch_size=16"]


def _env(devices: int, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", **extra)
    return env


def _train(args: list[str], devices: int) -> None:
    proc = subprocess.run(scaling_cmd("train", "tiny-d64", *args), capture_output=True, text=True,
                          env=_env(devices), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _losses(runs: Path) -> list[float]:
    (metrics,) = runs.glob("*/*/metrics.jsonl")
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 21))
    return [r["train_loss"] for r in rows]


@pytest.fixture(scope="module")
def single_device(tiny_data, tmp_path_factory) -> list[float]:
    runs = tmp_path_factory.mktemp("single")
    _train(tiny_run_args(tiny_data, runs, *STEPS), devices=1)
    return _losses(runs)


@pytest.mark.parametrize("data,fsdp", [(8, 1), (4, 2), (1, 8)])
def test_loss_curve_is_the_same_on_every_mesh(single_device, tiny_data, tmp_path, data, fsdp):
    _train(tiny_run_args(tiny_data, tmp_path, *STEPS, f"mesh.data={data}", f"mesh.fsdp={fsdp}"), devices=8)
    info = json.loads(next(tmp_path.glob("*/*/run.json")).read_text())
    assert info["mesh"] == {"data": data, "fsdp": fsdp} and info["device"]["n_devices"] == 8
    np.testing.assert_allclose(_losses(tmp_path), single_device, rtol=2e-5)


SHARDING_PROBE = """
import jax
from scaling import config, model, optim, sharding, step
cfg = config.load(None, ["model.vocab_size=257", "model.d_model=64", "model.n_head=4", "mesh.data=2", "mesh.fsdp=4"])
mesh = sharding.make_mesh(cfg.mesh)
params = jax.eval_shape(lambda: model.init(cfg.model, jax.random.key(0)))
tx = optim.make(cfg.optim, params)
abstract = jax.eval_shape(lambda: step.init_state(cfg.model, tx, jax.random.key(0)))
shardings = sharding.state_shardings(abstract, sharding.param_shardings(cfg.model, params, mesh), mesh)
state = jax.jit(lambda: step.init_state(cfg.model, tx, jax.random.key(0)), out_shardings=shardings)()
kernel = state["params"]["block_0"]["mlp"]["up"]["kernel"]
mu = state["opt_state"][1][0].mu["block_0"]["mlp"]["up"]["kernel"]
import json
print(json.dumps([list(kernel.sharding.spec), sorted({tuple(s.data.shape) for s in kernel.addressable_shards}),
                  list(mu.sharding.spec), list(state["params"]["embed"]["embedding"].sharding.spec)]))
"""


def test_parameters_and_optimizer_state_are_really_sharded():
    proc = subprocess.run([sys.executable, "-c", SHARDING_PROBE], capture_output=True, text=True, env=_env(8),
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The 64 x 256 MLP kernel is split 4 ways along d_model (fsdp); Adam's moments follow it.
    kernel_spec, shard_shapes, moment_spec, embedding_spec = json.loads(proc.stdout)
    assert kernel_spec == ["fsdp", None] and shard_shapes == [[16, 256]] and moment_spec == ["fsdp", None]
    assert embedding_spec == [None, "fsdp"]


def _rewind_to_step_10(runs: Path) -> Path:
    """As if the run had been preempted right after saving step 10."""
    (run,) = [p.parent for p in runs.glob("*/*/run.json")]
    shutil.rmtree(run / "checkpoints" / "20")
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "status": "running"}))
    return run


def test_resume_on_a_different_mesh(single_device, tiny_data, tmp_path):
    args = tiny_run_args(tiny_data, tmp_path, *STEPS)
    _train([*args, "mesh.data=1", "mesh.fsdp=8"], devices=8)
    run = _rewind_to_step_10(tmp_path)
    _train([*args, "mesh.data=2", "mesh.fsdp=2"], devices=4)  # saved on 8 devices, restored on 4
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "done" and info["resumed_from"] == 10 and info["mesh"] == {"data": 2, "fsdp": 2}
    np.testing.assert_allclose(_losses(tmp_path), single_device, rtol=2e-5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_two_processes(args: list[str]) -> None:
    port = _free_port()
    procs = [subprocess.Popen(scaling_cmd("train", "tiny-d64", *args), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env=_env(1, SCALING_COORDINATOR=f"127.0.0.1:{port}", SCALING_NUM_PROCESSES="2",
                                       SCALING_PROCESS_ID=str(i)))
             for i in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]


def test_two_processes_train_like_one_and_resume(single_device, tiny_data, tmp_path):
    args = tiny_run_args(tiny_data, tmp_path, *STEPS)
    _train_two_processes(args)
    info = json.loads(next(tmp_path.glob("*/*/run.json")).read_text())
    assert info["device"]["n_processes"] == 2 and info["device"]["n_devices"] == 2
    np.testing.assert_allclose(_losses(tmp_path), single_device, rtol=2e-5)
    run = _rewind_to_step_10(tmp_path)
    _train_two_processes(args)
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "done" and info["resumed_from"] == 10
    np.testing.assert_allclose(_losses(tmp_path), single_device, rtol=2e-5)
