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
from typing import Any, Iterable

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

log = logging.getLogger(__name__)


class Checkpointer:
    """Keeps the newest ``keep`` checkpoints plus every step in ``keep_steps`` (branch points)."""

    def __init__(self, directory: Path, keep: int = 1, keep_steps: Iterable[int] = (), read_only: bool = False):
        options = ocp.CheckpointManagerOptions(create=not read_only, read_only=read_only,
                                               enable_async_checkpointing=True)
        self.directory = Path(directory).absolute()
        self.quarantine = self.directory.parent / "corrupt_checkpoints"
        self.keep = keep
        self.keep_steps = set(keep_steps)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def save(self, step: int, state: Any) -> None:
        """Start an asynchronous save; device-to-host copying finishes before this returns."""
        self.manager.save(step, args=ocp.args.StandardSave(state), force=True)
        self._collect_garbage(newest=step)

    def _collect_garbage(self, newest: int) -> None:
        """Delete finished periodic checkpoints beyond the newest ``keep`` (the one being written counts)."""
        finished = [s for s in self.manager.all_steps() if s != newest and s not in self.keep_steps]
        for old in sorted(finished, reverse=True)[max(self.keep - 1, 0):]:
            self.manager.delete(old)

    def steps(self) -> list[int]:
        self.manager.reload()
        return sorted(self.manager.all_steps())

    def restore(self, step: int, abstract_state: Any) -> Any:
        """One specific step, which must be intact (used to branch a run from another's checkpoint)."""
        state = self._try_restore(step, abstract_state)
        if isinstance(state, str):
            raise ValueError(f"checkpoint {self.directory / str(step)} cannot be restored: {state}")
        return state

    def restore_latest(self, abstract_state: Any) -> tuple[int, Any] | None:
        """The newest checkpoint that loads and holds only finite numbers, or None."""
        self.manager.reload()
        for step in sorted(self.manager.all_steps(), reverse=True):
            state = self._try_restore(step, abstract_state)
            if isinstance(state, str):
                log.warning("checkpoint at step %d could not be restored (%s); moved to %s, trying the one before it",
                            step, state, self.quarantine)
                self.quarantine.mkdir(exist_ok=True)
                shutil.move(str(self.directory / str(step)), str(self.quarantine / str(step)))
                self.manager.reload()
                continue
            return step, state
        return None

    def _try_restore(self, step: int, abstract_state: Any) -> Any:
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
