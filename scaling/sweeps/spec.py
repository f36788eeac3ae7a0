"""A sweep definition (``sweeps/*.yaml``) read as data and checked before anything is spent.

The file is a base run config plus axes whose cartesian product is the set of runs::

    name: quickstart                 # the directory under the runs dir; a plain name
    count: non_embedding             # what every N below means: total | non_embedding
    base: {model: ..., optim: ..., train: ...}   # the keys of `scaling train` configs
    shape: {head_dim: 64, multiple: 64, aspect_ratio: [32, 256]}   # see shapes.py
    hyperparameters:                 # functions of N, see hyper.py
      optim.lr: {power_law: {coef: 3.0e-3, ref: 1.0e8, exponent: -0.33}}
    axes:
      - grid: {optim.lr: [1.0e-3, 3.0e-3], seed: [0, 1]}
      - model_sizes: [1.0e6, 3.0e6, 1.0e7]
      - tokens: {per_param: [5, 10, 20]}          # or a list of absolute token counts
      - isoflop: {budgets: [1.0e15, 1.0e16], sizes: [...], tokens_per_param: [2, 200]}
      - wsd_cooldowns: {per_param: [5, 10, 20], cooldown_fraction: 0.2}   # or tokens: [...]
    slurm: {timeout_min: 240, gpus_per_node: 1}   # submitit parameters for --executor slurm

Axes that pick the model size (``model_sizes``, ``isoflop``) and axes that pick the training
length (``tokens``, ``isoflop``, ``wsd_cooldowns``) may each appear once; the planner owns the
keys they decide, so a grid or the base may not set those.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from pathlib import Path
from typing import Any

from scaling import config
from scaling.config import ConfigError
from scaling.sweeps.hyper import FORMS, LIMITS, PowerLaw
from scaling.sweeps.shapes import COUNTS, ShapeRule


class SweepError(ConfigError):
    """A problem in a sweep file or its runs directory; printed as one line, exit code 2."""


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_TOP_KEYS = ("name", "description", "count", "base", "shape", "hyperparameters", "axes", "slurm")
# Where a run lives and how it branches are the planner's business, never a sweep file's.
_PLANNER_KEYS = {"runs_dir", "sweep", "name", "train.init_from", "train.init_step", "train.keep_steps"}
SHAPE_KEYS = {f"model.{k}" for k in ("preset", "n_layer", "d_model", "n_head", "d_head", "d_ff")}
BUDGET_KEYS = {"train.tokens", "train.flops", "train.steps"}


@dataclasses.dataclass(frozen=True)
class Grid:
    values: dict[str, tuple]  # dotted config key -> the values it takes


@dataclasses.dataclass(frozen=True)
class ModelSizes:
    targets: tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class TokenLadder:
    values: tuple[float, ...]
    per_param: bool  # values are multiples of N instead of token counts


@dataclasses.dataclass(frozen=True)
class Tokens:
    ladder: TokenLadder


@dataclasses.dataclass(frozen=True)
class IsoFlop:
    budgets: tuple[float, ...]  # exact training FLOPs
    sizes: tuple[float, ...]  # target N for every budget
    tokens_per_param: tuple[float, float] | None  # keep only runs whose D/N falls inside


@dataclasses.dataclass(frozen=True)
class WsdCooldowns:
    ladder: TokenLadder
    cooldown_fraction: float


Axis = Grid | ModelSizes | Tokens | IsoFlop | WsdCooldowns
_SIZE_AXES, _BUDGET_AXES = (ModelSizes, IsoFlop), (Tokens, IsoFlop, WsdCooldowns)


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    name: str
    count: str
    base: dict[str, Any]
    shape: ShapeRule
    hyper: dict[str, PowerLaw]
    axes: tuple[Axis, ...]
    slurm: dict[str, Any]
    description: str = ""


def number(value: Any, where: str, positive: bool = True) -> float:
    """A finite number from YAML, where ``1e5`` arrives as a string (YAML 1.1 wants ``1.0e5``)."""
    try:
        result = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        result = math.nan
    if not math.isfinite(result) or (positive and result <= 0):
        raise SweepError(f"{where}: expected a {'positive ' if positive else ''}number, got {value!r}")
    return result


def _numbers(value: Any, where: str) -> tuple[float, ...]:
    if not isinstance(value, list) or not value:
        raise SweepError(f"{where}: expected a non-empty list of numbers, got {value!r}")
    return tuple(number(v, f"{where}[{i}]") for i, v in enumerate(value))


def _did_you_mean(key: str, valid) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _mapping(value: Any, where: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict:
    if not isinstance(value, dict):
        raise SweepError(f"{where}: expected a mapping with keys {', '.join(allowed)}, got {value!r}")
    for key in value:
        if key not in allowed:
            raise SweepError(f"{where}: unknown key {key!r}{_did_you_mean(str(key), allowed)}; "
                             f"valid keys: {', '.join(allowed)}")
    missing = [k for k in required if k not in value]
    if missing:
        raise SweepError(f"{where}: missing {', '.join(missing)}")
    return value


def _range(value: Any, where: str) -> tuple[float, float]:
    if not isinstance(value, list) or len(value) != 2 or (bounds := _numbers(value, where))[0] > bounds[1]:
        raise SweepError(f"{where}: expected [low, high] with 0 < low <= high, got {value!r}")
    return bounds


def _ladder(value: Any, where: str) -> TokenLadder:
    """``[1.0e6, 2.0e6]`` (tokens), ``{tokens: [...]}`` or ``{per_param: [5, 10, 20]}``."""
    if isinstance(value, list):
        return TokenLadder(_numbers(value, where), per_param=False)
    value = _mapping(value, where, ("tokens", "per_param"))
    if len(value) != 1:
        raise SweepError(f"{where}: give either tokens or per_param")
    (kind, values), = value.items()
    return TokenLadder(_numbers(values, f"{where}.{kind}"), per_param=kind == "per_param")


def _decided(where: str, key: str) -> SweepError:
    return SweepError(f"{where}: {key} is decided by the sweep (its axes or the planner), not set here")


def _grid(value: Any) -> Grid:
    if not isinstance(value, dict) or not value:
        raise SweepError(f"grid: expected a mapping of config keys to lists, got {value!r}")
    values = {}
    valid = config.valid_keys()
    for key, options in value.items():
        if key not in valid:
            raise SweepError(f"grid: unknown config key {key!r}{_did_you_mean(str(key), valid)}")
        if key in _PLANNER_KEYS:
            raise _decided("grid", key)
        if not isinstance(options, list) or not options:
            raise SweepError(f"grid.{key}: expected a non-empty list of values, got {options!r}")
        values[str(key)] = tuple(options)
    return Grid(values)


def _axis(item: Any, index: int) -> Axis:
    kinds = ("grid", "model_sizes", "tokens", "isoflop", "wsd_cooldowns")
    if not isinstance(item, dict) or len(item) != 1:
        raise SweepError(f"axes[{index}]: each axis is a mapping with one key, one of {', '.join(kinds)}")
    (kind, value), = item.items()
    where = f"axes[{index}].{kind}"
    if kind == "grid":
        return _grid(value)
    if kind == "model_sizes":
        return ModelSizes(_numbers(value, where))
    if kind == "tokens":
        return Tokens(_ladder(value, where))
    if kind == "isoflop":
        value = _mapping(value, where, ("budgets", "sizes", "tokens_per_param"), ("budgets", "sizes"))
        window = value.get("tokens_per_param")
        return IsoFlop(_numbers(value["budgets"], f"{where}.budgets"), _numbers(value["sizes"], f"{where}.sizes"),
                       _range(window, f"{where}.tokens_per_param") if window is not None else None)
    if kind == "wsd_cooldowns":
        value = _mapping(value, where, ("tokens", "per_param", "cooldown_fraction"), ("cooldown_fraction",))
        fraction = number(value["cooldown_fraction"], f"{where}.cooldown_fraction")
        if fraction >= 1:
            raise SweepError(f"{where}.cooldown_fraction must be below 1, got {fraction}")
        ladder = {k: v for k, v in value.items() if k != "cooldown_fraction"}
        return WsdCooldowns(_ladder(ladder, where), fraction)
    raise SweepError(f"axes[{index}]: unknown axis kind {kind!r}{_did_you_mean(str(kind), kinds)}; "
                     f"known kinds: {', '.join(kinds)}")


def _shape(value: Any) -> ShapeRule:
    fields = [f.name for f in dataclasses.fields(ShapeRule)]
    value = _mapping(value or {}, "shape", tuple(fields))
    kwargs: dict[str, Any] = {}
    for key, raw in value.items():
        if key == "aspect_ratio":
            kwargs[key] = _range(raw, "shape.aspect_ratio")
        elif key in ("head_dim", "multiple", "max_layers"):
            n = number(raw, f"shape.{key}")
            if not n.is_integer():
                raise SweepError(f"shape.{key}: expected a positive integer, got {raw!r}")
            kwargs[key] = int(n)
        else:
            kwargs[key] = number(raw, f"shape.{key}")
    return ShapeRule(**kwargs)


def _hyper(value: Any) -> dict[str, PowerLaw]:
    rules = {}
    for key, rule in _mapping(value or {}, "hyperparameters", tuple(config.valid_keys())).items():
        where = f"hyperparameters.{key}"
        if key.startswith("model.") or key in _PLANNER_KEYS or key in BUDGET_KEYS:
            raise SweepError(f"{where}: only training settings may depend on N (it would change N itself)")
        forms = [k for k in _mapping(rule, where, FORMS + LIMITS) if k in FORMS]
        if len(forms) != 1:
            raise SweepError(f"{where}: give exactly one of {', '.join(FORMS)}")
        law = _mapping(rule["power_law"], f"{where}.power_law", ("coef", "ref", "exponent"),
                       ("coef", "ref", "exponent"))
        limits = {k: number(rule[k], f"{where}.{k}") if rule.get(k) is not None else None for k in LIMITS}
        rules[key] = PowerLaw(number(law["coef"], f"{where}.power_law.coef"),
                              number(law["ref"], f"{where}.power_law.ref"),
                              number(law["exponent"], f"{where}.power_law.exponent", positive=False),
                              limits["min"], limits["max"], limits["multiple_of"])
    return rules


def _flat_keys(tree: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in tree.items():
        if isinstance(value, dict) and f"{prefix}{key}" not in config.valid_keys():
            keys.extend(_flat_keys(value, f"{prefix}{key}."))
        else:
            keys.append(f"{prefix}{key}")
    return keys


def from_dict(data: dict[str, Any], overrides: dict[str, Any] | None = None) -> SweepSpec:
    """Check a parsed sweep file; ``overrides`` (from the command line) are merged into its base."""
    data = _mapping(data, "sweep file", _TOP_KEYS, ("name", "count", "axes"))
    name = str(data["name"])
    if not _NAME.fullmatch(name):
        raise SweepError(f"name {name!r} must be a plain directory name (letters, digits, '.', '_', '-')")
    count = data["count"]
    if count not in COUNTS:
        raise SweepError(f"count: {count!r} is not one of {', '.join(COUNTS)} (which N the sweep's targets mean)")
    base = config.merge(data.get("base") or {}, overrides or {})
    if not isinstance(base, dict):
        raise SweepError("base: expected a mapping of run config keys")
    raw_axes = data["axes"]
    if not isinstance(raw_axes, list) or not raw_axes:
        raise SweepError("axes: expected a non-empty list of axes")
    axes = tuple(_axis(item, i) for i, item in enumerate(raw_axes))
    forbidden: set[str] = set()
    groups = ((_SIZE_AXES, SHAPE_KEYS, "the model size"), (_BUDGET_AXES, BUDGET_KEYS, "the training length"))
    for group, keys, what in groups:
        chosen = [type(a).__name__ for a in axes if isinstance(a, group)]
        if len(chosen) > 1:
            raise SweepError(f"axes: {' and '.join(chosen)} both decide {what}; keep one")
        forbidden |= keys if chosen else set()
    for key in (k for a in axes if isinstance(a, Grid) for k in a.values):
        if key in forbidden:
            raise _decided("grid", key)
    for key in _flat_keys(base):
        if key in _PLANNER_KEYS or (key in forbidden and key != "model.preset"):
            raise _decided("base", key)
    try:  # typos and bad values in the base are reported now, with the key named
        config.from_dict(base)
    except ConfigError as e:
        raise SweepError(f"base: {e}") from None
    slurm = data.get("slurm") or {}
    if not isinstance(slurm, dict):
        raise SweepError("slurm: expected a mapping of submitit parameters")
    return SweepSpec(name=name, count=count, base=base, shape=_shape(data.get("shape")),
                     hyper=_hyper(data.get("hyperparameters")), axes=axes, slurm=dict(slurm),
                     description=str(data.get("description") or ""))


def load(path: str | Path, overrides: list[str] = ()) -> SweepSpec:
    try:
        data = config.load_yaml(path)
    except ConfigError as e:
        raise SweepError(str(e)) from None
    return from_dict(data, config.parse_overrides(list(overrides)))
