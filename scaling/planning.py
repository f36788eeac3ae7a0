"""What a config comes to before any compute is spent: its vocabulary, dataset, accounting, budget in
optimizer steps and run directory (``resolve`` -> ``Plan``), by rules a single run and the sweep planner
share (``budget_steps``, ``run_id``). Imports no JAX, so ``scaling params`` and ``scaling sweep plan``
stay quick.

A budget is D tokens or C training FLOPs (the exact count of ``scaling.accounting``, never 6N).
It becomes ``steps`` of ``tokens_per_step = batch_size * seq_len`` tokens each.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from analysis import run_format
from scaling import accounting, config
from scaling.accounting import Accounting
from scaling.config import ConfigError, RunConfig
from scaling.data import TokenDataset, ensure_prepared
from scaling.data.cache import cache_path
from scaling.data.layout import is_prepared, read_metadata
from scaling.data.tokenizer import ByteTokenizer, TokenizerSpec
from scaling.rundir import RunDir


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


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a config resolves to before any compute is spent.

    ``cfg`` has its vocabulary filled in; ``total_steps`` optimizer steps of ``tokens_per_step``
    (batch_size x seq_len) tokens each; ``run_dir`` is where the run writes (named by its run id
    unless ``name`` is set).
    """

    cfg: RunConfig
    dataset: TokenDataset
    accounting: Accounting
    total_steps: int
    tokens_per_step: int
    run_dir: RunDir

    @property
    def tokens_target(self) -> int:
        """Tokens the run trains on (D): total_steps x tokens_per_step, the budget rounded to whole steps."""
        return self.total_steps * self.tokens_per_step


def open_dataset(cfg: RunConfig) -> TokenDataset:
    """The prepared dataset at ``data.path``, or ``data.source`` prepared (once, cached) with ``data.tokenizer``.

    Raises DataError (a UserError) when the path is not a prepared dataset or the source cannot be read.
    """
    path = Path(cfg.data.path) if cfg.data.path else ensure_prepared(cfg.data.source, cfg.data.tokenizer)
    return TokenDataset(path)


def resolve_vocab(cfg: RunConfig, prepare: bool = True) -> tuple[RunConfig, TokenDataset | None]:
    """The model's vocabulary is the dataset's unless set (larger, e.g. padded to a multiple of 64).

    With ``prepare=False`` (``scaling params``) a dataset that is not on disk yet is not prepared just
    to check a set vocabulary; the byte tokenizer's fixed vocabulary is still checked.
    Returns the config with ``model.vocab_size`` filled in, and the opened dataset (None when not
    opened). Raises ``ConfigError`` when a set vocabulary is smaller than the tokenizer's, and
    DataError when the dataset cannot be opened or prepared.
    """
    if not prepare and cfg.model.vocab_size is not None and cfg.data.path is None \
            and not is_prepared(cache_path(cfg.data.source, cfg.data.tokenizer)):
        spec = TokenizerSpec.parse(cfg.data.tokenizer)
        if spec.kind == "byte" and cfg.model.vocab_size < ByteTokenizer.vocab_size:
            raise ConfigError(f"model.vocab_size={cfg.model.vocab_size} is smaller than the byte tokenizer's "
                              f"vocabulary ({ByteTokenizer.vocab_size})")
        return cfg, None
    dataset = open_dataset(cfg)
    if cfg.model.vocab_size is None:
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, vocab_size=dataset.vocab_size))
    elif cfg.model.vocab_size < dataset.vocab_size:
        raise ConfigError(f"model.vocab_size={cfg.model.vocab_size} is smaller than the dataset's "
                          f"vocabulary ({dataset.vocab_size})")
    return cfg, dataset


def resolve(cfg: RunConfig) -> Plan:
    """Fill in what the data decides (the vocabulary) and turn the budget into a step count.

    Raises ``ConfigError`` when no budget is set, it exceeds ``config.MAX_STEPS``, the warmup leaves
    no step to decay over, or ``train.init_from`` is not a run directory with checkpoints.
    """
    cfg, dataset = resolve_vocab(cfg)
    acct = accounting.count(cfg.model)
    tokens_per_step = cfg.train.batch_size * cfg.model.seq_len
    t = cfg.train
    kind = next((k for k in ("steps", "tokens", "flops") if getattr(t, k) is not None), None)
    if kind is None:
        raise ConfigError("set a budget: one of train.tokens, train.flops or train.steps")
    total = budget_steps(kind, getattr(t, kind), tokens_per_step, acct)
    if cfg.optim.warmup_steps and cfg.optim.warmup_steps >= total and cfg.optim.schedule != "constant":
        raise ConfigError(f"optim.warmup_steps={cfg.optim.warmup_steps} leaves no step of this {total}-step run "
                          f"for the {cfg.optim.schedule} decay; lower it below {total}")
    if t.init_from is not None and not (Path(t.init_from) / run_format.CHECKPOINTS).is_dir():
        raise ConfigError(f"train.init_from={t.init_from!r} is not a run directory with checkpoints")
    run_dir = RunDir(Path(cfg.runs_dir) / cfg.sweep / (cfg.name or run_id(cfg)))
    return Plan(cfg, dataset, acct, total, tokens_per_step, run_dir)
