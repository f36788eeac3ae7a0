"""Text tables for `sweep plan` and `sweep status`, and the launcher's one-line progress."""

from __future__ import annotations

import math

from scaling.sweeps.estimate import Throughput
from scaling.sweeps.fmt import duration, sci, si
from scaling.sweeps.planner import PlannedRun, SweepPlan
from scaling.sweeps.state import STDERR, latest_checkpoint
from scaling.sweeps.status import RunState, counts


_TAG_LABELS = {"budget_flops": "C", "target_params": "N*", "tokens_per_param": "D/N", "budget_tokens": "D",
               "budget_steps": "steps"}


def tags(run: PlannedRun) -> str:
    """A run's axis tags in short form for a table cell: "C=1e15 N*=2e5", "D/N=20", "cooldown from step 900"."""
    parts = []
    for key, value in run.tags.items():
        if key in ("stable_run", "branch_step"):
            continue
        if key == "wsd_role":
            parts.append(value if value == "stable" else f"cooldown from step {run.tags['branch_step']}")
        else:
            label = _TAG_LABELS.get(key, key.rsplit(".", 1)[-1])
            parts.append(f"{label}={sci(value) if isinstance(value, float) else value}")
    return " ".join(parts)


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Left-aligned first and last columns, right-aligned numbers between."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells):
        out = []
        for i, (cell, width) in enumerate(zip(cells, widths, strict=True)):
            out.append(str(cell).ljust(width) if i in (0, 1, len(cells) - 1) else str(cell).rjust(width))
        return "  ".join(out).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])


def plan_table(plan: SweepPlan, throughput: Throughput, parallel: int) -> str:
    """The ``sweep plan`` report: one row per run (shape, N, D in tokens, exact C and 6ND in FLOPs, their
    ratio, D/N, steps, estimated time), then totals, the time estimate for ``parallel`` runs at once
    with its basis, skipped points and warnings."""
    spec = plan.spec
    rows = []
    total_seconds = 0.0
    for run in plan.runs:
        seconds = throughput.seconds(run.trained_steps, run.trained_flops)
        total_seconds = total_seconds + seconds if seconds is not None else math.nan
        rows.append([run.name, run.shape, si(run.n), si(run.tokens), sci(run.flops), sci(run.flops_6nd),
                     f"{run.flops_6nd / run.flops:.2f}", sci(run.tokens / run.n), str(run.steps),
                     duration(seconds), tags(run)])
    headers = ["run", "shape", f"N ({spec.count})", "D", "C exact", "C 6ND", "6ND/C", "D/N", "steps",
               "est", "tags"]
    tokens = sum(r.trained_tokens for r in plan.runs)
    flops = sum(r.trained_flops for r in plan.runs)
    flops_6nd = sum(r.trained_tokens * r.accounting.flops_per_token_6n for r in plan.runs)
    known = not math.isnan(total_seconds)
    estimate = f"estimated time on {throughput.device}: {duration(total_seconds if known else None)} one run at a time"
    if parallel > 1 and known and throughput.shared_note is None:
        estimate += f", about {duration(total_seconds / parallel)} with --parallel {parallel} (one run per device)"
    lines = [f"sweep {spec.name}: {len(plan.runs)} runs -> {plan.sweep_dir}", *filter(None, [spec.description]), "",
             table(headers, rows), "",
             f"to train: {si(tokens)} tokens, {sci(flops)} FLOPs exact ({sci(flops_6nd)} as 6ND)", estimate,
             f"  ({throughput.basis})"]
    if parallel > 1 and throughput.shared_note:
        lines.append(f"  ({throughput.shared_note})")
    if any(r.after for r in plan.runs):
        lines.append("  (a WSD cooldown's D and C include its stable run's steps before the branch; "
                     "est and the totals count only the steps it trains itself)")
    lines += [f"skipped: {s}" for s in plan.skipped]
    lines += [f"warning: {w}" for w in plan.warnings]
    return "\n".join(lines)


def _loss(x: float | None) -> str:
    return "" if x is None else f"{x:.4f}"


def killed_note(s: RunState) -> str:
    """How a killed run was ended and where a relaunch resumes it, for the status table."""
    kill = s.killed or {"checkpoint_step": latest_checkpoint(s.run.run_dir)}
    by = f"by {kill['signal']}" if kill.get("signal") else "(signal unknown: its process vanished)"
    when = f" at {kill['at']}" if kill.get("at") else ""
    step = kill["checkpoint_step"]
    return (f"killed {by}{when}; a relaunch " + (f"resumes it from step {step}" if step is not None
                                                 else "starts it again (no checkpoint yet)")
            + ("; its launch gave up on it after repeated kills there" if s.gave_up else ""))


def status_table(plan: SweepPlan, states: list[RunState], launcher: int | None) -> str:
    """The ``sweep status`` report: one row per run (status, step, tokens, last train and eval loss in
    nats/token, N, C, and tags or the error), headed by whether a launch holds the sweep (``launcher``:
    its pid, or None) and closed by ``summary``."""
    rows = []
    for s in states:
        note = tags(s.run)
        if s.status == "blocked":
            note = s.error
        elif s.status == "failed":
            exit_code = f"exit {s.exit_code}: " if s.exit_code is not None else ""
            error = (s.error or "no error recorded").splitlines()[-1][:100]
            note = f"{exit_code}{error} (log: {s.run.run_dir / STDERR})"
        elif s.status == "killed":
            note = killed_note(s)
        rows.append([s.run.name, s.status, f"{s.step}/{s.run.steps}", si(s.step * s.run.tokens_per_step),
                     _loss(s.train_loss), _loss(s.eval_loss), si(s.run.n), sci(s.run.flops), note])
    headers = ["run", "status", "step", "tokens", "loss", "eval", "N", "C", "tags / error"]
    launch = f"a launch is running (pid {launcher})" if launcher else "no launch is running"
    return "\n".join([f"sweep {plan.spec.name} in {plan.sweep_dir}: {launch}", "", table(headers, rows), "",
                      summary(states)])


def summary(states: list[RunState]) -> str:
    """One line of counts by status and the tokens trained so far against the sweep's total."""
    c = counts(states)
    done_tokens = sum(s.trained_tokens for s in states)
    target = sum(s.run.trained_tokens for s in states)
    parts = [f"{c['done']}/{len(states)} done", f"{c['running']} running", f"{c['failed']} failed"]
    parts += [f"{c[k]} {k}" for k in ("killed", "resumable", "pending", "blocked") if c[k]]
    return f"{', '.join(parts)} | {si(done_tokens)}/{si(target)} tokens ({done_tokens / max(target, 1):.0%})"
