"""The figures of a scaling-law paper, drawn from a sweep and its fits, as PNG and SVG.

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas rather
than through ``pyplot``: no global backend switch, no display needed, and no
figure left open in a long-running process.  Every figure that shows a fitted
law extrapolates it past the data and shades its bootstrap interval, since
extrapolation is what the laws are used for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator

from analysis import chinchilla
from analysis.errors import FitError
from analysis.frontier import envelope, make_curves
from analysis.load import Sweep
from analysis.results import FitResult

EXTRAPOLATE = 100.0  # how far past the largest compute the allocation laws are drawn
_CMAP = colormaps["viridis"]
_BUDGET_COLOURS = colormaps["tab10"]
_BAND = "95% bootstrap interval"
_EDGE = "edge of the data (largest run)"


def _plain(value, _pos=None) -> str:
    """A decimal label ("3.2", "0.85"), never 10^0.5-style scientific notation on a loss axis."""
    return f"{value:.4g}"


def _loss_axis(ax, unit: str, log: bool = True) -> None:
    """Label the y axis with the loss unit and give it plain decimal tick labels."""
    ax.set_ylabel(unit if unit != "loss" else "loss (unit not recorded)")
    if log:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0)))
        ax.yaxis.set_minor_locator(LogLocator(base=10, subs=np.arange(1, 10) * 0.1 + 1e-9, numticks=50))
    ax.yaxis.set_major_formatter(FuncFormatter(_plain))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, p: ""))


def _unidentified_label(fit: FitResult) -> str:
    return " (UNIDENTIFIED: not a result)" if fit.status == "unidentified" else ""


@dataclass(frozen=True)
class Drawn:
    """One saved figure: its file stem, title and caption (for the report), and the PNG and SVG paths."""

    name: str
    title: str
    caption: str
    png: Path
    svg: Path


def _save(fig: Figure, out: Path, name: str, title: str, caption: str) -> Drawn:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    png, svg = out / f"{name}.png", out / f"{name}.svg"
    fig.savefig(png, dpi=130)
    fig.savefig(svg)
    return Drawn(name, title, caption, png, svg)


def _band(fit: FitResult, fn, xs):
    """Point curve and percentile band of ``fn(params, xs)`` over the fit's bootstrap samples."""
    point = fn({k: np.float64(v) for k, v in fit.params.items()}, xs)
    if not fit.samples:
        return point, None, None
    s = {k: np.asarray(v)[:, None] for k, v in fit.samples.items()}
    with np.errstate(all="ignore"):
        vals = fn(s, xs[None, :])
    vals = np.where(np.isfinite(vals), vals, np.nan)
    tail = 100 * (1 - fit.level) / 2
    with np.errstate(all="ignore"):
        lo, hi = np.nanpercentile(vals, [tail, 100 - tail], axis=0)
    return point, lo, hi


def _size_colours(sweep: Sweep):
    n = sweep.column("n_params")
    norm = LogNorm(vmin=n.min(), vmax=max(n.max(), n.min() * 1.0001))
    return norm, [_CMAP(norm(x)) for x in n]


def _size_coloured_curves(ax, sweep: Sweep, x_of, lw: float, alpha: float):
    """One loss curve per run against ``x_of(flops, tokens)``, coloured by N; returns the colour norm."""
    norm, colours = _size_colours(sweep)
    for run, colour in zip(sweep.runs, colours):
        flops, tokens, loss = run.curve()
        ax.plot(x_of(flops, tokens), loss, color=colour, lw=lw, alpha=alpha)
    return norm


def _colourbar(fig, ax, norm, label):
    fig.colorbar(ScalarMappable(norm=norm, cmap=_CMAP), ax=ax, label=label)


def loss_curves(sweep: Sweep, out: Path) -> Drawn:
    """Validation loss against training tokens D, one line per run coloured by total N (log colour scale).

    Writes ``out/loss_curves.png`` and ``.svg``; ``out`` must exist.
    """
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    norm = _size_coloured_curves(ax, sweep, x_of=lambda flops, tokens: tokens, lw=1.0, alpha=0.85)
    ax.set(xscale="log", xlabel="training tokens D", title="Loss curves, coloured by model size")
    _loss_axis(ax, f"validation loss ({sweep.loss_unit})")
    _colourbar(fig, ax, norm, "parameters N (total, incl. embeddings)")
    return _save(fig, out, "loss_curves", "Loss curves", "Validation loss against tokens seen, one line per run.")


