"""Corpus -> tokenizer -> token files: the one function that writes a dataset.

The validation split is a seeded choice of whole documents, so no document's
text is ever on both sides and the split does not change when the tokenizer
does. The BPE tokenizer is trained on the training documents only, so nothing
about the validation text leaks into the vocabulary.

Everything is written into a hidden temporary directory beside the target and
renamed into place at the end: an interrupted prepare leaves a hidden leftover,
never a half dataset that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import secrets
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from scaling.data.errors import DataError
from scaling.data.layout import FORMAT_VERSION, METADATA_FILE, SPLITS, split_file
from scaling.data.sources import read_corpus
from scaling.data.tokenizer import AnyTokenizer, TokenizerSpec, build_tokenizer

log = logging.getLogger(__name__)

DEFAULT_VAL_FRACTION = 0.05
# Documents are encoded in chunks of about this many characters: large enough for
# the BPE encoder's threads to stay busy, small enough to bound peak memory.
_ENCODE_CHUNK_CHARS = 8_000_000


def prepare(
    source: str,
    tokenizer: str,
    out: str | Path,
    *,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = 0,
    text_field: str = "text",
    overwrite: bool = False,
) -> dict:
    """Prepare ``source`` into ``out`` and return the metadata written there.

    ``source`` is a corpus spec (``read_corpus``), ``tokenizer`` "byte" or "bpe:VOCAB";
    ``val_fraction`` of the documents (at least one), drawn with ``seed``, go to the val split.
    ``out`` receives train.bin, val.bin, metadata.json (and tokenizer.json for BPE), built in a
    temporary directory and renamed into place. The metadata gives, per split, tokens, documents
    and sha256, plus vocab_size, eot_id, dtype and the preparation time in seconds. Raises
    DataError for a bad tokenizer spec, fraction or seed, an unreadable or empty source, too few
    documents to split, or an existing ``out`` (without ``overwrite``, or not a prepared dataset).
    """
    spec = TokenizerSpec.parse(tokenizer)
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"validation fraction must lie strictly between 0 and 1, got {val_fraction}")
    if seed < 0:
        raise DataError(f"seed must be non-negative, got {seed}")
    out = Path(out)
    _check_target(out, overwrite)

    start = time.perf_counter()
    corpus = read_corpus(source, text_field)
    documents = corpus.documents
    is_val = split_documents(len(documents), val_fraction, seed)
    parts = {
        "train": [doc for doc, val in zip(documents, is_val) if not val],
        "val": [doc for doc, val in zip(documents, is_val) if val],
    }
    log.info("read %d documents from %s in %.1f s", len(documents), source, time.perf_counter() - start)
    codec = build_tokenizer(spec, parts["train"])
    log.info("tokenizer %s ready after %.1f s", spec, time.perf_counter() - start)
    if codec.vocab_size < spec.vocab_size:
        log.warning("the corpus yields only %d BPE tokens of the %d asked for; vocab_size is %d",
                    codec.vocab_size, spec.vocab_size, codec.vocab_size)

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = _fresh_sibling(out, "tmp")
    try:
        splits = {name: _write_split(staging / split_file(name), parts[name], codec) for name in SPLITS}
        log.info("encoded and wrote both splits after %.1f s", time.perf_counter() - start)
        codec.save(staging)
        metadata = {
            "format_version": FORMAT_VERSION,
            "source": source,
            "text_field": text_field,
            "tokenizer": {"kind": codec.kind, "spec": str(spec)},
            "vocab_size": codec.vocab_size,
            "eot_id": codec.eot_id,
            "dtype": codec.dtype.name,
            "seed": seed,
            "val_fraction": val_fraction,
            "splits": splits,
            "undecodable_documents": corpus.undecodable,
            "binary_files_skipped": corpus.binary_skipped,
            "python_version": platform.python_version(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "prepare_seconds": round(time.perf_counter() - start, 3),
        }
        (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
        _publish(staging, out, overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return metadata


def split_documents(n_documents: int, val_fraction: float, seed: int) -> np.ndarray:
    """A boolean mask of validation documents: ``round(fraction * n)`` of them, at least one."""
    n_val = max(1, round(val_fraction * n_documents))
    if n_val >= n_documents:
        raise DataError(f"{n_documents} documents cannot be split into a training and a validation part")
    # PCG64 named explicitly: numpy may change default_rng's generator, which would move every split.
    chosen = np.random.Generator(np.random.PCG64(seed)).choice(n_documents, size=n_val, replace=False)
    is_val = np.zeros(n_documents, dtype=bool)
    is_val[chosen] = True
    return is_val


def _check_target(out: Path, overwrite: bool) -> None:
    """Fail before the slow work; ``overwrite`` only ever replaces a dataset, never an arbitrary directory."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if not overwrite:
        raise DataError(f"{out} already exists and is not empty (pass --overwrite to replace a prepared dataset)")
    if not (out / METADATA_FILE).is_file():
        raise DataError(f"refusing to overwrite {out}: it is not a prepared dataset")


def _write_split(path: Path, documents: Sequence[str], codec: AnyTokenizer) -> dict:
    digest = hashlib.sha256()
    n_tokens = 0
    with open(path, "wb") as f:
        for chunk in _chunks(documents, _ENCODE_CHUNK_CHARS):
            tokens = codec.encode_documents(chunk)
            f.write(tokens.data)
            digest.update(tokens.data)
            n_tokens += tokens.size
    return {"file": path.name, "tokens": n_tokens, "documents": len(documents), "sha256": digest.hexdigest()}


def _chunks(documents: Sequence[str], max_chars: int) -> Iterator[Sequence[str]]:
    start, size = 0, 0
    for end, doc in enumerate(documents, start=1):
        size += len(doc)
        if size >= max_chars:
            yield documents[start:end]
            start, size = end, 0
    if start < len(documents):
        yield documents[start:]


def _fresh_sibling(out: Path, tag: str) -> Path:
    """A hidden directory beside ``out`` (same filesystem, so renames are atomic), made with the
    caller's umask: ``tempfile.mkdtemp`` would leave the published dataset readable by its owner only."""
    path = out.with_name(f".{out.name}.{tag}-{os.getpid()}-{secrets.token_hex(4)}")
    path.mkdir()
    return path


def _publish(staging: Path, out: Path, overwrite: bool) -> None:
    """``rename`` is atomic, and refuses a non-empty target: a concurrent prepare that won is left alone."""
    if overwrite and (out / METADATA_FILE).is_file():
        old = _fresh_sibling(out, "old")
        os.replace(out, old)
        os.rename(staging, out)
        shutil.rmtree(old, ignore_errors=True)
        return
    try:
        os.rename(staging, out)
    except OSError:
        raise DataError(f"{out} appeared while preparing (another prepare finished first?)") from None
