"""Expand a sweep into fully resolved runs: every config, its N, D, exact C and 6ND, before anything runs.

Each run's config carries an explicit ``train.steps``: the planner is where a sweep's budgets
(tokens, multiples of N, FLOPs, WSD branch points) become step counts by ``planning.budget_steps``,
the rule a single run uses too. The budget a run came from travels with it as tags (written into
its run.json by the launcher).

A run's directory name is the hash of its resolved config (``config.run_id``), so editing one axis
value adds runs and leaves the others' directories, and their finished work, where they were.
A WSD cooldown names its stable run by that run's id rather than by absolute path when hashed,
so its id does not depend on where the runs directory is.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path
from typing import Any

from scaling import accounting, config, planning
from scaling.config import RunConfig
from scaling.sweeps import shapes
from scaling.sweeps.fmt import sci
from scaling.sweeps.spec import Grid, IsoFlop, ModelSizes, SweepError, SweepSpec, TokenLadder, Tokens, WsdCooldowns

BUDGET_TOLERANCE = 0.02  # an IsoFLOP run further than this from its budget is reported


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep, resolved before anything runs: its config, size and cost.

    ``n`` is N in parameters of the kind the sweep counts (``count``: total or non-embedding);
    token figures are in tokens (D), FLOP figures in training FLOPs (C, the exact count of
    ``scaling.accounting`` unless the name says 6ND). A WSD cooldown's ``after`` names the stable
    run and the checkpoint step it branches from.
    """

    name: str  # the run directory under the sweep directory
    cfg: RunConfig  # fully resolved: vocabulary, steps, runs_dir, sweep, name
    tags: dict[str, Any]  # the axis values that produced this run
    accounting: accounting.Accounting
    n: int  # parameters, of the kind the sweep counts
    shape: str
    trained_steps: int  # steps this run computes itself (a cooldown starts at its branch step)
    after: tuple[str, int] | None = None  # (stable run, step): that checkpoint must exist first

    @property
    def steps(self) -> int:
        """Optimizer steps at the end of the run (``train.steps``; a cooldown counts its stable run's too)."""
        return self.cfg.train.steps

    @property
    def tokens_per_step(self) -> int:
        """Tokens per optimizer step: batch_size x seq_len."""
        return self.cfg.train.batch_size * self.cfg.model.seq_len

    @property
    def tokens(self) -> int:
        """D: what the model has seen at the end (a cooldown's includes its stable run's steps)."""
        return self.steps * self.tokens_per_step

    @property
    def flops(self) -> float:
        """C: exact training FLOPs behind the final model, tokens x ``accounting.flops_per_token``."""
        return self.tokens * self.accounting.flops_per_token

    @property
    def flops_6nd(self) -> float:
        """The same run's C by Kaplan et al. 2020's 6ND with total N, for comparison with ``flops``."""
        return self.tokens * self.accounting.flops_per_token_6n

    @property
    def trained_tokens(self) -> int:
        """Tokens this run trains itself (a cooldown: only those after its branch step)."""
        return self.trained_steps * self.tokens_per_step

    @property
    def trained_flops(self) -> float:
        """Exact training FLOPs this run spends itself: trained_tokens x flops_per_token (what it costs)."""
        return self.trained_tokens * self.accounting.flops_per_token

    @property
    def run_dir(self) -> Path:
        """``<runs_dir>/<sweep>/<name>``, where the run writes."""
        return Path(self.cfg.runs_dir) / self.cfg.sweep / self.name


@dataclasses.dataclass(frozen=True)
class SweepPlan:
    """Every run of a sweep, in plan order, with what the planner noticed.

    ``sweep_dir`` is ``<runs_dir>/<sweep name>`` (absolute); ``warnings`` are lines for a person
    (a shape far from its target size, a FLOP budget missed by more than ``BUDGET_TOLERANCE``,
    duplicate points); ``skipped`` names the IsoFLOP points outside the tokens-per-parameter window.
    """

    spec: SweepSpec
    sweep_dir: Path
    runs: list[PlannedRun]
    warnings: list[str]
    skipped: list[str]  # points an axis filter dropped, and why


@dataclasses.dataclass(frozen=True)
class _Point:
    """One combination of axis values, before it is resolved into runs."""

    overrides: dict = dataclasses.field(default_factory=dict)
    tags: dict = dataclasses.field(default_factory=dict)
    target: float | None = None
    budget: tuple[str, float] | None = None  # (tokens | per_param | flops | steps, value)
    window: tuple[float, float] | None = None
    wsd: WsdCooldowns | None = None

    def __add__(self, other: _Point) -> _Point:
        return _Point(config.merge(self.overrides, other.overrides), {**self.tags, **other.tags},
                      other.target or self.target, other.budget or self.budget, other.window or self.window,
                      other.wsd or self.wsd)