def compute_frontier(sweep: Sweep, fits: dict, out: Path) -> Drawn:
    """Every training curve against exact training FLOPs C, their lower envelope (the compute-efficient
    frontier of Kaplan et al. 2020 and Hoffmann et al. 2022 Approach 1), and ``fits["kaplan_compute"]``,
    L(C_min) = (C_c / C_min)^alpha_C, when present, drawn ``EXTRAPOLATE`` times past the data with
    its bootstrap band.

    ``fits`` maps law names to FitResults. Writes ``out/compute_frontier.png`` and ``.svg``.
    """
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    norm = _size_coloured_curves(ax, sweep, x_of=lambda flops, tokens: flops, lw=0.8, alpha=0.5)
    ax.plot([], [], color="grey", lw=0.8, label="training curve (colour: N)")
    curves = [r.curve() for r in sweep.runs]
    try:
        grid = make_curves(curves, sweep.column("n_params"))
        best, _ = envelope(grid, np.ones((1, len(grid.n))))
        ax.plot(grid.grid, best[0], color="black", lw=2.0, label="lower envelope")
    except FitError:
        pass  # fewer than two usable curves: no envelope to draw
    fit = fits.get("kaplan_compute")
    if fit is not None:
        xs = np.geomspace(min(fit.data["C"]), max(fit.data["C"]) * EXTRAPOLATE, 200)
        y, lo, hi = _band(fit, lambda p, c: np.power(p["C_c"] / c, p["alpha_C"]), xs)
        ax.plot(xs, y, "r--", lw=1.5,
                label=f"L(C) fit, alpha_C = {fit.params['alpha_C']:.3f}{_unidentified_label(fit)}")
        if lo is not None:
            ax.fill_between(xs, lo, hi, color="red", alpha=0.15, lw=0, label=_BAND)
        ax.axvline(max(fit.data["C"]), color="grey", ls=":", lw=1, label=_EDGE)
    ax.set(xscale="log", xlabel="training compute C (FLOPs, exact count)",
           title="Loss against compute with the frontier")
    _loss_axis(ax, f"validation loss ({sweep.loss_unit})")
    ax.legend(fontsize=7)
    _colourbar(fig, ax, norm, "parameters N (total, incl. embeddings)")
    return _save(fig, out, "compute_frontier", "Compute frontier",
                 "Every training curve against compute; the black line is their lower envelope and the dashed "
                 "line Kaplan's L(C_min) fitted to it, with its bootstrap interval.")


def isoflop_profiles(fit: FitResult, out: Path, unit: str) -> Drawn:
    """Final loss against N at each FLOP budget, a parabola in log N per budget (Hoffmann et al. 2022 §3.2,
    Approach 2) and the minima the fit used; the caption names the budgets left out and why.

    ``fit`` is an IsoFLOP FitResult (``analysis.isoflop``); ``unit`` labels the loss axis
    (e.g. "nats per token"). Writes ``out/isoflop_profiles.png`` and ``.svg``.
    """
    fig = Figure(figsize=(6.8, 4.6))
    ax = fig.add_subplot()
    N, loss, budget = (np.asarray(fit.data[k]) for k in ("N", "loss", "budget"))
    budgets = np.unique(budget)
    minima = fit.extra["minima"]
    for i, b in enumerate(budgets):
        m = budget == b
        colour = _BUDGET_COLOURS(i % 10)
        ax.scatter(N[m], loss[m], color=colour, s=14, label=f"C = {b:.2g} FLOPs")
        u = np.log(N[m])
        if len(np.unique(u)) >= 3:
            coef = np.polyfit(u - u.mean(), loss[m], 2)
            xs = np.linspace(u.min(), u.max(), 100)
            ax.plot(np.exp(xs), np.polyval(coef, xs - u.mean()), color=colour, lw=1)
    ax.plot([], [], color="grey", lw=1, label="parabola in log N")
    ax.scatter(minima["N_opt"], minima["loss_opt"], marker="*", s=120, color="red", zorder=5,
               label="parabola minimum (used)")
    ax.set(xscale="log", xlabel="parameters N (total, incl. embeddings)",
           title="IsoFLOP profiles" + _unidentified_label(fit))
    _loss_axis(ax, f"final loss ({unit})", log=False)
    ax.legend(fontsize=7, ncol=2)
    left = [e for e in fit.extra.get("budgets", []) if not e.get("used")]
    note = (" Budgets left out: " + "; ".join(f"{e['C']:.2g} ({e.get('why_not', 'no usable minimum')})"
                                              for e in left) + ".") if left else ""
    return _save(fig, out, "isoflop_profiles", "IsoFLOP profiles",
                 "Final loss against model size at each compute budget (one colour per budget), a parabola in "
                 f"log N per budget, and its minimum (Chinchilla Approach 2).{note}")


