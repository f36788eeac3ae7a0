"""The on-disk format of a prepared dataset, shared by the writer and the readers.

A dataset directory holds ``train.bin`` and ``val.bin`` (raw little-endian token
ids, no header, so ``np.memmap`` opens them in place), ``metadata.json``, and for
BPE ``tokenizer.json``. ``metadata.json`` is written last inside a temporary
directory that is renamed into place, so a directory that has it is complete.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from scaling.data.errors import DataError

FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
SPLITS = ("train", "val")


def split_file(split: str) -> str:
    """The file name of a split's token ids inside a dataset directory: ``<split>.bin``."""
    return f"{split}.bin"


def read_metadata(directory: Path) -> dict:
    """The parsed metadata.json of a prepared dataset directory.

    Raises DataError when the file is missing (not a prepared dataset), is not valid JSON, or
    has a ``format_version`` other than ``FORMAT_VERSION``.
    """
    path = Path(directory) / METADATA_FILE
    try:
        metadata = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{directory} is not a prepared dataset (no {METADATA_FILE}); run `scaling data prepare`") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg})") from None
    version = metadata.get("format_version") if isinstance(metadata, dict) else None
    if version != FORMAT_VERSION:
        raise DataError(f"{path}: format version {version!r}, this code reads {FORMAT_VERSION}; prepare it again")
    return metadata


def check_sizes(directory: Path, metadata: dict) -> None:
    """A stat per split: catches a truncated or missing file without reading it.

    Each split's file must hold exactly tokens x itemsize bytes; raises DataError otherwise.
    """
    itemsize = np.dtype(metadata["dtype"]).itemsize
    for split in SPLITS:
        path = Path(directory) / split_file(split)
        expected = metadata["splits"][split]["tokens"] * itemsize
        actual = path.stat().st_size if path.is_file() else None
        if actual != expected:
            raise DataError(f"{path}: expected {expected} bytes, found {actual}; prepare the dataset again")


def is_prepared(directory: Path) -> bool:
    """Whether ``directory`` holds a complete prepared dataset (readable metadata, right file sizes)."""
    try:
        check_sizes(directory, read_metadata(directory))
    except DataError:
        return False
    return True
