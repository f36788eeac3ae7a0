"""Reading inputs: run directories (their format: ``analysis.run_format``) and CSVs of published points.

Both are files that may come from anywhere, so they are parsed as data only
(``json`` and ``csv``; no eval, no pickle) and every problem becomes either a
note (a run that is skipped, with the reason) or a ``FitError``.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from analysis import run_format as rf
from analysis.errors import FitError

REQUIRED_RUN_KEYS = rf.REQUIRED_RUN_KEYS


@dataclass
class Run:
    """One finished run: identity, accounting, its curves and its final loss.

    ``compute`` is the exact training FLOPs (flops_per_token x tokens) and
    ``compute_6nd`` the 6 N D approximation, kept side by side because for the
    tiny models of a CPU sweep they differ a lot.
    """

    run_id: str
    sweep: str
    path: str
    n_params: float
    n_params_non_embedding: float
    n_params_embedding: float
    tokens: float
    compute: float
    compute_6nd: float
    compute_target: float | None
    final_loss: float
    final_loss_source: str
    steps: np.ndarray
    curve_tokens: np.ndarray
    curve_flops: np.ndarray
    train_loss: np.ndarray
    eval_loss: np.ndarray
    status: str = rf.DONE
    loss_unit: str = "loss"
    final_loss_se: float | None = None  # standard error of the final validation loss over its batches
    final_batch_losses: np.ndarray | None = None  # the final validation loss of each evaluation batch

    def curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(flops, tokens, loss) of the validation curve, or the training curve if never evaluated."""
        use = np.isfinite(self.eval_loss) if self.final_loss_source == "eval" else np.isfinite(self.train_loss)
        loss = self.eval_loss if self.final_loss_source == "eval" else self.train_loss
        ok = use & (self.curve_flops > 0) & (self.curve_tokens > 0) & (loss > 0)
        return self.curve_flops[ok], self.curve_tokens[ok], loss[ok]


@dataclass
class Sweep:
    """The runs that can be analysed and a note for every run that cannot."""

    root: str
    runs: list[Run]
    notes: list[str] = field(default_factory=list)

    @property
    def loss_unit(self) -> str:
        """What the losses measure, from the runs' tokenizer: "nats per byte", "nats per token" or just "loss"."""
        units = {r.loss_unit for r in self.runs}
        return units.pop() if len(units) == 1 else "loss (runs differ in tokenizer: not comparable)"

    def column(self, name: str) -> np.ndarray:
        """Attribute ``name`` of every run (e.g. "n_params", "tokens", "compute") as float64 [n_runs]."""
        return np.array([getattr(r, name) for r in self.runs], dtype=np.float64)

    def table(self) -> list[dict]:
        """The tidy per-run table that goes into fits.json and the report."""
        return [{"run_id": r.run_id, "sweep": r.sweep, "N": r.n_params, "N_non_embedding": r.n_params_non_embedding,
                 "N_embedding": r.n_params_embedding, "D": r.tokens, "C": r.compute, "C_6ND": r.compute_6nd,
                 "C_target": r.compute_target, "loss": r.final_loss, "loss_source": r.final_loss_source,
                 "status": r.status} for r in self.runs]


def _number(value) -> float:
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _read_metrics(path: Path) -> tuple[list[dict], int]:
    """Metric records and the count of unreadable lines (a run killed mid-write leaves half a line)."""
    records, bad = [], 0
    if not path.exists():
        return records, bad
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                bad += 1
                continue
            if isinstance(rec, dict):
                records.append(rec)
            else:
                bad += 1
    return records, bad


def _loss_unit(meta: dict) -> str:
    """Cross-entropy is in nats per tokenizer unit: per byte for the byte tokenizer, per token otherwise."""
    dataset = meta.get(rf.DATASET)
    tokenizer = dataset.get(rf.TOKENIZER) if isinstance(dataset, dict) else None
    kind = tokenizer.get(rf.TOKENIZER_KIND) if isinstance(tokenizer, dict) else None
    if kind == "byte":
        return "nats per byte"
    return "nats per token" if isinstance(kind, str) and kind else "loss"