def _optima(fit: FitResult) -> dict:
    """The per-compute optima a power-law fit went through: envelope winners or IsoFLOP minima."""
    return fit.data if fit.law == "approach1" else fit.extra["minima"]


def optimal_allocation(fits: dict, out: Path, data_edge: float) -> Drawn | None:
    """N_opt(C) and D_opt(C) of the approaches; ``data_edge`` is the largest compute of any run."""
    laws = [(name, fits[name]) for name in ("approach1", "isoflop", "chinchilla") if name in fits]
    if not laws:
        return None
    fig = Figure(figsize=(10, 4.4))
    axes = fig.subplots(1, 2)
    cs = [c for _, f in laws if f.law != "chinchilla" for c in _optima(f)["C"]] or [data_edge / 100]
    xs = np.geomspace(min(cs), data_edge * EXTRAPOLATE, 200)
    parametric = "exact FLOPs" if fits.get("chinchilla") and fits["chinchilla"].extra.get("flop_model") else "C = 6ND"
    styles = {"approach1": ("C0", "Approach 1 (envelope)"), "isoflop": ("C1", "Approach 2 (IsoFLOP)"),
              "chinchilla": ("C2", f"Approach 3 (parametric, {parametric})")}
    for ax, key, label in ((axes[0], "N_opt", "compute-optimal N"), (axes[1], "D_opt", "compute-optimal D")):
        for name, fit in laws:
            colour, text = styles[name]
            if fit.status == "unidentified":
                colour = "0.6"
            text += _unidentified_label(fit)
            if fit.law == "chinchilla":
                flops = fit.extra.get("flop_model")
                fn = lambda p, c, key=key, flops=flops: chinchilla.compute_optimal(p, c, flops)[key]
                exp = fit.params["a" if key == "N_opt" else "b"]
            else:
                coef, e = ("N_coef", "a") if key == "N_opt" else ("D_coef", "b")
                fn = lambda p, c, coef=coef, e=e: p[coef] * np.power(c, p[e])
                exp = fit.params[e]
                pts = _optima(fit)
                ax.scatter(pts["C"], pts[key], color=colour, s=10 if fit.law == "approach1" else 30, alpha=0.7)
            y, lo, hi = _band(fit, fn, xs)
            ax.plot(xs, y, color=colour, lw=1.5, ls="--" if fit.status == "unidentified" else "-",
                    label=f"{text}: exponent {exp:.3f}")
            if lo is not None and fit.status != "unidentified":
                ax.fill_between(xs, lo, hi, color=colour, alpha=0.15, lw=0, label=f"{_BAND}, {text.split(' (')[0]}")
        ax.axvline(data_edge, color="grey", ls=":", lw=1, label=_EDGE)
        ax.set(xscale="log", yscale="log", xlabel="compute C (FLOPs)", ylabel=label)
        ax.legend(fontsize=6)
    fig.suptitle("Compute-optimal allocation (N total, incl. embeddings), extrapolated past the data (dotted line)")
    return _save(fig, out, "optimal_allocation", "Compute-optimal N and D",
                 "N_opt(C) and D_opt(C) from each Chinchilla approach, with bootstrap interval bands, "
                 f"drawn to {EXTRAPOLATE:g}x the largest compute in the data.")


