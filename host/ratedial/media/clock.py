"""The media clock: host time -> position in the video, built from player reports (pure).

Invariants:

* No I/O and no clock reads: every input carries the host time (``CLOCK_MONOTONIC`` ns) at
  which it was received, every query names the host time it asks about.
* The timeline is a list of *segments* ``[start_ns, next.start_ns)``. Within a segment the
  state (:class:`MediaState`), the rate and the media are constant; the position is fixed
  (paused, seeking, ended) or linear in host time (playing). A pause, seek, rate change, file
  change, end of file, loss of the player, or a report that does not fit the prediction
  (residual above ``jump_frames`` frames) starts a new segment.
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
* Polled answers are taken as true at their receipt (servers answer as soon as they look); a
  change between two answers is placed halfway between them. An unchanged STEP value is never
  a seek (a seek changes it); while paused, a changed value is a new position.
* A playing segment that no report has placed yet (a file known to be playing before its
  position came) is UNKNOWN with no media time: the clock never counts up from an assumed 0.
* From a file's load until it is identified (:meth:`MediaClock.identify`, a few ms later:
  the identity is read from disk in the background) every segment reads UNKNOWN: a sample
  never has a media time without the ``media_id`` it belongs to.
* Paused, seeking and ended segments hold one position: a rating made while paused belongs to
  the paused frame.
* A media time is one the player can show: never below 0 nor past the duration (when known).
* A seek's *target* is never a media time. During a seek (from the seek's start until the
  player reports where it landed) the state is SEEKING and the time is the last position
  shown before it; reports during the seek are targets (mpv sets ``time-pos`` to the target at
  once) and are ignored. When playback restarts, the clock waits for the next report
  (``settling``): that is the landed position (a keyframe for an inexact seek, the last frame
  for a seek past the end), and the ``media_seek`` event's ``to_s``.
* Display latency: the answer for host time ``t`` is the clock at ``t - latency``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ..recording.schema import MediaState

NS = 1_000_000_000
DEFAULT_FPS = 30.0

Annotation = tuple[tuple[int | None, ...], tuple[float | None, ...], tuple[int, ...]]


class Source(Enum):
    """How a player reports its position; decides which bounds a report gives."""

    PUSH = "push"  # sent when the frame changes (mpv time-pos): true at or before receipt
    POLL = "poll"  # answer to a poll (MPC): true between the request and the answer
    STEP = "step"  # poll answer that advances in coarse steps (VLC position): stale by < a step
    NONE = "none"  # no reports: the clock only follows marks (manual mode)


@dataclass(frozen=True, slots=True)
class MediaEvent:
    """A media event for the events table: ``media_play``, ``media_seek``, ..."""

    kind: str
    data: dict[str, Any]
    host_ns: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ClockConfig:
    source: Source
    latency_ms: float = 0.0  # display latency: the screen shows the clock of latency ago
    window_s: float = 5.0  # reports used for a segment's line
    history_s: float = 30.0  # how far back queries are answered from the segments then
    jump_frames: float = 2.0  # residual beyond which a report starts a new segment
    late_frames: float = 2.0  # PUSH: extra delivery delay tolerated before a "jump back"
    max_lead_frames: float | None = None  # ceiling above the last report, in frames ...
    max_lead_s: float | None = None  # ... or in seconds (STEP: the largest step)


# Derived state: the first flag that holds wins (priority order).
_STATE_PRIORITY: tuple[tuple[Callable[[_Flags], bool], MediaState], ...] = (
    (lambda f: not (f.connected and f.loaded), MediaState.UNKNOWN),
    (lambda f: f.ended, MediaState.ENDED),
    (lambda f: f.seeking, MediaState.SEEKING),
    (lambda f: f.paused is not False, MediaState.PAUSED),
)

# States that hold one position; a new reported position there is a new fixed position.
_HOLDING = frozenset({MediaState.PAUSED, MediaState.SEEKING, MediaState.ENDED})

# Flag changes that are media events: (flag, new value) -> event kind.
_FLAG_EVENTS: dict[tuple[str, bool], str] = {
    ("paused", True): "media_pause",
    ("paused", False): "media_play",
    ("ended", True): "media_end",
}


@dataclass(slots=True)
class _Flags:
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
class _Segment:
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

    def line(self, t: int) -> float:
        base = self.pos_s if self.offset is None else self.offset
        return (base or 0.0) + self.rate * (t - self.start_ns) / NS

    def last_report(self, t: int) -> float | None:
        i = bisect.bisect_right(self.report_times, t)
        return self.reports[i - 1][1] if i else self.ceil_base


class MediaClock:
    """Media time and state for any recent host time, from one player's reports."""

    def __init__(self, config: ClockConfig) -> None:
        self.config = config
        self._latency_ns = round(config.latency_ms * 1e6)
        self._flags = _Flags()
        self.fps: float | None = None
        self.duration_s: float | None = None
        self._segments: list[_Segment] = [
            _Segment(start_ns=-(1 << 62), state=MediaState.UNKNOWN, media_id=None, rate=1.0,
                     pos_s=None)]
        self._starts: list[int] = [self._segments[0].start_ns]
        self._last_pos: float | None = None  # last reported position (any state)
        self._seek_from: float | None = None
        self._settling = False  # playback restarted after a seek: the next report lands it
        self._poll_prev: tuple[int, int, float | None] | None = None  # (sent, recv, value)
        self._load_ns = 0
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

    @property
    def settling(self) -> bool:
        """A seek finished but where it landed is not reported yet: ask the player."""
        return self._settling

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

    def _segment_at(self, t: int) -> _Segment:
        segs = self._segments
        if t >= segs[-1].start_ns:
            return segs[-1]
        i = bisect.bisect_right(self._starts, t) - 1
        return segs[i] if i >= 0 else _FORGOTTEN  # older than the history kept

    def _at(self, t: int) -> tuple[int | None, float | None, MediaState]:
        seg = self._segment_at(t)
        if not seg.identified:  # a file is loaded but which one is not known yet: a few ms
            return None, None, MediaState.UNKNOWN
        if seg.state is not MediaState.PLAYING:
            return seg.media_id, None if seg.pos_s is None else self._clamp(seg.pos_s), seg.state
        if _unanchored(seg):  # playing, but where is not reported yet: never count from 0
            return seg.media_id, None, MediaState.UNKNOWN
        return seg.media_id, self._playing_pos(seg, t), MediaState.PLAYING

    def _playing_pos(self, seg: _Segment, t: int) -> float:
        m = seg.line(t)
        lead = self._max_lead()
        if lead is not None:
            last = seg.last_report(t)
            if last is not None:
                m = min(max(m, last), last + lead)
        return self._clamp(m)

    def _ev(self, m: float | None) -> float | None:
        """A position for an event's data: clamped like every media time, rounded to 1 µs."""
        return None if m is None else _r(self._clamp(m))

    def _clamp(self, m: float) -> float:
        """A position the player can show: within [0, duration]."""
        if self.duration_s is not None:
            m = min(m, self.duration_s)
        return max(m, 0.0)

    def _now_pos(self, t: int) -> float | None:
        """Position at host time ``t`` (no display latency) from the current segment."""
        seg = self._segments[-1]
        if seg.state is MediaState.PLAYING:
            return None if _unanchored(seg) else self._playing_pos(seg, t)
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
        seg = _Segment(start_ns=t, state=state, media_id=media_id, rate=f.rate, pos_s=pos_s,
                       ceil_base=ceil_base if ceil_base is not None else pos_s,
                       identified=self._identified or not f.loaded)
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
            if state in _HOLDING and pos_s is not None and pos_s != cur.pos_s:
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

    # --- inputs: connection and media ------------------------------------------------------

    def connected(self, host_ns: int) -> list[MediaEvent]:
        self._flags.connected = True
        events: list[MediaEvent] = []
        self._restate(host_ns, None, events)
        return events

    def lost(self, host_ns: int) -> list[MediaEvent]:
        """The player went away: media time unknown until it reports again."""
        self._flags = _Flags()
        self._identified = False
        self._last_pos = None
        self._seek_from = None
        self._settling = False
        self._poll_prev = None
        self._start(host_ns, None)
        return []

    def load(self, host_ns: int, *, fps: float | None = None,
             duration_s: float | None = None) -> list[MediaEvent]:
        """A file was loaded: its identity follows with :meth:`identify`."""
        f = self._flags
        f.loaded = True
        f.media_id = None
        f.ended = False
        f.seeking = False
        self._settling = False
        self.fps = fps
        self.duration_s = duration_s
        self._poll_prev = None
        self._load_ns = host_ns
        self._identified = False
        self._last_pos = None
        self._start(host_ns, None)
        return []

    def identify(self, host_ns: int, *, media_id: int | None, path: str | None = None,
                 duration_s: float | None = None, fps: float | None = None) -> list[MediaEvent]:
        """The loaded file's identity (known a few ms after loading: it is read from disk).

        Segments since the load get the ``media_id``; returns the ``media_load`` event."""
        self._flags.media_id = media_id
        if duration_s is not None:
            self.duration_s = duration_s
        if fps:
            self.fps = fps
        for seg in reversed(self._segments):
            if seg.start_ns < self._load_ns:
                break
            if seg.state is not MediaState.UNKNOWN:
                seg.media_id = media_id
            seg.identified = True
        self._identified = True
        events = [MediaEvent("media_load", {"media_id": media_id, "path": path,
                                            "duration_s": duration_s, "fps": fps}, host_ns)]
        if self._flags.paused is not None and self._flags.connected:  # the state it is in
            kind = "media_pause" if self._flags.paused else "media_play"
            events.append(MediaEvent(kind, {"media_s": self._ev(self._now_pos(host_ns))}, host_ns))
        return events

    def unload(self, host_ns: int) -> list[MediaEvent]:
        """No file in the player any more (stopped, closed)."""
        f = self._flags
        f.loaded = False
        f.media_id = None
        f.ended = False
        f.seeking = False
        self._settling = False
        self._identified = False
        self._last_pos = None
        self._start(host_ns, None)
        return []

    # --- inputs: event-driven players (mpv) -------------------------------------------------

    def position(self, recv_ns: int, media_s: float | None, *,
                 sent_ns: int | None = None) -> list[MediaEvent]:
        """A position report received at ``recv_ns`` (``sent_ns``: when it was asked for)."""
        events: list[MediaEvent] = []
        if media_s is None:
            return events
        if self.config.source is Source.PUSH:
            # A PUSH player's value is a lower bound only, also when asked for: mpv answers
            # with the frame shown at a restart while the next one is already queued.
            sent_ns = None
        if self._flags.seeking:
            if self._settling:  # the first report after the restart: where the seek landed
                self._land(recv_ns, media_s, sent_ns, events)
            # else: the seek's target, not a position the player has shown
            return events
        self._last_pos = media_s
        cur = self._segments[-1]
        if cur.state is not MediaState.PLAYING:
            if cur.state in _HOLDING and cur.pos_s != media_s:
                self._start(recv_ns, media_s)  # frame step or seek while paused: new position
            return events
        lo, hi = _report_bounds(cur, recv_ns, sent_ns, media_s)
        if cur.offset is not None or cur.pos_s is not None:
            est_lo, est_hi = _bounds(cur)
            jump = self._jump_s()
            # PUSH reports may arrive late (delivery jitter): only a large lag is a slip.
            late = self.config.late_frames * self._frame_s()
            late_bound = hi if sent_ns is not None else lo + late
            if lo > est_hi + jump or late_bound < est_lo - jump:
                # The player jumped or slipped (a stall, a dropped run of frames): re-anchor.
                self._start(recv_ns, media_s)
                cur = self._segments[-1]
                lo, hi = _report_bounds(cur, recv_ns, sent_ns, media_s)
            elif cur.reports and media_s < cur.reports[-1][1]:
                # Older than a report already here (mpv's answer after a seek can arrive
                # after the next frame's push): it would only lower the frame ceiling.
                return events
        self._add(cur, recv_ns, lo, hi, media_s)
        return events

    def paused(self, host_ns: int, value: bool) -> list[MediaEvent]:
        events: list[MediaEvent] = []
        pos = self._last_pos if value and self.config.source is Source.PUSH else None
        self._set_flag(host_ns, "paused", value, events, pos)
        return events

    def set_rate(self, host_ns: int, rate: float) -> list[MediaEvent]:
        events: list[MediaEvent] = []
        self._rate(host_ns, rate, events)
        return events

    def _rate(self, t: int, rate: float, events: list[MediaEvent]) -> None:
        if rate <= 0 or rate == self._flags.rate:
            return
        pos = self._now_pos(t)
        self._flags.rate = rate
        if self._identified:
            events.append(MediaEvent("media_rate", {"rate": rate, "media_s": self._ev(pos)}, t))
        self._restate(t, pos, events)

    def seek(self, host_ns: int) -> list[MediaEvent]:
        """A seek command started (mpv's ``seek`` event), also during another seek: reports
        until the next restart are this seek's target."""
        if self._flags.seeking:
            self._settling = False
            return []
        return self.seeking(host_ns, True)

    def seeking(self, host_ns: int, value: bool, *,
                landed_s: float | None = None) -> list[MediaEvent]:
        """A seek started (``True``) or playback restarted after it (``False``).

        On restart the position is the landed one: ``landed_s`` when the caller knows it,
        else the next :meth:`position` report (until then the state stays SEEKING)."""
        events: list[MediaEvent] = []
        if not value and landed_s is not None and self._flags.seeking:
            self._land(host_ns, landed_s, None, events)
            return events
        if value == self._flags.seeking:
            return events
        if value:
            self._seek_from = self._now_pos(host_ns)
            self._settling = False
            self._flags.seeking = True
            self._restate(host_ns, self._seek_from, events)
            return events
        self._settling = True
        return events

    def _land(self, t: int, media_s: float, sent_ns: int | None,
              events: list[MediaEvent]) -> None:
        """The seek landed at ``media_s`` (reported at ``t``): the new position."""
        media_s = self._clamp(media_s)
        self._flags.seeking = False
        self._settling = False
        # A seek that lands where it started moved nothing: no event (mpv seeks to the start
        # of every file it opens; on a slow machine that seek can come after media_load).
        if self._seek_from is not None and self._identified and \
                abs(self._seek_from - media_s) > 1e-6:
            events.append(MediaEvent("media_seek", {"from_s": self._ev(self._seek_from),
                                                    "to_s": self._ev(media_s)}, t))
        self._seek_from = None
        self._last_pos = media_s
        self._start(t, media_s)
        cur = self._segments[-1]
        if cur.state is MediaState.PLAYING:
            lo, hi = _report_bounds(cur, t, sent_ns, media_s)
            self._add(cur, t, lo, hi, media_s)

    def ended(self, host_ns: int, value: bool) -> list[MediaEvent]:
        events: list[MediaEvent] = []
        if value and self._flags.seeking and not self._flags.ended:
            # End reached by a seek whose landing is not reported yet: unknown until it is.
            self._flags.ended = True
            if self._identified:
                events.append(MediaEvent("media_end", {"media_s": None}, host_ns))
            self._start(host_ns, None)
            return events
        pos = self._last_pos if value else None
        if value and pos is None:
            pos = self.duration_s
        self._set_flag(host_ns, "ended", value, events, pos)
        return events

    # --- inputs: polled players (VLC, MPC) ----------------------------------------------------

    def poll(self, sent_ns: int, recv_ns: int, *, media_s: float | None, playing: bool,
             rate: float, ended: bool = False) -> list[MediaEvent]:
        """One answer to a status poll: the player's position, play state and rate.

        Servers take the snapshot just before answering (they wait for their loop, then
        answer at once), so it is taken as true at ``recv_ns``; ``sent_ns`` still bounds it.
        A change of play state or rate is placed halfway between this answer and the previous
        one. While playing, a position off the line by more than ``jump_frames`` frames (plus
        the step staleness for STEP players) is a seek.
        """
        events: list[MediaEvent] = []
        prev = self._poll_prev
        self._poll_prev = (sent_ns, recv_ns, media_s)
        prev_recv = sent_ns if prev is None else prev[1]
        boundary = (prev_recv + recv_ns) // 2
        f = self._flags
        if media_s is None:
            return self.unload(recv_ns) if f.loaded else events
        if ended != f.ended:
            at_end = media_s
            if ended and self.duration_s is not None:
                at_end = max(media_s, self.duration_s - self._frame_s())
            self._last_pos = at_end
            self._set_flag(boundary, "ended", ended, events, at_end if ended else None)
        self._rate(boundary, rate, events)
        stale = self._stale_s()
        if f.paused is None or playing == f.paused:  # play state changed (or first known)
            if not playing:
                est = self._now_pos(boundary)
                at = media_s if est is None or not stale else min(max(est, media_s),
                                                                    media_s + stale)
                self._last_pos = at
                self._set_flag(boundary, "paused", True, events, at)
                return events
            cur = self._segments[-1]
            self._set_flag(boundary, "paused", False, events,
                           cur.pos_s if cur.pos_s is not None else media_s)
        cur = self._segments[-1]
        if cur.state is MediaState.PLAYING:
            self._poll_playing(cur, sent_ns=sent_ns, recv_ns=recv_ns, prev_recv=prev_recv,
                               boundary=boundary, media_s=media_s,
                               edge=prev is None or prev[2] != media_s, events=events)
        elif cur.state is MediaState.PAUSED and cur.pos_s is not None:
            # Paused, the value moves only by a seek or a frame step (VLC's stale value: only
            # when it changes); more than two frames is recorded as a seek.
            moved = prev is None or prev[2] != media_s if stale else media_s != cur.pos_s
            if moved and media_s != cur.pos_s:
                if abs(media_s - cur.pos_s) > self._jump_s():
                    events.append(MediaEvent("media_seek", {"from_s": self._ev(cur.pos_s),
                                                            "to_s": self._ev(media_s)},
                                             boundary))
                self._last_pos = media_s
                self._start(boundary, media_s)
        self._last_pos = self._now_pos(recv_ns)
        return events

    def _poll_bounds(self, seg: _Segment, *, sent_ns: int, recv_ns: int, prev_recv: int,
                     media_s: float, edge: bool) -> tuple[float, float]:
        """Bounds one poll answer puts on a playing segment's offset."""
        r, start = seg.rate, seg.start_ns
        lo = media_s - r * (recv_ns - start) / NS  # true at (or before) the answer
        if self.config.source is not Source.STEP:
            return lo, media_s - r * (sent_ns - start) / NS  # ... and after the request
        if edge:  # the step happened after the previous answer
            return lo, media_s - r * (prev_recv - start) / NS
        return lo, lo + self._stale_s()  # a stale value: behind by less than a step

    def _poll_playing(self, cur: _Segment, *, sent_ns: int, recv_ns: int, prev_recv: int,
                      boundary: int, media_s: float, edge: bool,
                      events: list[MediaEvent]) -> None:
        def bounds(seg: _Segment) -> tuple[float, float]:
            return self._poll_bounds(seg, sent_ns=sent_ns, recv_ns=recv_ns,
                                     prev_recv=prev_recv, media_s=media_s, edge=edge)

        lo, hi = bounds(cur)
        est_lo, est_hi = _bounds(cur)
        jump = self._jump_s()
        stepped = self.config.source is Source.STEP
        if not edge and stepped:
            # An unchanged value is no seek (a seek changes it); staler than a step means the
            # player skipped refreshes or stalled: the ceiling holds the clock meanwhile.
            if hi >= est_lo - jump and hi < est_hi:
                cur.highs.append((recv_ns, hi))
                self._fit(cur, recv_ns)
            return
        if lo > est_hi + jump or hi < est_lo - jump:
            events.append(MediaEvent("media_seek", {"from_s": self._ev(self._now_pos(boundary)),
                                                    "to_s": self._ev(media_s)}, boundary))
            # VLC shows a seek's target at once; MPC's answer is the position at its receipt.
            at = media_s if stepped else media_s - cur.rate * (recv_ns - boundary) / NS
            self._start(boundary, at)
            cur = self._segments[-1]
            lo, hi = bounds(cur)
        self._add(cur, recv_ns, lo, hi, media_s)

    def _stale_s(self) -> float:
        """How far behind a STEP player's position may be (its largest step, in media s)."""
        if self.config.source is not Source.STEP:
            return 0.0
        return (self.config.max_lead_s or 0.0) * max(1.0, self._flags.rate)

    # --- inputs: manual mode ----------------------------------------------------------------

    def mark(self, host_ns: int, media_s: float) -> list[MediaEvent]:
        """The rater says: the video is at ``media_s`` now, playing at normal speed."""
        f = self._flags
        events: list[MediaEvent] = []
        was = self._now_pos(host_ns)
        f.connected = True
        f.loaded = True
        f.ended = False
        f.seeking = False
        self._settling = False
        f.rate = 1.0
        self._identified = True
        self._last_pos = media_s
        if f.paused is not False:
            f.paused = False
            events.append(MediaEvent("media_play", {"media_s": self._ev(media_s)}, host_ns))
        elif was is not None:
            events.append(MediaEvent("media_seek", {"from_s": self._ev(was),
                                                    "to_s": self._ev(media_s)}, host_ns))
        self._start(host_ns, media_s)
        return events

    # --- fitting ----------------------------------------------------------------------------

    def _add(self, seg: _Segment, recv_ns: int, lo: float, hi: float, media_s: float) -> None:
        seg.lows.append((recv_ns, lo))
        if hi != math.inf:
            seg.highs.append((recv_ns, hi))
        seg.reports.append((recv_ns, media_s))
        seg.report_times.append(recv_ns)
        self._fit(seg, recv_ns)
        self._trim(recv_ns)

    def _fit(self, seg: _Segment, now_ns: int) -> None:
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


