"""Numbers as the report, the figures and the tables write them (pure): ``-`` for a value
that is not defined (NaN, infinite, None), never ``nan``; p values below 0.001 as
``< 0.001``."""

from __future__ import annotations

import math


def fmt_range(key: tuple[float, float]) -> str:
    """A scale's range, ``0 to 100`` (``-100 to 100``: no dash to misread)."""
    return f"{key[0]:g} to {key[1]:g}"


def fmt_num(x: float | None, digits: int = 1) -> str:
    """``x`` to ``digits`` places; ``-`` for none; never ``-0.00`` (an ICC of a constant
    rating is 0 up to rounding, and showed as ``-0.00``: zero has no sign here)."""
    if x is None or not math.isfinite(x):
        return "-"
    text = f"{x:.{digits}f}"
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text


def fmt_signed(x: float | None, digits: int = 1) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:+.{digits}f}"


def fmt_p(p: float) -> str:
    """A p value in running text: ``= 0.012``, ``< 0.001`` or ``-``."""
    return "-" if not math.isfinite(p) else ("< 0.001" if p < 0.001 else f"= {p:.3f}")


def fmt_p_cell(p: float) -> str:
    """A p value in a table column: ``0.012``, ``< 0.001`` (not 0.000) or ``-``."""
    return "-" if not math.isfinite(p) else ("< 0.001" if p < 0.001 else f"{p:.3f}")
