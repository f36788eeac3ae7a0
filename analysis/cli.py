"""Command line: ``analyze``, ``fit`` and ``predict``.

``register`` adds the three subcommands to another program's parser (the
``scaling`` console command); ``main`` builds a parser of its own.  Handlers
return an exit code; a ``FitError`` (bad or degenerate input) becomes one
line on stderr and exit code 2, never a traceback.  ``--strict`` turns a
verdict other than ``ok`` into exit code 1.

``scaling fit --json`` prints the same document shape as ``scaling analyze``'s
fits.json (one entry under ``fits``), so ``scaling predict`` reads either.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from analysis import noise
from analysis.bootstrap import DEFAULT_LEVEL, DEFAULT_RESAMPLES, DEFAULT_SEED, Bootstrap
from analysis.errors import FitError, as_positive

LAWS = ("chinchilla", "kaplan_n", "kaplan_d", "kaplan_nd", "isoflop")
EXIT_NOT_OK = 1
EXIT_BAD_INPUT = 2
SCHEMA = "scaling-analysis/1"


def _bootstrap_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bootstrap", type=int, default=DEFAULT_RESAMPLES, metavar="B",
                   help=f"bootstrap resamples for the intervals; 0 for none (default {DEFAULT_RESAMPLES}; "
                        "e.g. --bootstrap 200)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED,
                   help=f"seed of the bootstrap resampling (default {DEFAULT_SEED}; e.g. --seed 1)")
    p.add_argument("--level", type=float, default=DEFAULT_LEVEL,
                   help=f"level of the percentile intervals (default {DEFAULT_LEVEL}; e.g. --level 0.9)")
    p.add_argument("--drop-top", type=int, default=0, metavar="K",
                   help="drop the K highest-loss points before fitting (default 0; e.g. --drop-top 2)")
    p.add_argument("--strict", action="store_true",
                   help="exit with code 1 unless every fit's verdict is ok (default off; e.g. in CI: --strict)")


def _command(subparsers, name: str, summary: str, description: str, examples: list[str]) -> argparse.ArgumentParser:
    """One subcommand with its one-line summary, its description and examples under ``--help``."""
    word = "example" if len(examples) == 1 else "examples"
    return subparsers.add_parser(name, help=summary, description=description,
                                 epilog=f"{word}:\n" + "\n".join(f"  {e}" for e in examples),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)


def _keep_unbracketed_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keep-unbracketed", action="store_true",
                   help="IsoFLOP: keep budgets whose lowest loss is at their smallest or largest size, with a "
                        "warning (default: leave them out; e.g. --keep-unbracketed)")


def _holdout_args(p: argparse.ArgumentParser, default: str, runs: bool = False) -> None:
    g = p.add_mutually_exclusive_group()
    if runs:
        g.add_argument("--holdout-runs", default=None, metavar="DIR",
                       help="hold-out check: fit every run in RUNS_DIR, predict the finished runs in DIR (default "
                            "not used; e.g. --holdout-runs runs/quickstart-holdout)")
    g.add_argument("--holdout-compute", type=float, default=None, metavar="C",
                   help=f"hold-out check: fit the points with compute <= C, predict the rest ({default}; "
                        "e.g. --holdout-compute 1e19)")
    g.add_argument("--holdout-largest", type=int, default=None, metavar="K",
                   help="hold-out check: fit all but the K largest model sizes, predict those (default not used; "
                        "e.g. --holdout-largest 1)")
    g.add_argument("--holdout-n-above", type=float, default=None, metavar="N",
                   help="hold-out check: fit the models with N <= this, predict the larger ones (default "
                        "not used; e.g. --holdout-n-above 5e8)")


def _holdout(args) -> dict | None:
    if getattr(args, "holdout_runs", None) is not None:
        return {"runs_dir": args.holdout_runs}
    for key, value in (("compute_above", args.holdout_compute), ("largest_sizes", args.holdout_largest),
                       ("n_above", args.holdout_n_above)):
        if value is not None:
            return {key: value}
    return None


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


def _verdict_lines(name: str, status: str, diagnostics: list[dict]) -> list[str]:
    """The verdict first, then one line per diagnostic: what is wrong and what would fix it."""
    head = {"ok": "ok", "warning": "WARNING (usable, with the caveats below)",
            "unidentified": "UNIDENTIFIED (the data do not determine this law: numbers below are for inspection "
                            "only)"}[status]
    return [f"verdict for {name}: {head}"] + [f"  [{d['severity']}] {d['code']}: {d['message']}" for d in diagnostics]


def _analyze(args) -> int:
    from analysis.analyze import analyze
    out, doc = analyze(args.runs_dir, args.out, bootstrap=_bootstrap(args), drop_top=args.drop_top,
                       holdout=_holdout(args), keep_unbracketed=args.keep_unbracketed, seed_runs=args.seed_runs)
    print(doc["headline"]["text"])
    _print_approaches(doc)
    if doc["extrapolation"]:
        _print_holdout(doc["extrapolation"])
    for line in noise.describe(doc["noise"]):
        print(line)
    for name, fit in doc["fits"].items():
        print(f"{name:>15}: {fit['status']}"
              + (f" ({'; '.join(d['code'] for d in fit['diagnostics'])})" if fit["diagnostics"] else ""))
    print(f"wrote {out / 'fits.json'}, {out / 'report.html'} and figures in {out}")
    statuses = {f["status"] for f in doc["fits"].values()}
    held_out_failed = bool(doc["extrapolation"]) and not doc["extrapolation"]["verdict"].startswith("passed")
    return EXIT_NOT_OK if args.strict and (statuses != {"ok"} or held_out_failed) else 0


def _fit_table(args):
    from analysis.load import load_csv, parse_where
    return load_csv(args.file, n_col=args.n_col, d_col=args.d_col, loss_col=args.loss_col, c_col=args.c_col,
                    weight_col=args.weight_col, where=parse_where(args.where))


def _fit_law(args, c: dict):
    import numpy as np

    from analysis import chinchilla, isoflop, kaplan

    common = {"bootstrap": _bootstrap(args), "drop_top": args.drop_top, "weights": c.get("weight")}
    if args.law == "chinchilla":
        return chinchilla.fit_chinchilla(c["N"], c["D"], c["loss"], **common)
    if args.law == "kaplan_nd":
        return kaplan.fit_kaplan_nd(c["N"], c["D"], c["loss"], **common)
    if args.law == "isoflop":
        return isoflop.fit_isoflop(c["N"], c["D"], c["loss"], c["C"], weighted=args.weighted,
                                   keep_unbracketed=args.keep_unbracketed, check_compute=False, **common)
    var = "N" if args.law == "kaplan_n" else "D"
    idx = kaplan.converged_minimum(as_positive(var, c[var]), as_positive("loss", c["loss"]))
    weights = None if common["weights"] is None else np.asarray(common["weights"])[idx]
    result = kaplan.fit_kaplan_single(args.law, c[var][idx], c["loss"][idx], bootstrap=common["bootstrap"],
                                      drop_top=args.drop_top, weights=weights)
    result.notes.append(f"used the lowest loss at each of {len(idx)} distinct {var} values")
    if args.law == "kaplan_n":
        kaplan.flag_confounded(result, c["N"][idx], c["D"][idx])
    return result


def _print_approaches(doc: dict) -> None:
    """Hoffmann et al.'s three approaches side by side: N_opt ∝ C^a with its interval and verdict."""
    from analysis.headline import APPROACHES

    level = round(100 * doc["bootstrap"]["level"])
    print(f"compute-optimal N ∝ C^a, {level}% bootstrap intervals:")
    for name, label in APPROACHES.items():
        fit = doc["fits"].get(name)
        if fit is None:
            print(f"  {label:<38} not fitted: {doc['skipped'].get(name, 'no data')}")
            continue
        lo, hi = fit["intervals"].get("a", [None, None])
        finite = lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi)
        ci = f"[{lo:.3f}, {hi:.3f}]" if finite else "(no interval)"
        print(f"  {label:<38} a = {fit['params']['a']:.3f} {ci:<16} {fit['status']}")