def nested(key: str, value: Any) -> dict:
    """``("optim.lr", 1e-3)`` -> ``{"optim": {"lr": 1e-3}}``."""
    tree: Any = value
    for part in reversed(key.split(".")):
        tree = {part: tree}
    return tree


def _ladder_budgets(ladder: TokenLadder) -> list[tuple[str, float]]:
    return [("per_param" if ladder.per_param else "tokens", v) for v in ladder.values]


def _budget_tag(budget: tuple[str, float]) -> dict:
    kind, value = budget
    return {{"tokens": "budget_tokens", "per_param": "tokens_per_param", "flops": "budget_flops",
             "steps": "budget_steps"}[kind]: value}


def _points(axis) -> list[_Point]:
    if isinstance(axis, Grid):
        keys = list(axis.values)
        return [_Point(overrides=_merge_all(nested(k, v) for k, v in zip(keys, combo, strict=True)),
                       tags=dict(zip(keys, combo, strict=True)))
                for combo in itertools.product(*(axis.values[k] for k in keys))]
    if isinstance(axis, ModelSizes):
        return [_Point(target=t, tags={"target_params": t}) for t in axis.targets]
    if isinstance(axis, Tokens):
        return [_Point(budget=b, tags=_budget_tag(b)) for b in _ladder_budgets(axis.ladder)]
    if isinstance(axis, IsoFlop):
        return [_Point(target=size, budget=("flops", c), window=axis.tokens_per_param,
                       tags={"budget_flops": c, "target_params": size})
                for c, size in axis.pairs()]
    return [_Point(wsd=axis)]


def _merge_all(trees) -> dict:
    out: dict = {}
    for tree in trees:
        out = config.merge(out, tree)
    return out


def run_name(cfg: RunConfig) -> str:
    """The run id, with a branch source named by its directory name (itself a run id)."""
    if cfg.train.init_from is None:
        return planning.run_id(cfg)
    portable = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, init_from=Path(cfg.train.init_from).name))
    return planning.run_id(portable)


def _base_budget(train: config.TrainConfig) -> tuple[str, float]:
    for kind in ("steps", "tokens", "flops"):
        if getattr(train, kind) is not None:
            return kind, getattr(train, kind)
    raise SweepError("the sweep sets no training length: add a tokens, isoflop or wsd_cooldowns axis, "
                     "or one of train.tokens, train.flops, train.steps to the base")


