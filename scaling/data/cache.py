"""Prepare a dataset once per machine and reuse it: what the quickstart needs.

The cache key is the source spec (local paths made absolute), the tokenizer, the
Python version (the ``stdlib`` corpus changes with it) and the format version.
It is not the content: editing files under a cached directory source does not
refresh the cache; delete the entry, or prepare explicitly.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
from pathlib import Path

from scaling.data.layout import FORMAT_VERSION, is_prepared
from scaling.data.writer import prepare
from scaling.data.sources import canonical_spec
from scaling.data.tokenizer import TokenizerSpec

log = logging.getLogger(__name__)

_NAME_CHARS = 60


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir``, else ``$SCALING_CACHE``, else ``~/.cache/scaling``."""
    return Path(cache_dir or os.environ.get("SCALING_CACHE") or Path.home() / ".cache" / "scaling")


def cache_path(source: str, tokenizer: str, cache_dir: str | Path | None = None) -> Path:
    """A readable tail of the spec for people, a hash of the full key so distinct specs never collide."""
    spec = str(TokenizerSpec.parse(tokenizer))
    python = f"py{sys.version_info.major}.{sys.version_info.minor}"
    key = "|".join([canonical_spec(source), spec, python, f"v{FORMAT_VERSION}"])
    readable = re.sub(r"[^A-Za-z0-9.-]+", "_", f"{source}-{spec}-{python}")[-_NAME_CHARS:].strip("_.-")
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return cache_root(cache_dir) / "data" / f"{readable}-{digest}"


def ensure_prepared(source: str = "stdlib", tokenizer: str = "byte", cache_dir: str | Path | None = None) -> Path:
    """The cached dataset's directory, preparing it first if no complete one is there."""
    out = cache_path(source, tokenizer, cache_dir)
    if is_prepared(out):
        return out
    log.info("preparing %s with the %s tokenizer into %s (once)", source, tokenizer, out)
    # overwrite: a damaged entry (a truncated file) heals itself, and a concurrent process that
    # published first sees its dataset swapped for an identical one instead of this call failing.
    prepare(source, tokenizer, out, overwrite=True)
    return out
