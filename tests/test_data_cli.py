"""`scaling data prepare` and the quickstart cache, as a user meets them."""

from __future__ import annotations

import argparse

import pytest

from scaling.data import cache as cache_module
from scaling.data.cache import cache_path, ensure_prepared
from scaling.data.cli import main, register
from scaling.data.dataset import TokenDataset


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    for i in range(6):
        (root / f"{i}.txt").write_text(f"document number {i}\n" * (i + 1))
    return root


def test_prepare_command_writes_a_dataset_and_summarises(corpus, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["data", "prepare", "--source", str(corpus), "--tokenizer", "bpe:280", "--out", str(out),
                 "--val-fraction", "0.3", "--seed", "4"])
    assert code == 0
    ds = TokenDataset(out)
    assert ds.metadata["source"] == str(corpus) and ds.metadata["seed"] == 4
    assert ds.num_documents("val") == 2 and ds.num_documents("train") == 4
    printed = capsys.readouterr().out
    assert str(out) in printed and "4 train, 2 val" in printed and "tokens/s" in printed


def test_register_adds_data_prepare_to_any_parser(corpus):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "prepare", "--out", "x"])
    assert (args.source, args.tokenizer, args.val_fraction, args.text_field) == ("stdlib", "byte", 0.05, "text")
    assert callable(args.func)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--source", "{tmp}/missing"], "source not found"),
        (["--source", "{tmp}/empty"], "holds no text"),
        (["--tokenizer", "sentencepiece"], "unknown tokenizer"),
        (["--tokenizer", "bpe:100"], "bad BPE vocabulary"),
        (["--val-fraction", "1.5"], "validation fraction"),
        (["--source", "{corpus}", "--out", "{corpus}"], "already exists"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(corpus, tmp_path, capsys, argv, message):
    (tmp_path / "empty").mkdir()
    argv = [a.format(tmp=tmp_path, corpus=corpus) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    assert main(["data", "prepare", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_ensure_prepared_prepares_once_then_reuses(corpus, tmp_path, monkeypatch):
    first = ensure_prepared(str(corpus), "byte", cache_dir=tmp_path / "cache")
    assert first.parent == tmp_path / "cache" / "data"

    def must_not_run(*args, **kwargs):
        raise AssertionError("prepared twice")

    monkeypatch.setattr(cache_module, "prepare", must_not_run)
    monkeypatch.setenv("SCALING_CACHE", str(tmp_path / "cache"))
    assert ensure_prepared(str(corpus), "byte") == first


def test_cache_entries_differ_by_source_and_tokenizer(tmp_path):
    a = cache_path("stdlib", "byte", tmp_path)
    assert "stdlib-byte-py3." in a.name
    assert a != cache_path("stdlib", "bpe:4096", tmp_path)
    assert a != cache_path(str(tmp_path), "byte", tmp_path)


def test_damaged_cache_entry_is_prepared_again(corpus, tmp_path):
    path = ensure_prepared(str(corpus), "byte", cache_dir=tmp_path)
    (path / "train.bin").write_bytes(b"")
    assert ensure_prepared(str(corpus), "byte", cache_dir=tmp_path) == path
    TokenDataset(path).verify()


def test_full_stdlib_prepares_byte_level_into_the_cache(tmp_path):
    """The quickstart's default corpus, end to end (about a second: byte-level needs no training)."""
    ds = TokenDataset(ensure_prepared(cache_dir=tmp_path))
    meta = ds.metadata
    documents = ds.num_documents("train") + ds.num_documents("val")
    assert documents > 1000
    assert meta["undecodable_documents"] >= 1  # the stdlib ships deliberately broken encodings
    assert ds.num_tokens("train") + ds.num_tokens("val") > 20_000_000
    ds.verify()
    batch = ds.train_batch(seed=0, step=0, batch_size=2, seq_len=64)
    assert batch.shape == (2, 65) and batch.max() <= ds.eot_id