class _Planner:
    def __init__(self, spec: SweepSpec, runs_dir: Path):
        self.spec = spec
        self.runs_dir = runs_dir
        self.vocab: dict[str, int] = {}
        self.shapes: dict[tuple, shapes.Shape] = {}
        self.warnings: list[str] = []
        self.skipped: list[str] = []

    def _with_vocab(self, values: dict) -> dict:
        """The dataset decides the vocabulary unless the config does; one lookup per distinct dataset."""
        cfg = config.from_dict(values)
        if cfg.model.vocab_size is not None:
            return values
        key = json.dumps(config.to_dict(cfg.data), sort_keys=True)
        if key not in self.vocab:
            self.vocab[key] = planning.resolve_vocab(cfg)[0].model.vocab_size
        return config.merge(values, {"model": {"vocab_size": self.vocab[key]}})

    def _shape(self, model: config.ModelConfig, target: float) -> shapes.Shape:
        key = (target, json.dumps(config.to_dict(model), sort_keys=True))
        if key not in self.shapes:
            shape = shapes.fit(self.spec.shape, model, target, self.spec.count)
            if abs(shape.miss) > self.spec.shape.tolerance:
                self.warnings.append(f"target {sci(target)} {self.spec.count} parameters: the nearest shape "
                                     f"{shape.n_layer}x{shape.d_model} has {shape.n:,} ({shape.miss:+.1%})")
            self.shapes[key] = shape
        return self.shapes[key]

    def _run(self, values: dict, steps: int, tags: dict, shape: str, n: int,
             after: tuple[str, int] | None = None) -> PlannedRun:
        values = config.merge(values, {"runs_dir": str(self.runs_dir), "sweep": self.spec.name,
                                       "train": {"steps": steps, "tokens": None, "flops": None}})
        cfg = config.from_dict(values)
        name = run_name(cfg)
        cfg = dataclasses.replace(cfg, name=name)
        trained = steps - after[1] if after else steps
        return PlannedRun(name, cfg, tags, accounting.count(cfg.model), n, shape, trained, after)

    def resolve(self, point: _Point) -> list[PlannedRun]:
        values = self._with_vocab(config.merge(self.spec.base, point.overrides))
        model = config.from_dict(values).model
        if point.target is not None:
            shape = self._shape(model, point.target)
            values = config.merge(values, {"model": shape.model_overrides()})
            model = config.from_dict(values).model
        n = shapes.count_params(model, self.spec.count)
        for key, rule in self.spec.hyper.items():
            values = config.merge(values, nested(key, rule(n)))
        cfg = config.from_dict(values)
        shape = shapes.describe(model)
        if point.wsd is not None:
            return self._wsd(values, cfg, point, n, shape)
        budget = point.budget or _base_budget(cfg.train)
        steps = self._steps(budget, n, cfg)
        if point.window is not None:
            per_param = steps * cfg.train.batch_size * cfg.model.seq_len / n
            low, high = point.window
            if not low <= per_param <= high:
                self.skipped.append(f"{sci(point.target)} parameters at {sci(budget[1])} FLOPs: "
                                    f"{sci(per_param)} tokens/parameter is outside [{low:g}, {high:g}]")
                return []
        run = self._run(values, steps, point.tags, shape, n)
        if budget[0] == "flops" and abs(run.flops / budget[1] - 1) > BUDGET_TOLERANCE:
            self.warnings.append(f"run {run.name} ({shape}) trains {sci(run.flops)} FLOPs for the budget "
                                 f"{sci(budget[1])} ({run.flops / budget[1] - 1:+.1%}): {steps} steps are too "
                                 "few to land closer; lower train.batch_size")
        return [run]

    def _steps(self, budget: tuple[str, float], n: int, cfg: RunConfig) -> int:
        kind, value = budget
        if kind == "per_param":
            kind, value = "tokens", value * n
        tokens_per_step = cfg.train.batch_size * cfg.model.seq_len
        return planning.budget_steps(kind, value, tokens_per_step, accounting.count(cfg.model))

    def _wsd(self, values: dict, cfg: RunConfig, point: _Point, n: int, shape: str) -> list[PlannedRun]:
        """One warmup-stable run, and a cooldown branched from it per token budget (Hägele et al. 2024).

        A cooldown of T steps with fraction f branches at b = T - round(f T); it is the stable
        run's config with ``cooldown_fraction = (T - b) / T``, so its schedule is the stable run's
        up to b, and the warmup is in absolute steps so that it is the same in every run.
        """
        axis, optim = point.wsd, cfg.optim
        if optim.warmup_fraction > 0 and optim.warmup_steps == 0:
            raise SweepError("wsd_cooldowns: set optim.warmup_steps (absolute) instead of optim.warmup_fraction, "
                             "so that the stable run and every cooldown warm up identically")
        lengths: dict[int, tuple[str, float]] = {}
        for budget in _ladder_budgets(axis.ladder):
            lengths.setdefault(self._steps(budget, n, cfg), budget)
        branches = {steps: steps - max(1, round(axis.cooldown_fraction * steps)) for steps in sorted(lengths)}
        too_short = [s for s, b in branches.items() if b < max(1, optim.warmup_steps)]
        if too_short:
            raise SweepError(f"wsd_cooldowns: a run of {too_short[0]} steps would branch before its warmup "
                             f"({optim.warmup_steps} steps) ends; raise the smallest token budget")
        wsd = config.merge(values, {"optim": {"schedule": "wsd"}})
        stable_values = config.merge(wsd, {"optim": {"cooldown_fraction": 0.0},
                                           "train": {"keep_steps": sorted(set(branches.values()))}})
        stable = self._run(stable_values, max(branches.values()), {**point.tags, "wsd_role": "stable"}, shape, n)
        runs = [stable]
        for steps, branch in branches.items():
            cooldown = config.merge(wsd, {"optim": {"cooldown_fraction": (steps - branch) / steps},
                                          "train": {"init_from": str(stable.run_dir), "init_step": branch}})
            tags = {**point.tags, **_budget_tag(lengths[steps]), "wsd_role": "cooldown",
                    "stable_run": stable.name, "branch_step": branch}
            runs.append(self._run(cooldown, steps, tags, shape, n, after=(stable.name, branch)))
        return runs


def plan(spec: SweepSpec, runs_dir: str | Path = "runs") -> SweepPlan:
    """Expand every combination of the sweep's axes into resolved runs (see the module docstring).

    Points that resolve to the same config are planned once (with a warning). Raises SweepError
    (a ConfigError) when the sweep sets no training length or a WSD ladder cannot branch after
    its warmup, ConfigError for bad values or a budget beyond ``config.MAX_STEPS``, and DataError
    when the dataset that decides the vocabulary cannot be opened.
    """
    # Resolved, so that a cooldown's train.init_from is spelled the same however the directory is named.
    runs_dir = Path(runs_dir).resolve()
    planner = _Planner(spec, runs_dir)
    points = [_Point()]
    for axis in spec.axes:
        points = [p + q for p in points for q in _points(axis)]
    runs: dict[str, PlannedRun] = {}
    for point in points:
        for run in planner.resolve(point):
            if run.name in runs:
                planner.warnings.append(f"{run.tags} gives the same run as {runs[run.name].tags}; planned once")
            else:
                runs[run.name] = run
    return SweepPlan(spec, runs_dir / spec.name, list(runs.values()), planner.warnings, planner.skipped)
