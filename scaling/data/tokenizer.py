"""Byte-level and BPE tokenizers behind one small interface.

Both append an end-of-document token after every document, so a model trained on
the concatenated stream learns where documents stop, and both decode that token
as ``<|endoftext|>``. The byte tokenizer needs no training and no file; it is the
quickstart default because its vocabulary (257) keeps tiny models' embedding
tables from dominating their parameter count. The BPE tokenizer is a byte-level
BPE (GPT-2 style pre-tokenization, so any text round-trips exactly) trained with
the Hugging Face ``tokenizers`` library, which encodes in parallel in Rust.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Sequence

import numpy as np

from scaling.data.errors import DataError

EOT_TEXT = "<|endoftext|>"
TOKENIZER_FILE = "tokenizer.json"
_BYTE_EOT = 256
_MIN_BPE_VOCAB = 257  # every byte plus the end-of-document token


def token_dtype(vocab_size: int) -> np.dtype:
    """Little-endian on disk whatever the host, so a dataset moves between machines as plain bytes."""
    return np.dtype("<u2" if vocab_size <= 2**16 else "<u4")


@dataclass(frozen=True)
class TokenizerSpec:
    """A parsed ``byte`` or ``bpe:VOCAB``; parsed before any corpus is read, so a typo fails at once."""

    kind: str
    vocab_size: int

    @classmethod
    def parse(cls, spec: str) -> TokenizerSpec:
        """``byte`` (vocabulary 257) or ``bpe:VOCAB`` with an integer VOCAB >= 257.

        Raises DataError (a UserError) for any other spelling.
        """
        if spec == "byte":
            return cls("byte", _BYTE_EOT + 1)
        kind, _, vocab = spec.partition(":")
        if kind != "bpe":
            raise DataError(f"unknown tokenizer {spec!r}: use 'byte' or 'bpe:VOCAB' (e.g. bpe:4096)")
        if not vocab.isdigit() or int(vocab) < _MIN_BPE_VOCAB:
            raise DataError(f"bad BPE vocabulary in {spec!r}: need an integer >= {_MIN_BPE_VOCAB}")
        return cls("bpe", int(vocab))

    def __str__(self) -> str:
        return self.kind if self.kind == "byte" else f"bpe:{self.vocab_size}"


class ByteTokenizer:
    """UTF-8 bytes as ids 0..255, end-of-document 256."""

    kind = "byte"
    vocab_size = _BYTE_EOT + 1
    eot_id = _BYTE_EOT

    @property
    def dtype(self) -> np.dtype:
        """The on-disk token dtype: little-endian uint16."""
        return token_dtype(self.vocab_size)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        """The documents' UTF-8 bytes, each followed by the end token, as one flat ``dtype`` array.

        One numpy scatter instead of a Python loop over bytes: the stdlib encodes in well under a second."""
        encoded = [text.encode("utf-8") for text in texts]
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)) + 1
        tokens = np.full(int(lengths.sum()), self.eot_id, dtype=self.dtype)
        is_byte = np.ones(tokens.size, dtype=bool)
        is_byte[np.cumsum(lengths) - 1] = False
        tokens[is_byte] = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        return tokens

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Invalid UTF-8 (a model's sample may split a character) decodes with replacements, not an error."""
        ids = np.asarray(ids)
        if ids.size and (ids.min() < 0 or ids.max() > self.eot_id):
            raise ValueError(f"byte token ids must lie in 0..{self.eot_id}")
        pieces = np.split(ids, np.flatnonzero(ids == self.eot_id))
        texts = [pieces[0]] + [piece[1:] for piece in pieces[1:]]
        return EOT_TEXT.join(t.astype(np.uint8).tobytes().decode("utf-8", errors="replace") for t in texts)

    def save(self, directory: Path) -> None:
        """Nothing to save: the byte tokenizer is fully described by its kind."""


class BpeTokenizer:
    """A trained ``tokenizers.Tokenizer`` with ``<|endoftext|>`` as its only special token."""

    kind = "bpe"

    def __init__(self, tokenizer) -> None:
        # A document that contains the literal text "<|endoftext|>" must not gain a spurious boundary.
        tokenizer.encode_special_tokens = True
        self._tokenizer = tokenizer
        self.vocab_size = tokenizer.get_vocab_size()
        self.eot_id = tokenizer.token_to_id(EOT_TEXT)

    @classmethod
    def train(cls, texts: Sequence[str], vocab_size: int) -> BpeTokenizer:
        """Train a byte-level BPE (Sennrich et al. 2016; GPT-2's byte-level variant, Radford et al. 2019)
        of ``vocab_size`` tokens on ``texts``, ``<|endoftext|>`` included in that count."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=[EOT_TEXT],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tokenizer.train_from_iterator(texts, trainer, length=len(texts))
        return cls(tokenizer)

    @classmethod
    def load(cls, directory: Path) -> BpeTokenizer:
        """The tokenizer saved in ``directory/tokenizer.json``.

        A missing or damaged file raises the ``tokenizers`` library's own exception.
        """
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(Path(directory) / TOKENIZER_FILE)))

    @property
    def dtype(self) -> np.dtype:
        """The on-disk token dtype: little-endian uint16 up to 65,536 ids, else uint32."""
        return token_dtype(self.vocab_size)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Every document's ids followed by the end token, concatenated into one flat ``dtype`` array."""
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        count = sum(len(encoding) for encoding in encodings) + len(encodings)
        ids = chain.from_iterable(chain(encoding.ids, (self.eot_id,)) for encoding in encodings)
        return np.fromiter(ids, dtype=self.dtype, count=count)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Text of ``ids``, end tokens written as ``<|endoftext|>``."""
        return self._tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)

    def save(self, directory: Path) -> None:
        """Write ``directory/tokenizer.json`` (the file ``load`` reads)."""
        self._tokenizer.save(str(Path(directory) / TOKENIZER_FILE))


AnyTokenizer = ByteTokenizer | BpeTokenizer


def build_tokenizer(spec: TokenizerSpec, texts: Sequence[str]) -> AnyTokenizer:
    """The tokenizer a spec asks for, trained on ``texts`` when it needs training."""
    if spec.kind == "byte":
        return ByteTokenizer()
    return BpeTokenizer.train(texts, spec.vocab_size)


def load_tokenizer(directory: Path, kind: str) -> AnyTokenizer:
    """The tokenizer of a prepared dataset, by the ``kind`` its metadata records ("byte" or "bpe").

    Raises DataError for any other kind.
    """
    if kind == "byte":
        return ByteTokenizer()
    if kind == "bpe":
        return BpeTokenizer.load(directory)
    raise DataError(f"{directory}: unknown tokenizer kind {kind!r} in metadata")
