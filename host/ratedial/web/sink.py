"""What the live web view shows, kept in bounded memory (no I/O here).

:class:`WebSink` is a :class:`~ratedial.outputs.Sink`: it decimates each dial's samples
to one point per :data:`BIN_S` of the curve's time axis (the last rating in the bin) and keeps
the newest :data:`RING_POINTS` of them per dial, plus a ring of the same size for the mean
line and spread of several dials. :meth:`WebSink.tick` and :meth:`WebSink.snapshot` build
the JSON messages the server sends.

Invariants:

* Memory is bounded whatever the session length: per dial one ring of ``RING_POINTS``
  points (10 minutes of curve at 10 points a second) and one open bin; one group ring.
* The time axis of a point is the sample's media time when a player maps it, else the run's
  time: the sample's mapped host time (``samples.host_ns``) less the host time of the run's
  ``run_start`` event (``events.host_ns``), in seconds, so a point is found in the recording
  exactly; each point says which axis (``m``), so the page never mixes the two on one axis.
* Only pseudonymous data leaves: dial ids, rater labels, numbers. No ports, paths or session
  labels.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from ..outputs import EventOut, Out, SamplesOut

BIN_S = 0.1  # one curve point per 100 ms of the axis (10 points/s)
RING_POINTS = 6000  # 10 minutes of curve per dial
FRESH_S = 1.0  # a dial counts towards the mean while its newest point is this recent


class ViewLike(Protocol):
    uid: str
    rater: str | None
    state: str
    received: int
    missing: int
    rate_hz: float
    rating: float | None
    latency_ms: float | None
    uncertainty_us: float | None


Point = tuple[int, float, float, int]  # (seq, x, rating, media: 1 | wall: 0)
T = TypeVar("T", bound=tuple[Any, ...])


@dataclass(slots=True)
class _Curve:
    points: deque[Point] = field(default_factory=lambda: deque(maxlen=RING_POINTS))
    open_bin: tuple[int, int] | None = None  # (bin, media)
    open_x: float = 0.0
    open_y: float = 0.0
    last_arrival_ns: int = 0


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(x, nd)


class WebSink:
    """Decimated curves for the web view; ``handle`` is a few µs per sample."""

    def __init__(self, *, views: Callable[[], list[Any]],
                 media: Callable[[], dict[str, Any]],
                 scale: tuple[float, float] = (0.0, 100.0),
                 clock: Callable[[], int] = time.monotonic_ns) -> None:
        self._views = views
        self._media = media
        self._clock = clock
        self.t0_ns = clock()  # until the run_start event gives the recorded one
        self.scale = scale
        self.curves: dict[str, _Curve] = {}
        self.group: deque[tuple[int, float, float, float, float, int, int]] = deque(
            maxlen=RING_POINTS)
        self._group_bin: tuple[int, int] | None = None  # bin of the newest group point
        self._seq = 0
        self._sent_seq = 0
        self._mean: list[Any] | None = None  # the group point the last tick gave
        self.ticks = 0

    # --- the sink -------------------------------------------------------------------------

    def handle(self, outs: list[Out]) -> None:
        for o in outs:
            if isinstance(o, SamplesOut):
                self._samples(o)
            elif isinstance(o, EventOut) and o.kind == "run_start":
                # run time 0: a recorded time (it was the sink's creation, 20-55 ms before
                # it, which nothing in the recording holds)
                self.t0_ns = o.host_ns

    def _samples(self, o: SamplesOut) -> None:
        c = self.curves.get(o.uid)
        if c is None:
            c = self.curves[o.uid] = _Curve()
        media = o.media_s
        t0 = self.t0_ns
        for k, t in enumerate(o.host_ns):
            if t is None:
                continue
            ms = media[k] if media else None
            if ms is None:
                x, m = (t - t0) / 1e9, 0
            else:
                x, m = ms, 1
            key = (math.floor(x / BIN_S), m)
            if key != c.open_bin:
                self._close(c)
                c.open_bin = key
            c.open_x, c.open_y = x, o.ratings[k]
        c.last_arrival_ns = self._clock()

    def _close(self, c: _Curve) -> None:
        if c.open_bin is not None:
            self._seq += 1
            c.points.append((self._seq, c.open_x, c.open_y, c.open_bin[1]))
            c.open_bin = None

    # --- messages -------------------------------------------------------------------------

    def _status(self) -> dict[str, Any]:
        now = self._clock()
        player = self._media()
        dials = []
        for v in self._views():
            dials.append({
                "uid": v.uid, "rater": v.rater, "state": v.state, "received": v.received,
                "missing": v.missing, "rate_hz": round(v.rate_hz, 1), "rating": _r(v.rating),
                "latency_ms": _r(v.latency_ms, 2), "uncertainty_us": _r(v.uncertainty_us, 1)})
        media_s = player.get("media_s")
        axis = "media" if player.get("connected") and media_s is not None else "wall"
        return {"t": round((now - self.t0_ns) / 1e9, 3), "axis": axis,
                "player": {"player": player.get("player"), "state": player.get("state"),
                           "media_s": _r(media_s), "connected": bool(player.get("connected"))},
                "dials": dials, "scale": list(self.scale), "bin_s": BIN_S}

    def _group_point(self, views: dict[str, str]) -> tuple[int, float, float, float, float,
                                                           int, int] | None:
        """Mean and spread of the dials rating now (connected, with a fresh point)."""
        now = self._clock()
        xs, ys, ms = [], [], []
        for uid, c in self.curves.items():
            if views.get(uid) != "connected" or c.open_bin is None:
                continue
            if now - c.last_arrival_ns > FRESH_S * 1e9:
                continue
            xs.append(c.open_x)
            ys.append(c.open_y)
            ms.append(c.open_bin[1])
        if len(ys) < 2 or len(set(ms)) != 1:
            return None
        x = statistics.fmean(xs)
        point = (x, statistics.fmean(ys), min(ys), max(ys), ms[0], len(ys))
        key = (math.floor(x / BIN_S), ms[0])
        if key == self._group_bin and self.group:
            # One point per bin, as the dials' curves have: the ring holds as much time as
            # theirs, and a paused video (x standing still) adds none. The mean now is still
            # what this tick says.
            return (self.group[-1][0], *point)
        self._group_bin = key
        self._seq += 1
        g = (self._seq, *point)
        self.group.append(g)
        return g

    def tick(self) -> dict[str, Any]:
        """The message of one update: status and the points added since the last tick."""
        msg = self._status()
        now = self._group_point({d["uid"]: d["state"] for d in msg["dials"]})
        msg["mean"] = None if now is None else _gp(now)  # None: fewer than 2 dials rating
        self._mean = msg["mean"]  # what the last tick said, for snapshot()
        since = self._sent_seq
        msg["points"] = {uid: [_pt(p) for p in _newer(c.points, since)]
                         for uid, c in self.curves.items()}
        msg["group"] = [_gp(g) for g in _newer(self.group, since)]
        msg["seq"] = self._sent_seq = self._seq
        self.ticks += 1
        msg["tick"] = self.ticks
        return msg

    def snapshot(self) -> dict[str, Any]:
        """Everything held (what a newly connected page starts from), up to the last tick."""
        msg = self._status()
        upto = self._sent_seq
        msg["points"] = {uid: [_pt(p) for p in c.points if p[0] <= upto]
                         for uid, c in self.curves.items()}
        msg["group"] = [_gp(g) for g in self.group if g[0] <= upto]
        msg["mean"] = self._mean  # as the last tick said (null while fewer than 2 rate)
        msg["seq"] = upto
        msg["tick"] = self.ticks
        return msg

    def held_points(self) -> int:
        return sum(len(c.points) for c in self.curves.values()) + len(self.group)


def _newer(points: deque[T], since: int) -> list[T]:
    """The items with a sequence number above ``since`` (the ring's tail), oldest first."""
    out: list[T] = []
    for p in reversed(points):
        if p[0] <= since:
            break
        out.append(p)
    out.reverse()
    return out


def _pt(p: Point) -> list[float]:
    return [round(p[1], 3), round(p[2], 3), p[3]]


def _gp(g: tuple[int, float, float, float, float, int, int]) -> list[float]:
    return [round(g[1], 3), round(g[2], 3), round(g[3], 3), round(g[4], 3), g[5], g[6]]
