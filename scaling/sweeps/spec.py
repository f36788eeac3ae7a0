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

The file is loaded into the dataclasses below by ``scaling.typed_load``, the loader run configs use,
so both report a mistake the same way; each key is documented under its field. Axes that pick the
model size (``model_sizes``, ``isoflop``) and axes that pick the training length (``tokens``,
``isoflop``, ``wsd_cooldowns``) may each appear once; the planner owns the keys they decide, so a
grid or the base may not set those.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, ClassVar

from scaling import config, typed_load
from scaling.config import ConfigError
from scaling.sweeps.hyper import Rule
from scaling.sweeps.shapes import Count, ShapeRule
from scaling.typed_load import Invalid, LoadError, Range, checked, low_high, non_empty


class SweepError(ConfigError):
    """A problem in a sweep file or its runs directory; printed as one line, exit code 2."""


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# Where a run lives and how it branches are the planner's business, never a sweep file's.
_PLANNER_KEYS = {"runs_dir", "sweep", "name", "train.init_from", "train.init_step", "train.keep_steps"}
SHAPE_KEYS = {f"model.{k}" for k in ("preset", "n_layer", "d_model", "n_head", "d_head", "d_ff")}
BUDGET_KEYS = {"train.tokens", "train.flops", "train.steps"}
_POSITIVE = Range(0.0, low_open=True)


def _decided(key: str) -> str:
    return f"{key} is decided by the sweep (its axes or the planner), not set here"


def _unknown_config_key(key: str) -> str | None:
    valid = config.valid_keys()
    return None if key in valid else f"unknown config key {key!r}{typed_load.suggest(key, valid)}"


def _grid_keys(values: dict[str, tuple]) -> str | None:
    """A Grid's check: run config keys the planner does not own, each with at least one value."""
    if not values:
        return "expected a mapping of config keys to lists of values, got {}"
    for key, options in values.items():
        problem = _unknown_config_key(key) or (_decided(key) if key in _PLANNER_KEYS else None)
        if problem is None and not options:
            problem = f"{key}: expected a non-empty list of values"
        if problem is not None:
            return problem
    return None


def _training_keys(rules: dict[str, Rule]) -> str | None:
    """The hyperparameters' check: run config keys that do not change N or the planner's decisions."""
    for key in rules:
        if (problem := _unknown_config_key(key)) is not None:
            return problem
        if key.startswith("model.") or key in _PLANNER_KEYS or key in BUDGET_KEYS:
            return (f"{key}: only training settings may depend on N (a model key would change N itself; "
                    "budgets and where runs live belong to the axes and the planner)")
    return None


def _plain_name(name: str) -> str | None:
    return None if _NAME.fullmatch(name) else \
        f"{name!r} must be a plain directory name (letters, digits, '.', '_', '-')"


@dataclasses.dataclass(frozen=True)
class Grid:
    """Every combination of the listed values of run config keys: ``grid: {optim.lr: [...], seed: [...]}``."""

    TAG: ClassVar[str] = "grid"
    SHORTHAND: ClassVar[str] = "values"

    values: dict[str, tuple[Any, ...]] = checked(check=_grid_keys)
    """Dotted run config key -> the values it takes; each value is checked when its run is planned."""


@dataclasses.dataclass(frozen=True)
class ModelSizes:
    """Target parameter counts, each turned into a shape by the shape rule: ``model_sizes: [1.0e+7, ...]``."""

    TAG: ClassVar[str] = "model_sizes"
    SHORTHAND: ClassVar[str] = "targets"

    targets: tuple[float, ...] = checked(range=_POSITIVE, check=non_empty)
    """Target N, of the kind the sweep's ``count`` names."""


