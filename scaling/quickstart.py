"""`scaling quickstart`: the offline first experiment, which fits a law and then tests it on a run it has
not seen.

1. The IsoFLOP grid of ``sweeps/quickstart.yaml`` (byte-level standard library, tiny GPTs).
2. Approach 3 (Hoffmann et al. 2022, section 3.3) fitted to the grid says which model size is
   compute-optimal at ``HOLDOUT_FACTOR`` times the grid's largest budget, along the runs' exact FLOP
   model; that run is trained, with ``HOLDOUT_SEEDS`` seeds, into ``RUNS_DIR/quickstart-holdout`` (a
   sweep of its own, so no fit of the grid ever sees it).
3. ``scaling analyze`` on the grid, predicting the held-out runs from the law the grid gives: the
   three approaches side by side, then predicted against actual final loss.

The sweep file is found next to the package (the repository checkout that ``pip install -e .``
installs), so the file a reader opens in ``sweeps/`` is the one that runs: there is no packaged
copy to drift from it. Relaunching resumes both sweeps; a finished quickstart only fits again.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import yaml

import scaling
from scaling.config import ConfigError, RunConfig
from scaling.errors import UserError
from scaling.sweeps import child, launcher, planner, shapes, spec
from scaling.sweeps.fmt import sci, si
from scaling.sweeps.local import LocalExecutor, visible_gpus
from scaling.sweeps.status import collect

HOLDOUT_FACTOR = 4.0  # the held-out budget over the grid's largest: a real extrapolation, not interpolation
HOLDOUT_NAME = "quickstart-holdout"
# Seeds of the held-out run: one run's final loss scatters by about 1% with its seed at these sizes (three seeds
# of a 57k-parameter model at 8.8e11 FLOPs), half the 2% a law should predict within, so the check compares the
# law with two runs. They train side by side, one per core, for little more wall time than one.
HOLDOUT_SEEDS = 2
SEEDS, SEEDS_NAME = 2, "quickstart-seeds"  # extra seeds of the smallest budget's best run
# At most as many runs at once as cores: each is pinned to its own (scaling.sweeps.local.cpu_slots).
_MAX_PARALLEL = 4


def sweep_path() -> Path:
    """``sweeps/quickstart.yaml`` of the checkout this package was installed from; ConfigError if missing."""
    path = Path(scaling.__file__).resolve().parent.parent / "sweeps" / "quickstart.yaml"
    if not path.is_file():
        raise ConfigError(f"{path} is missing: `scaling quickstart` runs from a checkout of the repository "
                          "installed with `pip install -e .`")
    return path


def _profiles(plan: planner.SweepPlan) -> str:
    """Final validation loss per budget and model size, the best of each budget starred."""
    by_budget: dict[float, list] = {}
    for s in collect(plan.runs):
        if s.eval_loss is not None:
            by_budget.setdefault(s.run.tags["budget_flops"], []).append((s.run.n, s.eval_loss))
    lines = []
    for budget, points in sorted(by_budget.items()):
        best = min(points, key=lambda p: p[1])
        cells = [f"{si(n)}: {loss:.3f}{'*' if (n, loss) == best else ''}" for n, loss in sorted(points)]
        lines.append(f"  C={sci(budget)}  " + "  ".join(cells))
    return "\n".join(lines)


def holdout_target(grid_dir: Path, budget: float) -> dict:
    """The compute-optimal total N and D at ``budget`` FLOPs from Approach 3 fitted to the runs in ``grid_dir``.

    Returns ``{"N_opt", "D_opt", "status", "reasons"}``; the fit's verdict travels with the answer, and the
    quickstart prints it before training the held-out run. Raises UserError when nothing can be fitted.
    """
    from analysis import predict
    from analysis.bootstrap import Bootstrap
    from analysis.chinchilla import fit_chinchilla
    from analysis.errors import FitError
    from analysis.load import load_runs

    try:
        sweep = load_runs(grid_dir)
        N, D, loss, C = (sweep.column(k) for k in ("n_params", "tokens", "final_loss", "compute"))
        # The point estimate decides the size; the intervals come later, from the full analysis.
        fit = fit_chinchilla(N, D, loss, flops_per_token=C / D, bootstrap=Bootstrap(resamples=0))
        optimum = predict.at_compute(fit, budget)
    except FitError as exc:
        raise UserError(f"the quickstart's grid in {grid_dir} gives no law to test: {exc}") from None
    return {"N_opt": optimum["N_opt"]["value"], "D_opt": optimum["D_opt"]["value"], "status": fit.status,
            "reasons": [d["message"] for d in fit.diagnostics if d["severity"] != "info"]}


def _derived_spec(source: Path, out: Path, name: str, description: str, axes: list, **changes) -> spec.SweepSpec:
    """The grid's sweep file with another name, description and axes, written to ``out`` (so that ``scaling
    sweep status`` and a relaunch read the same file) and loaded from there."""
    data = yaml.safe_load(source.read_text())
    data.update(name=name, description=description, axes=axes, **changes)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return spec.load(out)


def holdout_spec(source: Path, n_opt: float, budget: float, out: Path) -> spec.SweepSpec:
    """The held-out sweep: ``HOLDOUT_SEEDS`` seeds of one run at ``budget`` FLOPs, total N nearest ``n_opt``.

    The fit speaks of total N, the grid's file may count non-embedding N (which its per-size learning
    rate rule reads), so the shape is found by total N first and then named by the grid's count: the
    held-out run gets the rate the grid's rule gives its size.
    """
    description = (f"the quickstart's held-out run: {HOLDOUT_FACTOR:g}x the grid's largest budget at the "
                   "compute-optimal size the grid's law predicts")

    grid = spec.load(source)
    seed = grid.base.get("seed", RunConfig.seed)  # the grid's seed, then more

    def axes(size: float) -> list:
        return [{"isoflop": {"budgets": [budget], "sizes": [size]}},
                {"grid": {"seed": list(range(seed, seed + HOLDOUT_SEEDS))}}]

    by_total = _derived_spec(source, out, HOLDOUT_NAME, description, axes(float(f"{n_opt:.4g}")), count="total")
    run = planner.plan(by_total, out.parent).runs[0]
    return _derived_spec(source, out, HOLDOUT_NAME, description, axes(shapes.count_params(run.cfg.model, grid.count)))


def seeds_spec(source: Path, run: planner.PlannedRun, out: Path) -> spec.SweepSpec:
    """``SEEDS`` more runs of the grid's ``run`` (same shape and budget) with other seeds, for the spread."""
    return _derived_spec(source, out, SEEDS_NAME,
                         "the quickstart's seed-to-seed noise: one run of the grid again with other seeds",
                         [{"isoflop": {"budgets": [run.tags["budget_flops"]], "sizes": [run.tags["target_params"]]}},
                          {"grid": {"seed": list(range(run.cfg.seed + 1, run.cfg.seed + 1 + SEEDS))}}])


