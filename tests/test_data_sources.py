"""Every kind of source yields the documents it holds, in a fixed order, or a clear DataError."""

from __future__ import annotations

import json
import sys
import sysconfig

import pytest

from scaling.data.errors import DataError
from scaling.data.sources import read_corpus, stdlib_files


@pytest.fixture
def tree(tmp_path):
    """Text files at two depths, plus a hidden file and a binary file that must not become documents."""
    root = tmp_path / "tree"
    (root / "sub").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "b.txt").write_text("second")
    (root / "a.md").write_text("first")
    (root / "sub" / "c.py").write_text("print('third')\n")
    (root / ".hidden.txt").write_text("hidden")
    (root / ".git" / "HEAD").write_text("hidden too")
    (root / "sub" / "blob.bin").write_bytes(b"\x00\x01\x02binary")
    return root


def test_directory_is_walked_recursively_in_sorted_order_skipping_hidden_and_binary(tree):
    corpus = read_corpus(str(tree))
    assert corpus.documents == ["first", "second", "print('third')\n"]
    assert corpus.binary_skipped == 1
    assert corpus.undecodable == 0


def test_glob_matches_recursively_and_sorts(tree):
    assert read_corpus(str(tree / "**" / "*.py")).documents == ["print('third')\n"]
    assert read_corpus(str(tree / "*.txt")).documents == ["second"]


def test_single_file_is_one_document(tree):
    assert read_corpus(str(tree / "sub" / "c.py")).documents == ["print('third')\n"]


def test_invalid_utf8_is_replaced_and_counted(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    (tmp_path / "ok.txt").write_text("fine")
    corpus = read_corpus(str(tmp_path))
    assert corpus.documents == ["caf\ufffd", "fine"]
    assert corpus.undecodable == 1


def test_jsonl_one_document_per_line_with_overridable_field(tmp_path):
    path = tmp_path / "docs.jsonl"
    rows = [{"text": "alpha", "body": "one"}, {"text": "béta\nwith newline", "body": "two"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert read_corpus(str(path)).documents == ["alpha", "béta\nwith newline"]
    assert read_corpus(str(path), text_field="body").documents == ["one", "two"]


def test_jsonl_lone_surrogates_are_replaced_and_counted(tmp_path):
    (tmp_path / "docs.jsonl").write_text('{"text": "half a pair: \\ud800!"}\n')
    corpus = read_corpus(str(tmp_path / "docs.jsonl"))
    assert corpus.documents == ["half a pair: ?!"]
    assert corpus.undecodable == 1


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"text": "ok"}\n{"other": "x"}\n', r"docs.jsonl:2: no 'text' field"),
        ('{"text": "ok"}\nnot json\n', r"docs.jsonl:2: not valid JSON"),
        ('{"text": 3}\n', r"docs.jsonl:1: text is int"),
    ],
)
def test_jsonl_errors_name_the_line(tmp_path, content, message):
    (tmp_path / "docs.jsonl").write_text(content)
    with pytest.raises(DataError, match=message):
        read_corpus(str(tmp_path / "docs.jsonl"))


def test_parquet_one_document_per_row(tmp_path):
    pa = pytest.importorskip("pyarrow")
    parquet = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "docs.parquet"
    parquet.write_table(pa.table({"text": ["row one", "row two"], "content": ["x", "y"]}), path)
    assert read_corpus(str(path)).documents == ["row one", "row two"]
    assert read_corpus(str(path), text_field="content").documents == ["x", "y"]
    with pytest.raises(DataError, match="no 'missing' column"):
        read_corpus(str(path), text_field="missing")


def test_directory_dispatches_jsonl_by_suffix(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "from jsonl"}\n{"text": "again"}\n')
    (tmp_path / "b.txt").write_text("plain")
    assert read_corpus(str(tmp_path)).documents == ["from jsonl", "again", "plain"]


def test_missing_optional_dependency_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "docs.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(DataError, match="pip install pyarrow"):
        read_corpus(str(tmp_path / "docs.parquet"))
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(DataError, match="pip install datasets"):
        read_corpus("hf:some/dataset")


def test_hugging_face_saved_dataset_and_split(tmp_path):
    datasets = pytest.importorskip("datasets")
    single = tmp_path / "single"
    datasets.Dataset.from_dict({"text": ["hf one", "hf two"], "n": [1, 2]}).save_to_disk(str(single))
    assert read_corpus(f"hf:{single}").documents == ["hf one", "hf two"]

    splits = tmp_path / "splits"
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"body": ["t1", "t2", "t3"]}),
            "test": datasets.Dataset.from_dict({"body": ["held out"]}),
        }
    ).save_to_disk(str(splits))
    assert read_corpus(f"hf:{splits}", text_field="body").documents == ["t1", "t2", "t3"]
    assert read_corpus(f"hf:{splits}:test", text_field="body").documents == ["held out"]
    with pytest.raises(DataError, match="no split 'nope'"):
        read_corpus(f"hf:{splits}:nope", text_field="body")
    with pytest.raises(DataError, match="no 'text' column"):
        read_corpus(f"hf:{splits}")


def test_stdlib_source_lists_the_standard_library_only():
    files = stdlib_files()
    assert len(files) > 1000
    assert files == sorted(files)
    assert all(f.suffix == ".py" for f in files)
    assert not any("site-packages" in f.parts for f in files)
    names = {f.relative_to(sysconfig.get_paths()["stdlib"]).as_posix() for f in files}
    assert {"os.py", "json/__init__.py"} <= names


@pytest.mark.parametrize(
    "spec, message",
    [
        ("{tmp}/does-not-exist", "source not found"),
        ("{tmp}/*.nothing", "no files match"),
        ("{tmp}", "holds no text"),
    ],
)
def test_bad_sources_are_clear_errors(tmp_path, spec, message):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match=message):
        read_corpus(spec.format(tmp=tmp_path))
