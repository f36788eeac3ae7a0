"""The analyze / fit / predict commands, end to end, and their handling of bad input."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from analysis import chinchilla
from analysis.cli import main, register
from analysis.synthetic import isoflop_design, sample_points, write_sweep

FIGURES = ("loss_curves", "compute_frontier", "isoflop_profiles", "optimal_allocation", "parametric_contours",
           "kaplan_laws", "holdout")
ALL_FITS = {"kaplan_n", "kaplan_d", "kaplan_compute", "kaplan_nd", "approach1", "isoflop", "chinchilla"}


@pytest.fixture(scope="module")
def analyzed(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    write_sweep(root, budgets=(1e17, 1e18, 1e19, 1e20), sizes_per_budget=6, seed=1)
    bad = root / "synthetic" / "broken"
    bad.mkdir()
    (bad / "run.json").write_text(json.dumps({
        "run_id": "<script>alert(1)</script>", "n_params": 1e6, "n_params_non_embedding": 9e5, "status": "failed",
        "error": "<b>out of memory</b>"}))
    out = root / "report"
    assert main(["analyze", str(root), "--out", str(out), "--bootstrap", "40"]) == 0
    return out


def test_analyze_writes_every_fit_figure_and_a_self_contained_report(analyzed):
    doc = json.loads((analyzed / "fits.json").read_text())
    assert set(doc["fits"]) == ALL_FITS and doc["skipped"] == {}
    assert doc["fits"]["kaplan_n"]["n_kind"] == "non_embedding"
    assert doc["fits"]["chinchilla"]["n_kind"] == "total"
    assert len(doc["fits"]["chinchilla"]["bootstrap"]["samples"]["alpha"]) == 40
    assert len(doc["runs"]) == 24 and doc["extrapolation"]["held_out"]
    assert any("failed" in n and "out of memory" in n for n in doc["notes"])
    for name in FIGURES:
        assert (analyzed / f"{name}.png").stat().st_size > 10_000
        assert (analyzed / f"{name}.svg").read_text().lstrip().startswith("<?xml")
    html = (analyzed / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(FIGURES)
    assert "<script>" not in html and "<b>out of memory" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'src="http' not in html  # nothing fetched from elsewhere


def test_analyze_leaves_no_unidentified_fit_silent(analyzed):
    doc = json.loads((analyzed / "fits.json").read_text())
    statuses = {name: fit["status"] for name, fit in doc["fits"].items()}
    # L(N) on an IsoFLOP grid is meaningless by design; the clean synthetic law is identified
    assert statuses["kaplan_n"] == "unidentified" and statuses["chinchilla"] == "ok"
    html = (analyzed / "report.html").read_text()
    flagged = {f["fit"]: f for f in doc["headline"]["flagged"]}
    first_ok = min(html.index(f"<b>{n}</b> <span") for n, s in statuses.items() if s == "ok")
    for name, fit in doc["fits"].items():
        if fit["status"] == "ok":
            assert fit["diagnostics"] == [] and name not in flagged
            continue
        assert any(d["severity"] == fit["status"] for d in fit["diagnostics"])
        assert flagged[name]["reasons"] == [d["message"] for d in fit["diagnostics"]]
        assert html.index(f"<b>{name}</b> <span") < first_ok  # flagged fits are listed first
    assert html.index('class="headline"') < html.index("<h2>")  # the report opens with the headline
    assert html.count('<tr class="unidentified">') == sum(
        len(f["params"]) for f in doc["fits"].values() if f["status"] == "unidentified")
    assert "N_opt ∝ C^" in doc["headline"]["text"] and doc["headline"]["confidence"] != "none"
    assert doc["source"]["loss_unit"] == "nats per byte"
    assert "nats per byte" in (analyzed / "loss_curves.svg").read_text()
    for name in ("parametric_contours", "optimal_allocation", "kaplan_laws", "isoflop_profiles"):
        assert "incl. embeddings" in (analyzed / f"{name}.svg").read_text() or name == "kaplan_laws"
    assert "non-embedding" in (analyzed / "kaplan_laws.svg").read_text()


def test_predict_reads_fits_json(analyzed, capsys):
    assert main(["predict", "--fit", str(analyzed / "fits.json"), "--compute", "1e21", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    doc = json.loads((analyzed / "fits.json").read_text())
    p = doc["fits"]["chinchilla"]["params"]
    # the synthetic runs count exactly 6N FLOPs per token, so the exact-FLOP allocation equals the closed form
    ratios = doc["fits"]["chinchilla"]["extra"]["flop_model"]["ratio_to_6N"]
    assert ratios == pytest.approx([1.0] * len(ratios), rel=1e-6)
    expected = chinchilla.compute_optimal(p, 1e21)
    row = out["chinchilla"]
    assert row["allocation"].startswith("C = exact FLOPs per token")
    for key in ("N_opt", "D_opt", "tokens_per_param", "loss"):
        assert row[key]["value"] == pytest.approx(float(expected[key]), rel=1e-5)
        lo, hi = row[key]["ci"]
        assert lo < row[key]["value"] < hi
    assert row["extrapolation"]["C"]["factor"] == pytest.approx(1e21 / max(r["C"] for r in doc["runs"]), rel=0.05)
    assert {"approach1", "isoflop", "kaplan_compute"} <= set(out)

    assert main(["predict", "--fit", str(analyzed / "fits.json"), "--compute", "1e21"]) == 0
    text = capsys.readouterr().out
    assert "N_opt" in text and "D_opt" in text and "chinchilla" in text

    assert main(["predict", "--fit", str(analyzed / "fits.json"), "--n", "1e9", "--d", "2e10", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["chinchilla"]["loss_at_N_D"]["value"] == pytest.approx(float(chinchilla.loss(p, 1e9, 2e10)))
    assert "loss_at_N_D" in out["kaplan_nd"]


def test_fit_json_has_every_parameter_with_an_interval(tmp_path, capsys):
    N, D, L = sample_points(40, noise=0.005, seed=0)
    path = tmp_path / "points.csv"
    path.write_text("N,D,loss\n" + "".join(f"{n},{d},{l}\n" for n, d, l in zip(N, D, L)))
    assert main(["fit", str(path), "--law", "chinchilla", "--bootstrap", "30", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)["fits"]["chinchilla"]
    for key in ("E", "A", "B", "alpha", "beta", "a", "b"):
        assert isinstance(out["params"][key], float) and len(out["intervals"][key]) == 2
    assert out["convergence"]["converged"] and out["status"] == "ok" and out["diagnostics"] == []

    for law, keys in (("kaplan_n", {"alpha_N", "N_c"}), ("kaplan_d", {"alpha_D", "D_c"}),
                      ("kaplan_nd", {"alpha_N", "alpha_D", "N_c", "D_c"})):
        assert main(["fit", str(path), "--law", law, "--bootstrap", "10", "--json"]) == 0
        out = json.loads(capsys.readouterr().out)["fits"][law]
        assert out["law"] == law and all(len(out["intervals"][k]) == 2 for k in keys)
        assert out["status"] in ("ok", "warning", "unidentified") and isinstance(out["diagnostics"], list)


def test_fit_isoflop_snaps_compute_to_budgets(tmp_path, capsys):
    N, D = isoflop_design([1e18, 1e19, 1e20], 7)
    C = 6 * N * D * np.random.default_rng(0).uniform(0.97, 1.03, len(N))  # runs miss their budget a little
    L = chinchilla.loss({"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}, N, D)
    path = tmp_path / "iso.csv"
    path.write_text("params,tokens,flops,loss\n" + "".join(f"{a},{b},{c},{d}\n" for a, b, c, d in zip(N, D, C, L)))
    argv = ["fit", str(path), "--law", "isoflop", "--n-col", "params", "--d-col", "tokens", "--c-col", "flops",
            "--bootstrap", "50", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)["fits"]["isoflop"]
    assert out["params"]["a"] == pytest.approx(0.28 / 0.62, abs=0.01)
    assert len(set(np.round(np.log10(out["intervals"]["a"]), 6))) == 2
    assert all(b["bracketed"] and b["used"] for b in out["extra"]["budgets"])


@pytest.mark.parametrize("rows,args,message", [
    ("N,D,loss\n1e6,1e8,3.0\n2e6,2e8,2.9\n", ["--law", "chinchilla"], "at least"),
    ("".join(f"1e6,{d},{3 + 1 / d ** 0.1}\n" for d in np.geomspace(1e7, 1e9, 10)), ["--law", "chinchilla"],
     "distinct values of N"),
    ("1e6,1e8,3.0\n2e6,2e8,-2.9\n4e6,4e8,2.8\n8e6,8e8,2.7\n", ["--law", "kaplan_n"], "zero or negative"),
    ("1e6,1e8,3.0\n2e6,2e8,nan\n4e6,4e8,2.8\n8e6,8e8,2.7\n", ["--law", "kaplan_n"], "'nan', not a number"),
    ("1e6,1e8,3.0\n", ["--law", "kaplan_d", "--loss-col", "val_loss"], "missing column"),
])
def test_degenerate_input_is_one_line_on_stderr(tmp_path, capsys, rows, args, message):
    path = tmp_path / "bad.csv"
    path.write_text(rows if rows.startswith("N,") else "N,D,loss\n" + rows)
    assert main(["fit", str(path), *args, "--bootstrap", "10"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert "Traceback" not in err


def test_bad_paths_and_files_are_clean_errors(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "nowhere")]) == 2
    (tmp_path / "fits.json").write_text("{not json")
    assert main(["predict", "--fit", str(tmp_path / "fits.json"), "--compute", "1e20"]) == 2
    assert main(["predict", "--fit", str(tmp_path / "absent.json"), "--compute", "1e20"]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 3 and all(e.startswith("error: ") for e in errors)


def test_register_adds_the_subcommands_to_another_parser():
    parser = argparse.ArgumentParser(prog="scaling")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["fit", "x.csv", "--law", "kaplan_d", "--drop-top", "2"])
    assert args.func is not None and args.drop_top == 2 and args.bootstrap == 1000
    assert parser.parse_args(["predict", "--fit", "f.json", "--compute", "1e20"]).compute == 1e20
    assert parser.parse_args(["analyze", "runs"]).runs_dir == "runs"


def test_analysis_imports_nothing_from_the_training_library():
    code = ("import sys, pkgutil, importlib, analysis\n"
            "for m in pkgutil.iter_modules(analysis.__path__): importlib.import_module('analysis.' + m.name)\n"
            "print(sorted(m for m in sys.modules if m == 'scaling' or m.startswith('scaling.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"


def test_kaplan_fits_count_non_embedding_n_and_chinchilla_fits_total_n(analyzed):
    # Kaplan et al. fit non-embedding N, Hoffmann et al. total N; the synthetic runs have both, 10% apart.
    doc = json.loads((analyzed / "fits.json").read_text())["fits"]
    runs = [json.loads(p.read_text()) for p in (analyzed.parent / "synthetic").glob("r*/run.json")]
    total, non_embedding = {r["n_params"] for r in runs}, {r["n_params_non_embedding"] for r in runs}
    assert not total & non_embedding
    for law, counted in (("kaplan_n", non_embedding), ("kaplan_nd", non_embedding), ("chinchilla", total)):
        assert set(doc[law]["data"]["N"]) <= counted, law
    assert doc["kaplan_n"]["n_kind"] == "non_embedding" and doc["chinchilla"]["n_kind"] == "total"
