"""Matmul FLOPs of a compiled XLA program, read from its optimized HLO, split by model term.

XLA's ``cost_analysis()["flops"]`` is one number that mixes matmuls with every elementwise op,
reduction and optimizer update. To check the closed-form matmul count term by term, this walks
the compiled HLO text instead: each ``dot`` instruction costs 2 x (output elements) x (product of
the contracted dimensions of its left operand), the standard multiply-add count, and is attributed
to the model term named in its ``op_name`` metadata (the Flax module path and einsum spec JAX
records when it traces the model). A dot whose origin matches no term lands in ``"other"``.
"""

from __future__ import annotations

import collections
import math
import re

# Order matters: the first pattern found in a dot's op_name names its term.
TERMS = (
    ("qkv", "/attn/qkv/"),
    ("logits", "BTNH,BSNH->BNTS"),
    ("values", "BNTS,BSNH->BTNH"),
    ("out", "/attn/out/"),
    ("mlp", "/mlp/"),
    ("head", "embed.attend"),
    ("head", "/head/"),
)

_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*\w+\[([\d,]*)\]")
_DOT = re.compile(r"=\s*\w+\[([\d,]*)\]\S*\s+dot\(%?([\w.\-]+),\s*%?([\w.\-]+)\)(.*)$")


def _dims(text: str) -> list[int]:
    return [int(d) for d in text.split(",") if d]


def dot_flops(hlo_text: str) -> dict[tuple[str, str], float]:
    """{(term, "forward" | "backward"): FLOPs} summed over every dot of an optimized HLO module.

    A dot traced under ``transpose(...)`` (JAX's reverse-mode) counts as backward. Raises
    ValueError on a dot whose left operand's shape cannot be found, rather than miscounting it.
    """
    shapes = {}
    for line in hlo_text.splitlines():
        match = _INSTRUCTION.match(line)
        if match:
            shapes[match.group(1)] = _dims(match.group(2))
    totals: dict[tuple[str, str], float] = collections.defaultdict(float)
    for line in hlo_text.splitlines():
        match = _DOT.search(line)
        if not match:
            continue
        out_dims, lhs, rest = _dims(match.group(1)), match.group(2), match.group(4)
        if lhs not in shapes:
            raise ValueError(f"no shape for dot operand {lhs!r} in: {line.strip()}")
        contracting = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", rest)
        contracted = math.prod(shapes[lhs][i] for i in _dims(contracting.group(1))) if contracting else 1
        op_name = re.search(r'op_name="([^"]*)"', rest)
        op_name = op_name.group(1) if op_name else ""
        term = next((name for name, pattern in TERMS if pattern in op_name), "other")
        direction = "backward" if "transpose(" in op_name else "forward"
        totals[(term, direction)] += 2.0 * math.prod(out_dims) * contracted
    return dict(totals)
