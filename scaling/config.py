"""Typed run configuration: dataclasses loaded from YAML plus ``key=value`` overrides.

Config files may come from a colleague or a download, so they are parsed as data
(``yaml.safe_load``) and every key is checked against the dataclass fields: a typo is an
error that names the key and the valid ones, never a silently ignored setting.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from scaling import presets
from scaling.errors import ConfigError  # re-exported: callers catch config.ConfigError


@dataclasses.dataclass
class ModelConfig:
    """Shape and architecture switches of the decoder-only transformer."""

    preset: str | None = None  # named shape from scaling.presets; explicit keys override it
    n_layer: int = 2
    d_model: int = 64
    n_head: int = 4
    d_head: int | None = None  # None: d_model // n_head
    d_ff: int | None = None  # None: 4 * d_model (gelu) or 8/3 * d_model rounded to 64 (swiglu)
    vocab_size: int | None = None  # None: taken from the prepared dataset
    seq_len: int = 64
    position: Literal["learned", "rope", "none"] = "learned"
    rope_theta: float = 10000.0
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    norm_eps: float = 1e-5
    mlp: Literal["gelu", "swiglu"] = "gelu"
    tie_embeddings: bool = True
    bias: bool = True
    dropout: float = 0.0
    compute_dtype: Literal["float32", "bfloat16"] = "float32"
    attention: Literal["auto", "xla", "cudnn"] = "auto"
    parameterization: Literal["standard"] = "standard"
    init_std: float = 0.02
    remat: bool = False

    @property
    def head_dim(self) -> int:
        return self.d_head if self.d_head is not None else self.d_model // self.n_head

    @property
    def ff_dim(self) -> int:
        if self.d_ff is not None:
            return self.d_ff
        if self.mlp == "swiglu":
            # Keeps the MLP's parameter count equal to the 4*d GELU MLP (three matrices).
            return 64 * -(-(8 * self.d_model // 3) // 64)
        return 4 * self.d_model


@dataclasses.dataclass
class DataConfig:
    """Where tokens come from: a prepared directory, or a source prepared (and cached) on demand."""

    path: str | None = None  # a directory written by `scaling data prepare`
    source: str = "stdlib"  # used when path is None
    tokenizer: str = "byte"
    eval_batches: int = 8


@dataclasses.dataclass
class OptimConfig:
    """AdamW, clipping and the learning-rate schedule."""

    lr: float = 3e-3
    schedule: Literal["constant", "cosine", "wsd"] = "cosine"
    warmup_steps: int = 0
    warmup_fraction: float = 0.0  # used when warmup_steps is 0; fraction of total steps
    min_lr_ratio: float = 0.1  # final lr / peak lr for cosine and wsd
    cooldown_fraction: float = 0.2  # wsd: share of steps spent decaying
    cooldown_shape: Literal["linear", "cosine", "1-sqrt"] = "linear"
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.1
    decay_embeddings: bool = False
    decay_norms_and_biases: bool = False
    grad_clip: float = 1.0  # global-norm clip; 0 disables


@dataclasses.dataclass
class TrainConfig:
    """How long, how big a batch, and how often to evaluate, log and checkpoint."""

    batch_size: int = 16  # sequences per optimizer step
    grad_accum: int = 1  # microbatches per step; batch_size must divide evenly
    tokens: float | None = None  # token budget D
    flops: float | None = None  # training-FLOP budget C (exact count)
    steps: int | None = None  # explicit step count
    eval_every: int = 100
    eval_log_points: int = 8  # extra evaluations at log-spaced steps
    log_every: int = 10
    checkpoint_every: int = 200
    keep_checkpoints: int = 3  # the newest k periodic checkpoints are kept
    keep_steps: list[int] = dataclasses.field(default_factory=list)  # also saved here, and never deleted
    init_from: str | None = None  # a run directory whose checkpoint this run starts from (e.g. a WSD branch)
    init_step: int | None = None  # that run's checkpoint step; None: its newest
    progress: bool = True


@dataclasses.dataclass
class MeshConfig:
    """Device mesh: ``data`` splits the batch, ``fsdp`` also shards parameters and optimizer state.

    -1 means "all remaining devices". The mesh does not change what a run computes (up to float
    reduction order), so it is not part of the run id: a run can resume on a different mesh.
    """

    data: int = -1
    fsdp: int = 1


@dataclasses.dataclass
class DistributedConfig:
    """Multi-process runs through ``jax.distributed``. Unset fields come from the environment
    (SLURM, or SCALING_COORDINATOR / SCALING_NUM_PROCESSES / SCALING_PROCESS_ID)."""

    coordinator: str | None = None  # host:port of process 0
    num_processes: int | None = None
    process_id: int | None = None
    cpu_collectives: Literal["gloo", "mpi"] = "gloo"


@dataclasses.dataclass
class RunConfig:
    """Everything that determines a run; its hash is the run id."""

    seed: int = 0
    runs_dir: str = "runs"
    sweep: str = "default"
    name: str | None = None  # directory name under runs_dir/sweep; None: the run id
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    mesh: MeshConfig = dataclasses.field(default_factory=MeshConfig)
    distributed: DistributedConfig = dataclasses.field(default_factory=DistributedConfig)


# Keys that say where a run lives, how often it logs, evaluates and checkpoints, and how it is shown,
# not what it computes (batches are a function of seed and step; evaluation and saving leave the
# training state untouched, and resume is exact). They are recorded in the run's config.yaml, which
# every launch rewrites, but not hashed: changing them resumes the same run. ``train.keep_steps`` stays
# hashed: a WSD cooldown relies on its stable run holding those checkpoints.
_NOT_HASHED = {("runs_dir",), ("name",), ("train", "progress"), ("train", "log_every"), ("train", "eval_every"),
               ("train", "eval_log_points"), ("train", "checkpoint_every"), ("train", "keep_checkpoints"),
               ("mesh",), ("distributed",)}


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Convert a YAML/command-line value to the field's declared type, or explain why not."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: cannot be null")
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, choices))}")
        return value
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
        if not number.is_integer():
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(number)
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if hint is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{key}: unsupported type {hint}")


def _unknown_key(key: str, valid: list[str], where: str) -> ConfigError:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(
        f"unknown config key {where + key!r}{hint}; valid keys{' in ' + where.rstrip('.') if where else ''}: "
        + ", ".join(valid)
    )


def _build(cls: type, values: dict[str, Any], where: str = "") -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{where.rstrip('.') or 'config'}: expected a mapping, got {values!r}")
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise _unknown_key(str(key), list(fields), where)
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value or {}, f"{where}{key}.")
        else:
            kwargs[key] = _coerce(value, hint, where + key)
    return cls(**kwargs)


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


class _StrictLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that also refuses a key given twice in one mapping (YAML keeps the last silently)."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, typing.Hashable) and key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"key {key!r} appears twice", key_node.start_mark)
        if isinstance(key, typing.Hashable):
            seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def _yaml_problem(e: yaml.YAMLError) -> str:
    """One line from a YAML error: what is wrong and where, without the excerpt it prints."""
    if isinstance(e, yaml.constructor.ConstructorError) and e.problem and "tag" in e.problem:
        return f"{e.problem} (tags are not allowed: config files are data, never code)"
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    mark = getattr(e, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Turn ``["model.d_model=128", ...]`` into a nested dict of YAML-parsed values.

    ``key=null`` (or ``key=``) sets a value to None, e.g. to unset a budget the config file sets.
    """
    tree: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({_yaml_problem(e)})") from None
        _set_dotted(tree, key.strip(), value)
    return tree


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``extra`` over ``base`` without touching either."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file's top-level mapping; every way the file can be wrong is a ConfigError naming it."""
    path = Path(path)
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise ConfigError(f"config file {str(path)!r} {what}")
    try:
        with path.open(encoding="utf-8") as f:
            data = yaml.load(f, Loader=_StrictLoader)  # a SafeLoader: tags never construct objects
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(e)}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (not valid UTF-8)") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read ({e.strerror})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of config keys, got {type(data).__name__}")
    return data


