"""Compact number formats shared by plans, warnings and status tables."""

from __future__ import annotations

import re


def sci(x: float) -> str:
    """3 significant digits, exponent without '+' or leading zeros: 2e11, 1.25e4, 3e-5, 47.7."""
    return re.sub(r"e\+?(-?)0*(\d)", r"e\1\2", f"{x:.3g}")


def si(x: float) -> str:
    """3 significant digits with a k/M/B/T suffix for 1e3/1e6/1e9/1e12 (parameter and token counts): 125M, 1.4T."""
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.3g}"


def duration(seconds: float | None) -> str:
    """A duration in seconds, compactly: 42s, 3m07s, 5h04m, 2.5d; "?" for None (unknown)."""
    if seconds is None:
        return "?"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    if seconds < 86400 * 2:
        return f"{seconds // 3600:.0f}h{seconds % 3600 // 60:02.0f}m"
    return f"{seconds / 86400:.1f}d"
