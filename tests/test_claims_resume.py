"""Resume restores the newest checkpoint that is intact, through the real orbax checkpointer.

The end-to-end proof (a run killed with SIGKILL and SIGTERM gives every step's loss bitwise equal
to an uninterrupted run) is in test_train.py; resuming from an older checkpoint would pass that
test too (the replayed steps are deterministic), so the choice of checkpoint is checked here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from scaling.checkpoint import Checkpointer


def _state(value: float) -> dict:
    return {"w": jnp.full((4, 3), value, jnp.float32), "step": jnp.asarray(int(value), jnp.int32)}


def test_resume_restores_the_newest_intact_checkpoint(tmp_path):
    ckpt = Checkpointer(tmp_path / "checkpoints", keep=3)
    for step in (10, 20, 30):
        ckpt.save(step, _state(step))
    ckpt.close()
    abstract = jax.eval_shape(lambda: _state(0.0))
    again = Checkpointer(tmp_path / "checkpoints", keep=3)
    step, state = again.restore_latest(abstract)
    assert step == 30 and float(state["w"][0, 0]) == 30.0
    # The newest damaged: the one before it, and the damaged one is set aside rather than deleted.
    for f in (tmp_path / "checkpoints" / "30").rglob("*"):
        if f.is_file() and f.stat().st_size > 0 and f.name != "sha256sums.json":
            f.write_bytes(b"\0" * 7)
    step, state = again.restore_latest(abstract)
    again.close()
    assert step == 20 and np.all(np.asarray(state["w"]) == 20.0)
    assert (tmp_path / "checkpoints" / "30").exists() is False
    assert any((tmp_path / "corrupt_checkpoints").iterdir())
