"""Lines against bounds: the geometry of the device clock model (pure, exact where it can be).

Points are ``(device_us, y)`` with ``y = host_ns - 1000 * device_us``. Upper bounds form a lower
convex hull, lower bounds an upper hull; :func:`solve` finds the centre of the band of lines
between them, :func:`arrival_slopes` Moon et al.'s (1999) slope of the lowest line under the
arrivals and the interval of slopes that lose little against it. Used by
:mod:`ratedial.clock` only (split from it; docs/timing.md, "The estimator").
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

__all__ = ["Band", "Point", "arrival_slopes", "lower_hull", "solve", "upper_hull"]

# A point is (device_us, y) with y = host_ns - 1000 * device_us: the line's residual against a
# nominal 1 µs = 1000 ns, kept as an exact integer.
Point = tuple[int, int]


def lower_hull(points: Iterable[Point]) -> list[Point]:
    """Lower convex hull (monotone chain, exact integers), one point per x (the lowest)."""
    hull: list[Point] = []
    last_x: int | None = None
    for p in sorted(points):
        x, y = p
        if x == last_x:
            continue
        last_x = x
        while len(hull) >= 2:
            (ox, oy), (ax, ay) = hull[-2], hull[-1]
            if (ax - ox) * (y - oy) - (ay - oy) * (x - ox) > 0:
                break
            hull.pop()
        hull.append(p)
    return hull


def upper_hull(points: Iterable[Point]) -> list[Point]:
    """Upper convex hull, one point per x (the highest)."""
    return [(x, -y) for x, y in lower_hull((x, -y) for x, y in points)]


def superlevel(cs: Sequence[float], vs: Sequence[float], level: float
                ) -> tuple[float, float] | None:
    """Where a concave piecewise-linear function, sampled at all its breakpoints ``cs``
    (ascending) with values ``vs``, is ``>= level``: an interval, or None."""
    inside = [i for i, v in enumerate(vs) if v >= level]
    if not inside:
        return None
    i, j = inside[0], inside[-1]
    lo, hi = cs[i], cs[j]
    if i > 0:
        lo = cs[i - 1] + (cs[i] - cs[i - 1]) * (level - vs[i - 1]) / (vs[i] - vs[i - 1])
    if j < len(cs) - 1:
        hi = cs[j] + (cs[j + 1] - cs[j]) * (vs[j] - level) / (vs[j] - vs[j + 1])
    return lo, hi


class Envelope:
    """``U(c) = min_i (Y_i - c X_i)`` over a lower hull (concave in ``c``) or, with
    ``upper=True``, ``L(c) = max_j (Y_j - c X_j)`` over an upper hull (convex in ``c``)."""

    __slots__ = ("keys", "sign", "xs", "ys")

    def __init__(self, hull: Sequence[tuple[float, float]], *, upper: bool) -> None:
        self.xs = [p[0] for p in hull]
        self.ys = [p[1] for p in hull]
        self.sign = -1.0 if upper else 1.0
        # edge slopes, made ascending (the upper hull's slopes descend)
        self.keys = [self.sign * (b[1] - a[1]) / (b[0] - a[0]) for a, b in pairwise(hull)]

    def __call__(self, c: float) -> float:
        k = bisect_left(self.keys, self.sign * c)
        return self.ys[k] - c * self.xs[k]

    def breakpoints(self) -> list[float]:
        return [self.sign * k for k in self.keys]


@dataclass(frozen=True, slots=True)
class Band:
    a: float  # the chosen line's value at x0 (residual ns, relative to y_ref)
    c: float  # its slope (ns per µs above 1000)
    half_width: float  # half the feasible band at x0 (ns)
    c_half: float  # bound on |true slope - c|


def solve(ups: Sequence[tuple[float, float]], lows: Sequence[tuple[float, float]],
           c_lo: float, c_hi: float, prior_ns: float) -> Band | None:
    """Centre of the lines ``a + c X`` lying below every ``ups`` point (a lower hull) and above
    every ``lows`` point (an upper hull), ``|c| <= c_box``. Without ``lows``, the band's lower
    edge is the upper edge minus ``prior_ns``. None when no line fits."""
    up = Envelope(ups, upper=False)
    low = Envelope(lows, upper=True) if lows else None

    def lower(c: float) -> float:
        return low(c) if low is not None else up(c) - prior_ns

    cand = {c_lo, c_hi}
    cand.update(c for c in up.breakpoints() if c_lo < c < c_hi)
    if low is not None:
        cand.update(c for c in low.breakpoints() if c_lo < c < c_hi)
    cs = sorted(cand)
    uv = [up(c) for c in cs]
    lv = [lower(c) for c in cs]
    feasible = superlevel(cs, [u - v for u, v in zip(uv, lv, strict=True)], 0.0)
    if feasible is None:
        return None
    c1, c2 = feasible
    inner = [i for i, c in enumerate(cs) if c1 < c < c2]
    cs = [c1, *(cs[i] for i in inner), c2]
    uv = [up(c1), *(uv[i] for i in inner), up(c2)]
    lv = [lower(c1), *(lv[i] for i in inner), lower(c2)]
    a_max, a_min = max(uv), min(lv)
    a = (a_max + a_min) / 2
    below = superlevel(cs, uv, a)
    above = superlevel(cs, [-v for v in lv], -a)
    if below is None or above is None:  # rounding at a degenerate (zero-width) band
        c = (c1 + c2) / 2
        a = (up(c) + lower(c)) / 2
    else:
        lo, hi = max(below[0], above[0]), min(below[1], above[1])
        c = (lo + hi) / 2 if lo <= hi else (c1 + c2) / 2
    return Band(a, c, (a_max - a_min) / 2, max(c2 - c, c - c1))


def arrival_slopes(hull: Sequence[Point], tolerance_ns: float, c_box: float
                    ) -> tuple[float, float, float]:
    """The one-way (arrivals only) slope and an interval around it.

    The slope is Moon et al.'s (1999): of the lines below every arrival, the one with the
    least summed latency, i.e. the hull edge over the middle of the span. The interval holds
    the slopes whose best line loses at most ``tolerance_ns`` at the middle: about
    ``4 * tolerance / span`` wide, so it is wide early and narrows as the span grows."""
    x_mid = (hull[0][0] + hull[-1][0]) // 2
    y_ref = hull[0][1]
    env = Envelope([(float(x - x_mid), float(y - y_ref)) for x, y in hull], upper=False)
    cs = sorted({-c_box, c_box, *(c for c in env.breakpoints() if -c_box < c < c_box)})
    vs = [env(c) for c in cs]
    best = max(range(len(cs)), key=vs.__getitem__)
    interval = superlevel(cs, vs, vs[best] - tolerance_ns)
    assert interval is not None
    return cs[best], interval[0], interval[1]