def _print_holdout(check: dict) -> None:
    print(f"hold-out check ({check['law']} fitted on {check['fitted_points']} points without {check['rule']}; "
          f"that fit is {check['fit_status']}):")
    print(f"  {'N':>10} {'D':>10} {'C':>10} {'actual':>8} {'predicted':>9}  interval            error")
    for r in check["held_out"]:
        print(f"  {r['N']:10.3g} {r['D']:10.3g} {r['C']:10.3g} {r['loss']:8.4f} {r['predicted']:9.4f}  "
              f"[{r['ci'][0]:.4f}, {r['ci'][1]:.4f}]  {100 * r['relative_error']:+.2f}%")
    print(f"  mean |error| {100 * check['mean_abs_relative_error']:.2f}%, "
          f"{100 * check['fraction_inside_interval']:.0f}% inside the interval")
    print(f"  hold-out verdict: {check['verdict']}")


def _fit(args) -> int:
    from analysis.extrapolate import holdout_check, holdout_mask
    from analysis.points import compute_consistency
    from analysis.results import to_jsonable

    table = _fit_table(args)
    c = table.cols
    holdout = _holdout(args)
    check = None
    if holdout is not None:
        held, rule = holdout_mask(c["N"], c["C"], **holdout)
        check = holdout_check(c["N"], c["D"], c["loss"], c["C"], held, rule=rule, law=args.law,
                              bootstrap=_bootstrap(args), drop_top=args.drop_top)
    result = _fit_law(args, c)
    result.notes.extend(table.notes)
    if table.compute_given:
        result.flag(compute_consistency(c["N"], c["D"], c["C"]))
    if result.n_kind != "n/a":
        # A CSV does not say how its N was counted: report what was used, and the law's convention.
        result.notes.append(f"N is column {args.n_col!r} as given; the law is defined on {result.n_kind} parameters")
        result.n_kind = f"column {args.n_col!r}"
    if args.json:
        doc = {"schema": SCHEMA, "source": {"csv": str(args.file), "where": args.where or []},
               "bootstrap": {"resamples": args.bootstrap, "seed": args.seed, "level": args.level},
               "fits": {result.law: result.to_json()}, "holdout": check}
        print(json.dumps(to_jsonable(doc), indent=1))
    else:
        print("\n".join(_verdict_lines(result.law, result.status, result.diagnostics)))
        cis = result.intervals
        usable = (f", {result.usable_resamples} of {result.resamples} bootstrap resamples usable"
                  if result.resamples else ", no bootstrap")
        print(f"{result.law}: {result.formula} (N: {result.n_kind}, {len(result.residuals)} points{usable})")
        for k, v in result.params.items():
            lo, hi = cis.get(k, [math.nan, math.nan])
            shown = f"[{lo:.6g}, {hi:.6g}]" if math.isfinite(lo) else "(no interval)"
            print(f"{k:>18} = {v:.6g}  {shown}")
        if "allocation" in result.extra:
            print(f"compute-optimal allocation uses {result.extra['allocation']}")
        for note in result.notes:
            print(f"note: {note}")
        if check is not None:
            _print_holdout(check)
    return EXIT_NOT_OK if args.strict and result.status != "ok" else 0


