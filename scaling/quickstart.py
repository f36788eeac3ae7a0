"""`scaling quickstart`: the offline first experiment. Runs ``sweeps/quickstart.yaml`` (a tiny IsoFLOP
grid on the byte-level standard library, about four minutes on a 2-core CPU) and fits it.

The sweep file is found next to the package (the repository checkout that ``pip install -e .``
installs), so the file a reader opens in ``sweeps/`` is the one that runs: there is no packaged
copy to drift from it. Relaunching resumes; a finished quickstart only fits again.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import scaling
from scaling.config import ConfigError
from scaling.sweeps import child, launcher, planner, spec
from scaling.sweeps.fmt import sci, si
from scaling.sweeps.local import LocalExecutor, visible_gpus
from scaling.sweeps.status import collect

# Runs of tiny models leave cores idle between steps: on 2 cores two at once finished the sweep
# about 1.25x sooner than one at a time (benchmarks/RESULTS.md).
_MAX_PARALLEL = 4


def sweep_path() -> Path:
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
        cells = [f"N={si(n)}: {loss:.3f}{'*' if (n, loss) == best else ''}" for n, loss in sorted(points)]
        lines.append(f"  C={sci(budget)} FLOPs   " + "   ".join(cells))
    return "\n".join(lines)


def main(args) -> int:
    from analysis import cli as analysis_cli

    start = time.perf_counter()
    plan = planner.plan(spec.load(sweep_path()), args.runs_dir)
    gpus = visible_gpus()
    parallel = len(gpus) or min(os.cpu_count() or 1, _MAX_PARALLEL)
    env = child.environment(child.default_compile_cache())
    code = launcher.launch(plan, LocalExecutor(parallel, env, gpus))
    print(f"\nquickstart sweep finished in {time.perf_counter() - start:.0f} s; final validation loss "
          f"(nats/byte; {plan.spec.count} N):\n{_profiles(plan)}")
    if code != 0:
        return code
    return analysis_cli.main(["analyze", str(plan.sweep_dir), "--out", str(plan.sweep_dir / "analysis")])
