"""A single self-contained HTML report: figures embedded as data URIs, a table of fitted values.

Run names, notes and error messages come from files anyone may have written,
so every string placed in the page goes through ``html.escape``; the only
markup is the fixed template here.
"""

from __future__ import annotations

import base64
import math
from html import escape
from pathlib import Path

from analysis.headline import APPROACHES
from analysis.noise import describe


def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    x = float(x)
    return f"{x:.4g}" if 1e-3 <= abs(x) < 1e5 or x == 0 else f"{x:.3e}"


def _ordered(fits: dict) -> list:
    """Flagged fits first (unidentified, then warning), then the rest, each group in the order fitted."""
    rank = {"unidentified": 0, "warning": 1, "ok": 2}
    return sorted(fits.items(), key=lambda kv: rank.get(kv[1].get("status"), 0))


def _fit_rows(doc: dict) -> list[str]:
    rows = []
    for name, fit in _ordered(doc["fits"]):
        level = round(100 * (fit.get("level") or 0.95))
        conv = fit.get("convergence") or {}
        status = ("converged" if conv.get("converged") else f"NOT converged: {conv.get('reason')}") if conv else ""
        verdict = fit.get("status", "ok")
        grey = ' class="unidentified"' if verdict == "unidentified" else ""
        resamples = (fit.get("bootstrap") or {}).get("resamples", 0)
        usable = f"; {fit.get('usable_resamples', 0)} of {resamples} resamples usable" if resamples else ""
        for i, (param, value) in enumerate(fit["params"].items()):
            lo, hi = (fit.get("intervals") or {}).get(param, [None, None])
            head = (f'<td rowspan="{len(fit["params"])}"><b>{escape(name)}</b> '
                    f'<span class="v-{escape(verdict)}">{escape(verdict)}</span><br><small>'
                    f'{escape(fit["formula"])}<br>N: {escape(fit["n_kind"])}; {len(fit["residuals"])} points'
                    f'{"; " + escape(status) if status else ""}{escape(usable)}</small></td>') if i == 0 else ""
            rows.append(f"<tr{grey}>{head}<td>{escape(param)}</td><td>{_fmt(value)}</td>"
                        f"<td>[{_fmt(lo)}, {_fmt(hi)}] ({level}%)</td></tr>")
    return rows


def _headline(doc: dict) -> str:
    head = doc.get("headline") or {}
    flagged = "".join(
        f'<li><b>{escape(f["fit"])}</b>: <span class="v-{escape(f["status"])}">{escape(f["status"])}</span>'
        + ("" if f["status"] != "unidentified" else " (numbers kept for inspection only, not results)")
        + "<ul>" + "".join(f"<li>{escape(r)}</li>" for r in f["reasons"]) + "</ul></li>"
        for f in head.get("flagged", []))
    return (f'<div class="headline"><p><b>What the runs say</b> ({escape(head.get("confidence", "n/a"))}): '
            f'{escape(head.get("text", ""))}</p>'
            + (f"<p><b>Flagged fits</b> (read these before any number below):</p><ul>{flagged}</ul>" if flagged
               else "<p>Every fit passed its checks.</p>") + "</div>")


def _figure(fig) -> str:
    data = base64.b64encode(Path(fig.png).read_bytes()).decode("ascii")
    return (f'<figure><img alt="{escape(fig.title)}" src="data:image/png;base64,{data}">'
            f"<figcaption><b>{escape(fig.title)}.</b> {escape(fig.caption)} "
            f"(also as {escape(Path(fig.svg).name)})</figcaption></figure>")


def _extrapolation(ex: dict | None) -> str:
    if not ex:
        return ""
    rows = "".join(f"<tr><td>{_fmt(r['N'])}</td><td>{_fmt(r['D'])}</td><td>{_fmt(r['C'])}</td><td>{_fmt(r['loss'])}"
                   f"</td><td>{_fmt(r['predicted'])} [{_fmt(r['ci'][0])}, {_fmt(r['ci'][1])}]</td>"
                   f"<td>{100 * r['relative_error']:+.2f}%</td></tr>" for r in ex["held_out"])
    status = ex.get("fit_status", "ok")
    caveat = "" if status == "ok" else (
        f' <span class="v-{escape(status)}">The fit on the remaining runs is {escape(status)}: '
        + escape("; ".join(d["message"] for d in ex.get("fit_diagnostics", []))) + "</span>")
    return (f"<h2>Hold-out check</h2><p>{escape(ex['law'])} fitted on the {ex['fitted_points']} runs left after "
            f"holding out {escape(ex['rule'])}, then asked for the held-out runs: mean absolute relative error "
            f"{100 * ex['mean_abs_relative_error']:.2f}%, {100 * ex['fraction_inside_interval']:.0f}% of held-out "
            f"losses inside the interval.{caveat}</p><p><b>Verdict:</b> {escape(ex.get('verdict', ''))}</p><table><tr><th>N</th><th>D</th><th>C</th><th>loss</th>"
            f"<th>predicted</th><th>error</th></tr>{rows}</table>")


