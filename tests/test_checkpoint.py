"""Checkpoint saves on a real small disk: a save that cannot fit is refused before it starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import unshare_tmpfs_works

REPO = Path(__file__).resolve().parents[1]

# Saves a 256 KiB random (incompressible) state until one is refused, in a 700 KiB tmpfs: two fit.
SCRIPT = """
import errno, json, sys
from pathlib import Path
import jax, jax.numpy as jnp
import numpy as np
from scaling.checkpoint import Checkpointer

directory = Path(sys.argv[1]) / "checkpoints"
state = {"w": jax.random.normal(jax.random.key(0), (64 * 1024,), jnp.float32)}
ckpt = Checkpointer(directory, keep=5)
out = {"saved": []}
for step in (1, 2, 3):
    try:
        ckpt.save(step, state)
        out["saved"].append(step)
    except OSError as e:
        out["refused"] = {"step": step, "errno": e.errno, "message": str(e)}
        break
ckpt.close()
out["on_disk"] = {p.name: sum(f.stat().st_size for f in p.rglob("*") if f.is_file() and f.name != "sha256sums.json")
                  for p in directory.iterdir()}
out["sealed"] = sorted(p.name for p in directory.iterdir() if (p / "sha256sums.json").is_file())
step, restored = Checkpointer(directory, read_only=True).restore_latest(jax.tree.map(jnp.zeros_like, state))
out["restored"] = {"step": step, "equal": bool(np.array_equal(restored["w"], state["w"]))}
resumed = Checkpointer(directory, keep=5)  # a new process resuming: checkpoint 2 was sealed by another
try:
    resumed.save(3, state)
except OSError as e:
    out["refused_after_resume"] = str(e)
resumed.close()
print(json.dumps(out))
"""


@pytest.mark.slow
@pytest.mark.skipif(not unshare_tmpfs_works(), reason="needs unshare -rm to mount a small tmpfs")
def test_a_save_that_cannot_fit_is_refused_with_the_size_of_the_last_checkpoint(tmp_path):
    disk, script = tmp_path / "disk", tmp_path / "save.py"
    disk.mkdir()
    script.write_text(SCRIPT)
    command = f"mount -t tmpfs -o size=700k tmpfs {disk} && {sys.executable} {script} {disk}"
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", command], capture_output=True, text=True, timeout=300,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["saved"] == [1, 2]
    refused = out["refused"]
    assert refused["step"] == 3 and refused["errno"] == 28  # ENOSPC, raised before orbax started writing
    assert refused["message"].startswith("[Errno 28] No space left on device (the next checkpoint needs about ")
    assert refused["message"].endswith(f": '{disk}/checkpoints'")
    # The estimate is checkpoint 2's size as written, not the state's 262,144 bytes in memory, whether
    # this process sealed it or a process resuming after it measures it.
    for message in (refused["message"], out["refused_after_resume"]):
        needed = int(message.split("needs about ")[1].split(" bytes")[0].replace(",", ""))
        assert abs(needed / out["on_disk"]["2"] - 1) < 0.01, (message, out["on_disk"])
    # Nothing of the refused save is on disk, and the two saved before it are intact.
    assert sorted(out["on_disk"]) == out["sealed"] == ["1", "2"]
    assert out["restored"] == {"step": 2, "equal": True}
