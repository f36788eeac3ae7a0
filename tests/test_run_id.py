"""The run id hashes what determines a run's numbers and nothing else.

Changing how often a run logs, evaluates or checkpoints, whether it shows progress, or where its
(unchanged) dataset lies keeps the id, so a preempted run relaunched with such a change resumes
its own directory; changing the learning rate, seed, shape or the dataset's contents makes a new run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from conftest import run_scaling, scaling_cmd, tiny_run_args
from scaling import config, planning
from scaling.data import prepare, stdlib_files

BASE = ["train.steps=100", "model.preset=tiny-d64"]


def _id(data, *overrides: str) -> str:
    return planning.run_id(config.load(None, [*BASE, f"data.path={data}", *overrides]))


@pytest.mark.parametrize("override", ["train.checkpoint_every=7", "train.keep_checkpoints=9", "train.log_every=3",
                                      "train.eval_every=11", "train.eval_log_points=2", "train.progress=false",
                                      "runs_dir=/elsewhere", "mesh.data=2", "mesh.fsdp=2",
                                      "distributed.num_processes=2", "distributed.cpu_collectives=mpi"])
def test_settings_that_leave_the_numbers_alone_keep_the_id(tiny_data, override):
    assert _id(tiny_data, override) == _id(tiny_data)


@pytest.mark.parametrize("override", ["optim.lr=1e-3", "seed=1", "model.d_model=128", "train.steps=101",
                                      "train.batch_size=8", "data.eval_batches=3", "train.keep_steps=[50]"])
def test_settings_that_change_the_numbers_change_the_id(tiny_data, override):
    assert _id(tiny_data, override) != _id(tiny_data)


def test_the_dataset_is_hashed_by_its_contents_not_its_path(tiny_data, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(tiny_data, moved)
    assert _id(moved) == _id(tiny_data)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, path in enumerate(sorted(stdlib_files())[:3]):
        (corpus / f"{i}.py").write_bytes(path.read_bytes())
    other = tmp_path / "other"
    prepare(str(corpus), "byte", other)
    assert _id(other) != _id(tiny_data)
    with pytest.raises(ValueError, match="content"):  # a path alone cannot name a run
        config.run_id(config.load(None, [*BASE, f"data.path={tiny_data}"]))


@pytest.mark.slow
def test_a_run_relaunched_with_new_checkpointing_and_moved_data_resumes_its_directory(tiny_data, tmp_path):
    runs = tmp_path / "runs"
    args = ["train.steps=200", "train.checkpoint_every=20", "train.log_every=1"]
    proc = subprocess.Popen(scaling_cmd("train", "tiny-d64", *tiny_run_args(tiny_data, runs, *args)),
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    deadline = time.time() + 120
    while not any(p.name.isdigit() for p in runs.glob("*/*/checkpoints/*")):
        assert proc.poll() is None and time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    (run,) = [p.parent for p in runs.glob("*/*/run.json")]
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    moved = tmp_path / "moved-data"
    shutil.copytree(tiny_data, moved)
    new = ["train.steps=200", "train.checkpoint_every=50", "train.log_every=5", "train.eval_every=30"]
    run_scaling("train", "tiny-d64", *tiny_run_args(moved, runs, *new))
    assert [p.parent for p in runs.glob("*/*/run.json")] == [run]  # the same directory, no new run
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "done" and info["resumed_from"] > 0 and info["final_step"] == 200
    assert info["dataset"]["path"] == str(moved)  # the rest is recorded: where the data was this time
    stored = config.load_yaml(run / "config.yaml")
    assert stored["train"]["checkpoint_every"] == 50 and stored["data"]["path"] == str(moved)
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 200


def test_two_datasets_of_the_same_size_but_different_tokens_are_different_runs(tmp_path):
    paths = []
    for name, line in (("a", "x = 1\n"), ("b", "y = 2\n")):
        corpus = tmp_path / f"corpus-{name}"
        corpus.mkdir()
        for i in range(40):
            (corpus / f"{i:02d}.py").write_text(line * 200)
        prepare(str(corpus), "byte", tmp_path / name)
        paths.append(tmp_path / name)
    splits = [json.loads((p / "metadata.json").read_text())["splits"] for p in paths]
    assert {k: v["tokens"] for k, v in splits[0].items()} == {k: v["tokens"] for k, v in splits[1].items()}
    assert _id(paths[0]) != _id(paths[1])  # same token counts, other tokens: the checksums tell them apart
