"""The data pipeline: corpus -> tokenizer -> token files -> batches that are pure functions of (seed, step).

``prepare`` writes a dataset directory, ``ensure_prepared`` does so once into a
cache, ``TokenDataset`` reads one. See ``windows`` for how batches are drawn.
"""

from scaling.data.cache import cache_path, ensure_prepared
from scaling.data.dataset import TokenDataset
from scaling.data.errors import DataError
from scaling.data.writer import prepare, split_documents
from scaling.data.sources import read_corpus, stdlib_files
from scaling.data.tokenizer import EOT_TEXT, BpeTokenizer, ByteTokenizer, TokenizerSpec

__all__ = [
    "EOT_TEXT",
    "BpeTokenizer",
    "ByteTokenizer",
    "DataError",
    "TokenDataset",
    "TokenizerSpec",
    "cache_path",
    "ensure_prepared",
    "prepare",
    "read_corpus",
    "split_documents",
    "stdlib_files",
]