def _predict(args) -> int:
    from analysis.predict import from_fits_file
    from analysis.results import to_jsonable

    if (args.n is None) != (args.d is None) or (args.compute is None and args.n is None):
        raise FitError("give --compute C, or both --n and --d")
    if not (math.isfinite(args.max_extrapolation) and args.max_extrapolation >= 1):
        raise FitError(f"--max-extrapolation must be a number >= 1, got {args.max_extrapolation}")
    try:
        with open(args.fit, encoding="utf-8") as fh:
            doc = json.load(fh)
    except json.JSONDecodeError as exc:
        raise FitError(f"{args.fit}: not valid JSON ({exc})") from None
    except UnicodeDecodeError:
        raise FitError(f"{args.fit}: not a text file") from None
    out, refused = from_fits_file(doc, compute=args.compute, n=args.n, d=args.d, law=args.law, force=args.force,
                                  max_extrapolation=args.max_extrapolation)
    for line in refused:
        print(f"warning: {line}", file=sys.stderr)
    for name, row in out.items():
        for w in row["warnings"]:
            print(f"warning: {name}: {w}", file=sys.stderr)
    if args.json:
        print(json.dumps(to_jsonable(out), indent=1))
        return 0
    for name, row in out.items():
        print(f"{name} ({row['law']}, verdict {row['status']}, N {row['n_kind']}, "
              f"{round(100 * row['level'])}% intervals):")
        for k, v in row.items():
            if isinstance(v, dict) and "value" in v:
                lo, hi = v["ci"]
                shown = f"[{lo:.4g}, {hi:.4g}]" if math.isfinite(lo) else "(no interval)"
                print(f"  {k:>17} = {v['value']:.4g}  {shown}")
        if "allocation" in row:
            print(f"  {'allocation':>17}: {row['allocation']}")
        for k, e in row["extrapolation"].items():
            where = "inside the fitted range" if e["factor"] == 1.0 else f"{e['factor']:.3g}x beyond the fitted range"
            print(f"  {k:>17}: {e['value']:.3g}, {where} [{e['fitted_range'][0]:.3g}, {e['fitted_range'][1]:.3g}]")
    return 0