_FORGOTTEN = _Segment(start_ns=-(1 << 62), state=MediaState.UNKNOWN, media_id=None, rate=1.0,
                      pos_s=None)


def _unanchored(seg: _Segment) -> bool:
    """A playing segment no report has placed yet (a file loaded before its position came)."""
    return seg.offset is None and seg.pos_s is None


def _report_bounds(seg: _Segment, recv_ns: int, sent_ns: int | None,
                   media_s: float) -> tuple[float, float]:
    """Bounds a report puts on a playing segment's offset: it was true at or before its
    receipt, and (if it answered a request) after the request was sent."""
    lo = media_s - seg.rate * (recv_ns - seg.start_ns) / NS
    hi = math.inf if sent_ns is None else media_s - seg.rate * (sent_ns - seg.start_ns) / NS
    return lo, hi


def _bounds(seg: _Segment) -> tuple[float, float]:
    """Current bounds on a playing segment's offset (provisional: its anchor)."""
    if seg.offset is None:
        base = seg.pos_s if seg.pos_s is not None else 0.0
        return base, base
    lo = max((v for _, v in seg.lows), default=seg.offset)
    hi = min((v for _, v in seg.highs), default=math.inf)
    if hi == math.inf:
        hi = seg.offset
    return min(lo, seg.offset), max(hi, seg.offset)


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 6)
