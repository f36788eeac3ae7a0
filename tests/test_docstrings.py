"""Public definitions of ``scaling`` and ``analysis`` keep their docstrings.

Counted: module-level functions and classes, and the methods and nested classes of public
classes, whose names do not start with ``_`` (dunder methods and private helpers are left out,
and so are functions defined inside functions). Parsed with ``ast``, so nothing is imported.
The bar is below 100% so that a new helper does not break the build the moment it is written,
and high enough that documenting stops being optional.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("scaling", "analysis")
MIN_COVERAGE = 0.90

_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def public_definitions(tree: ast.AST, prefix: str = ""):
    """(qualified name, node) for every public definition directly in ``tree``, and inside public classes."""
    for node in ast.iter_child_nodes(tree):
        if not isinstance(node, _DEFINITIONS) or node.name.startswith("_"):
            continue
        yield prefix + node.name, node
        if isinstance(node, ast.ClassDef):
            yield from public_definitions(node, f"{prefix}{node.name}.")


def census() -> tuple[list[str], list[str]]:
    """(documented, undocumented) as ``path:line name`` strings, over every module of PACKAGES."""
    documented, undocumented = [], []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for name, node in public_definitions(tree):
                where = f"{path.relative_to(ROOT)}:{node.lineno} {name}"
                (documented if ast.get_docstring(node) else undocumented).append(where)
    return documented, undocumented


def test_the_walker_sees_what_it_should():
    tree = ast.parse(
        "def f(): 'doc'\n"
        "def _g(): pass\n"
        "class C:\n"
        "    def m(self): pass\n"
        "    def _h(self): pass\n"
        "    def __init__(self): pass\n"
        "    class Inner:\n"
        "        def n(self): pass\n"
        "class _P:\n"
        "    def hidden(self): pass\n"
        "def outer():\n"
        "    def local(): pass\n"
    )
    assert [name for name, _ in public_definitions(tree)] == ["f", "C", "C.m", "C.Inner", "C.Inner.n", "outer"]


def test_public_definitions_are_documented():
    documented, undocumented = census()
    total = len(documented) + len(undocumented)
    assert total > 100, f"only {total} public definitions found under {PACKAGES}: is the walker broken?"
    coverage = len(documented) / total
    assert coverage >= MIN_COVERAGE, (
        f"{len(documented)}/{total} public definitions ({coverage:.1%}) have docstrings, below "
        f"{MIN_COVERAGE:.0%}; document these:\n" + "\n".join(undocumented))


def _words(text: str) -> set[str]:
    return {w for w in re.split(r"[^a-z0-9]+", text.lower()) if w}


@pytest.mark.parametrize("package", PACKAGES)
def test_docstrings_say_more_than_the_name(package):
    """A docstring made only of the definition's own name ("Run status.") documents nothing."""
    echoes = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name, node in public_definitions(ast.parse(path.read_text(encoding="utf-8"))):
            doc = ast.get_docstring(node)
            if doc and _words(doc) <= _words(node.name.replace("_", " ")) | {"the", "a", "an"}:
                echoes.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}: {doc!r}")
    assert not echoes, "docstrings that only repeat the name:\n" + "\n".join(echoes)
