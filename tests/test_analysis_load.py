"""Reading run directories and CSVs; run directories are written here by hand, following the run-directory layout in README.md ("The run directory")."""

import json

import numpy as np
import pytest

from analysis.errors import FitError
from analysis.load import load_csv, load_runs


def write_run(root, run_id, *, status="done", error=None, n=1_000_000, n_ne=800_000, fpt=None, records=(),
              extra_lines=(), **meta):
    run = root / "sweep-a" / run_id
    run.mkdir(parents=True)
    meta = {"run_id": run_id, "sweep": "sweep-a", "seed": 0, "n_params": n, "n_params_non_embedding": n_ne,
            "n_params_embedding": n - n_ne, "flops_per_token": fpt or 7.5 * n, "flops_per_token_6n": 6.0 * n,
            "tokens_target": 1e6, "compute_target": 1e13, "status": status, "error": error,
            "started": "t0", "finished": "t1", "versions": {"jax": "x"}, "unknown_future_key": [1, 2], **meta}
    (run / "run.json").write_text(json.dumps(meta))
    lines = [json.dumps(r) for r in records] + list(extra_lines)
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return run


def record(step, tokens, n=1_000_000, train=3.0, eval_loss=None):
    r = {"step": step, "tokens": tokens, "flops": 7.5 * n * tokens, "train_loss": train, "lr": 1e-3,
         "grad_norm": 1.0, "tokens_per_s": 1e4, "mfu": 0.1, "wall_s": step * 0.1}
    if eval_loss is not None:
        r["eval_loss"] = eval_loss
    return r


def test_finished_runs_become_a_table_and_the_rest_are_noted(tmp_path):
    write_run(tmp_path, "good", records=[record(1, 1000, train=5.0, eval_loss=5.1), record(2, 2000, train=4.0),
                                         record(3, 3000, train=3.5, eval_loss=3.6), record(4, 4000, train=3.4)])
    write_run(tmp_path, "noeval", records=[record(1, 1000, train=4.5), record(2, 2000, train=4.2)])
    write_run(tmp_path, "crashed", status="failed", error="NaN loss at step 7", records=[record(1, 1000)])
    write_run(tmp_path, "busy", status="running", records=[record(1, 1000)])
    write_run(tmp_path, "torn", records=[record(1, 1000, eval_loss=4.0)], extra_lines=['{"step": 2, "tok'])

    sweep = load_runs(tmp_path)
    by_id = {r.run_id: r for r in sweep.runs}
    assert set(by_id) == {"good", "noeval", "torn"}
    good = by_id["good"]
    assert good.final_loss == 3.6 and good.final_loss_source == "eval"  # last *evaluated* step, not last step
    assert good.tokens == 4000 and good.compute == pytest.approx(7.5e6 * 4000)
    assert good.compute_6nd == pytest.approx(6e6 * 4000)
    assert (good.n_params, good.n_params_non_embedding, good.n_params_embedding) == (1e6, 8e5, 2e5)
    _, tokens, loss = good.curve()
    assert tokens.tolist() == [1000, 3000] and loss.tolist() == [5.1, 3.6]
    assert by_id["noeval"].final_loss == 4.2 and by_id["noeval"].final_loss_source == "train"

    notes = "\n".join(sweep.notes)
    assert "crashed" in notes and "failed" in notes and "NaN loss at step 7" in notes
    assert "busy" in notes and "running" in notes
    assert "noeval: never evaluated" in notes
    assert "torn: ignored 1 unreadable line" in notes
    table = sweep.table()
    assert {row["run_id"] for row in table} == {"good", "noeval", "torn"}
    assert {"N", "N_non_embedding", "D", "C", "C_6ND", "loss", "status"} <= set(table[0])


def test_runs_are_found_recursively_from_any_level(tmp_path):
    write_run(tmp_path, "one", records=[record(1, 1000, eval_loss=4.0)])
    assert [r.run_id for r in load_runs(tmp_path).runs] == ["one"]
    assert [r.run_id for r in load_runs(tmp_path / "sweep-a").runs] == ["one"]


def test_no_finished_runs_is_an_error(tmp_path):
    write_run(tmp_path, "crashed", status="failed", error="oom", records=[record(1, 1000)])
    with pytest.raises(FitError, match="no finished runs"):
        load_runs(tmp_path)
    with pytest.raises(FitError, match="not a directory"):
        load_runs(tmp_path / "missing")


def test_csv_with_renamed_columns_filters_and_6nd_fallback(tmp_path):
    path = tmp_path / "points.csv"
    path.write_text("params,toks,val,set\n1e6,2e7,4.0,a\n2e6,4e7,3.5,a\n4e6,8e7,3.0,b\n")
    table = load_csv(path, n_col="params", d_col="toks", loss_col="val", where={"set": "a"})
    assert table.cols["N"].tolist() == [1e6, 2e6]
    assert np.allclose(table.cols["C"], 6 * table.cols["N"] * table.cols["D"])
    assert table.notes == ["no compute column: C = 6 N D"]


@pytest.mark.parametrize("content,message", [
    ("N,D\n1,2\n", "missing column"),
    ("N,D,loss\n1e6,2e7,\n", "not a number"),
    ("N,D,loss\n1e6,2e7,abc\n", "not a number"),
])
def test_bad_csv_is_a_fit_error(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(FitError, match=message):
        load_csv(path)