def read_run(run_dir: Path) -> tuple[Run | None, list[str]]:
    """A Run, or None with notes saying why this directory cannot be used."""
    name = str(run_dir)
    try:
        meta = json.loads((run_dir / rf.RUN_JSON).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        return None, [f"skipped {name}: {rf.RUN_JSON} unreadable ({exc})"]
    if not isinstance(meta, dict):
        return None, [f"skipped {name}: {rf.RUN_JSON} is not an object"]
    missing = [k for k in REQUIRED_RUN_KEYS if k not in meta]
    if missing:
        return None, [f"skipped {name}: {rf.RUN_JSON} lacks {', '.join(missing)}"]
    run_id = str(meta[rf.RUN_ID])
    status = str(meta[rf.STATUS])
    if status != rf.DONE:
        why = f"status is {status!r}"
        if meta.get(rf.ERROR):
            why += f": {meta[rf.ERROR]}"
        return None, [f"excluded run {run_id}: {why}"]

    records, bad = _read_metrics(run_dir / rf.METRICS)
    notes = [f"run {run_id}: ignored {bad} unreadable line(s) in {rf.METRICS}"] if bad else []
    records = [r for r in records if math.isfinite(_number(r.get(rf.TOKENS)))]
    records.sort(key=lambda r: _number(r.get(rf.STEP)))
    if not records:
        return None, notes + [f"excluded run {run_id}: {rf.METRICS} has no usable records"]
    col = {k: np.array([_number(r.get(k)) for r in records]) for k in
           (rf.STEP, rf.TOKENS, rf.FLOPS, rf.TRAIN_LOSS, rf.EVAL_LOSS)}

    n = _number(meta.get(rf.N_PARAMS))
    n_ne = _number(meta.get(rf.N_PARAMS_NON_EMBEDDING))
    n_emb = _number(meta.get(rf.N_PARAMS_EMBEDDING))
    if not math.isfinite(n_emb):
        n_emb = n - n_ne
    fpt = _number(meta.get(rf.FLOPS_PER_TOKEN))
    if not np.all(np.isfinite(col[rf.FLOPS])) and math.isfinite(fpt):
        col[rf.FLOPS] = np.where(np.isfinite(col[rf.FLOPS]), col[rf.FLOPS], fpt * col[rf.TOKENS])
    tokens = float(col[rf.TOKENS][-1])
    compute = float(col[rf.FLOPS][-1]) if math.isfinite(col[rf.FLOPS][-1]) else fpt * tokens
    if not (math.isfinite(n) and n > 0 and math.isfinite(n_ne) and n_ne > 0 and tokens > 0 and compute > 0):
        return None, notes + [f"excluded run {run_id}: parameter counts, tokens or FLOPs are missing or not positive"]

    evaluated = np.flatnonzero(np.isfinite(col[rf.EVAL_LOSS]))
    if evaluated.size:
        final, source = float(col[rf.EVAL_LOSS][evaluated[-1]]), "eval"
    else:
        trained = np.flatnonzero(np.isfinite(col[rf.TRAIN_LOSS]))
        if not trained.size:
            return None, notes + [f"excluded run {run_id}: no finite loss in {rf.METRICS}"]
        final, source = float(col[rf.TRAIN_LOSS][trained[-1]]), "train"
        notes.append(f"run {run_id}: never evaluated, final loss is the last training loss")
    if not (math.isfinite(final) and final > 0):
        return None, notes + [f"excluded run {run_id}: final loss {final} is not a positive number"]
    target = _number(meta.get(rf.COMPUTE_TARGET))
    return Run(run_id=run_id, sweep=str(meta.get(rf.SWEEP, run_dir.parent.name)), path=name,
               n_params=n, n_params_non_embedding=n_ne, n_params_embedding=n_emb, tokens=tokens,
               compute=compute, compute_6nd=6.0 * n * tokens,
               compute_target=target if math.isfinite(target) and target > 0 else None,
               final_loss=final, final_loss_source=source, steps=col[rf.STEP], curve_tokens=col[rf.TOKENS],
               curve_flops=col[rf.FLOPS], train_loss=col[rf.TRAIN_LOSS], eval_loss=col[rf.EVAL_LOSS],
               loss_unit=_loss_unit(meta), final_loss_se=_final_se(meta) if source == "eval" else None,
               final_batch_losses=_batch_losses(meta) if source == "eval" else None), notes


def _batch_losses(meta: dict) -> np.ndarray | None:
    values = meta.get(rf.FINAL_EVAL_BATCH_LOSSES)
    if not isinstance(values, list) or len(values) < 2:
        return None
    losses = np.array([_number(v) for v in values])
    return losses if np.all(np.isfinite(losses)) else None


def _final_se(meta: dict) -> float | None:
    se = _number(meta.get(rf.FINAL_EVAL_LOSS_SE))
    return se if math.isfinite(se) and se >= 0 else None


def load_runs(root) -> Sweep:
    """Every run directory (any directory holding run.json) under ``root``, recursively."""
    root_path = Path(root)
    if not root_path.is_dir():
        raise FitError(f"{root}: not a directory")
    runs, notes = [], []
    for run_json in sorted(root_path.rglob(rf.RUN_JSON)):
        run, run_notes = read_run(run_json.parent)
        notes.extend(run_notes)
        if run is not None:
            runs.append(run)
    if not runs:
        raise FitError(f"{root}: no finished runs found (looked for */run.json with status 'done')"
                       + (f"; {len(notes)} note(s): " + "; ".join(notes[:3]) if notes else ""))
    return Sweep(root=str(root_path), runs=runs, notes=notes)


@dataclass
class Table:
    """Columns of a CSV of external points, as float arrays, plus what was skipped."""

    cols: dict[str, np.ndarray]
    notes: list[str]
    compute_given: bool = False


def parse_where(clauses) -> dict[str, str]:
    """``["dataset=rw", ...]`` to a dict, for selecting rows of a multi-configuration CSV."""
    out = {}
    for clause in clauses or []:
        key, sep, value = clause.partition("=")
        if not sep or not key:
            raise FitError(f"--where expects COLUMN=VALUE, got {clause!r}")
        out[key.strip()] = value.strip()
    return out


def load_csv(path, *, n_col: str = "N", d_col: str = "D", loss_col: str = "loss", c_col: str | None = "C",
             weight_col: str | None = None, where: dict[str, str] | None = None) -> Table:
    """Read N, D, loss (and C, weights if present) from a CSV; C falls back to 6 N D with a note.

    Rows with an empty or non-numeric entry in a required column are a
    ``FitError`` rather than silently dropped: a published set with holes should
    be looked at, not fitted around.
    """
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise FitError(f"{path}: cannot read CSV ({exc})") from None
    where = where or {}
    missing = [c for c in (n_col, d_col, loss_col, *where) if c not in header]
    if missing:
        raise FitError(f"{path}: missing column(s) {', '.join(missing)}; columns are {', '.join(header) or 'none'}")
    rows = [r for r in rows if all(r.get(k, "").strip() == v for k, v in where.items())]
    if not rows:
        raise FitError(f"{path}: no rows" + (" match the --where filter" if where else ""))

    def column(name: str) -> np.ndarray:
        values = []
        for i, r in enumerate(rows):
            v = _number((r.get(name) or "").strip() or None)
            if not math.isfinite(v):
                raise FitError(f"{path}: row {i + 1}: column {name!r} is {r.get(name)!r}, not a number")
            values.append(v)
        return np.array(values)

    cols = {"N": column(n_col), "D": column(d_col), "loss": column(loss_col)}
    notes = []
    given = bool(c_col and c_col in header)
    if given:
        cols["C"] = column(c_col)
    else:
        cols["C"] = 6.0 * cols["N"] * cols["D"]
        notes.append("no compute column: C = 6 N D")
    if weight_col:
        if weight_col not in header:
            raise FitError(f"{path}: missing weight column {weight_col!r}")
        cols["weight"] = column(weight_col)
    return Table(cols=cols, notes=notes, compute_given=given)
