"""scaling fit prints its verdict first and --strict fails on it; scaling predict reads fit's JSON, says how far
it extrapolates, and refuses what it cannot answer honestly, always with one error line."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from analysis import chinchilla
from analysis.cli import main
from analysis.synthetic import chinchilla_loss

CASES = Path(__file__).parent / "data" / "cases"


@pytest.fixture(scope="module")
def fits(tmp_path_factory):
    """``scaling fit --json`` output for a clean synthetic grid and for the two-sizes case, saved to files."""
    root = tmp_path_factory.mktemp("fits")
    N, D = (a.ravel() for a in np.meshgrid(np.geomspace(1e7, 1e9, 5), np.geomspace(1e9, 1e11, 5)))
    L = chinchilla_loss(N, D) * np.exp(np.random.default_rng(0).normal(0, 0.01, len(N)))
    (root / "clean.csv").write_text("N,D,loss\n" + "".join(f"{n},{d},{l}\n" for n, d, l in zip(N, D, L)))
    shutil.copy(CASES / "two_sizes.csv", root / "two_sizes.csv")
    out = {}
    for name in ("clean", "two_sizes"):
        path = root / f"{name}.json"
        with open(path, "w") as fh, _stdout_to(fh):
            assert main(["fit", str(root / f"{name}.csv"), "--law", "chinchilla", "--bootstrap", "20", "--json"]) == 0
        out[name] = path
    out["root"] = root
    return out


class _stdout_to:
    def __init__(self, fh):
        self.fh = fh

    def __enter__(self):
        import sys
        self.old, sys.stdout = sys.stdout, self.fh

    def __exit__(self, *exc):
        import sys
        sys.stdout = self.old


def _one_error(capsys, message):
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err and "Traceback" not in err


def test_predict_round_trips_fit_json(fits, capsys):
    doc = json.loads(fits["clean"].read_text())
    assert doc["fits"]["chinchilla"]["status"] == "ok"
    assert main(["predict", "--fit", str(fits["clean"]), "--compute", "1e20", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["chinchilla"]
    expected = chinchilla.compute_optimal(doc["fits"]["chinchilla"]["params"], 1e20)
    for key in ("N_opt", "D_opt", "loss"):
        assert row[key]["value"] == pytest.approx(float(expected[key]), rel=1e-12)
    assert row["allocation"].startswith("C = 6ND")
    # 1e20 FLOPs is inside the grid's 6ND range (6e16 to 6e20): nothing to warn about
    assert row["extrapolation"]["C"]["factor"] == 1.0 and row["warnings"] == []


def test_predict_says_how_far_it_extrapolates_and_warns_above_the_limit(fits, capsys):
    assert main(["predict", "--fit", str(fits["clean"]), "--compute", "6e22", "--json"]) == 0
    captured = capsys.readouterr()
    row = json.loads(captured.out)["chinchilla"]
    assert row["extrapolation"]["C"]["factor"] == pytest.approx(100, rel=1e-6)
    assert "C = 6e+22 is 100x beyond the fitted range" in captured.err
    assert main(["predict", "--fit", str(fits["clean"]), "--compute", "6e22", "--max-extrapolation", "1000"]) == 0
    captured = capsys.readouterr()
    assert "beyond the fitted range" not in captured.err and "100x beyond the fitted range" in captured.out


def test_predict_refuses_an_unidentified_fit_unless_forced(fits, capsys):
    assert main(["predict", "--fit", str(fits["two_sizes"]), "--compute", "1e21"]) == 2
    _one_error(capsys, "the data do not identify it")
    assert main(["predict", "--fit", str(fits["two_sizes"]), "--compute", "1e21", "--force"]) == 0
    captured = capsys.readouterr()
    assert "N_opt" in captured.out and "verdict is unidentified" in captured.err


@pytest.mark.parametrize("query", [["--compute", "nan"], ["--compute", "inf"], ["--compute=-1e20"],
                                   ["--compute", "0"], ["--n", "1e9", "--d", "nan"], ["--n=-1", "--d", "1e10"]])
def test_predict_refuses_non_finite_or_non_positive_queries(fits, capsys, query):
    assert main(["predict", "--fit", str(fits["clean"]), *query]) == 2
    _one_error(capsys, "finite and positive")


@pytest.mark.parametrize("param,value,message", [("alpha", -0.2, "exponents must be positive"),
                                                 ("E", -0.5, "is negative"), ("E", None, "not finite")])
def test_predict_refuses_non_physical_fits(fits, capsys, tmp_path, param, value, message):
    doc = json.loads(fits["clean"].read_text())
    doc["fits"]["chinchilla"]["params"][param] = value
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    assert main(["predict", "--fit", str(path), "--compute", "1e20", "--force"]) == 2
    _one_error(capsys, message)


@pytest.mark.parametrize("edit,message", [
    (lambda e: e.pop("params"), "lacks params"),
    (lambda e: e.pop("status"), "lacks status"),
    (lambda e: e.update(params=[1, 2]), "malformed"),
    (lambda e: e["bootstrap"]["samples"]["E"].pop(), "differ in length"),
    (lambda e: e.update(status="ok", diagnostics=[{"code": "x", "message": "y", "severity": "unidentified"}]),
     "says status 'ok'"),
])
def test_predict_names_what_is_wrong_with_a_malformed_file(fits, capsys, tmp_path, edit, message):
    doc = json.loads(fits["clean"].read_text())
    edit(doc["fits"]["chinchilla"])
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    assert main(["predict", "--fit", str(path), "--compute", "1e20"]) == 2
    _one_error(capsys, message)


def test_fit_prints_the_verdict_first_and_strict_fails_on_anything_but_ok(fits, capsys):
    two = str(fits["root"] / "two_sizes.csv")
    assert main(["fit", two, "--law", "chinchilla", "--bootstrap", "0"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("verdict for chinchilla: UNIDENTIFIED")
    assert any("few_distinct_N" in line for line in out[1:4])
    assert main(["fit", two, "--law", "chinchilla", "--bootstrap", "0", "--strict"]) == 1
    capsys.readouterr()
    clean = str(fits["root"] / "clean.csv")
    assert main(["fit", clean, "--law", "chinchilla", "--bootstrap", "0", "--strict"]) == 0
    assert capsys.readouterr().out.startswith("verdict for chinchilla: ok")


def test_fit_holds_out_the_largest_sizes_and_reports_each_point(fits, capsys):
    clean = str(fits["root"] / "clean.csv")
    assert main(["fit", clean, "--law", "chinchilla", "--bootstrap", "20", "--holdout-largest", "1", "--json"]) == 0
    check = json.loads(capsys.readouterr().out)["holdout"]
    assert len(check["held_out"]) == 5 and all(r["N"] == pytest.approx(1e9) for r in check["held_out"])
    assert check["fitted_points"] == 20 and check["mean_abs_relative_error"] < 0.03
    for r in check["held_out"]:
        assert r["relative_error"] == pytest.approx((r["predicted"] - r["loss"]) / r["loss"])
    assert main(["fit", clean, "--law", "chinchilla", "--bootstrap", "0", "--holdout-n-above", "3e8"]) == 0
    text = capsys.readouterr().out
    assert "hold-out check" in text and "runs with N above 3e+08" in text and text.count("%") >= 5
    assert main(["fit", clean, "--law", "isoflop", "--holdout-compute", "1e18"]) == 2
    _one_error(capsys, "needs the chinchilla or kaplan_nd law")
