"""How noisy the final losses are: the evaluation's own error, and the spread between seeds.

A law fitted to losses cannot be trusted to a finer grain than the losses themselves, so the report
states both: the standard error of each final validation loss over its batches (a property of the
evaluation set's size), and, where the same run was repeated with other seeds, the spread between
those repeats (a property of training: initialisation and data order).
"""

from __future__ import annotations

import numpy as np

from analysis.isoflop import snap_budgets
from analysis.load import Sweep

EVAL_SE_LIMIT = 0.002  # relative standard error above which the evaluation itself blurs 1% differences


def _paired_se(sweep: Sweep) -> np.ndarray:
    """Per run, the standard error of its final loss minus the best run's of its budget, batch by batch on the
    shared evaluation batches, over the loss: [runs with batch losses]. Budgets are ``isoflop.snap_budgets``
    over the planned C; where a run has none, all runs form one group."""
    runs = [r for r in sweep.runs if r.final_batch_losses is not None]
    targets = [r.compute_target for r in runs]
    budgets = snap_budgets(targets) if runs and all(t is not None for t in targets) else [None] * len(runs)
    groups: dict = {}
    for r, budget in zip(runs, budgets):
        groups.setdefault(budget, []).append(r)
    rel = []
    for group in groups.values():
        best = min(group, key=lambda r: r.final_loss)
        for r in group:
            if r is best or len(r.final_batch_losses) != len(best.final_batch_losses):
                continue
            diff = r.final_batch_losses - best.final_batch_losses
            rel.append(diff.std(ddof=1) / np.sqrt(diff.size) / r.final_loss)
    return np.array(rel)


def measurement_noise(sweep: Sweep, seeds: Sweep | None = None) -> dict:
    """``{"eval": {...} | None, "seeds": {...} | None}``, every figure relative to the loss.

    ``eval``: over the runs that recorded a standard error, its median and maximum divided by the loss
    (how well the evaluation batches stand for the whole validation split: an offset every run shares);
    and, where runs recorded their per-batch losses, the paired standard error of each run's loss minus
    the best run's of its budget (the noise in the differences the fits resolve), with whether its
    maximum is under ``EVAL_SE_LIMIT``. ``seeds``: the runs of ``seeds`` with the runs of ``sweep`` at
    the same N and D (one configuration repeated with other seeds): their count, N, D, mean loss and
    sample standard deviation (ddof=1) over the mean; None when there are not two.
    """
    rel = np.array([r.final_loss_se / r.final_loss for r in sweep.runs if r.final_loss_se is not None])
    out: dict = {"eval": None, "seeds": None}
    if rel.size:
        paired = _paired_se(sweep)
        out["eval"] = {"runs": int(rel.size), "median_relative_se": float(np.median(rel)),
                       "max_relative_se": float(rel.max()), "limit": EVAL_SE_LIMIT,
                       "paired_runs": int(paired.size),
                       "median_paired_relative_se": float(np.median(paired)) if paired.size else None,
                       "max_paired_relative_se": float(paired.max()) if paired.size else None,
                       "within_limit": bool(paired.size and paired.max() <= EVAL_SE_LIMIT)}
    if seeds is not None and seeds.runs:
        first = seeds.runs[0]
        same = [r for r in (*sweep.runs, *seeds.runs)
                if r.n_params == first.n_params and r.tokens == first.tokens]
        losses = np.array([r.final_loss for r in same])
        if losses.size >= 2:
            out["seeds"] = {"runs": int(losses.size), "N": first.n_params, "D": first.tokens,
                            "mean_loss": float(losses.mean()),
                            "relative_std": float(losses.std(ddof=1) / losses.mean())}
    return out


def describe(noise: dict) -> list[str]:
    """The noise in plain sentences, for the console and the report."""
    lines = []
    ev = noise.get("eval")
    if ev:
        lines.append(f"evaluation sample: the final validation loss's standard error over its batches is "
                     f"{100 * ev['median_relative_se']:.2f}% of the loss (median of {ev['runs']} runs; largest "
                     f"{100 * ev['max_relative_se']:.2f}%): how far the evaluation batches may sit from the whole "
                     "validation split, an offset every run evaluated on them shares")
        if ev["paired_runs"]:
            verdict = "" if ev["within_limit"] else (
                f"; above {100 * ev['limit']:.1f}% the evaluation itself blurs differences of about 1% in loss: "
                "evaluate on more batches (data.eval_batches)")
            lines.append(f"evaluation noise between runs: a run's loss minus the best of its budget, batch by batch "
                         f"on the same batches, has a standard error of {100 * ev['median_paired_relative_se']:.2f}% "
                         f"of the loss (median of {ev['paired_runs']} runs; largest "
                         f"{100 * ev['max_paired_relative_se']:.2f}%){verdict}")
        else:
            lines.append("evaluation noise between runs: not measured (the runs did not record per-batch losses)")
    sd = noise.get("seeds")
    if sd:
        lines.append(f"seed-to-seed spread: {sd['runs']} seeds of the run with N={sd['N']:.3g}, D={sd['D']:.3g} "
                     f"give final losses with a standard deviation of {100 * sd['relative_std']:.2f}% of their "
                     f"mean {sd['mean_loss']:.4f}")
    return lines
