"""The typed loader on its own (small dataclasses written here), then the rules every loaded class keeps."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import typing
from typing import Any, ClassVar, Literal

import pytest

from scaling import config, typed_load
from scaling.sweeps import hyper, shapes, spec
from scaling.typed_load import Invalid, LoadError, Range, checked, low_high, non_empty


@dataclasses.dataclass
class Inner:
    depth: int = checked(2, range=Range(1))
    scale: float = checked(1.0, range=Range(0.0, low_open=True))
    kind: Literal["a", "b"] = "a"


@dataclasses.dataclass(frozen=True)
class Square:
    TAG: ClassVar[str] = "square"
    SHORTHAND: ClassVar[str] = "side"
    side: float = checked(range=Range(0.0, low_open=True))


@dataclasses.dataclass(frozen=True)
class Box:
    TAG: ClassVar[str] = "box"
    low: float = 0.0
    high: float = 1.0

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise Invalid("low is above high")


@dataclasses.dataclass
class Outer:
    name: str
    inner: Inner = dataclasses.field(default_factory=Inner)
    sizes: tuple[float, ...] = checked((), range=Range(0.0, low_open=True), check=non_empty)
    window: tuple[float, float] | None = checked(None, check=low_high)
    steps: list[int] = checked(factory=list, range=Range(1))
    limit: int | None = None
    label: int | str = 0
    shapes: tuple[Square | Box, ...] = ()
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


def _error(data: Any, cls: type = Outer) -> LoadError:
    with pytest.raises(LoadError) as err:
        typed_load.load(cls, data)
    return err.value


def test_nested_dataclasses_build_with_defaults_and_numbers_written_as_strings():
    got = typed_load.load(Outer, {"name": "x", "inner": {"depth": "3", "scale": "1e-3"}, "sizes": ["1e12", 5]})
    assert got.inner == Inner(depth=3, scale=1e-3) and isinstance(got.inner.scale, float)
    assert got.sizes == (1e12, 5.0) and all(isinstance(s, float) for s in got.sizes)
    assert typed_load.load(Outer, {"name": "x", "inner": None}).inner == Inner()  # an empty section: defaults
    assert _error({"name": "x", "inner": {"depth": 2.5}}).path == ("inner", "depth")
    assert "inner: expected a mapping" in str(_error({"name": "x", "inner": 3}))


def test_tuples_fixed_and_variable_length():
    assert typed_load.load(Outer, {"name": "x", "window": [1, "2e3"]}).window == (1.0, 2000.0)
    assert "window: expected a list of 2 items, got [1, 2, 3]" in str(_error({"name": "x", "window": [1, 2, 3]}))
    assert "sizes: expected a list, got 5" in str(_error({"name": "x", "sizes": 5}))
    assert "window: expected [low, high] with low <= high" in str(_error({"name": "x", "window": [3, 1]}))
    assert "sizes: must not be empty" in str(_error({"name": "x", "sizes": []}))


def test_unions_optional_scalars_and_tagged_dataclasses():
    assert typed_load.load(Outer, {"name": "x", "limit": "null"}).limit is None
    assert typed_load.load(Outer, {"name": "x", "limit": "7"}).limit == 7
    assert typed_load.load(Outer, {"name": "x", "label": "seven"}).label == "seven"
    assert typed_load.load(Outer, {"name": "x", "label": 7}).label == 7
    shapes = [{"square": 2}, {"box": {"high": 3}}, {"square": {"side": 1}}]  # a shorthand, a mapping, both for one
    got = typed_load.load(Outer, {"name": "x", "shapes": shapes})
    assert got.shapes == (Square(2.0), Box(0.0, 3.0), Square(1.0))
    message = str(_error({"name": "x", "shapes": [{"square": 1}, {"boxx": {}}]}))
    assert message.startswith("shapes[1]: unknown kind 'boxx' (did you mean 'box'?); one of square, box")
    two_kinds = {"name": "x", "shapes": [{"square": 1, "box": {}}]}
    assert "shapes[0]: expected a mapping with one key" in str(_error(two_kinds))


def test_unknown_key_names_the_dotted_path_and_suggests_the_closest():
    error = _error({"name": "x", "inner": {"dept": 3}})
    assert error.path == ("inner", "dept")
    assert str(error) == "unknown key 'inner.dept' (did you mean 'depth'?); valid keys in inner: depth, scale, kind"
    assert str(_error({"nmae": "x"})).startswith("unknown key 'nmae' (did you mean 'name'?); valid keys: name, ")
    assert "did you mean" not in str(_error({"name": "x", "zzzzzz": 1}))
    assert str(_error({"inner": {}})) == "missing required key 'name'"


def test_ranges_check_every_number_and_name_the_item():
    assert str(_error({"name": "x", "steps": [3, 0]})) == "steps[1]=0 is out of range; valid: >= 1"
    assert str(_error({"name": "x", "inner": {"scale": "nan"}})) == "inner.scale=nan is not a finite number; valid: > 0"
    assert str(_error({"name": "x", "shapes": [{"square": -1}]})) == "shapes[0].square=-1.0 is out of range; valid: > 0"
    assert str(_error({"name": "x", "inner": {"depth": -1e30}})) == "inner.depth=-1e+30 is out of range; valid: >= 1"
    assert Range(0.0, 1.0, high_open=True).problem("k", 0.5) is None and str(Range()) == "any finite number"


def test_post_init_rules_and_literal_choices_are_reported_at_their_key():
    assert str(_error({"name": "x", "shapes": [{"box": {"low": 2, "high": 1}}]})) == "shapes[0].box: low is above high"
    assert str(_error({"name": "x", "inner": {"kind": "c"}})) == "inner.kind: 'c' is not one of 'a', 'b'"


def test_the_file_is_named_unless_the_key_came_from_the_command_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  beta1: 2\n")
    with pytest.raises(config.ConfigError) as err:
        config.load(path)
    assert str(err.value) == f"{path}: optim.beta1=2.0 is out of range; valid: [0, 1)"
    path.write_text("optim:\n  beta1: 0.5\n")
    with pytest.raises(config.ConfigError) as err:
        config.load(path, ["optim.beta2=7"])
    assert str(err.value) == "optim.beta2=7.0 is out of range; valid: [0, 1)"
    sweep = tmp_path / "s.yaml"
    sweep.write_text("name: t\ncount: total\naxes:\n  - isoflop: {budgets: [1e12, x], sizes: [1e5]}\n")
    with pytest.raises(spec.SweepError) as err:
        spec.load(sweep)
    assert str(err.value) == f"{sweep}: axes[0].isoflop.budgets[1]: expected a number, got 'x'"


# --- every class the loader builds keeps the rules: documented fields, a range on every number ---

LOADED = [config.RunConfig, config.ModelConfig, config.DataConfig, config.OptimConfig, config.TrainConfig,
          config.MeshConfig, config.DistributedConfig, spec.SweepSpec, spec.Grid, spec.ModelSizes, spec.Tokens,
          spec.IsoFlop, spec.WsdCooldowns, shapes.ShapeRule, hyper.Rule, hyper.PowerLaw]


def _documented_fields(cls: type) -> set[str]:
    """Fields with a string literal right under them, in ``cls`` and the classes it inherits fields from."""
    names = set()
    for klass in cls.__mro__:
        if not dataclasses.is_dataclass(klass):
            continue
        body = ast.parse(inspect.getsource(klass)).body[0].body
        for stmt, after in itertools.pairwise(body):
            if (isinstance(stmt, ast.AnnAssign) and isinstance(after, ast.Expr)
                    and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
                names.add(stmt.target.id)
    return names


@pytest.mark.parametrize("cls", LOADED, ids=lambda c: c.__name__)
def test_every_field_is_documented_under_it(cls):
    undocumented = {f.name for f in dataclasses.fields(cls)} - _documented_fields(cls)
    assert not undocumented, f"{cls.__name__}: no docstring under {sorted(undocumented)}"


@pytest.mark.parametrize("cls", LOADED, ids=lambda c: c.__name__)
def test_every_number_has_a_range(cls):
    def numeric(hint) -> bool:
        return hint in (int, float) or any(numeric(a) for a in typing.get_args(hint))

    hints = typing.get_type_hints(cls)
    unchecked = [f.name for f in dataclasses.fields(cls)
                 if numeric(hints[f.name]) and not f.metadata.get("range")]
    assert not unchecked, f"{cls.__name__}: numeric fields without a range: {unchecked}"
