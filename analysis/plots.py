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

from analysis import chinchilla
from analysis.errors import FitError
from analysis.frontier import envelope, make_curves
from analysis.load import Sweep
from analysis.results import FitResult

EXTRAPOLATE = 100.0  # how far past the largest compute the allocation laws are drawn
_CMAP = colormaps["viridis"]


@dataclass(frozen=True)
class Drawn:
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
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    norm = _size_coloured_curves(ax, sweep, x_of=lambda flops, tokens: tokens, lw=1.0, alpha=0.85)
    ax.set(xscale="log", yscale="log", xlabel="training tokens D", ylabel="validation loss",
           title="Loss curves, coloured by model size")
    _colourbar(fig, ax, norm, "parameters N (total)")
    return _save(fig, out, "loss_curves", "Loss curves", "Validation loss against tokens seen, one line per run.")


def compute_frontier(sweep: Sweep, fits: dict, out: Path) -> Drawn:
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    norm = _size_coloured_curves(ax, sweep, x_of=lambda flops, tokens: flops, lw=0.8, alpha=0.5)
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
        ax.plot(xs, y, "r--", lw=1.5, label=f"L(C) fit, alpha_C = {fit.params['alpha_C']:.3f}")
        if lo is not None:
            ax.fill_between(xs, lo, hi, color="red", alpha=0.15, lw=0)
    ax.set(xscale="log", yscale="log", xlabel="training compute C (FLOPs, exact count)", ylabel="validation loss",
           title="Loss against compute with the frontier")
    ax.legend(fontsize=8)
    _colourbar(fig, ax, norm, "parameters N (total)")
    return _save(fig, out, "compute_frontier", "Compute frontier",
                 "Every training curve against compute; the black line is their lower envelope and the dashed "
                 "line Kaplan's L(C_min) fitted to it, with its bootstrap interval.")


def isoflop_profiles(fit: FitResult, out: Path) -> Drawn:
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    N, loss, budget = (np.asarray(fit.data[k]) for k in ("N", "loss", "budget"))
    budgets = np.unique(budget)
    norm = LogNorm(vmin=budgets.min(), vmax=max(budgets.max(), budgets.min() * 1.0001))
    minima = fit.extra["minima"]
    for b in budgets:
        m = budget == b
        colour = _CMAP(norm(b))
        ax.scatter(N[m], loss[m], color=colour, s=14)
        u = np.log(N[m])
        if len(np.unique(u)) >= 3:
            coef = np.polyfit(u - u.mean(), loss[m], 2)
            xs = np.linspace(u.min(), u.max(), 100)
            ax.plot(np.exp(xs), np.polyval(coef, xs - u.mean()), color=colour, lw=1)
    ax.scatter(minima["N_opt"], minima["loss_opt"], marker="*", s=120, color="red", zorder=5,
               label="parabola minimum")
    ax.set(xscale="log", xlabel="parameters N (total)", ylabel="final loss", title="IsoFLOP profiles")
    ax.legend(fontsize=8)
    _colourbar(fig, ax, norm, "compute budget C (FLOPs)")
    return _save(fig, out, "isoflop_profiles", "IsoFLOP profiles",
                 "Final loss against model size at each compute budget, a parabola in log N per budget, and "
                 "its minimum (Chinchilla Approach 2).")


def _optima(fit: FitResult) -> dict:
    """The per-compute optima a power-law fit went through: envelope winners or IsoFLOP minima."""
    return fit.data if fit.law == "approach1" else fit.extra["minima"]