def _launch(plan: planner.SweepPlan) -> int:
    gpus = visible_gpus()
    # No more slots than runs: a lone run is not pinned, so it has every core.
    parallel = len(gpus) or min(os.cpu_count() or 1, _MAX_PARALLEL, len(plan.runs))
    env = child.environment(child.default_compile_cache())
    return launcher.launch(plan, LocalExecutor(parallel, env, gpus))


def main(args) -> int:
    """Run the grid, the held-out run and the analysis; the exit code of the first step that fails."""
    from analysis import cli as analysis_cli

    start = time.perf_counter()
    source = sweep_path()
    plan = planner.plan(spec.load(source), args.runs_dir)
    code = _launch(plan)
    print(f"\nquickstart grid finished in {time.perf_counter() - start:.0f} s; final validation loss "
          f"({plan.spec.count} N):\n{_profiles(plan)}")
    if code != 0:
        return code

    smallest = min(r.tags["budget_flops"] for r in plan.runs)
    best = min((s for s in collect(plan.runs) if s.run.tags["budget_flops"] == smallest and s.eval_loss is not None),
               key=lambda s: s.eval_loss).run
    seeds_plan = planner.plan(seeds_spec(source, best, plan.sweep_dir.parent / f"{SEEDS_NAME}.yaml"), args.runs_dir)
    code = _launch(seeds_plan)
    if code != 0:
        return code

    budget = HOLDOUT_FACTOR * max(r.tags["budget_flops"] for r in plan.runs)
    target = holdout_target(plan.sweep_dir, budget)
    verdict = "" if target["status"] == "ok" else \
        f" (the fit is {target['status']}: {'; '.join(target['reasons'])})"
    print(f"\nApproach 3 on the grid: at C={sci(budget)} FLOPs ({HOLDOUT_FACTOR:g}x the largest budget) the "
          f"compute-optimal model has N={si(target['N_opt'])} parameters and D={si(target['D_opt'])} tokens"
          f"{verdict}; training it now to test the law.")
    held_plan = planner.plan(holdout_spec(source, target["N_opt"], budget,
                                          plan.sweep_dir.parent / f"{HOLDOUT_NAME}.yaml"), args.runs_dir)
    code = _launch(held_plan)
    print(f"\nquickstart runs finished in {time.perf_counter() - start:.0f} s")
    if code != 0:
        return code
    return analysis_cli.main(["analyze", str(plan.sweep_dir), "--out", str(plan.sweep_dir / "analysis"),
                              "--holdout-runs", str(held_plan.sweep_dir), "--seed-runs", str(seeds_plan.sweep_dir)])
