"""One typed loader: a dataclass built from a parsed YAML mapping by walking its fields' type hints.

Run configs (``scaling.config``) and sweep files (``scaling.sweeps.spec``) are both loaded here, so a
mistake in either is reported the same way: one message that names the dotted key
(``optim.beta1``, ``axes[0].isoflop.budgets[2]``), what was expected and what was found.

What a field's type hint accepts:

- ``bool``: true/false (also the strings true/false/yes/no/1/0 a command line gives);
- ``int``, ``float``: numbers, also as strings such as ``"1e12"`` (YAML 1.1 reads ``1e12`` without a
  dot as a string); an int field refuses a fractional value, a float field takes an int;
- ``str``; ``Literal[...]``: one of the listed values;
- ``list[T]``, ``tuple[T, ...]``, ``tuple[A, B]`` (exactly two items), ``dict[str, T]``; ``Any`` as is;
- ``X | None`` and other unions: null (or the string ``null``/``none``) where None is allowed, else
  the first member type the value fits;
- a nested dataclass: a mapping of its fields (null or a missing section: all defaults);
- a union of dataclasses that each name a ``TAG`` class variable: a one-key mapping ``{tag: body}``
  (how a sweep file lists its axes).

A dataclass may name a ``SHORTHAND`` field: a value that is not a mapping fills that field alone
(``model_sizes: [1e6, 3e6]`` for ``{targets: [...]}``); when that field is itself a mapping, the
whole value always fills it.

Checks beside each field (``checked(...)``): a ``Range`` applies to every number the field holds;
``check`` is a function of the whole loaded value that returns a problem or None. A rule across
several fields of one class goes in its ``__post_init__``, which raises ``Invalid``; the loader adds
the key it concerns. This module imports nothing from the project but its errors.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any, Literal

from scaling.errors import ConfigError

KeyPath = tuple  # the keys and list indices from the top of the file down to a value


class LoadError(ConfigError):
    """A value that does not fit its field. ``path`` is where it is: ``("axes", 0, "isoflop")``."""

    def __init__(self, path: KeyPath, message: str):
        super().__init__(message)
        self.path = path


class Invalid(ConfigError):
    """Raised by a dataclass's ``__post_init__`` when its fields disagree; the loader names the key."""


