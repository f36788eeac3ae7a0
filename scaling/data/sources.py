"""Turn a source spec into an ordered list of documents.

A spec is one of:
  ``stdlib``            the ``.py`` files of the running interpreter's standard library
  ``hf:NAME[:SPLIT]``   a Hugging Face dataset (``load_dataset``), split ``train`` by default
  ``hf:/local/path``    a dataset saved with ``save_to_disk`` (or a local data directory)
  a glob, a directory (walked recursively) or a single file.

Files are dispatched by suffix: ``.jsonl`` gives one document per line (a JSON
object with a text field), ``.parquet`` one per row of the text column, and any
other file is one document. Files found by a walk or glob come in sorted path
order, so the same tree always yields the same corpus; hidden files are ignored
and files that look binary (a NUL byte near the start, as git decides) are
skipped and counted rather than fed to the tokenizer as noise.
"""

from __future__ import annotations

import glob
import importlib
import json
import os
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

from scaling.data.errors import DataError

STDLIB = "stdlib"
HF_PREFIX = "hf:"
_GLOB_CHARS = frozenset("*?[")
_BINARY_PROBE_BYTES = 8192
_STDLIB_SKIP_DIRS = frozenset({"site-packages", "dist-packages"})


@dataclass
class Corpus:
    """Documents in their final order, plus what was lost reading them."""

    documents: list[str] = field(default_factory=list)
    undecodable: int = 0
    binary_skipped: int = 0

    def add_bytes(self, data: bytes) -> None:
        """Invalid UTF-8 is kept with U+FFFD replacements so one odd file cannot stop a prepare."""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("utf-8", errors="replace")
            self.undecodable += 1
        self.documents.append(text)

    def add_text(self, value: object, where: str) -> None:
        """JSON escapes can spell lone surrogates, which no UTF-8 tokenizer accepts: replace and count them."""
        if not isinstance(value, str):
            raise DataError(f"{where}: text is {type(value).__name__}, expected a string")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-8", errors="replace").decode("utf-8")
            self.undecodable += 1
        self.documents.append(value)


def read_corpus(spec: str, text_field: str = "text") -> Corpus:
    """Read every document a spec names; raise DataError if there are none."""
    corpus = Corpus()
    if spec == STDLIB:
        for path in stdlib_files():
            corpus.add_bytes(path.read_bytes())
    elif spec.startswith(HF_PREFIX):
        _read_hf(spec[len(HF_PREFIX):], text_field, corpus)
    else:
        for path in _expand(spec):
            _read_file(path, text_field, corpus)
    if not any(corpus.documents):
        skipped = f" ({corpus.binary_skipped} binary files skipped)" if corpus.binary_skipped else ""
        raise DataError(f"source {spec!r} holds no text{skipped}")
    return corpus


def stdlib_files() -> list[Path]:
    """The stdlib's own sources only: third-party packages would make the corpus machine-dependent."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return _walk(root, suffix=".py", skip_dirs=_STDLIB_SKIP_DIRS)


def canonical_spec(spec: str) -> str:
    """The spec with local paths made absolute, so a cache key does not depend on the working directory."""
    if spec == STDLIB:
        return spec
    if spec.startswith(HF_PREFIX):
        target = spec[len(HF_PREFIX):]
        return HF_PREFIX + os.path.abspath(target) if os.path.exists(target) else spec
    return os.path.abspath(spec)


def _expand(spec: str) -> list[Path]:
    if _GLOB_CHARS & set(spec):
        paths = sorted(Path(p) for p in glob.glob(spec, recursive=True) if os.path.isfile(p))
        if not paths:
            raise DataError(f"no files match {spec!r}")
        return paths
    path = Path(spec)
    if path.is_dir():
        return _walk(path)
    if path.is_file():
        return [path]
    raise DataError(f"source not found: {spec!r} (not a file, directory, glob, 'stdlib' or 'hf:...')")


def _walk(root: Path, suffix: str = "", skip_dirs: frozenset[str] = frozenset()) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in skip_dirs]
        found.extend(Path(dirpath, name) for name in filenames if not name.startswith(".") and name.endswith(suffix))
    return sorted(found)


def _read_file(path: Path, text_field: str, corpus: Corpus) -> None:
    if path.suffix == ".jsonl":
        _read_jsonl(path, text_field, corpus)
    elif path.suffix == ".parquet":
        _read_parquet(path, text_field, corpus)
    else:
        data = path.read_bytes()
        if b"\0" in data[:_BINARY_PROBE_BYTES]:
            corpus.binary_skipped += 1
        else:
            corpus.add_bytes(data)


def _read_jsonl(path: Path, text_field: str, corpus: Corpus) -> None:
    for lineno, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        if not raw.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            record = json.loads(raw.decode("utf-8", errors="replace"))
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict) or text_field not in record:
            raise DataError(f"{where}: no {text_field!r} field (choose another with --text-field)")
        corpus.add_text(record[text_field], where)


def _read_parquet(path: Path, text_field: str, corpus: Corpus) -> None:
    parquet = _import_optional("pyarrow.parquet", "reading .parquet files", "pyarrow")
    try:
        columns = parquet.read_schema(path).names
    except Exception as exc:  # pyarrow.ArrowInvalid and friends: not a parquet file, or a damaged one
        raise DataError(f"{path}: not a readable parquet file ({str(exc).splitlines()[0]})") from None
    if text_field not in columns:
        raise DataError(f"{path}: no {text_field!r} column (columns: {', '.join(columns)}; use --text-field)")
    values = parquet.read_table(path, columns=[text_field]).column(text_field).to_pylist()
    for row, value in enumerate(values):
        corpus.add_text(value, f"{path}: row {row}")


def _read_hf(target: str, text_field: str, corpus: Corpus) -> None:
    datasets = _import_optional("datasets", "reading Hugging Face datasets", "datasets")
    name, split = target, None
    if not os.path.exists(target) and ":" in target:
        name, _, split = target.rpartition(":")
    try:
        if _is_saved_dataset(Path(name)):
            dataset = datasets.load_from_disk(name)
            if isinstance(dataset, datasets.DatasetDict):
                dataset = _pick_split(dataset, split or "train", name)
            elif split is not None:
                raise DataError(f"hf:{name} is a single saved split; drop ':{split}'")
        else:
            dataset = datasets.load_dataset(name, split=split or "train")
    except DataError:
        raise
    except Exception as exc:  # the loader's failures are many and library-specific; the user needs the message
        raise DataError(f"could not load Hugging Face dataset {target!r}: {exc}") from exc
    if text_field not in dataset.column_names:
        columns = ", ".join(dataset.column_names)
        raise DataError(f"hf:{target}: no {text_field!r} column (columns: {columns}; use --text-field)")
    row = 0
    for batch in dataset.select_columns([text_field]).iter(batch_size=1024):
        for value in batch[text_field]:
            corpus.add_text(value, f"hf:{target}: row {row}")
            row += 1


def _pick_split(splits, split: str, name: str):
    if split not in splits:
        raise DataError(f"hf:{name} has no split {split!r} (splits: {', '.join(splits)})")
    return splits[split]


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def _import_optional(module: str, purpose: str, package: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise DataError(f"{purpose} needs the optional package {package!r}: pip install {package}") from None
