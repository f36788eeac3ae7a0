"""Command line: ``analyze``, ``fit`` and ``predict``.

``register`` adds the three subcommands to another program's parser (the
``scaling`` console command); ``main`` builds a parser of its own.  Handlers
return an exit code; a ``FitError`` (bad or degenerate input) becomes one
line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys

from analysis.bootstrap import DEFAULT_LEVEL, DEFAULT_RESAMPLES, DEFAULT_SEED, Bootstrap
from analysis.errors import FitError, as_positive

LAWS = ("chinchilla", "kaplan_n", "kaplan_d", "kaplan_nd", "isoflop")
EXIT_BAD_INPUT = 2


def _bootstrap_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bootstrap", type=int, default=DEFAULT_RESAMPLES, metavar="B",
                   help=f"bootstrap resamples (default {DEFAULT_RESAMPLES}; 0 for none)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="bootstrap seed")
    p.add_argument("--level", type=float, default=DEFAULT_LEVEL, help="interval level (default 0.95)")
    p.add_argument("--drop-top", type=int, default=0, metavar="K", help="drop the K highest-loss points first")


def _bootstrap(args) -> Bootstrap:
    return Bootstrap(resamples=args.bootstrap, seed=args.seed, level=args.level)


def _guarded(handler):
    """Turn FitError (and unreadable files) into one line on stderr and a non-zero exit code."""
    def run(args) -> int:
        try:
            return handler(args)
        except (FitError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
    return run


def _analyze(args) -> int:
    from analysis.analyze import analyze
    out = analyze(args.runs_dir, args.out, bootstrap=_bootstrap(args), drop_top=args.drop_top,
                  holdout_above=args.holdout_above)
    print(f"wrote {out / 'fits.json'}, {out / 'report.html'} and figures in {out}")
    return 0


def _fit(args) -> int:
    import numpy as np

    from analysis import chinchilla, isoflop, kaplan
    from analysis.load import load_csv, parse_where
    from analysis.results import to_jsonable

    table = load_csv(args.file, n_col=args.n_col, d_col=args.d_col, loss_col=args.loss_col, c_col=args.c_col,
                     weight_col=args.weight_col, where=parse_where(args.where))
    c = table.cols
    common = {"bootstrap": _bootstrap(args), "drop_top": args.drop_top, "weights": c.get("weight")}
    if args.law == "chinchilla":
        result = chinchilla.fit_chinchilla(c["N"], c["D"], c["loss"], **common)
    elif args.law == "kaplan_nd":
        result = kaplan.fit_kaplan_nd(c["N"], c["D"], c["loss"], **common)
    elif args.law == "isoflop":
        result = isoflop.fit_isoflop(c["N"], c["D"], c["loss"], c["C"], weighted=args.weighted, **common)
    else:
        var = "N" if args.law == "kaplan_n" else "D"
        idx = kaplan.converged_minimum(as_positive(var, c[var]), as_positive("loss", c["loss"]))
        weights = None if common["weights"] is None else np.asarray(common["weights"])[idx]
        result = kaplan.fit_kaplan_single(args.law, c[var][idx], c["loss"][idx], bootstrap=common["bootstrap"],
                                          drop_top=args.drop_top, weights=weights)
        result.notes.append(f"used the lowest loss at each of {len(idx)} distinct {var} values")
    result.notes.extend(table.notes)
    if result.n_kind != "n/a":
        # A CSV does not say how its N was counted: report what was used, and the law's convention.
        result.notes.append(f"N is column {args.n_col!r} as given; the law is defined on {result.n_kind} parameters")
        result.n_kind = f"column {args.n_col!r}"
    out = result.flat()
    if args.json:
        print(json.dumps(to_jsonable(out), indent=1))
    else:
        print(f"{result.law}: {result.formula} (N: {result.n_kind}, {len(result.residuals)} points)")
        for k, (lo, hi) in ((k, out[f"{k}_ci"]) for k in result.params):
            print(f"{k:>18} = {out[k]:.6g}  [{lo:.6g}, {hi:.6g}]")
        for note in result.notes:
            print(f"note: {note}")
    return 0


def _predict(args) -> int:
    from analysis.predict import from_fits_file
    from analysis.results import to_jsonable

    if args.compute is None and (args.n is None or args.d is None):
        raise FitError("give --compute C, or both --n and --d")
    try:
        with open(args.fit, encoding="utf-8") as fh:
            fits = json.load(fh)
    except json.JSONDecodeError as exc:
        raise FitError(f"{args.fit}: not valid JSON ({exc})") from None
    out = from_fits_file(fits, compute=args.compute, n=args.n, d=args.d)
    if args.json:
        print(json.dumps(to_jsonable(out), indent=1))
        return 0
    for name, row in out.items():
        print(f"{name} ({row['law']}, N {row['n_kind']}, {round(100 * row['level'])}% intervals):")
        for k, v in row.items():
            if isinstance(v, dict):
                print(f"  {k:>17} = {v['value']:.4g}  [{v['ci'][0]:.4g}, {v['ci'][1]:.4g}]")
    return 0


def register(subparsers) -> None:
    """Add ``analyze``, ``fit`` and ``predict`` to an argparse subparsers object."""
    p = subparsers.add_parser("analyze", help="fit every scaling law a sweep supports; write fits.json, "
                                              "figures and an HTML report")
    p.add_argument("runs_dir", help="directory searched recursively for run directories (holding run.json)")
    p.add_argument("--out", default=None, help="output directory (default RUNS_DIR/analysis)")
    p.add_argument("--holdout-above", type=float, default=None, metavar="C",
                   help="extrapolation check: fit runs with compute <= C, predict the rest "
                        "(default: hold out the largest budget)")
    _bootstrap_args(p)
    p.set_defaults(func=_guarded(_analyze))

    p = subparsers.add_parser("fit", help="fit a law to a CSV of (N, D, loss[, C]) points")
    p.add_argument("file", help="CSV file")
    p.add_argument("--law", choices=LAWS, required=True)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--n-col", default="N")
    p.add_argument("--d-col", default="D")
    p.add_argument("--loss-col", default="loss")
    p.add_argument("--c-col", default="C", help="compute column (default C; 6ND if absent)")
    p.add_argument("--weight-col", default=None, help="column of point weights")
    p.add_argument("--where", action="append", metavar="COL=VALUE", help="keep only rows where COL equals VALUE")
    p.add_argument("--weighted", action="store_true",
                   help="isoflop: weight each budget's minimum by its inverse bootstrap variance")
    _bootstrap_args(p)
    p.set_defaults(func=_guarded(_fit))

    p = subparsers.add_parser("predict", help="compute-optimal N, D and loss at a compute budget, from fits.json")
    p.add_argument("--fit", required=True, help="fits.json written by analyze")
    p.add_argument("--compute", type=float, default=None, metavar="C", help="compute budget in FLOPs")
    p.add_argument("--n", type=float, default=None, help="with --d: predict the loss at this N")
    p.add_argument("--d", type=float, default=None, help="with --n: predict the loss at this D")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_guarded(_predict))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="scaling-analysis", description="Scaling-law fits from run directories "
                                                                          "or CSV files.")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
