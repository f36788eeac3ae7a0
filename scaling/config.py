"""Typed run configuration: dataclasses loaded from YAML plus ``key=value`` overrides.

Config files may come from a colleague or a download, so they are parsed as data
(``yaml.safe_load``) and built by ``scaling.typed_load``: every key is checked against the
dataclass fields (a typo is an error that names the key and the valid ones, never a silently
ignored setting), every value against its type and the range declared beside its field.
Each field's documentation is the string under it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from scaling import presets, typed_load
from scaling.errors import ConfigError  # re-exported: callers catch config.ConfigError
from scaling.typed_load import Range, checked

# Budgets past these are typing mistakes, not experiments: the largest published runs train on
# about 4e13 tokens with about 5e26 FLOPs, and a billion optimizer steps is years of compute.
MAX_STEPS = 10**9
MAX_TOKENS = 1e16
MAX_FLOPS = 1e30
_POSITIVE, _NON_NEGATIVE, _FRACTION = Range(1), Range(0), Range(0.0, 1.0)
_OPEN_POSITIVE, _BELOW_ONE = Range(0.0, low_open=True), Range(0.0, 1.0, high_open=True)
_TYPO = " (a larger budget is a typing mistake)"


@dataclasses.dataclass
class ModelConfig:
    """Shape and architecture switches of the decoder-only transformer."""

    preset: str | None = None
    """A named shape from ``scaling.presets``; keys set explicitly next to it override it."""
    n_layer: int = checked(2, range=_POSITIVE)
    """Number of transformer blocks."""
    d_model: int = checked(64, range=_POSITIVE)
    """Width of the residual stream."""
    n_head: int = checked(4, range=_POSITIVE)
    """Attention heads per block."""
    d_head: int | None = checked(None, range=_POSITIVE)
    """Width of one head; None: d_model // n_head (which must then divide evenly)."""
    d_ff: int | None = checked(None, range=_POSITIVE)
    """Hidden width of the MLP; None: 4 * d_model (gelu), or 8/3 * d_model rounded up to 64 (swiglu)."""
    vocab_size: int | None = checked(None, range=Range(2, 2**31 - 1, why=" (token ids are int32)"))
    """Vocabulary size; None: taken from the prepared dataset."""
    seq_len: int = checked(64, range=_POSITIVE)
    """Tokens per training sequence (the context length)."""
    position: Literal["learned", "rope", "none"] = "learned"
    """Position information: a learned embedding table, rotary embeddings, or none."""
    rope_theta: float = checked(10000.0, range=_OPEN_POSITIVE)
    """Base of the rotary embeddings' frequencies (position: rope)."""
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    """The normalisation before each sublayer and at the end."""
    norm_eps: float = checked(1e-5, range=_OPEN_POSITIVE)
    """Epsilon added to the variance inside the normalisation."""
    mlp: Literal["gelu", "swiglu"] = "gelu"
    """The MLP: two matrices with a GELU, or three with a SwiGLU gate."""
    tie_embeddings: bool = True
    """Share the input embedding with the output layer."""
    bias: bool = True
    """Biases in the linear layers and in LayerNorm."""
    dropout: float = checked(0.0, range=_BELOW_ONE)
    """Dropout probability on the embeddings and on each block's residual branches."""
    compute_dtype: Literal["float32", "bfloat16"] = "float32"
    """The dtype of activations and matmuls; parameters and optimizer state stay float32."""
    attention: Literal["auto", "xla", "cudnn"] = "auto"
    """The attention kernel; auto: cuDNN where it can run (GPU, bfloat16, head width a multiple of 8
    up to 256), else XLA."""
    parameterization: Literal["standard"] = "standard"
    """How initialisation and the attention scale depend on width (``scaling.parameterization``)."""
    init_std: float = checked(0.02, range=_OPEN_POSITIVE)
    """Standard deviation of the initial weights (residual projections also get 1/sqrt(2 n_layer))."""
    remat: bool = False
    """Recompute each block's activations in the backward pass, trading compute for memory."""

    @property
    def head_dim(self) -> int:
        """The width of one attention head: ``d_head``, or ``d_model // n_head`` when unset."""
        return self.d_head if self.d_head is not None else self.d_model // self.n_head

    @property
    def ff_dim(self) -> int:
        """The MLP's hidden width: ``d_ff``, or the default for the MLP kind when unset."""
        if self.d_ff is not None:
            return self.d_ff
        if self.mlp == "swiglu":
            # Keeps the MLP's parameter count equal to the 4*d GELU MLP (three matrices).
            return 64 * -(-(8 * self.d_model // 3) // 64)
        return 4 * self.d_model


@dataclasses.dataclass
class DataConfig:
    """Where tokens come from: a prepared directory, or a source prepared (and cached) on demand."""

    path: str | None = None
    """A directory written by ``scaling data prepare``; None: prepare ``source`` on demand."""
    source: str = "stdlib"
    """The corpus prepared when ``path`` is unset (see ``scaling data prepare --help``)."""
    tokenizer: str = "byte"
    """``byte``, or ``bpe:<vocabulary size>`` trained on the corpus."""
    eval_batches: int = checked(8, range=_POSITIVE)
    """Validation batches averaged for each evaluation."""


@dataclasses.dataclass
class OptimConfig:
    """AdamW, clipping and the learning-rate schedule."""

    lr: float = checked(3e-3, range=_OPEN_POSITIVE)
    """Peak learning rate, reached at the end of the warmup."""
    schedule: Literal["constant", "cosine", "wsd"] = "cosine"
    """The learning-rate schedule after warmup: constant, cosine decay, or warmup-stable-decay."""
    warmup_steps: int = checked(0, range=_NON_NEGATIVE)
    """Steps of linear warmup from zero."""
    warmup_fraction: float = checked(0.0, range=_BELOW_ONE)
    """Warmup as a fraction of the total steps; used when warmup_steps is 0."""
    min_lr_ratio: float = checked(0.1, range=_FRACTION)
    """Final learning rate / peak learning rate, for cosine and wsd."""
    cooldown_fraction: float = checked(0.2, range=_FRACTION)
    """wsd: the share of the steps spent decaying at the end."""
    cooldown_shape: Literal["linear", "cosine", "1-sqrt"] = "linear"
    """wsd: the shape of the decay."""
    beta1: float = checked(0.9, range=_BELOW_ONE)
    """AdamW's decay rate of the first moment."""
    beta2: float = checked(0.95, range=_BELOW_ONE)
    """AdamW's decay rate of the second moment."""
    eps: float = checked(1e-8, range=_OPEN_POSITIVE)
    """AdamW's epsilon, added to the root of the second moment."""
    weight_decay: float = checked(0.1, range=Range(0.0))
    """Decoupled weight decay, scaled by the learning rate."""
    decay_embeddings: bool = False
    """Apply weight decay to the embeddings too."""
    decay_norms_and_biases: bool = False
    """Apply weight decay to normalisation gains and biases too."""
    grad_clip: float = checked(1.0, range=Range(0.0, why=" (0 disables clipping)"))
    """Clip the gradient's global norm to this; 0 disables clipping."""


@dataclasses.dataclass
class TrainConfig:
    """How long, how big a batch, and how often to evaluate, log and checkpoint."""

    batch_size: int = checked(16, range=_POSITIVE)
    """Sequences per optimizer step."""
    grad_accum: int = checked(1, range=_POSITIVE)
    """Microbatches per step; batch_size must divide evenly."""
    tokens: float | None = checked(None, range=Range(0.0, MAX_TOKENS, low_open=True, why=_TYPO))
    """Budget as training tokens D; set exactly one of tokens, flops, steps."""
    flops: float | None = checked(None, range=Range(0.0, MAX_FLOPS, low_open=True, why=_TYPO))
    """Budget as training FLOPs C, counted exactly (not 6ND)."""
    steps: int | None = checked(None, range=Range(1, MAX_STEPS, why=_TYPO))
    """Budget as optimizer steps."""
    eval_every: int = checked(100, range=_POSITIVE)
    """Evaluate every this many steps (and at the end)."""
    eval_log_points: int = checked(8, range=Range(0, 1000))
    """Extra evaluations at log-spaced steps, for the early part of the loss curve."""
    log_every: int = checked(10, range=_POSITIVE)
    """Write a metrics row every this many steps."""
    checkpoint_every: int = checked(200, range=_POSITIVE)
    """Save a checkpoint every this many steps (and at the end)."""
    keep_checkpoints: int = checked(3, range=_POSITIVE)
    """The newest this many periodic checkpoints are kept."""
    keep_steps: list[int] = checked(factory=list, range=Range(1, MAX_STEPS))
    """Steps also saved, and never deleted (a WSD stable run's branch points)."""
    init_from: str | None = None
    """A run directory whose checkpoint this run starts from (a WSD cooldown's stable run)."""
    init_step: int | None = checked(None, range=_POSITIVE)
    """That run's checkpoint step; None: its newest."""
    progress: bool = True
    """Show a progress line on the terminal."""


@dataclasses.dataclass
class MeshConfig:
    """Device mesh: ``data`` splits the batch, ``fsdp`` also shards parameters and optimizer state.

    -1 means "all remaining devices". The mesh does not change what a run computes (up to float
    reduction order), so it is not part of the run id: a run can resume on a different mesh.
    """

    data: int = checked(-1, range=Range(-1))
    """Devices the batch is split over (data parallelism); -1: all remaining."""
    fsdp: int = checked(1, range=Range(-1))
    """Devices parameters and optimizer state are sharded over; -1: all remaining."""


@dataclasses.dataclass
class DistributedConfig:
    """Multi-process runs through ``jax.distributed``. Unset fields come from the environment
    (SLURM, or SCALING_COORDINATOR / SCALING_NUM_PROCESSES / SCALING_PROCESS_ID)."""

    coordinator: str | None = None
    """host:port of process 0."""
    num_processes: int | None = checked(None, range=_POSITIVE)
    """How many processes take part."""
    process_id: int | None = checked(None, range=_NON_NEGATIVE)
    """This process's index, 0 to num_processes - 1."""
    cpu_collectives: Literal["gloo", "mpi"] = "gloo"
    """The collectives implementation between CPU processes."""


@dataclasses.dataclass
class RunConfig:
    """Everything that determines a run; its hash is the run id."""

    seed: int = checked(0, range=Range(0, 2**32 - 1))
    """Seeds the initialisation, and with the step, every batch (so resume is exact)."""
    runs_dir: str = "runs"
    """Where run directories go: <runs_dir>/<sweep>/<name>."""
    sweep: str = "default"
    """The directory under runs_dir that groups this run with others."""
    name: str | None = None
    """The run's directory name under runs_dir/sweep; None: the run id."""
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    """The model (``model.*``)."""
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    """The dataset (``data.*``)."""
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    """The optimizer and schedule (``optim.*``)."""
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    """Budget, batch and cadence (``train.*``)."""
    mesh: MeshConfig = dataclasses.field(default_factory=MeshConfig)
    """The device mesh (``mesh.*``)."""
    distributed: DistributedConfig = dataclasses.field(default_factory=DistributedConfig)
    """Multi-process settings (``distributed.*``)."""


# Keys that say where a run lives, how often it logs, evaluates and checkpoints, and how it is shown,
# not what it computes (batches are a function of seed and step; evaluation and saving leave the
# training state untouched, and resume is exact). They are recorded in the run's config.yaml, which
# every launch rewrites, but not hashed: changing them resumes the same run. ``train.keep_steps`` stays
# hashed: a WSD cooldown relies on its stable run holding those checkpoints.
_NOT_HASHED = {("runs_dir",), ("name",), ("train", "progress"), ("train", "log_every"), ("train", "eval_every"),
               ("train", "eval_log_points"), ("train", "checkpoint_every"), ("train", "keep_checkpoints"),
               ("mesh",), ("distributed",)}


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
    Raises ConfigError for an item without ``=`` or a value that is not valid YAML.
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



def from_dict(values: dict[str, Any], at: typed_load.KeyPath = ()) -> RunConfig:
    """A validated RunConfig from a nested dict of config values, a model preset expanded under the explicit keys.

    ``at`` is where ``values`` sit in their file (a sweep's ``("base",)``), so messages name the full
    key. Raises ``typed_load.LoadError`` for a bad key or value, ``ConfigError`` for fields that
    disagree (``validate``) or an unknown preset.
    """
    model_values = values.get("model") or {} if isinstance(values, dict) else {}
    if isinstance(model_values, dict) and model_values.get("preset") is not None:
        values = merge(values, {"model": merge(presets.get(str(model_values["preset"])), model_values)})
    cfg = typed_load.load(RunConfig, values, at)
    validate(cfg)
    return cfg


def load(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    """The RunConfig of a YAML file (None: the defaults) with ``key=value`` overrides on top.

    Raises ConfigError; a bad value read from the file is reported with the file's name.
    """
    base = load_yaml(path) if path is not None else {}
    tree = parse_overrides(list(overrides))
    try:
        return from_dict(merge(base, tree))
    except ConfigError as e:
        raise ConfigError(typed_load.in_file(e, path, tree)) from None


# Every numeric config key and its valid range, as declared beside its field; a test checks that
# no numeric key lacks one. Optional keys are checked only when set.
RANGES: dict[str, Range] = typed_load.ranges(RunConfig)


def get(cfg: Any, key: str) -> Any:
    """The value of a dotted key (``optim.lr``) in a config; AttributeError for a key it does not have."""
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def validate(cfg: RunConfig) -> None:
    """The checks that involve several fields (each field's own range is checked when it is loaded).

    Raises ConfigError naming the keys that disagree.
    """
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
    """A config dataclass as nested plain dicts (what config.yaml holds)."""
    return dataclasses.asdict(cfg)


def dump_yaml(cfg: RunConfig) -> str:
    """The YAML text of a config, in field order; ``load`` reads it back to an equal config."""
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


def valid_keys(cls: type = RunConfig) -> list[str]:
    """Every dotted key a config accepts (``model.d_model``, ...), for help texts and error messages."""
    return [key for key, _ in typed_load.keys(cls)]
