"""A prepared dataset as the trainer sees it: metadata, token memmaps, batches.

The token files are memory-mapped on first use, not at construction, and a
pickled ``TokenDataset`` carries only its path: pickling an ``np.memmap`` copies
the whole file into the pickle, which would ship gigabytes to every worker.
Opening checks file sizes (a stat); the sha256 checksums are read only by
``verify()``, since hashing a large split on every start would cost seconds.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from scaling.data import windows
from scaling.data.errors import DataError
from scaling.data.layout import SPLITS, check_sizes, read_metadata, split_file
from scaling.data.tokenizer import AnyTokenizer, load_tokenizer

_HASH_BLOCK_BYTES = 16 << 20


class TokenDataset:
    """A prepared dataset directory (``scaling data prepare``) opened for training and evaluation.

    Construction reads metadata.json and checks each split's file size; it raises DataError
    (a UserError) when the directory is not a complete prepared dataset of this format version.
    Token counts are in tokens; ``split`` is "train" or "val" (anything else: ValueError).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.metadata = read_metadata(self.path)
        check_sizes(self.path, self.metadata)
        self._tokens: dict[str, np.memmap] = {}
        self._tokenizer: AnyTokenizer | None = None

    def __getstate__(self) -> dict:
        return {"path": str(self.path)}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"])

    def __repr__(self) -> str:
        sizes = ", ".join(f"{split}={self.num_tokens(split):,}" for split in SPLITS)
        return f"TokenDataset({str(self.path)!r}, vocab_size={self.vocab_size}, tokens: {sizes})"

    @property
    def vocab_size(self) -> int:
        """Number of token ids V (the model's vocabulary size), end-of-document token included."""
        return self.metadata["vocab_size"]

    @property
    def eot_id(self) -> int:
        """The id of the end-of-document token that follows every document."""
        return self.metadata["eot_id"]

    def num_tokens(self, split: str) -> int:
        """Tokens in ``split``, end-of-document tokens included."""
        return self.metadata["splits"][_known(split)]["tokens"]

    def num_documents(self, split: str) -> int:
        """Documents in ``split`` (the train/val split is by whole documents)."""
        return self.metadata["splits"][_known(split)]["documents"]

    def tokens(self, split: str) -> np.ndarray:
        """The split's tokens as a read-only memmap (never empty: each split has a document and its end token)."""
        if split not in self._tokens:
            dtype = np.dtype(self.metadata["dtype"]).newbyteorder("<")
            self._tokens[split] = np.memmap(self.path / split_file(_known(split)), dtype=dtype, mode="r")
        return self._tokens[split]

    def verify(self) -> None:
        """Recompute every split's sha256 and raise DataError on a mismatch."""
        check_sizes(self.path, self.metadata)
        for split in SPLITS:
            path = self.path / split_file(split)
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                while block := f.read(_HASH_BLOCK_BYTES):
                    digest.update(block)
            if digest.hexdigest() != self.metadata["splits"][split]["sha256"]:
                raise DataError(f"{path}: checksum mismatch; the file is corrupt, prepare the dataset again")

    @property
    def tokenizer(self) -> AnyTokenizer:
        """The tokenizer the dataset was prepared with, loaded on first use."""
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.path, self.metadata["tokenizer"]["kind"])
        return self._tokenizer

    def decode(self, ids) -> str:
        """Text of a sequence of token ids (invalid UTF-8 replaced by U+FFFD)."""
        return self.tokenizer.decode(ids)

    def num_windows(self, seq_len: int, split: str = "train") -> int:
        """Windows of ``seq_len + 1`` tokens at stride ``seq_len`` in ``split`` (``windows.num_windows``)."""
        return windows.num_windows(self.num_tokens(split), seq_len)

    def epochs(self, tokens_trained: int, seq_len: int) -> float:
        """Passes over the training split that ``tokens_trained`` target tokens amount to."""
        return windows.epochs(tokens_trained, self.num_tokens("train"), seq_len)

    def train_batch(
        self, seed: int, step: int, batch_size: int, seq_len: int, rows: windows.Rows = None
    ) -> np.ndarray:
        """int32 ``[rows, seq_len + 1]``; inputs are ``[:, :-1]``, targets ``[:, 1:]``. See ``windows``."""
        return windows.train_batch(self.tokens("train"), seed, step, batch_size, seq_len, rows)

    def val_batches(
        self, batch_size: int, seq_len: int, max_batches: int | None = None, rows: windows.Rows = None
    ) -> list[np.ndarray]:
        """The fixed evaluation batches: int32 arrays ``[rows, seq_len + 1]``, the same every call.

        At most ``max_batches``; raises DataError when the val split holds fewer than
        ``batch_size`` windows. See ``windows.val_batches``.
        """
        return windows.val_batches(self.tokens("val"), batch_size, seq_len, max_batches, rows)


def _known(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; splits are {', '.join(SPLITS)}")
    return split
