"""Orbax checkpoints of the train state, saved asynchronously, sealed with checksums, restored defensively.

Saving never puts the last complete checkpoint at risk: older checkpoints are deleted only once a
newer one is committed (so ``keep`` = 1 briefly holds two on disk while the next one is written).
Each committed checkpoint is sealed with the sha256 of every file it holds (``sha256sums.json``
inside the step directory), written once the asynchronous save has finished; restoring checks
them first, so a flipped bit is a detected corruption, not a silently different run. A checkpoint
without a seal (killed between its commit and the seal, or written by an older version) is
restored unverified, with a warning.

Restoring walks back from the newest step: a checkpoint that fails its checksums or fails to
load (half written, files missing or cut short, non-finite values) is skipped with a warning and
the one before it is used, so one bad save never costs more than the steps since the previous
one. Skipped checkpoints are moved aside (not deleted) into ``<run>/corrupt_checkpoints/`` so the
step can be saved again and nothing is lost.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterable

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from analysis import run_format
from scaling.errors import UserError, naming

log = logging.getLogger(__name__)

SUMS = "sha256sums.json"


def _digest(path: Path) -> tuple[str, int]:
    """(sha256 hex digest, bytes read) of a file."""
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


def seal(step_dir: Path) -> int:
    """Write ``sha256sums.json`` into a checkpoint's step directory: the sha256 of every file under it,
    by relative path. Atomic (a temp file renamed), so a kill leaves the old state or the whole seal.

    Returns the bytes of the files sealed, counted while hashing them: the checkpoint's size, which
    the next save's space check uses without walking the directory again.
    """
    sums, size = {}, 0
    for path in sorted(step_dir.rglob("*")):
        if path.is_file() and path.name != SUMS:
            sums[str(path.relative_to(step_dir))], n = _digest(path)
            size += n
    tmp = step_dir / (SUMS + ".tmp")
    try:
        with naming(tmp):
            tmp.write_text(json.dumps(sums, indent=0))
        os.replace(tmp, step_dir / SUMS)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return size


def check_sums(step_dir: Path) -> str | None:
    """Why the checkpoint's files differ from its seal, or None (also None when it has no seal)."""
    try:
        expected = json.loads((step_dir / SUMS).read_text())
    except FileNotFoundError:
        log.warning("checkpoint %s has no checksums (its save was cut short before sealing); "
                    "restoring it unverified", step_dir)
        return None
    except ValueError:
        return f"its {SUMS} is damaged"
    for name, digest in expected.items():
        path = step_dir / name
        if not path.is_file():
            return f"checksum mismatch: {name} is missing"
        if _digest(path)[0] != digest:
            return f"checksum mismatch: {name} changed since it was saved"
    return None


_OS_ERROR = re.compile(r"os_error_code='(\d+)'")


def _as_os_error(e: Exception, directory: Path) -> Exception:
    """orbax/tensorstore report a refused write (disk full, read-only) as a ValueError carrying the
    errno in its text; give it back as the OSError it is, naming the checkpoint directory."""
    if isinstance(e, OSError):
        return e
    found = _OS_ERROR.search(str(e))
    codes = [int(found.group(1))] if found else \
        [c for c in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT) if os.strerror(c) in str(e)]
    if not codes:
        return e
    return OSError(codes[0], os.strerror(codes[0]), str(directory))


