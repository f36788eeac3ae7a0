"""Shared fixtures: a small real-text dataset, and helpers to run the `scaling` CLI as a user would."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from scaling.data import prepare, stdlib_files
from scaling.sweeps.child import CACHE_VARIABLES

# The CLI runs the tests start share JAX's persistent compilation cache, as a sweep's runs do: the same tiny
# shapes compile once per test session instead of once per subprocess (a user's own cache is left alone).
_COMPILE_CACHE = tempfile.mkdtemp(prefix="scaling-tests-jax-")
atexit.register(shutil.rmtree, _COMPILE_CACHE, ignore_errors=True)
os.environ.update(CACHE_VARIABLES, JAX_COMPILATION_CACHE_DIR=_COMPILE_CACHE)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """About 400 kB of real Python source, byte-tokenized: enough for tiny models to learn from."""
    corpus = tmp_path_factory.mktemp("corpus")
    for i, path in enumerate(sorted(stdlib_files())[:80]):
        (corpus / f"{i:03d}.py").write_bytes(path.read_bytes())
    out = tmp_path_factory.mktemp("data") / "tiny"
    prepare(str(corpus), "byte", out)
    return out


def tiny_run_args(data: Path, runs_dir: Path, *extra: str) -> list[str]:
    """Overrides for a 2-layer, d=32 model that trains in seconds on a CPU."""
    return [
        f"data.path={data}", f"runs_dir={runs_dir}", "model.n_layer=2", "model.d_model=32", "model.n_head=2",
        "model.seq_len=32", "train.batch_size=8", "train.progress=false", "data.eval_batches=2", *extra,
    ]


def scaling_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "scaling.cli", *args]


def run_scaling(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(scaling_cmd(*args), capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"scaling {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def unshare_tmpfs_works() -> bool:
    """Whether ``unshare -rm`` can mount a tmpfs here: how tests get a real small or read-only disk."""
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True) if shutil.which("unshare") else None
    return probe is not None and probe.returncode == 0