def from_dict(values: dict[str, Any]) -> RunConfig:
    """Build and validate a RunConfig, expanding a model preset under the explicit keys."""
    model_values = values.get("model") or {}
    if isinstance(model_values, dict) and model_values.get("preset") is not None:
        values = merge(values, {"model": merge(presets.get(str(model_values["preset"])), model_values)})
    cfg = _build(RunConfig, values)
    validate(cfg)
    return cfg


def load(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    base = load_yaml(path) if path is not None else {}
    return from_dict(merge(base, parse_overrides(list(overrides))))


@dataclasses.dataclass(frozen=True)
class Range:
    """The valid values of one numeric key: ``low``/``high`` bounds, each closed or open (None: unbounded)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    why: str = ""  # appended to the message when the bound is not obvious

    def contains(self, x: float) -> bool:
        if self.low is not None and (x <= self.low if self.low_open else x < self.low):
            return False
        return self.high is None or (x < self.high if self.high_open else x <= self.high)

    def __str__(self) -> str:
        def fmt(v: float) -> str:
            return f"{v:g}" if isinstance(v, float) else f"{v:,}"

        if self.high is None:
            return f"{'>' if self.low_open else '>='} {fmt(self.low)}"
        lo = "-inf" if self.low is None else fmt(self.low)
        return f"{'(' if self.low_open else '['}{lo}, {fmt(self.high)}{')' if self.high_open else ']'}"


# Budgets past these are typing mistakes, not experiments: the largest published runs train on
# about 4e13 tokens with about 5e26 FLOPs, and a billion optimizer steps is years of compute.
MAX_STEPS = 10**9
MAX_TOKENS = 1e16
MAX_FLOPS = 1e30
_POSITIVE, _NON_NEGATIVE, _FRACTION = Range(1), Range(0), Range(0.0, 1.0)
_OPEN_POSITIVE = Range(0.0, low_open=True)

# Every numeric config key and its valid range; validate() checks them all, and a test checks that
# no numeric key is missing here. Optional keys are checked only when set.
RANGES: dict[str, Range] = {
    "seed": Range(0, 2**32 - 1), "model.n_layer": _POSITIVE, "model.d_model": _POSITIVE,
    "model.n_head": _POSITIVE, "model.d_head": _POSITIVE, "model.d_ff": _POSITIVE,
    "model.vocab_size": Range(2, 2**31 - 1, why=" (token ids are int32)"), "model.seq_len": _POSITIVE,
    "model.rope_theta": _OPEN_POSITIVE, "model.norm_eps": _OPEN_POSITIVE,
    "model.dropout": Range(0.0, 1.0, high_open=True), "model.init_std": _OPEN_POSITIVE,
    "data.eval_batches": _POSITIVE,
    "optim.lr": _OPEN_POSITIVE, "optim.warmup_steps": _NON_NEGATIVE,
    "optim.warmup_fraction": Range(0.0, 1.0, high_open=True), "optim.min_lr_ratio": _FRACTION,
    "optim.cooldown_fraction": _FRACTION, "optim.beta1": Range(0.0, 1.0, high_open=True),
    "optim.beta2": Range(0.0, 1.0, high_open=True), "optim.eps": _OPEN_POSITIVE,
    "optim.weight_decay": Range(0.0), "optim.grad_clip": Range(0.0, why=" (0 disables clipping)"),
    "train.batch_size": _POSITIVE, "train.grad_accum": _POSITIVE,
    "train.tokens": Range(0.0, MAX_TOKENS, low_open=True, why=" (a larger budget is a typing mistake)"),
    "train.flops": Range(0.0, MAX_FLOPS, low_open=True, why=" (a larger budget is a typing mistake)"),
    "train.steps": Range(1, MAX_STEPS, why=" (a larger budget is a typing mistake)"),
    "train.eval_every": _POSITIVE, "train.eval_log_points": Range(0, 1000), "train.log_every": _POSITIVE,
    "train.checkpoint_every": _POSITIVE, "train.keep_checkpoints": _POSITIVE,
    "train.keep_steps": Range(1, MAX_STEPS), "train.init_step": _POSITIVE,
    "mesh.data": Range(-1), "mesh.fsdp": Range(-1),
    "distributed.num_processes": _POSITIVE, "distributed.process_id": _NON_NEGATIVE,
}


def get(cfg: Any, key: str) -> Any:
    """The value of a dotted key (``optim.lr``) in a config."""
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _check_ranges(cfg: RunConfig) -> None:
    for key, valid in RANGES.items():
        value = get(cfg, key)
        for v in value if isinstance(value, list) else [value]:
            if v is None:
                continue
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{key}={v} is not a finite number; valid: {valid}{valid.why}")
            if not valid.contains(v):
                shown = f"{v:.3g}" if abs(v) >= 1e12 else repr(v)
                raise ConfigError(f"{key}={shown} is out of range; valid: {valid}{valid.why}")


def validate(cfg: RunConfig) -> None:
    """Every value's range (RANGES), then the checks that involve several fields."""
    _check_ranges(cfg)
    m, t = cfg.model, cfg.train
    if m.d_head is None and m.d_model % m.n_head:
        raise ConfigError(f"model.d_model={m.d_model} is not divisible by model.n_head={m.n_head}; set model.d_head")
    if m.position == "rope" and m.head_dim % 2:
        raise ConfigError(f"rotary embeddings need an even head dimension, got {m.head_dim}")
    if t.batch_size % t.grad_accum:
        raise ConfigError(f"train.batch_size={t.batch_size} is not divisible by train.grad_accum={t.grad_accum}")
    budgets = [k for k in ("tokens", "flops", "steps") if getattr(t, k) is not None]
    if len(budgets) > 1:
        got = " and ".join(f"train.{k}={getattr(t, k)}" for k in budgets)
        unset = " ".join(f"train.{k}=null" for k in budgets[:-1])
        raise ConfigError(f"set only one of train.tokens, train.flops, train.steps (got {got}); "
                          f"unset the others, e.g. `{unset}` (key=null unsets a key the config file sets)")
    if t.init_step is not None and t.init_from is None:
        raise ConfigError("train.init_step needs train.init_from (the run directory to start from)")
    for key in ("mesh.data", "mesh.fsdp"):
        if get(cfg, key) == 0:
            raise ConfigError(f"{key}=0: must be positive or -1 (all remaining devices)")
    if cfg.mesh.data == -1 and cfg.mesh.fsdp == -1:
        raise ConfigError("only one of mesh.data and mesh.fsdp can be -1")
    d = cfg.distributed
    if d.num_processes is not None and d.process_id is not None and d.process_id >= d.num_processes:
        raise ConfigError(f"distributed.process_id={d.process_id} must be below "
                          f"distributed.num_processes={d.num_processes}")
    if cfg.name is not None and (not cfg.name or "/" in cfg.name or cfg.name in (".", "..")):
        raise ConfigError(f"name {cfg.name!r} must be a plain directory name")
    if "/" in cfg.sweep or cfg.sweep in ("", ".", ".."):
        raise ConfigError(f"sweep {cfg.sweep!r} must be a plain directory name")
    if "\0" in cfg.runs_dir or "\0" in (cfg.name or "") or "\0" in cfg.sweep:
        raise ConfigError("runs_dir, sweep and name cannot contain a NUL character")


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def dump_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def run_id(cfg: RunConfig, data_content: str | None = None) -> str:
    """A short hash (10 hex digits) of everything that changes what the run computes.

    A prepared dataset (``data.path``) is hashed by ``data_content``, the id of its contents
    (``planning.data_content``), not by where it lies, so moving or copying it keeps the id;
    ``ValueError`` if ``data.path`` is set and ``data_content`` is not. Without ``data.path``
    the dataset is named by ``data.source`` and ``data.tokenizer``, and those are hashed.
    """
    values = to_dict(cfg)
    if cfg.data.path is not None:
        if data_content is None:
            raise ValueError("run_id: data.path is set, so the dataset's content id is needed")
        for key in ("path", "source", "tokenizer"):
            values["data"].pop(key)
        values["data"]["content"] = data_content
    for path in _NOT_HASHED:
        node = values
        for part in path[:-1]:
            node = node[part]
        node.pop(path[-1], None)
    digest = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()
    return digest[:10]


def valid_keys(cls: type = RunConfig, prefix: str = "") -> list[str]:
    """Every dotted key a config accepts, for help texts and error messages."""
    keys = []
    for f in dataclasses.fields(cls):
        hint = _hints(cls)[f.name]
        if dataclasses.is_dataclass(hint):
            keys.extend(valid_keys(hint, f"{prefix}{f.name}."))
        else:
            keys.append(prefix + f.name)
    return keys
