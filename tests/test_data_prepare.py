"""prepare() writes a dataset that decodes back to its corpus, splits by document, and checks itself."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from scaling.data import writer
from scaling.data.dataset import TokenDataset
from scaling.data.errors import DataError
from scaling.data.writer import prepare, split_documents
from scaling.data.tokenizer import EOT_TEXT, TokenizerSpec, token_dtype

DOCUMENTS = [
    f"def f{i}(x):\n    return x * {i}  # naïve café ✓ 数据 {'🙂' * (i % 3)}\n" + "spam eggs " * i
    for i in range(30)
] + [f"a document that mentions {EOT_TEXT} literally", "\n\n  leading and trailing whitespace  \n"]


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    for i, text in enumerate(DOCUMENTS):
        (root / f"doc{i:02d}.txt").write_text(text, encoding="utf-8")
    return root


@pytest.fixture(scope="module", params=["byte", "bpe:300"])
def dataset(request, corpus_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared") / request.param.replace(":", "_")
    prepare(str(corpus_dir), request.param, out, val_fraction=0.2, seed=3)
    return TokenDataset(out)


def split_documents_of(ds: TokenDataset, split: str) -> list[str]:
    """Decode a split one document at a time, cutting at end-of-document tokens."""
    tokens = np.asarray(ds.tokens(split))
    assert tokens[-1] == ds.eot_id
    ends = np.flatnonzero(tokens == ds.eot_id)
    starts = np.concatenate([[0], ends[:-1] + 1])
    return [ds.decode(tokens[s:e]) for s, e in zip(starts, ends)]


def test_round_trip_recovers_every_document_exactly(dataset):
    train, val = split_documents_of(dataset, "train"), split_documents_of(dataset, "val")
    assert sorted(train + val) == sorted(DOCUMENTS)


def test_split_is_by_whole_document(dataset):
    train, val = split_documents_of(dataset, "train"), split_documents_of(dataset, "val")
    assert set(train).isdisjoint(val)
    assert len(val) == round(0.2 * len(DOCUMENTS))
    assert dataset.num_documents("val") == len(val) and dataset.num_documents("train") == len(train)


def test_metadata_matches_files_and_checksums_verify(dataset):
    meta = dataset.metadata
    for split in ("train", "val"):
        tokens = dataset.tokens(split)
        assert len(tokens) == meta["splits"][split]["tokens"] == dataset.num_tokens(split)
        assert int((tokens == dataset.eot_id).sum()) == meta["splits"][split]["documents"]
        assert int(tokens.max()) < dataset.vocab_size
    assert meta["dtype"] == "uint16" and dataset.tokens("train").dtype == np.uint16
    assert meta["undecodable_documents"] == 0
    dataset.verify()


def test_byte_and_bpe_vocabularies(dataset):
    if dataset.metadata["tokenizer"]["kind"] == "byte":
        assert (dataset.vocab_size, dataset.eot_id) == (257, 256)
    else:
        assert dataset.vocab_size == 300
        assert (dataset.path / "tokenizer.json").is_file()
        # BPE merges make it shorter than bytes.
        assert dataset.num_tokens("train") < sum(len(d.encode()) for d in DOCUMENTS)


def test_pickle_carries_the_path_not_the_tokens(dataset):
    dataset.tokens("train")  # open the memmap first: it must not travel
    blob = pickle.dumps(dataset)
    assert len(blob) < 2000
    clone = pickle.loads(blob)
    np.testing.assert_array_equal(clone.train_batch(1, 2, 4, 8), dataset.train_batch(1, 2, 4, 8))


def prepared_copy(corpus_dir, tmp_path):
    out = tmp_path / "ds"
    prepare(str(corpus_dir), "byte", out)
    return out


def test_corrupted_token_file_fails_verify(corpus_dir, tmp_path):
    out = prepared_copy(corpus_dir, tmp_path)
    with open(out / "val.bin", "r+b") as f:
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 0xFF]))
    with pytest.raises(DataError, match="checksum mismatch"):
        TokenDataset(out).verify()


def test_truncated_token_file_fails_on_open(corpus_dir, tmp_path):
    out = prepared_copy(corpus_dir, tmp_path)
    data = (out / "train.bin").read_bytes()
    (out / "train.bin").write_bytes(data[:-2])
    with pytest.raises(DataError, match="expected .* bytes"):
        TokenDataset(out)


def test_interrupted_prepare_leaves_nothing_that_looks_complete(corpus_dir, tmp_path, monkeypatch):
    write_split = writer._write_split

    def dies_on_val(path, documents, codec):
        if path.name == "val.bin":
            raise KeyboardInterrupt
        return write_split(path, documents, codec)

    monkeypatch.setattr(writer, "_write_split", dies_on_val)
    with pytest.raises(KeyboardInterrupt):
        prepare(str(corpus_dir), "byte", tmp_path / "ds")
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_kept_unless_overwrite(corpus_dir, tmp_path):
    out = prepared_copy(corpus_dir, tmp_path)
    with pytest.raises(DataError, match="already exists"):
        prepare(str(corpus_dir), "byte", out)
    prepare(str(corpus_dir), "byte", out, seed=9, overwrite=True)
    assert json.loads((out / "metadata.json").read_text())["seed"] == 9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]

    stranger = tmp_path / "not-a-dataset"
    stranger.mkdir()
    (stranger / "precious.txt").write_text("keep me")
    with pytest.raises(DataError, match="not a prepared dataset"):
        prepare(str(corpus_dir), "byte", stranger, overwrite=True)
    assert (stranger / "precious.txt").read_text() == "keep me"


def test_document_split_is_seeded_and_holds_out_at_least_one():
    a = split_documents(100, 0.1, seed=0)
    assert a.sum() == 10
    np.testing.assert_array_equal(a, split_documents(100, 0.1, seed=0))
    assert not np.array_equal(a, split_documents(100, 0.1, seed=1))
    assert split_documents(3, 0.01, seed=0).sum() == 1
    with pytest.raises(DataError, match="cannot be split"):
        split_documents(1, 0.5, seed=0)


@pytest.mark.parametrize("spec", ["bpe", "bpe:", "bpe:12", "bpe:x", "wordpiece:1000", "BYTE", "byte:300"])
def test_bad_tokenizer_specs_are_rejected(spec):
    with pytest.raises(DataError):
        TokenizerSpec.parse(spec)


def test_token_dtype_widens_past_65536():
    assert token_dtype(65536) == np.uint16
    assert token_dtype(65537) == np.uint32


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_bad_validation_fraction_is_rejected(corpus_dir, tmp_path, fraction):
    with pytest.raises(DataError, match="validation fraction"):
        prepare(str(corpus_dir), "byte", tmp_path / "ds", val_fraction=fraction)
