"""What a config comes to before any compute is spent, by rules a single run (``train.resolve``) and
the sweep planner share: its budget in optimizer steps, and its run id.

A budget is D tokens or C training FLOPs (the exact count of ``scaling.accounting``, never 6N).
It becomes ``steps`` of ``tokens_per_step = batch_size * seq_len`` tokens each.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from scaling import config
from scaling.accounting import Accounting
from scaling.config import ConfigError, RunConfig
from scaling.data.layout import read_metadata


def budget_steps(kind: str, value: float, tokens_per_step: int, acct: Accounting) -> int:
    """The optimizer steps a budget comes to.

    ``kind`` is ``"steps"``, ``"tokens"`` (D) or ``"flops"`` (C, converted with the exact
    ``acct.flops_per_token``); ``tokens_per_step`` is batch_size * seq_len. Returns an int >= 1.

    Rounding rule: to the NEAREST step (Python ``round``), and at least one. A budget can only be
    met to within a step; rounding to the nearest keeps the trained D (or C) within half a step of
    the budget on either side, the smallest error the batch allows, so an IsoFLOP point sits as
    close to its C as it can and a single run with the same budget trains exactly what the same
    point of a sweep trains. (Rounding up would bias every point of a ladder upwards by up to a
    step.) Raises ``ConfigError`` if the count exceeds ``config.MAX_STEPS``.
    """
    if kind == "steps":
        return int(value)
    if kind == "tokens":
        tokens = value
    elif kind == "flops":
        tokens = value / acct.flops_per_token
    else:
        raise ValueError(f"unknown budget kind {kind!r}")
    steps = tokens / tokens_per_step
    if steps > config.MAX_STEPS:
        raise ConfigError(f"the budget comes to {steps:.3g} optimizer steps of {tokens_per_step:,} tokens, more than "
                          f"the {config.MAX_STEPS:.0e} a run may take; check train.tokens / train.flops")
    return max(1, round(steps))


def data_content(cfg: RunConfig) -> str | None:
    """The id of a prepared dataset's contents (``data.path``), or None when the config names none.

    A sha256 (16 hex digits) of the token files' own checksums, recorded when the dataset was
    prepared, with the vocabulary size, end-of-text id and token dtype: what the batches are made
    of. Reads only the dataset's metadata file. Raises ``DataError`` if ``data.path`` is not a
    prepared dataset.
    """
    if cfg.data.path is None:
        return None
    meta = read_metadata(Path(cfg.data.path))
    content = {"splits": {split: info["sha256"] for split, info in sorted(meta["splits"].items())},
               "vocab_size": meta["vocab_size"], "eot_id": meta["eot_id"], "dtype": meta["dtype"]}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def run_id(cfg: RunConfig) -> str:
    """``config.run_id`` with the dataset's content id filled in: the name of the run's directory."""
    return config.run_id(cfg, data_content(cfg))
