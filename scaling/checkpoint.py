"""Orbax checkpoints of the train state, saved asynchronously and restored defensively.

Restoring walks back from the newest step: a checkpoint that fails to load (half written, files
missing or cut short) is skipped with a warning and the one before it is used, so one bad save
never costs more than the steps since the previous one. Skipped checkpoints are moved aside (not
deleted) into ``<run>/corrupt_checkpoints/`` so the step can be saved again and nothing is lost.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


class Checkpointer:
    def __init__(self, directory: Path, keep: int):
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=True)
        self.directory = Path(directory).absolute()
        self.quarantine = self.directory.parent / "corrupt_checkpoints"
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def save(self, step: int, state: Any) -> None:
        """Start an asynchronous save; device-to-host copying finishes before this returns."""
        self.manager.save(step, args=ocp.args.StandardSave(state), force=True)

    def restore_latest(self, abstract_state: Any) -> tuple[int, Any] | None:
        """The newest checkpoint that loads and holds only finite numbers, or None."""
        self.manager.reload()
        for step in sorted(self.manager.all_steps(), reverse=True):
            problem = self._restore_problem(step, abstract_state)
            if isinstance(problem, str):
                log.warning("checkpoint at step %d could not be restored (%s); moved to %s, trying the one before it",
                            step, problem, self.quarantine)
                self.quarantine.mkdir(exist_ok=True)
                shutil.move(str(self.directory / str(step)), str(self.quarantine / str(step)))
                self.manager.reload()
                continue
            return step, problem
        return None

    def _restore_problem(self, step: int, abstract_state: Any) -> Any:
        """The restored state, or a string saying why it is unusable."""
        try:
            state = self.manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
        except Exception as e:  # orbax raises many types for damaged files
            return f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
        floats = [x for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.floating)]
        if not all(bool(jnp.isfinite(x).all()) for x in floats):
            return "non-finite values"
        return state

    def close(self) -> None:
        """Wait for pending saves: an unfinished one would be left as a *.orbax-checkpoint-tmp directory."""
        self.manager.wait_until_finished()
        self.manager.close()
