"""Wall time of the quickstart and of sweeps on this machine, and where it goes.

    python benchmarks/bench_sweep.py                         # `scaling quickstart` end to end, with its parts
    python benchmarks/bench_sweep.py --keep /tmp/qs          # the same, keeping its runs for a second look
    python benchmarks/bench_sweep.py --sweep sweeps/quickstart.yaml --parallel 1 2   # compilation cache off/cold/warm

Default: ``scaling quickstart`` in a fresh runs directory with an empty compilation cache (the dataset
is prepared first, so no timing includes it), as a new user runs it. Prints its wall time, the summed
parts of every run's process from run.json's ``time_s`` (start-up: imports, data and building the steps;
first step: its compilation; steps; evaluation; checkpoints), the analysis (the wall time after the
last run), tokens trained per second of wall time, and the science the quickstart printed (approaches,
hold-out). Runs overlap (one per core), so summed process seconds exceed the wall time.

With ``--sweep``: for each parallelism, three launches into fresh runs directories:
- ``off``: ``--no-compile-cache``; every run compiles its own steps;
- ``cold``: an empty cache, filled as the sweep goes (runs of one shape share their compiled steps);
- ``warm``: the cache the cold launch left, as a relaunch or a second sweep of the same shapes sees it.
Then the constants of ``scaling/sweeps/estimate.py`` fitted to the runs of the warm one-at-a-time
launch (run wall time = startup + steps x per-step overhead + FLOPs / rate, least squares).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
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


PARTS = ("startup", "first_step", "steps", "eval", "checkpoint")


def _load_average() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def bench_quickstart(keep: Path | None) -> None:
    """``scaling quickstart`` from a fresh directory and an empty compilation cache; prints the figures.

    ``keep``: a directory (that must not exist) to copy the runs to afterwards, for a second look."""
    from scaling.quickstart import sweep_path
    from scaling.sweeps import planner, spec

    planner.plan(spec.load(sweep_path()), tempfile.gettempdir())  # prepares and caches the dataset
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_COMPILATION_CACHE_DIR": str(Path(tmp) / "jax")}
        load_before = _load_average()
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "scaling.cli", "quickstart", "--runs-dir", str(Path(tmp) / "runs")],
                             env=env, capture_output=True, text=True, check=True).stdout
        wall = time.perf_counter() - start
        runs = [json.loads(p.read_text()) for p in Path(tmp, "runs").glob("*/*/run.json")]
        if keep is not None:
            shutil.copytree(Path(tmp) / "runs", keep)
    trained = [float(line.split()[-2]) for line in out.splitlines() if line.startswith("quickstart runs finished in")]
    parts = {k: sum((r.get("time_s") or {}).get(k) or 0.0 for r in runs) for k in PARTS}
    tokens = sum(r["total_steps"] * r["tokens_per_step"] for r in runs)
    flops = sum(r["total_steps"] * r["tokens_per_step"] * r["flops_per_token"] for r in runs)
    print(f"`scaling quickstart` on {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{datetime.date.today()}, load average before {load_before}, after {_load_average()}\n")
    print(f"wall time {wall:.0f} s: {len(runs)} runs in {trained[0]:.0f} s, analysis {wall - trained[0]:.0f} s"
          if trained else f"wall time {wall:.0f} s")
    print(f"trained {tokens / 1e6:.1f}M tokens, {flops:.3g} FLOPs (exact): "
          f"{tokens / trained[0]:,.0f} tokens/s and {flops / trained[0]:.3g} FLOP/s of wall time" if trained else "")
    print("\n| part (summed over the runs' processes) | seconds | share |\n|---|---:|---:|")
    total = sum(parts.values())
    for k in PARTS:
        print(f"| {k.replace('_', ' ')} | {parts[k]:.0f} | {100 * parts[k] / total:.0f}% |")
    print("\nwhat the quickstart printed after its runs:")
    tail = out[out.index("Approach 3 on the grid"):] if "Approach 3 on the grid" in out else out[-3000:]
    print("\n".join("    " + line for line in tail.splitlines()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", type=Path, default=None,
                        help="time this sweep with the compilation cache off, cold and warm instead of the quickstart")
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--keep", type=Path, default=None,
                        help="quickstart: copy its runs directory here afterwards (it must not exist yet)")
    args = parser.parse_args()
    if args.keep is not None and args.keep.exists():
        parser.error(f"--keep {args.keep} exists; name a new directory")
    if args.sweep is None:
        bench_quickstart(args.keep)
        return

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
