"""Degenerate input raises FitError with a message that names the problem, from every fitter."""

import json

import numpy as np
import pytest

from analysis.bootstrap import Bootstrap
from analysis.chinchilla import fit_chinchilla
from analysis.cli import main
from analysis.errors import FitError
from analysis.isoflop import fit_isoflop
from analysis.kaplan import fit_kaplan_d, fit_kaplan_n, fit_kaplan_nd
from analysis.synthetic import chinchilla_loss, sample_points

NO_BOOT = Bootstrap(0)


def _points(n=30):
    return sample_points(n, noise=0.0, seed=0)


@pytest.mark.parametrize("fitter", [
    lambda N, D, L, **kw: fit_chinchilla(N, D, L, **kw),
    lambda N, D, L, **kw: fit_kaplan_nd(N, D, L, **kw),
    lambda N, D, L, **kw: fit_kaplan_n(N, L, **kw),
    lambda N, D, L, **kw: fit_kaplan_d(D, L, **kw),
    lambda N, D, L, **kw: fit_isoflop(N, D, L, 6 * N * D, **kw),
])
def test_every_fitter_rejects_bad_values(fitter):
    N, D, L = _points()
    for bad, message in ((np.nan, "NaN"), (0.0, "zero or negative"), (-1.0, "zero or negative")):
        spoiled = L.copy()
        spoiled[4] = bad
        with pytest.raises(FitError, match=message):
            fitter(N, D, spoiled, bootstrap=NO_BOOT)
    with pytest.raises(FitError, match="at least"):
        fitter(N[:2], D[:2], L[:2], bootstrap=NO_BOOT)
    with pytest.raises(FitError, match="differ in length"):
        fitter(N, D, L[:-1], bootstrap=NO_BOOT)


def test_a_single_model_size_cannot_identify_a_size_law():
    D = np.geomspace(1e8, 1e10, 12)
    N = np.full(12, 1e8)
    L = chinchilla_loss(N, D)
    for fit in (lambda: fit_chinchilla(N, D, L, bootstrap=NO_BOOT), lambda: fit_kaplan_n(N, L, bootstrap=NO_BOOT),
                lambda: fit_isoflop(N, D, L, 6 * N * D, bootstrap=NO_BOOT)):
        with pytest.raises(FitError, match="distinct|model sizes"):
            fit()


def test_loss_that_rises_with_size_is_refused():
    N = np.geomspace(1e6, 1e9, 8)
    with pytest.raises(FitError, match="does not fall"):
        fit_kaplan_n(N, 2.0 + 1e-9 * N ** 0.5, bootstrap=NO_BOOT)


def test_analyze_on_a_sweep_with_one_short_run_is_a_clean_error(tmp_path, capsys):
    run = tmp_path / "s" / "only"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"run_id": "only", "n_params": 1e6, "n_params_non_embedding": 9e5,
                                              "status": "done", "flops_per_token": 6e6}))
    (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "tokens": 1e6, "flops": 6e12, "eval_loss": 4.0}))
    assert main(["analyze", str(tmp_path), "--bootstrap", "0"]) == 2
    err = capsys.readouterr().err.splitlines()
    # progress lines ("analyze: ...") come first; the failure is one error line, the last
    assert [e for e in err if not e.startswith("analyze: ")] == err[-1:]
    assert err[-1].startswith("error: no law could be fitted")
