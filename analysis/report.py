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


def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    x = float(x)
    return f"{x:.4g}" if 1e-3 <= abs(x) < 1e5 or x == 0 else f"{x:.3e}"


def _fit_rows(doc: dict) -> list[str]:
    rows = []
    for name, fit in doc["fits"].items():
        level = round(100 * (fit.get("level") or 0.95))
        conv = fit.get("convergence") or {}
        status = ("converged" if conv.get("converged") else f"NOT converged: {conv.get('reason')}") if conv else ""
        for i, (param, value) in enumerate(fit["params"].items()):
            lo, hi = (fit.get("intervals") or {}).get(param, [None, None])
            head = (f'<td rowspan="{len(fit["params"])}">{escape(name)}<br><small>{escape(fit["formula"])}<br>'
                    f'N: {escape(fit["n_kind"])}; {len(fit["residuals"])} points'
                    f'{"; " + escape(status) if status else ""}</small></td>') if i == 0 else ""
            rows.append(f"<tr>{head}<td>{escape(param)}</td><td>{_fmt(value)}</td>"
                        f"<td>[{_fmt(lo)}, {_fmt(hi)}] ({level}%)</td></tr>")
    return rows


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
    return (f"<h2>Extrapolation check</h2><p>Approach 3 fitted on the {ex['fitted_points']} runs with compute up to "
            f"{_fmt(ex['threshold'])} FLOPs, then asked for the held-out runs: mean absolute relative error "
            f"{100 * ex['mean_abs_relative_error']:.2f}%, {100 * ex['fraction_inside_interval']:.0f}% of held-out "
            f"losses inside the interval.</p><table><tr><th>N</th><th>D</th><th>C</th><th>loss</th>"
            f"<th>predicted</th><th>error</th></tr>{rows}</table>")


_STYLE = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;
vertical-align:top}figure{margin:2em 0}img{max-width:100%}figcaption{font-size:13px;color:#444}"""


def write_report(path: Path, doc: dict, figures) -> Path:
    """Write report.html for a fits document (the fits.json content) and its drawn figures."""
    notes = "".join(f"<li>{escape(str(n))}</li>" for n in doc.get("notes", []))
    skipped = "".join(f"<li><b>{escape(k)}</b>: {escape(str(v))}</li>" for k, v in doc.get("skipped", {}).items())
    runs = doc.get("runs", [])
    html = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Scaling-law analysis</title><style>{_STYLE}</style></head>
<body><h1>Scaling-law analysis</h1>
<p>{len(runs)} finished runs from <code>{escape(str(doc.get('source', {}).get('runs_dir', '')))}</code>.
Intervals are bootstrap percentile intervals over {doc['bootstrap']['resamples']} resamples (seed
{doc['bootstrap']['seed']}).</p>
{'<h2>Runs left out and other notes</h2><ul>' + notes + '</ul>' if notes else ''}
{'<h2>Fits not made</h2><ul>' + skipped + '</ul>' if skipped else ''}
<h2>Fitted values</h2>
<table><tr><th>fit</th><th>parameter</th><th>value</th><th>interval</th></tr>{''.join(_fit_rows(doc))}</table>
{_extrapolation(doc.get('extrapolation'))}
<h2>Figures</h2>
{''.join(_figure(f) for f in figures)}
</body></html>
"""
    path.write_text(html, encoding="utf-8")
    return path