def _dotted(path: KeyPath) -> str:
    """``("axes", 0, "isoflop", "budgets")`` -> ``"axes[0].isoflop.budgets"``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def suggest(key: str, valid: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the valid key closest to a mistyped one, or ``""`` if none is close."""
    close = difflib.get_close_matches(key, list(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclasses.dataclass(frozen=True)
class Range:
    """The valid values of a number: ``low``/``high`` bounds, each closed or open (None: unbounded).

    Every range also refuses NaN and infinities. ``why`` is appended to the message when the bound
    is not obvious.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    why: str = ""

    def contains(self, x: float) -> bool:
        """True if ``x`` lies inside the bounds (finiteness is checked separately)."""
        if self.low is not None and (x <= self.low if self.low_open else x < self.low):
            return False
        return self.high is None or (x < self.high if self.high_open else x <= self.high)

    def __str__(self) -> str:
        def fmt(v: float) -> str:
            return f"{v:g}" if isinstance(v, float) else f"{v:,}"

        if self.low is None and self.high is None:
            return "any finite number"
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {fmt(self.low)}"
        lo = "-inf" if self.low is None else fmt(self.low)
        return f"{'(' if self.low_open else '['}{lo}, {fmt(self.high)}{')' if self.high_open else ']'}"

    def problem(self, key: str, x: float) -> str | None:
        """The message for ``key=x`` outside this range, or None when ``x`` is valid."""
        if isinstance(x, float) and not math.isfinite(x):
            return f"{key}={x} is not a finite number; valid: {self}{self.why}"
        if not self.contains(x):
            shown = f"{x:.3g}" if abs(x) >= 1e12 else repr(x)
            return f"{key}={shown} is out of range; valid: {self}{self.why}"
        return None


Check = Callable[[Any], "str | None"]


def checked(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING,
            range: Range | None = None, check: Check | None = None) -> Any:
    """A dataclass field with its checks beside it: ``lr: float = checked(3e-3, range=Range(0.0, low_open=True))``.

    ``default``/``factory`` as in ``dataclasses.field`` (neither: the key is required). ``range``
    applies to every number the field holds (each item of a list); ``check`` receives the whole
    loaded value and returns a problem (a phrase, prefixed with the key when reported) or None.
    """
    return dataclasses.field(default=default, default_factory=factory, metadata={"range": range, "check": check})


def non_empty(value: Any) -> str | None:
    """A ``check``: a list or mapping with at least one item."""
    return None if len(value) else "must not be empty"


def low_high(pair: tuple[float, float]) -> str | None:
    """A ``check`` for ``[low, high]``: low must not exceed high."""
    return None if pair[0] <= pair[1] else f"expected [low, high] with low <= high, got {list(pair)}"


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _tags(hint: Any) -> dict[str, type] | None:
    """For a union of dataclasses that each name a TAG: tag -> class; else None."""
    members = [a for a in typing.get_args(hint) if a is not type(None)]
    if members and all(dataclasses.is_dataclass(a) and isinstance(getattr(a, "TAG", None), str) for a in members):
        return {a.TAG: a for a in members}
    return None


def _fail(path: KeyPath, expected: str, value: Any) -> LoadError:
    return LoadError(path, f"{_dotted(path) or 'the top level'}: expected {expected}, got {value!r}")


def _number(value: Any, kind: type, path: KeyPath) -> float | int:
    what = "an integer" if kind is int else "a number"
    if isinstance(value, (bool, dict, list, tuple)) or value is None:
        raise _fail(path, what, value)
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise _fail(path, what, value) from None
    if kind is float:
        return number
    if not number.is_integer():  # also refuses nan and inf
        raise _fail(path, what, value)
    return int(number)


def _scalar(value: Any, hint: Any, path: KeyPath) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise _fail(path, "true/false", value)
    if hint in (int, float):
        return _number(value, hint, path)
    if hint is str:
        if isinstance(value, (dict, list, tuple)) or value is None:
            raise _fail(path, "a string", value)
        return str(value)
    raise TypeError(f"{_dotted(path)}: the loader does not handle the type {hint!r}")  # a bug in a dataclass


def _sequence(value: Any, hint: Any, path: KeyPath, rng: Range | None) -> list | tuple:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple and Ellipsis not in args:  # tuple[A, B]: exactly these items
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise _fail(path, f"a list of {len(args)} items", value)
        return tuple(_value(v, a, (*path, i), rng) for i, (v, a) in enumerate(zip(value, args)))
    if not isinstance(value, (list, tuple)):
        raise _fail(path, "a list", value)
    items = [_value(v, args[0], (*path, i), rng) for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items


def _tagged(value: Any, tags: dict[str, type], path: KeyPath) -> Any:
    kinds = ", ".join(tags)
    if not isinstance(value, dict) or len(value) != 1:
        raise _fail(path, f"a mapping with one key, one of {kinds}", value)
    ((tag, body),) = value.items()
    if tag not in tags:
        raise LoadError(path, f"{_dotted(path)}: unknown kind {tag!r}{suggest(str(tag), tags)}; one of {kinds}")
    return load(tags[tag], body, (*path, tag))


def _value(value: Any, hint: Any, path: KeyPath, rng: Range | None = None) -> Any:
    """``value`` converted to ``hint``, every number in it checked against ``rng``."""
    if hint is Any:
        return value
    if _is_union(hint):
        args = typing.get_args(hint)
        if type(None) in args and (value is None or (isinstance(value, str) and value.lower() in ("none", "null"))):
            return None
        if (tags := _tags(hint)) is not None:
            return _tagged(value, tags, path)
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _value(value, arg, path, rng)
            except LoadError as e:
                errors.append(e)
        raise errors[0]
    if dataclasses.is_dataclass(hint):
        return load(hint, value, path)
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise LoadError(path, f"{_dotted(path)}: {value!r} is not one of {', '.join(map(repr, choices))}")
        return value
    if origin in (list, tuple):
        return _sequence(value, hint, path, rng)
    if origin is dict:
        key_hint, item_hint = typing.get_args(hint)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise _fail(path, "a mapping", value)
        return {_value(k, key_hint, path): _value(v, item_hint, (*path, str(k)), rng) for k, v in value.items()}
    result = _scalar(value, hint, path)
    problem = None if rng is None or isinstance(result, (bool, str)) else rng.problem(_dotted(path), result)
    if problem is not None:
        raise LoadError(path, problem)
    return result


def _field(f: dataclasses.Field, hint: Any, value: Any, path: KeyPath) -> Any:
    result = _value(value, hint, path, f.metadata.get("range"))
    check = f.metadata.get("check")
    if check is not None and result is not None and (problem := check(result)) is not None:
        raise LoadError(path, f"{_dotted(path)}: {problem}")
    return result


def load(cls: type, data: Any, path: KeyPath = ()) -> Any:
    """An instance of the dataclass ``cls`` built from ``data`` (a parsed YAML mapping), every value checked.

    ``path`` is where ``data`` sits in its file, so that messages name the full key. Null means
    every default. Raises ``LoadError`` (a ``ConfigError``) for an unknown or missing key, a value of
    the wrong type, a number outside its ``Range``, a failed ``check``, or an ``Invalid`` raised by
    the class's ``__post_init__``; a type hint the loader cannot handle is a bug (``TypeError``).
    """
    fields, hints = _fields(cls), _hints(cls)
    shorthand = getattr(cls, "SHORTHAND", None)
    if shorthand is not None and (not isinstance(data, dict) or typing.get_origin(hints[shorthand]) is dict):
        data, field_paths = {shorthand: data}, {shorthand: path}  # the user wrote no key for it
    else:
        field_paths = {}
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _fail(path, f"a mapping with keys {', '.join(fields)}", data)
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            where = f" in {_dotted(path)}" if path else ""
            raise LoadError((*path, str(key)), f"unknown key {_dotted((*path, str(key)))!r}{suggest(str(key), fields)}; "
                                               f"valid keys{where}: {', '.join(fields)}")
        kwargs[key] = _field(fields[key], hints[key], value, field_paths.get(key, (*path, key)))
    missing = [name for name, f in fields.items() if name not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise LoadError(path, f"missing required key{'s' * (len(missing) > 1)} "
                              f"{', '.join(repr(_dotted((*path, m))) for m in missing)}")
    try:
        return cls(**kwargs)
    except Invalid as e:
        raise LoadError(path, f"{_dotted(path)}: {e}" if path else str(e)) from None


def keys(cls: type, prefix: str = "") -> list[tuple[str, dataclasses.Field]]:
    """Every leaf key of a nested dataclass as ``(dotted key, field)``, nested sections flattened."""
    out = []
    for name, f in _fields(cls).items():
        hint = _hints(cls)[name]
        if dataclasses.is_dataclass(hint):
            out.extend(keys(hint, f"{prefix}{name}."))
        else:
            out.append((prefix + name, f))
    return out


def ranges(cls: type) -> dict[str, Range]:
    """Dotted key -> the ``Range`` declared beside it, for every leaf field of ``cls`` that has one."""
    return {key: f.metadata["range"] for key, f in keys(cls) if f.metadata.get("range") is not None}


def _from_overrides(path: KeyPath, overrides: dict[str, Any]) -> bool:
    """True if the value at ``path`` was set by ``overrides`` (a nested dict of command-line values)."""
    node: Any = overrides
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return bool(path)


def in_file(error: ConfigError, file: Any, overrides: dict[str, Any] | None = None, under: KeyPath = ()) -> str:
    """``error``'s message, prefixed with the file it concerns: ``c.yaml: optim.lr=nan is not a finite number``.

    Only an error at one key (a ``LoadError``) is prefixed, and only when that key came from the
    file: not when it was set by a command-line override (``overrides``, applied at ``under`` in the
    file), which the user typed themselves. A disagreement between keys names the keys instead.
    """
    path = getattr(error, "path", None)
    if file is None or path is None or (overrides and path[:len(under)] == under
                                        and _from_overrides(path[len(under):], overrides)):
        return str(error)
    return f"{file}: {error}"
