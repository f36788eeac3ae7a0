"""The run directory: the one contract between training, sweeps and analysis, written here.

Its file names and keys are defined once, in ``analysis.run_format``, which analysis reads with.

``run.json`` is rewritten atomically (temp file + rename), so a reader in another shell never sees
half a file. ``metrics.jsonl`` is append-only; on resume the lines past the restored checkpoint's
step are dropped first, so that no step appears twice.
"""

from __future__ import annotations

import datetime
import json
import math
import os
from pathlib import Path
from typing import Any

from analysis import run_format
from scaling.errors import EXIT_FAILED, UserError, naming

_LAST_ROW_BYTES = 64 << 10  # far more than one metrics row


class RunFailed(UserError):
    """The run stopped for a reason that is recorded in run.json (a non-finite loss, a full disk)."""

    def __init__(self, message: str, step: int | None = None, exit_code: int = EXIT_FAILED):
        super().__init__(message)
        self.step = step
        self.exit_code = exit_code


STATUSES = run_format.STATUSES


def now() -> str:
    """The current UTC time as ISO 8601 to the second (``2026-01-31T12:00:00+00:00``), for run.json."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json_atomic(path: Path, data: dict) -> None:
    """Write a temp file and rename it over ``path``; on failure (a full disk) no temp file is left."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with naming(tmp):
            tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class RunDir:
    """Paths and reads/writes of one run directory (config.yaml, run.json, metrics.jsonl, tb/, checkpoints/).

    File names come from ``analysis.run_format``. Constructing it touches no file. When ``writes``
    is False (every process but the first of a multi-process run) the writers validate their
    input but write nothing, so one process owns the directory.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config_path = self.path / run_format.CONFIG
        self.run_json_path = self.path / run_format.RUN_JSON
        self.metrics_path = self.path / run_format.METRICS
        self.tb_path = self.path / run_format.TENSORBOARD
        self.checkpoint_path = self.path / run_format.CHECKPOINTS
        self.lock_path = self.path / run_format.LOCK
        self.writes = True  # False on every process but the first of a multi-process run

    def exists(self) -> bool:
        """Whether a run was started here: its config.yaml is written before anything else."""
        return self.config_path.exists()

    def read_run(self) -> dict:
        """run.json's contents ({} when absent); a damaged file is a UserError naming it."""
        if not self.run_json_path.exists():
            return {}
        try:
            run = json.loads(self.run_json_path.read_text())
        except (ValueError, UnicodeDecodeError) as e:
            raise UserError(f"{self.run_json_path} is damaged ({e}); fix or remove it") from None
        if not isinstance(run, dict):
            raise UserError(f"{self.run_json_path} is damaged (not a JSON object); fix or remove it")
        return run

    def update_run(self, **fields: Any) -> dict:
        """Merge fields into run.json; keys and status must be ones ``analysis.run_format`` defines
        (``ValueError`` otherwise: a programming error, caught before anything is written)."""
        unknown = sorted(set(fields) - run_format.RUN_KEYS)
        if unknown:
            raise ValueError(f"run.json keys {unknown} are not in analysis.run_format.RUN_KEYS")
        if run_format.STATUS in fields and fields[run_format.STATUS] not in STATUSES:
            raise ValueError(f"unknown run status {fields[run_format.STATUS]!r}")
        run = self.read_run()
        run.update({k: _finite_or_none(v) for k, v in fields.items()})
        if self.writes:
            self.path.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.run_json_path, run)
        return run

    def iter_metrics(self):
        """Parsed rows, one at a time; stops at a line cut short by a kill (everything after it is untrustworthy)."""
        if not self.metrics_path.exists():
            return
        with self.metrics_path.open() as f:
            for line in f:
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError:
                        return

    def read_metrics(self) -> list[dict]:
        """Every complete metrics row in step order (``iter_metrics`` as a list; [] when there is no file)."""
        return list(self.iter_metrics())

    def last_metrics(self) -> dict | None:
        """The newest complete row, read from the end of the file: a long run's file is never read whole
        (the launcher and `sweep status` ask this of every run on every poll)."""
        try:
            with self.metrics_path.open("rb") as f:
                f.seek(max(0, self.metrics_path.stat().st_size - _LAST_ROW_BYTES))
                tail = f.read().decode(errors="replace")
        except FileNotFoundError:
            return None
        for line in reversed(tail.splitlines()):  # a row cut short by a kill does not parse: skip it
            try:
                return json.loads(line)
            except ValueError:
                continue
        return None

    def truncate_metrics(self, last_step: int) -> None:
        """Keep only rows up to ``last_step`` (the checkpoint a resume starts from), streaming."""
        if not self.writes:
            return
        tmp = self.metrics_path.with_name(run_format.METRICS + ".tmp")
        try:
            with naming(tmp), tmp.open("w") as out:
                for row in self.iter_metrics():
                    if row[run_format.STEP] <= last_step:
                        out.write(json.dumps(row) + "\n")
            os.replace(tmp, self.metrics_path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def append_metrics(self, row: dict) -> None:
        """Append one row; its keys must be ``analysis.run_format.METRIC_COLUMNS`` (``ValueError`` otherwise)."""
        unknown = sorted(set(row) - run_format.METRIC_COLUMNS)
        if unknown:
            raise ValueError(f"metrics columns {unknown} are not in analysis.run_format.METRIC_COLUMNS")
        if not self.writes:
            return
        with naming(self.metrics_path), self.metrics_path.open("a") as f:
            f.write(json.dumps({k: _finite_or_none(v) for k, v in row.items()}) + "\n")
