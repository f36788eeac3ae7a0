"""The one-paragraph answer a report opens with: N_opt ∝ C^a, from which approaches, and how sure.

Only fits whose verdict is not ``unidentified`` contribute.  The approaches
agree when one value of a lies inside every interval (or, without intervals,
when the estimates are within ``AGREE_WITHOUT_INTERVALS`` of each other);
Hoffmann et al. (2022) present their three approaches the same way, and the
disagreement between them is itself the first thing a reader checks.
"""

from __future__ import annotations

import math

from analysis.results import FitResult

APPROACHES = {"approach1": "Approach 1 (training-curve envelope)", "isoflop": "Approach 2 (IsoFLOP profiles)",
              "chinchilla": "Approach 3 (parametric fit)"}
AGREE_WITHOUT_INTERVALS = 0.05
WIDE_INTERVAL = 0.15  # half-width of an exponent's interval above which it cannot confirm or refute agreement


def _fmt_ci(ci) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if all(math.isfinite(c) for c in ci) else "(no interval)"


def headline(fits: dict[str, FitResult]) -> dict:
    """``{"text", "approaches": [...], "agree", "confidence", "flagged": [...]}`` for the report and fits.json."""
    flagged = [{"fit": name, "status": f.status, "reasons": [d["message"] for d in f.diagnostics]}
               for name, f in fits.items() if f.status != "ok"]
    flagged.sort(key=lambda x: x["status"] != "unidentified")
    used = []
    for name, label in APPROACHES.items():
        fit = fits.get(name)
        if fit is None or fit.status == "unidentified" or "a" not in fit.params:
            continue
        ci = fit.intervals.get("a", [math.nan, math.nan])
        used.append({"fit": name, "label": label, "a": fit.params["a"], "ci": ci, "status": fit.status})
    if not used:
        text = ("No compute-optimal exponent can be given: no Chinchilla approach was fitted with a verdict other "
                "than unidentified (see the flagged fits below).")
        return {"text": text, "approaches": [], "agree": None, "confidence": "none", "flagged": flagged}
    with_ci = [u for u in used if all(math.isfinite(c) for c in u["ci"])]
    if len(with_ci) == len(used):
        agree = max(u["ci"][0] for u in used) <= min(u["ci"][1] for u in used)
    else:
        agree = max(u["a"] for u in used) - min(u["a"] for u in used) <= AGREE_WITHOUT_INTERVALS
    best = min(with_ci, key=lambda u: u["ci"][1] - u["ci"][0]) if with_ci else used[0]
    parts = "; ".join(f"{u['label']}: a = {u['a']:.3f} {_fmt_ci(u['ci'])}"
                      + (" (with warnings)" if u["status"] == "warning" else "") for u in used)
    if len(used) == 1:
        confidence = "tentative"
        verdict = "only one approach supports it, so nothing cross-checks it"
    elif agree and all(u["status"] == "ok" for u in used):
        confidence = "consistent"
        verdict = f"the {len(used)} approaches agree"
    elif agree:
        confidence = "tentative"
        verdict = f"the {len(used)} approaches agree, but some carry warnings"
    else:
        confidence = "conflicting"
        verdict = f"the {len(used)} approaches disagree, so the exponent is uncertain beyond any one interval"
    wide = [u for u in with_ci if (u["ci"][1] - u["ci"][0]) / 2 > WIDE_INTERVAL]
    if wide:
        verdict += (f"; {len(wide)} of the intervals span more than ±{WIDE_INTERVAL} (widest "
                    f"±{max((u['ci'][1] - u['ci'][0]) / 2 for u in wide):.2f}), so agreement says little: more "
                    "budgets or a wider compute range would narrow them")
        confidence = "tentative" if confidence == "consistent" else confidence
    text = (f"N_opt ∝ C^{best['a']:.3f} {_fmt_ci(best['ci'])} from {best['label']}; {verdict}. {parts}.")
    return {"text": text, "approaches": used, "agree": bool(agree), "confidence": confidence, "flagged": flagged}
