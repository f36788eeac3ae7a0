"""``scaling sweep plan|launch|status SWEEP.yaml [key=value ...]``.

``register`` plugs the ``sweep`` command into the top-level parser. ``key=value`` overrides
apply to the sweep's base config (e.g. ``data.path=data/mine``) and, like any config change,
give the runs new ids. Bad input is a one-line error with exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scaling.cli_help import command
from scaling.sweeps import estimate, planner, report, spec, status, sweepdir
from scaling.sweeps.launcher import DEFAULT_MAX_RESTARTS
from scaling.sweeps.spec import SweepError


def _plan(args) -> planner.SweepPlan:
    return planner.plan(spec.load(args.sweep, args.overrides), args.runs_dir)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("sweep", metavar="SWEEP", help="a sweep file, e.g. sweeps/quickstart.yaml")
    p.add_argument("overrides", nargs="*", default=[], metavar="key=value",
                   help="optional overrides of the sweep's base config, e.g. data.path=data/mine "
                        "(they change the run ids)")
    p.add_argument("--runs-dir", default="runs", metavar="DIR", help="where run directories go")


def _parallel(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return int(value)


def _count(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value!r}")
    return int(value)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``sweep plan|launch|status`` to a parser's subcommands; each sets ``func`` to its ``run_*`` handler."""
    sweep = command(subparsers, "sweep", "plan, launch and follow sweeps of runs",
                    "scaling sweep plan sweeps/quickstart.yaml",
                    description="Plan, launch and follow a sweep of runs described in a YAML file (see sweeps/).")
    commands = sweep.add_subparsers(dest="sweep_command", required=True, metavar="COMMAND")

    p = command(commands, "plan", "print every run with N, D, exact C, 6ND and estimated time; spends nothing",
                "scaling sweep plan sweeps/chinchilla_isoflop.yaml --device 'H100 SXM'")
    _common(p)
    p.add_argument("--device", help="estimate for this device instead of this machine's: cpu, or a chip as JAX "
                   "names it (e.g. 'H100 SXM', 'NVIDIA H200', 'A100')")
    p.add_argument("--mfu", type=float, default=estimate.DEFAULT_MFU,
                   help="assumed model FLOPs utilisation on accelerators")
    p.add_argument("--parallel", type=_parallel, default=1, metavar="N", help="runs at once, for the total time estimate")
    p.set_defaults(func=run_plan)

    p = command(commands, "launch", "run every run that is not done; relaunch to finish what is missing",
                "scaling sweep launch sweeps/quickstart.yaml --parallel 2")
    _common(p)
    p.add_argument("--executor", choices=("local", "slurm"), default="local",
                   help="local subprocesses or SLURM array jobs through submitit")
    p.add_argument("--parallel", type=_parallel, metavar="N",
                   help="runs at once (local default: one per visible GPU, else 1; slurm: the array's parallelism)")
    p.add_argument("--retry-failed", action="store_true", help="also rerun runs that failed before")
    p.add_argument("--max-restarts", type=_count, default=DEFAULT_MAX_RESTARTS, metavar="N",
                   help="restart a run killed from outside (a signal, a vanished process) from its checkpoint up to "
                        "N times per checkpoint within this launch, then give it up until the next launch (0: never)")
    p.add_argument("--gpus", default="auto", metavar="LIST", help="local: GPUs to spread runs over: auto "
                   "(CUDA_VISIBLE_DEVICES or nvidia-smi), none, or a list such as 0,1,3")
    cache = p.add_mutually_exclusive_group()
    cache.add_argument("--compile-cache", metavar="DIR", help="JAX persistent compilation cache "
                       "(default: $JAX_COMPILATION_CACHE_DIR, else $SCALING_CACHE/jax or ~/.cache/scaling/jax)")
    cache.add_argument("--no-compile-cache", action="store_true", help="compile every run from scratch")
    p.set_defaults(func=run_launch)

    p = command(commands, "status", "print the state of every run, from the run directories (works during a launch)",
                "scaling sweep status sweeps/quickstart.yaml")
    _common(p)
    p.set_defaults(func=run_status)


def run_plan(args) -> int:
    """Print the plan table (N, D, exact C, 6ND, estimated seconds per run) for ``--device`` at ``--mfu``; returns 0.

    Raises SweepError/ConfigError (UserErrors) for a bad sweep file, overrides or device name.
    """
    plan = _plan(args)
    throughput = estimate.for_device(args.device or estimate.current_device(), args.mfu)
    print(report.plan_table(plan, throughput, args.parallel))
    return 0


def _compile_cache(args) -> Path | None:
    from scaling.sweeps import child

    if args.no_compile_cache:
        return None
    return Path(args.compile_cache).absolute() if args.compile_cache else child.default_compile_cache()


def _gpus(value: str) -> list[str]:
    from scaling.sweeps.local import visible_gpus

    if value == "auto":
        return visible_gpus()
    if value == "none":
        return []
    return [g.strip() for g in value.split(",") if g.strip()]


def executor_for(args, plan: planner.SweepPlan):
    """The executor ``--executor`` names: a LocalExecutor over ``--gpus`` with ``--parallel`` slots, or a
    SlurmExecutor with the sweep file's ``slurm`` parameters. Both share the compilation cache choice.

    Raises SweepError when SLURM is asked for but submitit is not installed, no SLURM is reachable,
    or the slurm parameters are invalid.
    """
    cache = _compile_cache(args)
    if args.executor == "slurm":
        try:
            from scaling.sweeps.slurm import SlurmExecutor
        except ImportError as e:
            raise SweepError(str(e)) from None
        return SlurmExecutor(plan.sweep_dir / ".submitit", {"name": plan.spec.name, **plan.spec.slurm}, cache,
                             args.parallel)
    from scaling.sweeps import child
    from scaling.sweeps.local import LocalExecutor

    gpus = _gpus(args.gpus)
    return LocalExecutor(args.parallel or max(len(gpus), 1), child.environment(cache), gpus)


def run_launch(args) -> int:
    """Plan the sweep, print its warnings to stderr, and launch it (``launcher.launch``); returns its exit code."""
    from scaling.sweeps import launcher

    plan = _plan(args)
    for warning in plan.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return launcher.launch(plan, executor_for(args, plan), retry_failed=args.retry_failed,
                           max_restarts=args.max_restarts)


def run_status(args) -> int:
    """Print every planned run's state, read from the run directories (and who holds the launch lock); returns 0."""
    plan = _plan(args)
    print(report.status_table(plan, status.collect(plan.runs), sweepdir.holder(plan.sweep_dir)))
    return 0

