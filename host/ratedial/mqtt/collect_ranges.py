"""Index ranges: the collector's arithmetic on sample indices and event ids (pure).

A range is half-open, ``[first, end)``. :class:`RangeSet` keeps its ranges sorted, disjoint
and merged (touching ranges become one), so ``total()`` counts each index once.
:func:`bounded` cuts holes to what one replay request may carry: at most :data:`MAX_RANGES`
ranges and :data:`MAX_SAMPLES` samples (the daemon's limits). :func:`parse_ranges` and
:func:`is_int` read ranges and indices from a JSON payload, ``None``/``False`` for anything
else (a ``bool`` is not an index).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, TypeGuard

Range = tuple[int, int]  # [first, end)
MAX_RANGES = 100  # per replay request (the daemon's limit)
MAX_SAMPLES = 3_600_000  # per replay request (the daemon's limit: one hour at 1 kHz)


class RangeSet:
    """Sorted, disjoint, merged half-open integer ranges."""

    __slots__ = ("_r",)

    def __init__(self, ranges: Iterable[Range] = ()) -> None:
        self._r: list[Range] = []
        for a, b in ranges:
            self.add(a, b)

    @property
    def ranges(self) -> list[Range]:
        return list(self._r)

    def __bool__(self) -> bool:
        return bool(self._r)

    def __contains__(self, i: object) -> bool:
        return isinstance(i, int) and any(a <= i < b for a, b in self._r)

    def total(self) -> int:
        return sum(b - a for a, b in self._r)

    def add(self, a: int, b: int) -> None:
        if a >= b:
            return
        out: list[Range] = []
        for lo, hi in self._r:
            if hi < a or b < lo:
                out.append((lo, hi))
            else:
                a, b = min(a, lo), max(b, hi)
        out.append((a, b))
        out.sort()
        self._r = out

    def missing(self, a: int, b: int) -> list[Range]:
        """The parts of ``[a, b)`` not in the set."""
        out: list[Range] = []
        pos = a
        for lo, hi in self._r:
            if hi <= pos:
                continue
            if lo >= b:
                break
            if lo > pos:
                out.append((pos, lo))
            pos = max(pos, hi)
            if pos >= b:
                break
        if pos < b:
            out.append((pos, b))
        return out

    @property
    def first(self) -> int | None:
        return self._r[0][0] if self._r else None

    @property
    def end(self) -> int | None:
        return self._r[-1][1] if self._r else None


def subtract(ranges: Iterable[Range], *sets: RangeSet) -> list[Range]:
    out = list(ranges)
    for s in sets:
        out = [p for a, b in out for p in s.missing(a, b)]
    return out


INT64 = 2**63  # what SQLite holds: an integer beyond it is no index, time or count of ours


def is_int(x: Any) -> TypeGuard[int]:
    return isinstance(x, int) and not isinstance(x, bool) and -INT64 <= x < INT64


def is_number(x: Any) -> bool:
    """A finite JSON number (not a bool)."""
    return is_int(x) or (isinstance(x, float) and math.isfinite(x))


def parse_ranges(x: Any) -> list[Range] | None:
    if not isinstance(x, list):
        return None
    out: list[Range] = []
    for r in x:
        if not (isinstance(r, list) and len(r) == 2 and is_int(r[0]) and is_int(r[1])):
            return None
        out.append((r[0], r[1]))
    return out


def bounded(holes: list[Range]) -> tuple[Range, ...]:
    """The first holes, at most :data:`MAX_RANGES` ranges and :data:`MAX_SAMPLES` samples."""
    out: list[Range] = []
    left = MAX_SAMPLES
    for a, b in holes[:MAX_RANGES]:
        if left <= 0:
            break
        out.append((a, min(b, a + left)))
        left -= out[-1][1] - a
    return tuple(out)


def within(asked: RangeSet, a: int, b: int) -> list[Range]:
    """The parts of ``[a, b)`` inside ``asked``."""
    outside = RangeSet(asked.missing(a, b))
    return outside.missing(a, b)
