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
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A config problem the user can fix; the CLI prints it without a traceback."""


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


# Keys that say where a run lives or how it is displayed, not what it computes.
_NOT_HASHED = {("runs_dir",), ("name",), ("train", "progress"), ("mesh",), ("distributed",)}


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
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
        if not number.is_integer():
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(number)
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
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


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Turn ``["model.d_model=128", ...]`` into a nested dict of YAML-parsed values."""
    tree: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        _set_dotted(tree, key.strip(), yaml.safe_load(raw) if raw.strip() else None)
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
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    with path.open() as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of config keys")
    return data


def from_dict(values: dict[str, Any]) -> RunConfig:
    """Build and validate a RunConfig, expanding a model preset under the explicit keys."""
    from scaling import presets

    model_values = values.get("model") or {}
    if isinstance(model_values, dict) and model_values.get("preset") is not None:
        values = merge(values, {"model": merge(presets.get(str(model_values["preset"])), model_values)})
    cfg = _build(RunConfig, values)
    validate(cfg)
    return cfg


def load(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    base = load_yaml(path) if path is not None else {}
    return from_dict(merge(base, parse_overrides(list(overrides))))


def validate(cfg: RunConfig) -> None:
    """Cross-field checks that a single field's type cannot express."""
    m, t, o = cfg.model, cfg.train, cfg.optim
    positive = {
        "model.n_layer": m.n_layer, "model.d_model": m.d_model, "model.n_head": m.n_head,
        "model.seq_len": m.seq_len, "train.batch_size": t.batch_size, "train.grad_accum": t.grad_accum,
        "train.log_every": t.log_every, "train.eval_every": t.eval_every,
        "train.checkpoint_every": t.checkpoint_every, "train.keep_checkpoints": t.keep_checkpoints,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key} must be positive, got {value}")
    if m.d_head is None and m.d_model % m.n_head:
        raise ConfigError(f"model.d_model={m.d_model} is not divisible by model.n_head={m.n_head}; set model.d_head")
    if m.position == "rope" and m.head_dim % 2:
        raise ConfigError(f"rotary embeddings need an even head dimension, got {m.head_dim}")
    if not 0.0 <= m.dropout < 1.0:
        raise ConfigError(f"model.dropout must be in [0, 1), got {m.dropout}")
    if t.batch_size % t.grad_accum:
        raise ConfigError(f"train.batch_size={t.batch_size} is not divisible by train.grad_accum={t.grad_accum}")
    budgets = [k for k in ("tokens", "flops", "steps") if getattr(t, k) is not None]
    if len(budgets) > 1:
        got = " and ".join(f"train.{k}={getattr(t, k)}" for k in budgets)
        raise ConfigError(f"set only one of train.tokens, train.flops, train.steps (got {got}); unset the others "
                          f"with key=null, e.g. `train.{budgets[0]}=null`")
    for key in budgets:
        if getattr(t, key) <= 0:
            raise ConfigError(f"train.{key} must be positive")
    if o.lr <= 0:
        raise ConfigError(f"optim.lr must be positive, got {o.lr}")
    if not 0.0 <= o.cooldown_fraction <= 1.0 or not 0.0 <= o.warmup_fraction < 1.0:
        raise ConfigError("optim.cooldown_fraction must be in [0, 1] and optim.warmup_fraction in [0, 1)")
    if o.warmup_steps < 0 or o.grad_clip < 0 or o.weight_decay < 0:
        raise ConfigError("optim.warmup_steps, optim.grad_clip and optim.weight_decay must be non-negative")
    if any(k <= 0 for k in t.keep_steps):
        raise ConfigError("train.keep_steps must hold positive step numbers")
    if t.init_step is not None and t.init_from is None:
        raise ConfigError("train.init_step needs train.init_from (the run directory to start from)")
    if not (cfg.mesh.data == -1 or cfg.mesh.data >= 1) or not (cfg.mesh.fsdp == -1 or cfg.mesh.fsdp >= 1):
        raise ConfigError("mesh.data and mesh.fsdp must be positive or -1 (all remaining devices)")
    if cfg.mesh.data == -1 and cfg.mesh.fsdp == -1:
        raise ConfigError("only one of mesh.data and mesh.fsdp can be -1")
    if cfg.name is not None and (not cfg.name or "/" in cfg.name or cfg.name in (".", "..")):
        raise ConfigError(f"name {cfg.name!r} must be a plain directory name")
    if "/" in cfg.sweep or cfg.sweep in ("", ".", ".."):
        raise ConfigError(f"sweep {cfg.sweep!r} must be a plain directory name")


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def dump_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def run_id(cfg: RunConfig) -> str:
    """A short hash of everything that changes what the run computes."""
    values = to_dict(cfg)
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