@dataclasses.dataclass(frozen=True)
class TokenLadder:
    """Training lengths as the planner reads them."""

    values: tuple[float, ...]
    per_param: bool  # values are multiples of N instead of token counts


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Lengths:
    """Training lengths, either as token counts or as multiples of N: exactly one of the two keys."""

    SHORTHAND: ClassVar[str | None] = "tokens"

    tokens: tuple[float, ...] | None = checked(None, range=_POSITIVE, check=non_empty)
    """Training lengths D in tokens."""
    per_param: tuple[float, ...] | None = checked(None, range=_POSITIVE, check=non_empty)
    """Training lengths in tokens per parameter (D / N), N being the sweep's ``count``."""

    def __post_init__(self) -> None:
        if (self.tokens is None) == (self.per_param is None):
            raise Invalid("give either tokens or per_param")

    @property
    def ladder(self) -> TokenLadder:
        """The lengths, and whether they are multiples of N."""
        if self.per_param is not None:
            return TokenLadder(self.per_param, per_param=True)
        return TokenLadder(self.tokens, per_param=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Tokens(_Lengths):
    """One run per training length: ``tokens: [1.0e+9, 2.0e+9]`` or ``tokens: {per_param: [5, 10, 20]}``."""

    TAG: ClassVar[str] = "tokens"


@dataclasses.dataclass(frozen=True)
class IsoFlop:
    """IsoFLOP profiles (Hoffmann et al. 2022, approach 2): every size at every budget, trained for
    exactly the tokens that spend the budget."""

    TAG: ClassVar[str] = "isoflop"

    budgets: tuple[float, ...] = checked(range=_POSITIVE, check=non_empty)
    """Training FLOPs C, counted exactly (not 6ND)."""
    sizes: tuple[float, ...] | None = checked(None, range=_POSITIVE, check=non_empty)
    """Target N tried at every budget (give this or ``sizes_per_budget``)."""
    sizes_per_budget: tuple[tuple[float, ...], ...] | None = checked(None, range=_POSITIVE, check=non_empty)
    """One list of target N per budget, in the order of ``budgets``: the sizes around each budget's
    expected optimum, as Hoffmann et al. (2022) chose theirs, instead of one list for all."""
    tokens_per_param: tuple[float, float] | None = checked(None, range=_POSITIVE, check=low_high)
    """[low, high]: keep only the runs whose D/N falls inside; None: keep all."""

    def __post_init__(self) -> None:
        if (self.sizes is None) == (self.sizes_per_budget is None):
            raise Invalid("give either sizes (for every budget) or sizes_per_budget (a list per budget)")
        if self.sizes_per_budget is not None and len(self.sizes_per_budget) != len(self.budgets):
            raise Invalid(f"sizes_per_budget has {len(self.sizes_per_budget)} lists for {len(self.budgets)} budgets")

    def pairs(self) -> list[tuple[float, float]]:
        """Every (budget C, target N) of the axis, budget by budget."""
        per_budget = self.sizes_per_budget or [self.sizes] * len(self.budgets)
        return [(c, size) for c, sizes in zip(self.budgets, per_budget) for size in sizes]


@dataclasses.dataclass(frozen=True, kw_only=True)
class WsdCooldowns(_Lengths):
    """Warmup-stable-decay with branched cooldowns (Hägele et al. 2024): one stable run per size, and
    from its checkpoints a cooldown for each training length."""

    TAG: ClassVar[str] = "wsd_cooldowns"
    SHORTHAND: ClassVar[str | None] = None  # cooldown_fraction is required, so always a mapping

    cooldown_fraction: float = checked(range=Range(0.0, 1.0, low_open=True, high_open=True))
    """The share of each cooldown run's steps spent decaying."""


Axis = Grid | ModelSizes | Tokens | IsoFlop | WsdCooldowns
_SIZE_AXES, _BUDGET_AXES = (ModelSizes, IsoFlop), (Tokens, IsoFlop, WsdCooldowns)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SweepSpec:
    """A whole sweep file, checked; ``plan`` in ``planner.py`` expands it into runs."""

    name: str = checked(check=_plain_name)
    """The sweep's directory under the runs directory."""
    description: str = ""
    """One line shown by ``scaling sweep plan``."""
    count: Count
    """What every N in the file means: total or non-embedding parameters."""
    base: dict[str, Any] = dataclasses.field(default_factory=dict)
    """The run config every run starts from (the keys of ``scaling train`` configs)."""
    shape: ShapeRule = dataclasses.field(default_factory=ShapeRule)
    """How a target N becomes a shape (``shapes.py``)."""
    hyperparameters: dict[str, Rule] = checked(factory=dict, check=_training_keys)
    """Dotted run config key -> its value as a function of N (``hyper.py``)."""
    axes: tuple[Axis, ...] = checked(check=non_empty)
    """The axes whose cartesian product is the set of runs."""
    slurm: dict[str, Any] = dataclasses.field(default_factory=dict)
    """submitit parameters for ``--executor slurm``."""

    @property
    def hyper(self) -> dict[str, Rule]:
        """The hyperparameter rules (the planner's name for ``hyperparameters``)."""
        return self.hyperparameters


def _flat_keys(tree: dict, prefix: str = "") -> list[str]:
    keys, valid = [], config.valid_keys()
    for key, value in tree.items():
        if isinstance(value, dict) and f"{prefix}{key}" not in valid:
            keys.extend(_flat_keys(value, f"{prefix}{key}."))
        else:
            keys.append(f"{prefix}{key}")
    return keys


def _check(spec: SweepSpec) -> None:
    """The rules across sections: one axis per decision, and no key set where the sweep decides it."""
    forbidden: set[str] = set()
    groups = ((_SIZE_AXES, SHAPE_KEYS, "the model size"), (_BUDGET_AXES, BUDGET_KEYS, "the training length"))
    for group, keys, what in groups:
        chosen = [a.TAG for a in spec.axes if isinstance(a, group)]
        if len(chosen) > 1:
            raise LoadError(("axes",), f"axes: {' and '.join(chosen)} both decide {what}; keep one")
        forbidden |= keys if chosen else set()
    for i, axis in enumerate(spec.axes):
        for key in axis.values if isinstance(axis, Grid) else ():
            if key in forbidden:
                raise LoadError(("axes", i, "grid"), f"axes[{i}].grid: {_decided(key)}")
    for key in _flat_keys(spec.base):
        if key in _PLANNER_KEYS or (key in forbidden and key != "model.preset"):
            raise LoadError(("base", *key.split(".")), f"base: {_decided(key)}")
    try:  # typos and bad values in the base are reported now, with the key named
        config.from_dict(spec.base, at=("base",))
    except LoadError:
        raise  # it names its key already (base.optim.lr)
    except ConfigError as e:  # fields that disagree, an unknown preset: the message names the keys
        raise ConfigError(f"base: {e}") from None


def _load(data: Any, overrides: dict[str, Any], file: str | Path | None) -> SweepSpec:
    if isinstance(data, dict) and overrides and isinstance(data.get("base") or {}, dict):
        data = {**data, "base": config.merge(data.get("base") or {}, overrides)}
    try:
        spec = typed_load.load(SweepSpec, data)
        _check(spec)
    except ConfigError as e:
        raise SweepError(typed_load.in_file(e, file, overrides, under=("base",))) from None
    return spec


def from_dict(data: dict[str, Any], overrides: dict[str, Any] | None = None) -> SweepSpec:
    """A checked SweepSpec from a parsed sweep file; ``overrides`` (a nested dict) are merged into its base.

    Raises SweepError for anything wrong, naming the dotted key.
    """
    return _load(data, overrides or {}, None)


def load(path: str | Path, overrides: list[str] = ()) -> SweepSpec:
    """The SweepSpec of a YAML file with ``key=value`` overrides of its base.

    Raises SweepError naming the file (unless the bad key came from an override) and the dotted key;
    ConfigError for a malformed override.
    """
    try:
        data = config.load_yaml(path)
    except ConfigError as e:
        raise SweepError(str(e)) from None
    return _load(data, config.parse_overrides(list(overrides)), path)