def register(subparsers) -> None:
    """Add ``analyze``, ``fit`` and ``predict`` to an argparse subparsers object."""
    p = _command(subparsers, "analyze",
                 "fit every scaling law a sweep supports; write fits.json, figures and an HTML report",
                 "Fit every law the runs support, give each a verdict (ok, warning or unidentified), and write "
                 "fits.json, figures and report.html.",
                 ["scaling analyze runs/quickstart", "scaling analyze runs/quickstart --holdout-largest 1 --strict"])
    p.add_argument("runs_dir", help="directory searched recursively for run directories holding run.json "
                                    "(e.g. runs/quickstart)")
    p.add_argument("--out", default=None, help="output directory (default RUNS_DIR/analysis; e.g. --out results)")
    _holdout_args(p, "default: hold out the largest compute budget", runs=True)
    p.add_argument("--seed-runs", default=None, metavar="DIR",
                   help="runs repeating one run of RUNS_DIR with other seeds: the report gives their spread "
                        "(default none; e.g. --seed-runs runs/quickstart-seeds)")
    _keep_unbracketed_arg(p)
    _bootstrap_args(p)
    p.set_defaults(func=_guarded(_analyze))

    p = _command(subparsers, "fit", "fit a law to a CSV of (N, D, loss[, C]) points; prints the verdict first",
                 "Fit one law to a CSV and print its verdict (ok, warning or unidentified) with the reasons, "
                 "then the parameters.",
                 ["scaling fit examples/porian2024_refinedweb_isoflop.csv --law isoflop --weighted",
                  "scaling fit examples/porian2024_refinedweb_isoflop.csv --law chinchilla --bootstrap 200 --json"])
    p.add_argument("file", help="CSV file with columns N, D, loss and optionally C (e.g. points.csv)")
    p.add_argument("--law", choices=LAWS, required=True, help="law to fit (required; e.g. --law chinchilla)")
    p.add_argument("--json", action="store_true",
                   help="print the result as JSON in the fits.json schema that predict reads (default off)")
    p.add_argument("--n-col", default="N", help="column of parameter counts (default N; e.g. --n-col params)")
    p.add_argument("--d-col", default="D", help="column of training tokens (default D; e.g. --d-col tokens)")
    p.add_argument("--loss-col", default="loss", help="column of final losses (default loss; e.g. --loss-col val_loss)")
    p.add_argument("--c-col", default="C", help="column of training FLOPs (default C; 6ND if the column is absent; "
                                                "e.g. --c-col flops)")
    p.add_argument("--weight-col", default=None, help="column of point weights (default none; e.g. --weight-col w)")
    p.add_argument("--where", action="append", metavar="COL=VALUE",
                   help="keep only rows where COL equals VALUE; repeatable (default all rows; e.g. --where dataset=rw)")
    p.add_argument("--weighted", action="store_true",
                   help="isoflop: weight each budget's minimum by its inverse bootstrap variance (default off)")
    _keep_unbracketed_arg(p)
    _holdout_args(p, "default: no hold-out check; chinchilla and kaplan_nd only")
    _bootstrap_args(p)
    p.set_defaults(func=_guarded(_fit))

    p = _command(subparsers, "predict",
                 "compute-optimal N, D and loss at a compute budget, from fits.json or 'scaling fit --json'",
                 "Predict from saved fits, saying how far the query lies beyond the fitted data. Unidentified "
                 "fits are refused unless --force.",
                 ["scaling predict --fit runs/quickstart/analysis/fits.json --compute 1e13"])
    p.add_argument("--fit", required=True, help="fits.json from 'scaling analyze', or the saved output of "
                                                "'scaling fit --json' (required; e.g. --fit fits.json)")
    p.add_argument("--law", default=None, help="use only this fit from the file (default: every fit that can "
                                               "answer; e.g. --law isoflop)")
    p.add_argument("--compute", type=float, default=None, metavar="C",
                   help="compute budget in FLOPs (default none: give this or --n and --d; e.g. --compute 1e21)")
    p.add_argument("--n", type=float, default=None, help="with --d: predict the loss at this N (default none; e.g. --n 1e9)")
    p.add_argument("--d", type=float, default=None, help="with --n: predict the loss at this D (default none; e.g. --d 2e10)")
    p.add_argument("--max-extrapolation", type=float, default=10.0, metavar="X",
                   help="warn when a query lies more than X times beyond the fitted range in C, N or D "
                        "(default 10; e.g. --max-extrapolation 100)")
    p.add_argument("--force", action="store_true",
                   help="predict from fits whose verdict is unidentified too (default off)")
    p.add_argument("--json", action="store_true", help="print the result as JSON (default off)")
    p.set_defaults(func=_guarded(_predict))


def main(argv=None) -> int:
    """Run the analysis commands alone (``python -m analysis.cli``) on ``argv`` (default sys.argv).

    Returns the exit code: 0, or ``EXIT_BAD_INPUT`` after one ``error:`` line when the input cannot
    be fitted (FitError) or read (OSError).
    """
    parser = argparse.ArgumentParser(prog="scaling-analysis", description="Scaling-law fits from run directories "
                                                                          "or CSV files.")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
