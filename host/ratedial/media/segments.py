"""The media clock's segments: a stretch of constant player state, and its bounds (pure).

Invariants:

* The timeline is a list of *segments* ``[start_ns, next.start_ns)``. Within a segment the
  state (:class:`MediaState`), the rate and the media are constant; the position is fixed
  (paused, seeking, ended) or linear in host time (playing). A pause, seek, rate change, file
  change, end of file, loss of the player, or a report that does not fit the prediction
  (residual above ``jump_frames`` frames) starts a new segment.
* Paused, seeking and ended segments hold one position: a rating made while paused belongs to
  the paused frame.
* A playing segment's line is ``media_s = offset + rate * (t - start_ns) / NS``: every report
  bounds that offset (:func:`report_bounds`), and the timeline fits the offset to the bounds.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from ..recording.schema import MediaState

NS = 1_000_000_000

# Derived state: the first flag that holds wins (priority order).
_STATE_PRIORITY: tuple[tuple[Callable[[Flags], bool], MediaState], ...] = (
    (lambda f: not (f.connected and f.loaded), MediaState.UNKNOWN),
    (lambda f: f.ended, MediaState.ENDED),
    (lambda f: f.seeking, MediaState.SEEKING),
    (lambda f: f.paused is not False, MediaState.PAUSED),
)

# States that hold one position; a new reported position there is a new fixed position.
HOLDING = frozenset({MediaState.PAUSED, MediaState.SEEKING, MediaState.ENDED})


@dataclass(slots=True)
class Flags:
    """What the player last said about itself; :meth:`state` is the state it makes."""

    connected: bool = False
    loaded: bool = False
    media_id: int | None = None
    paused: bool | None = None
    seeking: bool = False
    ended: bool = False
    rate: float = 1.0

    def state(self) -> MediaState:
        for test, state in _STATE_PRIORITY:
            if test(self):
                return state
        return MediaState.PLAYING


@dataclass(slots=True)
class Segment:
    """A stretch ``[start_ns, next.start_ns)`` of constant state, rate and media."""

    start_ns: int
    state: MediaState
    media_id: int | None
    rate: float
    pos_s: float | None  # fixed position, or the provisional line's value at start_ns
    ceil_base: float | None = None  # last report before this segment's first (ceiling/floor)
    offset: float | None = None  # fitted line: media_s = offset + rate * (t - start_ns) / NS
    lows: list[tuple[int, float]] = field(default_factory=list)  # (recv_ns, offset bound)
    highs: list[tuple[int, float]] = field(default_factory=list)
    reports: list[tuple[int, float]] = field(default_factory=list)  # (recv_ns, media_s)
    report_times: list[int] = field(default_factory=list)
    identified: bool = True  # False from a load until its file is identified: reads UNKNOWN
    duration_s: float | None = None  # of this segment's file: its media times stay within it
    # STEP: until a changed value places the line, how far (behind, ahead) that value may
    # fall off it and still be no seek: the line's start is not known to a step.
    slack: tuple[float, float] = (0.0, 0.0)

    def line(self, t: int) -> float:
        base = self.pos_s if self.offset is None else self.offset
        return (base or 0.0) + self.rate * (t - self.start_ns) / NS

    def last_report(self, t: int) -> float | None:
        i = bisect.bisect_right(self.report_times, t)
        return self.reports[i - 1][1] if i else self.ceil_base


# What a query older than the history kept finds: nothing known.
FORGOTTEN = Segment(start_ns=-(1 << 62), state=MediaState.UNKNOWN, media_id=None, rate=1.0,
                    pos_s=None)


def unanchored(seg: Segment) -> bool:
    """A playing segment no report has placed yet (a file loaded before its position came)."""
    return seg.offset is None and seg.pos_s is None


def report_bounds(seg: Segment, recv_ns: int, sent_ns: int | None,
                  media_s: float) -> tuple[float, float]:
    """Bounds a report puts on a playing segment's offset: it was true at or before its
    receipt, and (if it answered a request) after the request was sent."""
    lo = media_s - seg.rate * (recv_ns - seg.start_ns) / NS
    hi = math.inf if sent_ns is None else media_s - seg.rate * (sent_ns - seg.start_ns) / NS
    return lo, hi


def offset_bounds(seg: Segment) -> tuple[float, float]:
    """Current bounds on a playing segment's offset (provisional: its anchor)."""
    if seg.offset is None:
        base = seg.pos_s if seg.pos_s is not None else 0.0
        return base, base
    lo = max((v for _, v in seg.lows), default=seg.offset)
    hi = min((v for _, v in seg.highs), default=math.inf)
    if hi == math.inf:
        hi = seg.offset
    return min(lo, seg.offset), max(hi, seg.offset)