def optimal_allocation(fits: dict, out: Path) -> Drawn | None:
    laws = [(name, fits[name]) for name in ("approach1", "isoflop", "chinchilla") if name in fits]
    if not laws:
        return None
    fig = Figure(figsize=(10, 4.2))
    axes = fig.subplots(1, 2)
    cs = [c for _, f in laws if f.law != "chinchilla" for c in _optima(f)["C"]]
    cs = cs or [6 * n * d for n, d in zip(fits["chinchilla"].data["N"], fits["chinchilla"].data["D"])]
    xs = np.geomspace(min(cs), max(cs) * EXTRAPOLATE, 200)
    styles = {"approach1": ("C0", "Approach 1 (envelope)"), "isoflop": ("C1", "Approach 2 (IsoFLOP)"),
              "chinchilla": ("C2", "Approach 3 (parametric, C = 6ND)")}
    for ax, key, label in ((axes[0], "N_opt", "compute-optimal N"), (axes[1], "D_opt", "compute-optimal D")):
        for name, fit in laws:
            colour, text = styles[name]
            if fit.law == "chinchilla":
                fn = lambda p, c, key=key: chinchilla.compute_optimal(p, c)[key]
                exp = fit.params["a" if key == "N_opt" else "b"]
            else:
                coef, e = ("N_coef", "a") if key == "N_opt" else ("D_coef", "b")
                fn = lambda p, c, coef=coef, e=e: p[coef] * np.power(c, p[e])
                exp = fit.params[e]
                pts = _optima(fit)
                ax.scatter(pts["C"], pts[key], color=colour, s=10 if fit.law == "approach1" else 30, alpha=0.7)
            y, lo, hi = _band(fit, fn, xs)
            ax.plot(xs, y, color=colour, lw=1.5, label=f"{text}: exponent {exp:.3f}")
            if lo is not None:
                ax.fill_between(xs, lo, hi, color=colour, alpha=0.15, lw=0)
        ax.axvline(max(cs), color="grey", ls=":", lw=1)
        ax.set(xscale="log", yscale="log", xlabel="compute C (FLOPs)", ylabel=label)
        ax.legend(fontsize=7)
    fig.suptitle("Compute-optimal allocation, extrapolated past the data (dotted line)")
    return _save(fig, out, "optimal_allocation", "Compute-optimal N and D",
                 "N_opt(C) and D_opt(C) from each Chinchilla approach, with bootstrap interval bands, "
                 f"drawn to {EXTRAPOLATE:g}x the largest compute in the data.")


def parametric_contours(fit: FitResult, out: Path) -> Drawn:
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
    opt = chinchilla.compute_optimal(fit.params, cs_front)
    ax.plot(opt["N_opt"], opt["D_opt"], color="red", lw=2, label="efficient frontier")
    sc = ax.scatter(N, D, c=loss, cmap="viridis", s=14, edgecolors="black", linewidths=0.3)
    fig.colorbar(sc, ax=ax, label="final loss")
    ax.set(xscale="log", yscale="log", xlim=(np.exp(ln[0]), np.exp(ln[-1])), ylim=(np.exp(ld[0]), np.exp(ld[-1])),
           xlabel="parameters N (total)", ylabel="training tokens D",
           title="Parametric fit L(N, D): contours and efficient frontier")
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, out, "parametric_contours", "Parametric L(N, D)",
                 "Contours of the fitted Approach 3 law with IsoFLOP lines (dotted, C = 6ND), the compute-optimal "
                 "frontier, and the runs coloured by their loss.")


def kaplan_laws(fits: dict, out: Path) -> Drawn | None:
    panels = [(k, fits[k]) for k in ("kaplan_n", "kaplan_d") if k in fits]
    if not panels:
        return None
    fig = Figure(figsize=(10, 4))
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (name, fit) in zip(axes, panels):
        var, exp, scale = ("N", "alpha_N", "N_c") if name == "kaplan_n" else ("D", "alpha_D", "D_c")
        x = np.asarray(fit.data[var])
        ax.scatter(x, fit.data["loss"], s=14, color="C0")
        xs = np.geomspace(x.min(), x.max() * EXTRAPOLATE, 100)
        y, lo, hi = _band(fit, lambda p, v, scale=scale, exp=exp: np.power(p[scale] / v, p[exp]), xs)
        ax.plot(xs, y, "C3--", label=f"{fit.formula}, {exp} = {fit.params[exp]:.3f}")
        if lo is not None:
            ax.fill_between(xs, lo, hi, color="C3", alpha=0.15, lw=0)
        xlabel = "non-embedding parameters N" if name == "kaplan_n" else "training tokens D (token envelope)"
        ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel="loss")
        ax.legend(fontsize=7)
    fig.suptitle("Kaplan et al. power laws")
    return _save(fig, out, "kaplan_laws", "Kaplan L(N) and L(D)",
                 "L(N) on the lowest loss of each model size (non-embedding N) and L(D) on the lowest loss "
                 "reached after each number of tokens, with fits and bootstrap bands.")


def draw_all(sweep: Sweep, fits: dict, out: Path) -> list[Drawn]:
    """Every figure the fits allow; a fit that was skipped just leaves its figure out."""
    figures = [loss_curves(sweep, out), compute_frontier(sweep, fits, out)]
    if "isoflop" in fits:
        figures.append(isoflop_profiles(fits["isoflop"], out))
    figures.append(optimal_allocation(fits, out))
    if "chinchilla" in fits:
        figures.append(parametric_contours(fits["chinchilla"], out))
    figures.append(kaplan_laws(fits, out))
    return [f for f in figures if f is not None]
