"""The media clock's timeline: the segments it built and the answers for any host time (pure).

:class:`Timeline` is the state and the query side of :class:`~ratedial.media.MediaClock`: it
starts and trims segments, fits a playing segment's line to its reports, and answers
:meth:`~Timeline.at` and :meth:`~Timeline.annotate`. The clock's inputs (``clock.py``) set
its flags and call these.

Invariants:

* No I/O and no clock reads: every input carries the host time (``CLOCK_MONOTONIC`` ns) at
  which it was received, every query names the host time it asks about.
* Queries about the past are answered from the segment in force *at that time*; segments are
  kept for ``history_s`` seconds. Samples reach :meth:`MediaClock.annotate` a few ms after they
  were taken, so a pause or seek received in between does not re-label them.
* A playing segment's line is fitted to the reports' *bounds*, never to a mean: every report
  bounds the line's offset from below (it was true at or before its receipt); the estimate is
  that lower envelope of receipt times (PUSH, POLL). Polled answers also bound it from above
  (true after the request was sent); a STEP player's step happened between two answers, and
  its line is the middle of those bounds. Window: ``window_s`` seconds.
* Players that push a report per frame (mpv ``time-pos``) or advance in coarse steps (VLC)
  bound the answer by the last report: never below it, never more than ``max_lead_frames``
  frames (``max_lead_s`` x rate) past it, so a stalled player stops the clock.
* A playing segment that no report has placed yet (a file known to be playing before its
  position came) is UNKNOWN with no media time: the clock never counts up from an assumed 0.
* From a file's load until it is identified (:meth:`MediaClock.identify`, a few ms later:
  the identity is read from disk in the background) every segment reads UNKNOWN: a sample
  never has a media time without the ``media_id`` it belongs to.
* A media time is one the player can show: never below 0 nor past the duration (when known).
* Display latency: the answer for host time ``t`` is the clock at ``t - latency``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Any

from ..recording.schema import MediaState
from .config import DEFAULT_FPS, ClockConfig, Source
from .events import Annotation, MediaEvent
from .segments import FORGOTTEN, HOLDING, NS, Flags, Segment, unanchored

# Flag changes that are media events: (flag, new value) -> event kind.
_FLAG_EVENTS: dict[tuple[str, bool], str] = {
    ("paused", True): "media_pause",
    ("paused", False): "media_play",
    ("ended", True): "media_end",
}


class Timeline:
    """One player's media timeline and the queries on it (:class:`MediaClock` feeds it)."""

    def __init__(self, config: ClockConfig) -> None:
        self.config = config
        self._latency_ns = round(config.latency_ms * 1e6)
        self._flags = Flags()
        self.fps: float | None = None
        self.duration_s: float | None = None
        self._segments: list[Segment] = [
            Segment(start_ns=-(1 << 62), state=MediaState.UNKNOWN, media_id=None, rate=1.0,
                    pos_s=None)]
        self._starts: list[int] = [self._segments[0].start_ns]
        self._last_pos: float | None = None  # last reported position (any state)
        self._identified = False  # media_load recorded for the loaded file
        self._newest_ns = 0

    # --- queries ----------------------------------------------------------------------------

    @property
    def state(self) -> MediaState:
        return self._segments[-1].state

    @property
    def media_id(self) -> int | None:
        return self._flags.media_id

    @property
    def rate(self) -> float:
        return self._flags.rate

    def at(self, host_ns: int) -> tuple[int | None, float | None, MediaState]:
        """(media_id, media_s, state) at ``host_ns`` as seen on the screen."""
        return self._at(host_ns - self._latency_ns)

    def annotate(self, host_ns: Sequence[int | None]) -> Annotation:
        ids: list[int | None] = []
        pos: list[float | None] = []
        states: list[int] = []
        for t in host_ns:
            if t is None:
                ids.append(None)
                pos.append(None)
                states.append(int(MediaState.UNKNOWN))
                continue
            media_id, media_s, state = self._at(t - self._latency_ns)
            ids.append(media_id)
            pos.append(media_s)
            states.append(int(state))
        return tuple(ids), tuple(pos), tuple(states)

    def _segment_at(self, t: int) -> Segment:
        segs = self._segments
        if t >= segs[-1].start_ns:
            return segs[-1]
        i = bisect.bisect_right(self._starts, t) - 1
        return segs[i] if i >= 0 else FORGOTTEN  # older than the history kept

    def _at(self, t: int) -> tuple[int | None, float | None, MediaState]:
        seg = self._segment_at(t)
        if not seg.identified:  # a file is loaded but which one is not known yet: a few ms
            return None, None, MediaState.UNKNOWN
        if seg.state is not MediaState.PLAYING:
            pos = None if seg.pos_s is None else _within(seg.pos_s, seg.duration_s)
            return seg.media_id, pos, seg.state
        if unanchored(seg):  # playing, but where is not reported yet: never count from 0
            return seg.media_id, None, MediaState.UNKNOWN
        return seg.media_id, self._playing_pos(seg, t), MediaState.PLAYING

    def _playing_pos(self, seg: Segment, t: int) -> float:
        m = seg.line(t)
        lead = self._max_lead()
        if lead is not None:
            last = seg.last_report(t)
            if last is not None:
                m = min(max(m, last), last + lead)
        # the segment's own file's duration: a sample annotated after another file was
        # loaded still belongs to the file it was taken in
        return _within(m, seg.duration_s)

    def _ev(self, m: float | None) -> float | None:
        """A position for an event's data: clamped like every media time, rounded to 1 µs."""
        return None if m is None else _r(self._clamp(m))

    def _clamp(self, m: float) -> float:
        """A position the loaded file can show: within [0, its duration] (when known)."""
        return _within(m, self.duration_s)

    def _now_pos(self, t: int) -> float | None:
        """Position at host time ``t`` (no display latency) from the current segment."""
        seg = self._segments[-1]
        if seg.state is MediaState.PLAYING:
            return None if unanchored(seg) else self._playing_pos(seg, t)
        return seg.pos_s

    def position_now(self, host_ns: int) -> float | None:
        return self._now_pos(host_ns)

    # --- thresholds -------------------------------------------------------------------------

    def _frame_s(self) -> float:
        return 1.0 / (self.fps or DEFAULT_FPS)

    def _max_lead(self) -> float | None:
        c = self.config
        if c.max_lead_s is not None:
            return c.max_lead_s * max(1.0, self._flags.rate)
        if c.max_lead_frames is not None:
            return c.max_lead_frames * self._frame_s()
        return None

    def _jump_s(self) -> float:
        return self.config.jump_frames * self._frame_s()

    # --- segments ---------------------------------------------------------------------------

    def _start(self, t: int, pos_s: float | None, *, ceil_base: float | None = None) -> None:
        f = self._flags
        cur = self._segments[-1]
        t = max(t, cur.start_ns)
        state = f.state()
        media_id = f.media_id if state is not MediaState.UNKNOWN else None
        if state is MediaState.UNKNOWN:
            pos_s = None
        elif pos_s is not None:
            pos_s = self._clamp(pos_s)
        seg = Segment(start_ns=t, state=state, media_id=media_id, rate=f.rate, pos_s=pos_s,
                      ceil_base=ceil_base if ceil_base is not None else pos_s,
                      identified=self._identified or not f.loaded,
                      duration_s=self.duration_s)
        if t == cur.start_ns and len(self._segments) > 1:
            self._segments[-1] = seg
        else:
            self._segments.append(seg)
            self._starts.append(t)
        self._trim(t)

    def _trim(self, t: int) -> None:
        self._newest_ns = max(self._newest_ns, t)
        horizon = self._newest_ns - round(self.config.history_s * NS)
        k = bisect.bisect_right(self._starts, horizon) - 1  # segment in force at the horizon
        if k > 0:
            del self._segments[:k]
            del self._starts[:k]
        seg = self._segments[-1]
        if seg.report_times and seg.report_times[0] < horizon:
            i = bisect.bisect_left(seg.report_times, horizon)
            seg.ceil_base = seg.reports[i - 1][1]
            del seg.reports[:i]
            del seg.report_times[:i]

    def _restate(self, t: int, pos_s: float | None, events: list[MediaEvent]) -> None:
        """Start a new segment if the derived state, the rate or the media changed."""
        cur = self._segments[-1]
        f = self._flags
        state = f.state()
        if state is cur.state and f.rate == cur.rate:
            if state in HOLDING and pos_s is not None and pos_s != cur.pos_s:
                self._start(t, pos_s)  # same state, a better known position
            return
        if pos_s is None:
            pos_s = self._last_pos if state is not MediaState.PLAYING else self._now_pos(t)
            if pos_s is None:
                pos_s = self._now_pos(t)
        base = self._last_pos if self.config.source is Source.PUSH else pos_s
        self._start(t, pos_s, ceil_base=base)

    def _set_flag(self, t: int, name: str, value: Any, events: list[MediaEvent],
                  pos_s: float | None = None) -> None:
        old = getattr(self._flags, name)
        if old == value:
            return
        before = self._now_pos(t)
        setattr(self._flags, name, value)
        kind = _FLAG_EVENTS.get((name, bool(value))) if isinstance(value, bool) else None
        if kind is not None and self._identified:
            at = pos_s if pos_s is not None else (
                self._last_pos if name != "paused" or value else before)
            events.append(MediaEvent(kind, {"media_s": self._ev(at)}, t))
        self._restate(t, pos_s, events)

    # --- fitting ----------------------------------------------------------------------------

    def _add(self, seg: Segment, recv_ns: int, lo: float, hi: float, media_s: float) -> None:
        seg.lows.append((recv_ns, lo))
        if hi != math.inf:
            seg.highs.append((recv_ns, hi))
        seg.reports.append((recv_ns, media_s))
        seg.report_times.append(recv_ns)
        self._fit(seg, recv_ns)
        self._trim(recv_ns)

    def _fit(self, seg: Segment, now_ns: int) -> None:
        horizon = now_ns - round(self.config.window_s * NS)
        for lst in (seg.lows, seg.highs):
            i = 0
            while i < len(lst) - 1 and lst[i][0] < horizon:
                i += 1
            del lst[:i]
        lo = max(v for _, v in seg.lows) if seg.lows else -math.inf
        hi = min(v for _, v in seg.highs) if seg.highs else math.inf
        while lo > hi and (len(seg.lows) > 1 or len(seg.highs) > 1):
            # Inconsistent bounds (a drifting or jittery player): forget the oldest bound.
            if seg.lows and (not seg.highs or seg.lows[0][0] <= seg.highs[0][0]) \
                    and len(seg.lows) > 1:
                seg.lows.pop(0)
            elif len(seg.highs) > 1:
                seg.highs.pop(0)
            else:
                seg.lows.pop(0)
            lo = max(v for _, v in seg.lows) if seg.lows else -math.inf
            hi = min(v for _, v in seg.highs) if seg.highs else math.inf
        if lo == -math.inf:
            seg.offset = hi
        elif self.config.source is Source.STEP and hi != math.inf:
            seg.offset = (lo + hi) / 2  # a step edge lies between two answers: the middle
        else:
            seg.offset = min(lo, hi)  # lower envelope of receipt times


def _within(m: float, duration_s: float | None) -> float:
    """Within [0, ``duration_s``] (no upper bound when the file's duration is unknown)."""
    if duration_s is not None:
        m = min(m, duration_s)
    return max(m, 0.0)


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 6)