def parametric_contours(fit: FitResult, out: Path, unit: str) -> Drawn:
    """Contours of the fitted L(N, D) = E + A/N^alpha + B/D^beta over N (parameters) x D (tokens), with
    IsoFLOP lines at C = 6ND, the compute-optimal frontier (``chinchilla.compute_optimal``, with the
    fit's exact-FLOP model when it has one) and the runs coloured by final loss in ``unit``.

    ``fit`` is a Chinchilla Approach 3 FitResult. Writes ``out/parametric_contours.png`` and ``.svg``.
    """
    fig = Figure(figsize=(6.4, 4.8))
    ax = fig.add_subplot()
    N, D, loss = (np.asarray(fit.data[k]) for k in ("N", "D", "loss"))
    ln = np.linspace(np.log(N.min()) - 1, np.log(N.max()) + 2, 200)
    ld = np.linspace(np.log(D.min()) - 1, np.log(D.max()) + 2, 200)
    gn, gd = np.meshgrid(np.exp(ln), np.exp(ld))
    surface = chinchilla.loss(fit.params, gn, gd)
    levels = np.quantile(surface, np.linspace(0.02, 0.98, 14))
    cs = ax.contour(gn, gd, surface, levels=np.unique(levels), cmap="viridis", linewidths=0.8)
    ax.clabel(cs, fontsize=6, fmt="%.2f")
    c_lo, c_hi = 6 * N.min() * D.min(), 6 * np.exp(ln[-1]) * np.exp(ld[-1])
    for c in np.geomspace(c_lo, c_hi, 7)[1:-1]:
        n_line = np.exp(ln)
        ax.plot(n_line, c / (6 * n_line), color="grey", lw=0.6, ls=":")
    cs_front = np.geomspace(c_lo, c_hi, 100)
    opt = chinchilla.compute_optimal(fit.params, cs_front, fit.extra.get("flop_model"))
    ax.plot(opt["N_opt"], opt["D_opt"], color="red", lw=2, label="efficient frontier")
    ax.plot([], [], color="grey", lw=0.6, ls=":", label="IsoFLOP line (C = 6ND)")
    ax.plot([], [], color="C0", lw=0.8, label="loss contour")
    sc = ax.scatter(N, D, c=loss, cmap="viridis", s=14, edgecolors="black", linewidths=0.3, label="run")
    fig.colorbar(sc, ax=ax, label=f"final loss ({unit})", format=FuncFormatter(_plain))
    ax.set(xscale="log", yscale="log", xlim=(np.exp(ln[0]), np.exp(ln[-1])), ylim=(np.exp(ld[0]), np.exp(ld[-1])),
           xlabel="parameters N (total, incl. embeddings)", ylabel="training tokens D",
           title="Parametric fit L(N, D)" + (_unidentified_label(fit) or ": contours and efficient frontier"))
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, out, "parametric_contours", "Parametric L(N, D)",
                 "Contours of the fitted Approach 3 law with IsoFLOP lines (dotted, C = 6ND), the compute-optimal "
                 "frontier, and the runs coloured by their loss.")


def kaplan_laws(fits: dict, out: Path, unit: str) -> Drawn | None:
    """One panel each for Kaplan et al. 2020's L(N) (non-embedding N) and L(D) (tokens), whichever of
    ``fits["kaplan_n"]`` and ``fits["kaplan_d"]`` exist: the points fitted, the law drawn
    ``EXTRAPOLATE`` times past them, and its bootstrap band. None when neither fit exists.

    Writes ``out/kaplan_laws.png`` and ``.svg``.
    """
    panels = [(k, fits[k]) for k in ("kaplan_n", "kaplan_d") if k in fits]
    if not panels:
        return None
    fig = Figure(figsize=(10, 4))
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (name, fit) in zip(axes, panels):
        var, exp, scale = ("N", "alpha_N", "N_c") if name == "kaplan_n" else ("D", "alpha_D", "D_c")
        x = np.asarray(fit.data[var])
        ax.scatter(x, fit.data["loss"], s=14, color="C0", label="points fitted")
        xs = np.geomspace(x.min(), x.max() * EXTRAPOLATE, 100)
        y, lo, hi = _band(fit, lambda p, v, scale=scale, exp=exp: np.power(p[scale] / v, p[exp]), xs)
        colour = "0.6" if fit.status == "unidentified" else "C3"
        ax.plot(xs, y, color=colour, ls="--",
                label=f"{fit.formula}, {exp} = {fit.params[exp]:.3f}{_unidentified_label(fit)}")
        if lo is not None:
            ax.fill_between(xs, lo, hi, color=colour, alpha=0.15, lw=0, label=_BAND)
        ax.axvline(x.max(), color="grey", ls=":", lw=1, label="edge of the data")
        xlabel = ("parameters N (non-embedding)" if name == "kaplan_n"
                  else "training tokens D (token envelope)")
        ax.set(xscale="log", xlabel=xlabel)
        _loss_axis(ax, unit)
        ax.legend(fontsize=6)
    fig.suptitle("Kaplan et al. power laws")
    return _save(fig, out, "kaplan_laws", "Kaplan L(N) and L(D)",
                 "L(N) on the lowest loss of each model size (non-embedding N) and L(D) on the lowest loss "
                 "reached after each number of tokens, with fits and bootstrap bands.")


