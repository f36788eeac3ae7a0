"""Verdicts: whether the data identify a fitted law, in plain words.

Every fit carries a list of diagnostics, each ``{code, message, severity}``;
its ``status`` is the worst severity present: ``ok`` (none), ``warning`` (the
numbers stand but need a caveat) or ``unidentified`` (the data do not pin the
law down, or the law cannot be right: the numbers are kept for inspection but
must not be used as results).  The rules and their thresholds are collected
here and in docs/analysis.md with the literature each comes from.

Bootstrap health (Besiroglu et al. 2024, section 3: a percentile interval is
only as good as its resamples) is checked here for every law; identifiability
of the parametric laws lives in ``analysis.identify``; input consistency in
``analysis.points``.
"""

from __future__ import annotations

import numpy as np

OK, WARNING, UNIDENTIFIED = "ok", "warning", "unidentified"
_RANK = {OK: 0, WARNING: 1, UNIDENTIFIED: 2}

# An interval built from fewer usable resamples than this is flagged ...
MIN_USABLE_FLAGGED = 0.90
# ... and below this it is not shown at all: with most resamples failing, the survivors are a biased few.
MIN_USABLE_SHOWN = 0.50
# A point estimate this close to an end of its own interval (as a fraction of the width) is "on the edge".
EDGE_FRACTION = 0.02


def diagnostic(code: str, message: str, severity: str = WARNING) -> dict:
    """One finding: a short stable ``code``, a plain ``message`` (what is wrong, what would fix it)."""
    assert severity in (WARNING, UNIDENTIFIED)
    return {"code": code, "message": message, "severity": severity}


def status_of(diagnostics) -> str:
    """The worst severity among ``diagnostics`` (``ok`` when there are none)."""
    worst = OK
    for d in diagnostics:
        if _RANK[d.get("severity", WARNING)] > _RANK[worst]:
            worst = d.get("severity", WARNING)
    return worst


def usable_fraction(samples: dict) -> float:
    """Fraction of bootstrap resamples whose every parameter came out finite (1.0 with no resamples)."""
    if not samples:
        return 1.0
    arrays = [np.asarray(v, dtype=np.float64) for v in samples.values()]
    return float(np.mean(np.all(np.isfinite(np.stack(arrays)), axis=0)))


def interval_is_usable(samples, level: float) -> bool:
    """Whether a percentile interval from these samples may be shown (enough finite draws, non-zero width)."""
    s = np.asarray(samples, dtype=np.float64)
    finite = s[np.isfinite(s)]
    if s.size == 0 or finite.size < MIN_USABLE_SHOWN * s.size:
        return False
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(finite, [tail, 100 - tail])
    return bool(hi - lo > 1e-12 * max(abs(lo), abs(hi), 1e-300))


def bootstrap_health(params: dict, samples: dict, level: float, *, fitted: tuple | None = None) -> list[dict]:
    """Diagnostics on the resamples behind a fit's intervals.

    Reports the usable count always (as a diagnostic only when it is low),
    flags intervals of zero width (the resampling could not move the estimate,
    which says nothing about its precision) and point estimates on the edge of
    their own interval (the resamples do not scatter around the estimate).
    ``fitted`` restricts the edge test to the law's own parameters.
    """
    if not samples:
        return []
    out = []
    total = len(next(iter(samples.values())))
    frac = usable_fraction(samples)
    usable = round(frac * total)
    if frac < MIN_USABLE_FLAGGED:
        hidden = " (intervals are not shown: too few to trust)" if frac < MIN_USABLE_SHOWN else ""
        out.append(diagnostic("bootstrap_failures",
                              f"only {usable} of {total} bootstrap resamples gave a usable fit; the intervals rest "
                              f"on the {100 * frac:.0f}% that did{hidden}. More points per budget or size would "
                              "make resamples fit reliably"))
    tail = 100 * (1 - level) / 2
    zero, edge = [], []
    for k, s in samples.items():
        s = np.asarray(s, dtype=np.float64)
        s = s[np.isfinite(s)]
        if s.size < 2:
            continue
        lo, hi = np.percentile(s, [tail, 100 - tail])
        x = params.get(k)
        if hi - lo <= 1e-12 * max(abs(lo), abs(hi), 1e-300):
            zero.append(k)
        elif (fitted is None or k in fitted) and x is not None and np.isfinite(x):
            margin = EDGE_FRACTION * (hi - lo)
            if x <= lo + margin or x >= hi - margin:
                edge.append(k)
    if zero:
        out.append(diagnostic("zero_width_interval",
                              f"the interval of {', '.join(zero)} has zero width: every usable resample gave the "
                              "same value, which means the resampling could not vary the estimate, not that it is "
                              "exact (interval withheld)"))
    if edge:
        one = len(edge) == 1
        out.append(diagnostic("estimate_on_interval_edge",
                              f"the estimate{'' if one else 's'} of {', '.join(edge)} "
                              f"{'sits' if one else 'sit'} on the edge of {'its' if one else 'their'} own interval: "
                              "the resamples do not scatter around the estimate, so the interval does not describe "
                              "its uncertainty; more distinct sizes or budgets would help"))
    return out