def _approaches(doc: dict) -> str:
    """Hoffmann et al.'s three approaches side by side: the exponent a of N_opt ∝ C^a, interval, verdict."""
    rows = []
    for name, label in APPROACHES.items():
        fit = doc["fits"].get(name)
        if fit is None:
            rows.append(f"<tr><td>{escape(label)}</td><td colspan=3>not fitted: "
                        f"{escape(str(doc.get('skipped', {}).get(name, 'no data')))}</td></tr>")
            continue
        lo, hi = fit["intervals"].get("a", [None, None])
        status = fit["status"]
        rows.append(f'<tr class="{escape(status)}"><td>{escape(label)}</td><td>{_fmt(fit["params"]["a"])}</td>'
                    f'<td>[{_fmt(lo)}, {_fmt(hi)}]</td><td class="v-{escape(status)}">{escape(status)}</td></tr>')
    return ("<h2>Compute-optimal model size, three ways</h2><table><tr><th>approach</th><th>a in N_opt ∝ C^a</th>"
            f"<th>interval</th><th>verdict</th></tr>{''.join(rows)}</table>")


def _noise(doc: dict) -> str:
    lines = describe(doc.get("noise") or {})
    return ("<h2>Noise in the losses</h2><ul>" + "".join(f"<li>{escape(x)}</li>" for x in lines) + "</ul>"
            if lines else "")


_STYLE = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;
vertical-align:top}figure{margin:2em 0}img{max-width:100%}figcaption{font-size:13px;color:#444}
tr.unidentified td{color:#999;background:#f4f4f4}.v-unidentified{color:#b00;font-weight:bold}
.v-warning{color:#a60;font-weight:bold}.v-ok{color:#070}
.headline{border:2px solid #444;padding:0.5em 1em;margin:1em 0;background:#fafafa}"""


def write_report(path: Path, doc: dict, figures, left_out: dict | None = None) -> Path:
    """Write report.html for a fits document (the fits.json content), its drawn figures and the ones left out.

    The page opens with the headline and the flagged fits; unidentified fits
    are greyed in the table, with their reasons listed above it.
    """
    missing = "".join(f"<li><b>{escape(k)}</b>: {escape(v)}</li>" for k, v in (left_out or {}).items())
    notes = "".join(f"<li>{escape(str(n))}</li>" for n in doc.get("notes", []))
    skipped = "".join(f"<li><b>{escape(k)}</b>: {escape(str(v))}</li>" for k, v in doc.get("skipped", {}).items())
    runs = doc.get("runs", [])
    html = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Scaling-law analysis</title><style>{_STYLE}</style></head>
<body><h1>Scaling-law analysis</h1>
{_headline(doc)}
{_approaches(doc)}
{_extrapolation(doc.get('extrapolation'))}
{''.join(_figure(f) for f in figures if f.name == "holdout")}
{_noise(doc)}
<p>{len(runs)} finished runs from <code>{escape(str(doc.get('source', {}).get('runs_dir', '')))}</code>; losses in
{escape(str(doc.get('source', {}).get('loss_unit', 'loss')))}.
Intervals are bootstrap percentile intervals over {doc['bootstrap']['resamples']} resamples (seed
{doc['bootstrap']['seed']}); each fit says how many were usable.</p>
{'<h2>Runs left out and other notes</h2><ul>' + notes + '</ul>' if notes else ''}
{'<h2>Fits not made</h2><ul>' + skipped + '</ul>' if skipped else ''}
<h2>Fitted values</h2>
<table><tr><th>fit</th><th>parameter</th><th>value</th><th>interval</th></tr>{''.join(_fit_rows(doc))}</table>
<h2>Figures</h2>
{''.join(_figure(f) for f in figures if f.name != "holdout")}
{'<p>Figures left out (nothing to show):</p><ul>' + missing + '</ul>' if missing else ''}
</body></html>
"""
    path.write_text(html, encoding="utf-8")
    return path