def holdout_figure(check: dict, out: Path, unit: str) -> Drawn:
    """Predicted against actual loss for each held-out run, with the bootstrap interval as an error bar."""
    fig = Figure(figsize=(5.6, 4.6))
    ax = fig.add_subplot()
    rows = check["held_out"]
    actual = np.array([r["loss"] for r in rows])
    pred = np.array([r["predicted"] for r in rows])
    ci = np.array([r["ci"] for r in rows], dtype=np.float64)
    has_ci = np.all(np.isfinite(ci), axis=1)
    err = np.abs(np.stack([pred - ci[:, 0], ci[:, 1] - pred])) * has_ci
    ax.errorbar(actual, pred, yerr=np.nan_to_num(err), fmt="o", color="C0", ms=4, capsize=2,
                label=f"held-out run, with {_BAND}")
    lo, hi = min(actual.min(), pred.min()), max(actual.max(), pred.max())
    pad = 0.05 * (hi - lo or hi)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="black", lw=0.8, label="prediction = actual")
    ax.set(xlabel=f"actual final loss ({unit})", title=f"Hold-out: {check['rule']}")
    _loss_axis(ax, f"predicted loss ({unit})", log=False)
    ax.xaxis.set_major_formatter(FuncFormatter(_plain))
    ax.legend(fontsize=7)
    status = check.get("fit_status", "ok")
    return _save(fig, out, "holdout", "Hold-out check",
                 f"{check['law']} fitted without {check['rule']}, then asked for them: mean absolute error "
                 f"{100 * check['mean_abs_relative_error']:.2f}%" + ("" if status == "ok" else
                                                                     f"; the fit behind it is {status}"))


def draw_all(sweep: Sweep, fits: dict, out: Path, holdout: dict | None = None) -> tuple[list[Drawn], dict]:
    """Every figure the fits allow, and ``{figure: why it was left out}`` for the rest (no empty plots)."""
    unit = sweep.loss_unit
    figures, left_out = [loss_curves(sweep, out), compute_frontier(sweep, fits, out)], {}
    if "isoflop" in fits:
        figures.append(isoflop_profiles(fits["isoflop"], out, unit))
    else:
        left_out["IsoFLOP profiles"] = "no IsoFLOP fit could be made"
    allocation = optimal_allocation(fits, out, float(sweep.column("compute").max()))
    if allocation is None:
        left_out["Compute-optimal N and D"] = "none of Approaches 1, 2 and 3 could be fitted"
    figures.append(allocation)
    if "chinchilla" in fits:
        figures.append(parametric_contours(fits["chinchilla"], out, unit))
    else:
        left_out["Parametric L(N, D)"] = "the parametric fit could not be made"
    kaplan = kaplan_laws(fits, out, unit)
    if kaplan is None:
        left_out["Kaplan L(N) and L(D)"] = "neither L(N) nor L(D) could be fitted"
    figures.append(kaplan)
    if holdout:
        figures.append(holdout_figure(holdout, out, unit))
    else:
        left_out["Hold-out check"] = "no hold-out check could be made"
    return [f for f in figures if f is not None], left_out