class Checkpointer:
    """Keeps the newest ``keep`` checkpoints plus every step in ``keep_steps`` (branch points).

    ``directory``: the orbax directory, one folder per step (created unless ``read_only``); the
    state is any pytree of arrays (the train state). Only the first process writes seals and deletes.
    """

    def __init__(self, directory: Path, keep: int = 1, keep_steps: Iterable[int] = (), read_only: bool = False):
        options = ocp.CheckpointManagerOptions(create=not read_only, read_only=read_only,
                                               enable_async_checkpointing=True)
        self.directory = Path(directory).absolute()
        self.quarantine = self.directory.parent / run_format.CORRUPT_CHECKPOINTS
        self.keep = keep
        self.keep_steps = set(keep_steps)
        self.writes = not read_only and jax.process_index() == 0
        self.manager = ocp.CheckpointManager(self.directory, options=options)
        self._sized: tuple[int, int] | None = None  # (step, bytes) of the newest checkpoint, once measured

    def save(self, step: int, state: Any) -> None:
        """Start an asynchronous save; device-to-host copying finishes before this returns.

        The previous save is finished (and sealed) first, and garbage is collected among committed
        checkpoints only, so the newest complete one survives until this one is committed. A write
        the system refuses (disk full, read-only) is raised as an OSError, and the unfinished save's
        files are removed (freeing the space run.json needs to record the failure).
        """
        self._settle()
        self._check_space(state)
        try:
            self.manager.save(step, args=ocp.args.StandardSave(state), force=True)
        except Exception as e:
            raise self._failed(e) from None

    def _check_space(self, state: Any) -> None:
        """Refuse a save the disk cannot hold, before orbax's background threads start writing it (a
        write that fails there leaves them reporting errors long after): OSError ENOSPC naming the
        bytes needed and free, when the free space is under 1.05 x the size of the newest checkpoint
        (the state's bytes for the first one). That size is the one ``seal`` counted, so a save costs
        one ``disk_usage`` call, not a walk of the previous checkpoint; only the first save after a
        resume measures the checkpoint it resumed from. Another writer can still fill the disk
        meanwhile, which the save itself then reports."""
        if not self.writes:
            return
        newest = max(self.manager.all_steps(), default=None)
        if newest is None:
            needed = sum(x.nbytes for x in jax.tree.leaves(state))
        elif self._sized is not None and self._sized[0] == newest:
            needed = self._sized[1]
        else:  # sealed by an earlier process (this one resumed from it): measured once
            needed = sum(p.stat().st_size for p in (self.directory / str(newest)).rglob("*")
                         if p.is_file() and p.name != SUMS)
            self._sized = (newest, needed)
        free = shutil.disk_usage(self.directory).free
        if free < needed * 1.05:
            raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (the next checkpoint needs about "
                                        f"{needed:,} bytes, {free:,} are free)", str(self.directory))

    def _failed(self, e: Exception) -> Exception:
        translated = _as_os_error(e, self.directory)
        if isinstance(translated, OSError) and self.writes:
            for partial in self.directory.glob("*.orbax-checkpoint-tmp*"):
                shutil.rmtree(partial, ignore_errors=True)
        return translated

    def _settle(self) -> None:
        """Wait for pending saves, seal them, then delete periodic checkpoints beyond the newest ``keep``."""
        try:
            self.manager.wait_until_finished()
        except Exception as e:
            raise self._failed(e) from None
        if not self.writes:
            return
        committed = sorted(self.manager.all_steps())
        for step in committed:
            step_dir = self.directory / str(step)
            if step_dir.is_dir() and not (step_dir / SUMS).exists():
                self._sized = (step, seal(step_dir))
        periodic = [s for s in committed if s not in self.keep_steps]
        for old in periodic[:-self.keep]:
            self.manager.delete(old)

    def steps(self) -> list[int]:
        """The committed checkpoint steps on disk now, ascending (checksums not checked)."""
        self.manager.reload()
        return sorted(self.manager.all_steps())

    def restore(self, step: int, abstract_state: Any) -> Any:
        """One specific step, which must be intact (used to branch a run from another's checkpoint)."""
        state = self._try_restore(step, abstract_state)
        if isinstance(state, str):
            raise UserError(f"checkpoint {self.directory / str(step)} cannot be restored: {state}")
        return state

    def restore_latest(self, abstract_state: Any) -> tuple[int, Any] | None:
        """The newest checkpoint that passes its checksums, loads and holds only finite numbers, or None."""
        self.manager.reload()
        for step in sorted(self.manager.all_steps(), reverse=True):
            state = self._try_restore(step, abstract_state)
            if isinstance(state, str):
                target = self._quarantine(step)
                log.warning("checkpoint at step %d could not be restored (%s); moved to %s, trying the one before it",
                            step, state, target)
                self.manager.reload()
                continue
            return step, state
        return None

    def _quarantine(self, step: int) -> Path:
        self.quarantine.mkdir(exist_ok=True)
        target, n = self.quarantine / str(step), 1
        while target.exists():  # the same step damaged twice: keep both
            target, n = self.quarantine / f"{step}.{n}", n + 1
        shutil.move(str(self.directory / str(step)), str(target))
        return target

    def _try_restore(self, step: int, abstract_state: Any) -> Any:
        """The restored state, or a string saying why it is unusable."""
        damage = check_sums(self.directory / str(step))
        if damage is not None:
            return damage
        try:
            state = self.manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
        except Exception as e:  # orbax raises many types for damaged files
            return f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
        floats = [x for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.floating)]
        if not all(bool(jnp.isfinite(x).all()) for x in floats):
            return "non-finite values"
        return state

    def close(self, quiet: bool = False) -> None:
        """Finish, seal and collect pending saves (an unfinished one would be left as a
        *.orbax-checkpoint-tmp directory), then release the manager. ``quiet``: the run is already
        failing, so a failure here is logged rather than raised over the first one."""
        try:
            self._settle()
        except Exception as e:
            if not quiet:
                raise
            log.warning("the last checkpoint save failed too: %s", e)
        finally:
            try:
                self.manager.close()
            except Exception as e:
                if not quiet:
                    raise
                log.warning("closing the checkpoint manager failed: %s", e)
