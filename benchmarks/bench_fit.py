"""Benchmark: Chinchilla Approach 3 on 250 points, full 4,500-start grid plus 1,000 bootstrap refits.

The target is under 60 s on a 2-core CPU.  The first fit in a process pays for
XLA compilation, so both the cold (first) and warm (repeat) wall times are
printed; the cold one is the figure a user waiting on ``scaling analyze`` sees.

    python benchmarks/bench_fit.py [--points 250] [--resamples 1000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import time

from analysis.bootstrap import Bootstrap
from analysis.chinchilla import fit_chinchilla
from analysis.synthetic import CHINCHILLA, sample_points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=250)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--noise", type=float, default=0.01)
    args = parser.parse_args()

    N, D, L = sample_points(args.points, noise=args.noise, seed=0)
    print(f"cpus={os.cpu_count()} load_average={os.getloadavg()[0]:.2f} points={args.points} "
          f"resamples={args.resamples}")
    for repeat in range(args.repeats):
        start = time.perf_counter()
        fit = fit_chinchilla(N, D, L, bootstrap=Bootstrap(args.resamples, seed=0))
        seconds = time.perf_counter() - start
        conv = fit.convergence
        print(f"run {repeat + 1} ({'cold, includes compilation' if repeat == 0 else 'warm'}): {seconds:.1f} s; "
              f"starts={conv['starts']} converged={conv['converged']} ({conv['reason']}) "
              f"bootstrap converged={conv['bootstrap_converged_fraction']:.3f}")
    cis = fit.intervals
    for k, truth in CHINCHILLA.items():
        print(f"  {k:>5} = {fit.params[k]:9.4f}  95% [{cis[k][0]:9.4f}, {cis[k][1]:9.4f}]  truth {truth}")


if __name__ == "__main__":
    main()
