"""Wall time of a sweep on this machine, with and without JAX's persistent compilation cache.

    python benchmarks/bench_sweep.py                         # sweeps/quickstart.yaml, --parallel 1 and 2
    python benchmarks/bench_sweep.py --parallel 2 --sweep sweeps/quickstart.yaml

For each parallelism, three launches into fresh runs directories:
- ``off``: ``--no-compile-cache``; every run compiles its own steps;
- ``cold``: an empty cache, filled as the sweep goes (runs of one shape reuse the eval step, the
  initialisation and, where their lengths match, the train step);
- ``warm``: the cache the cold launch left, as a relaunch or a second sweep of the same shapes sees it.

The dataset is prepared first so that no timing includes it. Prints one markdown row per launch,
then the constants of ``scaling/sweeps/estimate.py`` fitted to the runs of the warm one-at-a-time
launch (run wall time = startup + steps x per-step overhead + FLOPs / rate, least squares).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _launch(sweep: Path, runs: Path, parallel: int, cache: list[str]) -> float:
    command = [sys.executable, "-m", "scaling.cli", "sweep", "launch", str(sweep), "--runs-dir", str(runs),
               "--parallel", str(parallel), "--gpus", "none", *cache]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    return time.perf_counter() - start


def _calibrate(runs: Path) -> str:
    import numpy as np

    rows = []
    for run_json in runs.glob("*/*/run.json"):
        info = json.loads(run_json.read_text())
        spawned = json.loads((run_json.parent / "launch.json").read_text())["started"]
        wall = datetime.datetime.fromisoformat(info["finished"]) - datetime.datetime.fromisoformat(spawned)
        rows.append((1.0, info["total_steps"], info["compute_target"], wall.total_seconds()))
    a = np.array(rows)
    (startup, per_step, per_flop), *_ = np.linalg.lstsq(a[:, :3], a[:, 3], rcond=None)
    return (f"calibration ({len(rows)} runs, one at a time, warm cache): startup {startup:.1f} s, "
            f"{per_step * 1e3:.1f} ms per step, {1 / per_flop:.2g} FLOP/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", type=Path, default=REPO / "sweeps" / "quickstart.yaml")
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    from scaling.sweeps import planner, spec

    planner.plan(spec.load(args.sweep), tempfile.gettempdir())  # prepares and caches the dataset
    print(f"{args.sweep.name} on {platform.processor() or platform.machine()}, {os.cpu_count()} cores\n")
    print("| parallel | compilation cache | wall time |")
    print("|---:|---|---:|")
    for parallel in args.parallel:
        with tempfile.TemporaryDirectory() as tmp:
            cache = Path(tmp) / "jax_cache"
            for mode, flags in (("off", ["--no-compile-cache"]), ("cold", ["--compile-cache", str(cache)]),
                                ("warm", ["--compile-cache", str(cache)])):
                seconds = _launch(args.sweep, Path(tmp) / f"runs-{mode}", parallel, flags)
                print(f"| {parallel} | {mode} | {seconds:.0f} s |", flush=True)
            if parallel == 1:
                calibration = _calibrate(Path(tmp) / "runs-warm")
    if 1 in args.parallel:
        print(f"\n{calibration}")


if __name__ == "__main__":
    main()
