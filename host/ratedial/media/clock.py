"""The media clock: host time -> position in the video, built from player reports (pure).

:class:`MediaClock` takes each player's reports (connection, load, position, pause, seek,
rate, end, poll answers, manual marks) and turns them into segments of its
:class:`~ratedial.media.timeline.Timeline`, which answers the queries. How segments, bounds
and queries behave is stated in ``segments.py`` and ``timeline.py``.

Invariants:

* No I/O and no clock reads: every input carries the host time (``CLOCK_MONOTONIC`` ns) at
  which it was received, every query names the host time it asks about.
* Polled answers are taken as true at their receipt (servers answer as soon as they look); a
  change between two answers is placed halfway between them. An unchanged STEP value is never
  a seek (a seek changes it); while paused, a changed value is a new position.
* A seek's *target* is never a media time. During a seek (from the seek's start until the
  player reports where it landed) the state is SEEKING and the time is the last position
  shown before it; reports during the seek are targets (mpv sets ``time-pos`` to the target at
  once) and are ignored. When playback restarts, the clock waits for the next report
  (``settling``): that is the landed position (a keyframe for an inexact seek, the last frame
  for a seek past the end), and the ``media_seek`` event's ``to_s``.
"""

from __future__ import annotations

from ..recording.schema import MediaState
from .config import ClockConfig, Source
from .events import MediaEvent
from .segments import HOLDING, NS, Flags, Segment, offset_bounds, report_bounds
from .timeline import Timeline

# A seek landing at the file's start this soon after it was loaded is the player opening it
OPENING_SEEK_NS = 1_000_000_000


class MediaClock(Timeline):
    """Media time and state for any recent host time, from one player's reports."""

    def __init__(self, config: ClockConfig) -> None:
        super().__init__(config)
        self._seek_from: float | None = None
        self._settling = False  # playback restarted after a seek: the next report lands it
        self._poll_prev: tuple[int, int, float | None] | None = None  # (sent, recv, value)
        self._polled = False  # a poll was answered since the player connected
        self._load_ns = 0

    @property
    def settling(self) -> bool:
        """A seek finished but where it landed is not reported yet: ask the player."""
        return self._settling

    # --- inputs: connection and media ------------------------------------------------------

    def connected(self, host_ns: int) -> list[MediaEvent]:
        self._flags.connected = True
        events: list[MediaEvent] = []
        self._restate(host_ns, None, events)
        return events

    def lost(self, host_ns: int) -> list[MediaEvent]:
        """The player went away: media time unknown until it reports again."""
        self._flags = Flags()
        self._identified = False
        self._last_pos = None
        self._seek_from = None
        self._settling = False
        self._poll_prev = None
        self._polled = False
        self._start(host_ns, None)
        return []

    def rescale(self, factor: float) -> None:
        """The player's positions are now read on a better scale (VLC: the file's length
        became known more exactly): the same place in the file, so no event; what the clock
        holds is converted."""
        if factor <= 0 or factor == 1.0:
            return
        seg = self._segments[-1]

        def k(x: float | None) -> float | None:
            return None if x is None else x * factor

        seg.pos_s, seg.offset, seg.ceil_base = k(seg.pos_s), k(seg.offset), k(seg.ceil_base)
        seg.lows[:] = [(t, v * factor) for t, v in seg.lows]
        seg.highs[:] = [(t, v * factor) for t, v in seg.highs]
        seg.reports[:] = [(t, v * factor) for t, v in seg.reports]
        self._last_pos, self._seek_from = k(self._last_pos), k(self._seek_from)
        if self._poll_prev is not None:
            sent, recv, value = self._poll_prev
            self._poll_prev = (sent, recv, k(value))

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
            seg.duration_s = self.duration_s
        self._identified = True
        events = [MediaEvent("media_load", {"media_id": media_id, "path": path,
                                            "duration_s": duration_s, "fps": fps}, host_ns)]
        if self._flags.paused is not None and self._flags.connected:  # the state it is in
            kind = "media_pause" if self._flags.paused else "media_play"
            events.append(MediaEvent(kind, {"media_s": self._ev(self._now_pos(host_ns))}, host_ns))
        return events

    def unload(self, host_ns: int) -> list[MediaEvent]:
        """No file in the player any more (stopped, closed): ``media_stop`` with the last
        position, when a file was identified (the samples' state turns unknown, and the
        recording says why)."""
        f = self._flags
        events: list[MediaEvent] = []
        if f.loaded and self._identified:
            events.append(MediaEvent("media_stop", {"media_s": self._ev(
                self._now_pos(host_ns))}, host_ns))
        f.loaded = False
        f.media_id = None
        f.ended = False
        f.seeking = False
        self._settling = False
        self._identified = False
        self._last_pos = None
        self._start(host_ns, None)
        return events

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
            if cur.state in HOLDING and cur.pos_s != media_s:
                self._start(recv_ns, media_s)  # frame step or seek while paused: new position
            return events
        lo, hi = report_bounds(cur, recv_ns, sent_ns, media_s)
        if cur.offset is not None or cur.pos_s is not None:
            est_lo, est_hi = offset_bounds(cur)
            jump = self._jump_s()
            # PUSH reports may arrive late (delivery jitter): only a large lag is a slip.
            late = self.config.late_frames * self._frame_s()
            late_bound = hi if sent_ns is not None else lo + late
            if lo > est_hi + jump or late_bound < est_lo - jump:
                # The player jumped or slipped (a stall, a dropped run of frames): re-anchor.
                self._start(recv_ns, media_s)
                cur = self._segments[-1]
                lo, hi = report_bounds(cur, recv_ns, sent_ns, media_s)
            elif cur.reports and media_s < cur.reports[-1][1]:
                # Older than a report already here (mpv's answer after a seek can arrive
                # after the next frame's push): it would only lower the frame ceiling.
                return events
        self._add(cur, recv_ns, lo, hi, media_s)
        return events

    def paused(self, host_ns: int, value: bool) -> list[MediaEvent]:
        events: list[MediaEvent] = []
        pos = self._last_pos if value and self.config.source is Source.PUSH else None
        if value and self.config.source is Source.NONE:  # manual: paused where the count is
            pos = self._now_pos(host_ns)
            if pos is not None:
                self._last_pos = pos
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
        # A seek that lands where it started moved nothing: no event. Nor does the seek to
        # the start mpv makes as it opens a file, which can come after media_load (a slow
        # machine; a file loaded again, identified at once) and land a frame or two on.
        moved = None if self._seek_from is None else abs(self._seek_from - media_s)
        opening = t - self._load_ns < OPENING_SEEK_NS and media_s <= self._jump_s() \
            and moved is not None and moved <= self._jump_s()
        if moved is not None and moved > 1e-6 and self._identified and not opening:
            events.append(MediaEvent("media_seek", {"from_s": self._ev(self._seek_from),
                                                    "to_s": self._ev(media_s)}, t))
        self._seek_from = None
        self._last_pos = media_s
        self._start(t, media_s)
        cur = self._segments[-1]
        if cur.state is MediaState.PLAYING:
            lo, hi = report_bounds(cur, t, sent_ns, media_s)
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
             rate: float, ended: bool = False, changed: bool | None = None) -> list[MediaEvent]:
        """One answer to a status poll: the player's position, play state and rate.

        Servers take the snapshot just before answering (they wait for their loop, then
        answer at once), so it is taken as true at ``recv_ns``; ``sent_ns`` still bounds it.
        A change of play state or rate is placed halfway between this answer and the previous
        one. While playing, a position off the line by more than ``jump_frames`` frames (plus
        the step staleness for STEP players) is a seek. ``changed``: whether the player's own
        value changed since its previous answer (default: whether ``media_s`` did).

        STEP players: the first answer since the player connected is stale by an unknown part
        of a step, and a rate change can shift the player's own value by up to a step: until a
        changed value places the line, that value may fall off it by that much (a segment's
        ``slack``) and is no seek.
        """
        events: list[MediaEvent] = []
        prev = self._poll_prev
        attach = not self._polled and self.config.source is Source.STEP
        self._polled = True
        self._poll_prev = (sent_ns, recv_ns, media_s)
        if changed is None:
            changed = prev is None or prev[2] != media_s
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
        old_rate = f.rate
        self._rate(boundary, rate, events)
        stale = self._stale_s()
        if f.rate != old_rate and stale:
            # The player's own value may shift at a rate change (VLC: -0.12 to +0.37 s,
            # measured): the line goes on from where it was, and the player's next values
            # place it again.
            shift = self.config.step_s * max(1.0, old_rate, f.rate)
            seg = self._segments[-1]
            seg.slack = (max(seg.slack[0], shift), max(seg.slack[1], shift))
        if f.paused is None or playing == f.paused:  # play state changed (or first known)
            if not playing:
                est = self._now_pos(boundary)
                at = media_s if est is None or not stale else min(max(est, media_s),
                                                                    media_s + stale)
                self._last_pos = at
                self._set_flag(boundary, "paused", True, events, at)
                if attach:  # VLC's paused value is stale: where it plays on is known later
                    self._segments[-1].slack = (0.0, stale)
                return events
            cur = self._segments[-1]
            slack = cur.slack if cur.state is MediaState.PAUSED else (0.0, 0.0)
            self._set_flag(boundary, "paused", False, events,
                           cur.pos_s if cur.pos_s is not None else media_s)
            self._segments[-1].slack = slack
        cur = self._segments[-1]
        if cur.state is MediaState.PLAYING:
            if attach and prev is None:
                self._attach_playing(cur, recv_ns=recv_ns, media_s=media_s)
            else:
                self._poll_playing(cur, sent_ns=sent_ns, recv_ns=recv_ns,
                                   prev_recv=prev_recv, boundary=boundary, media_s=media_s,
                                   edge=prev is None or changed, events=events)
        elif cur.state is MediaState.PAUSED and cur.pos_s is None:
            # A file opened paused (VLC keeps its pause across files): where it stands
            # comes with this answer; no seek, nothing moved.
            self._last_pos = media_s
            self._start(boundary, media_s)
        elif cur.state is MediaState.PAUSED and cur.pos_s is not None:
            # Paused, the value moves only by a seek or a frame step (VLC's stale value: only
            # when it changes); more than two frames is recorded as a seek.
            moved = changed if stale else media_s != cur.pos_s
            if moved and media_s != cur.pos_s:
                if abs(media_s - cur.pos_s) > self._jump_s():
                    events.append(MediaEvent("media_seek", {"from_s": self._ev(cur.pos_s),
                                                            "to_s": self._ev(media_s)},
                                             boundary))
                self._last_pos = media_s
                self._start(boundary, media_s)
        self._last_pos = self._now_pos(recv_ns)
        return events

    def _attach_playing(self, cur: Segment, *, recv_ns: int, media_s: float) -> None:
        """The first answer of a STEP player found playing: its value is up to a step old,
        how much is unknown. The line starts in the middle of the step; a changed value up to
        the staleness ahead of it places it, and is no seek."""
        lo = media_s - cur.rate * (recv_ns - cur.start_ns) / NS
        step = self.config.step_s * max(1.0, cur.rate)
        self._add(cur, recv_ns, lo, lo + step, media_s)
        cur.slack = (0.0, max(0.0, self._stale_s() - step))

    def _poll_bounds(self, seg: Segment, *, sent_ns: int, recv_ns: int, prev_recv: int,
                     media_s: float, edge: bool) -> tuple[float, float]:
        """Bounds one poll answer puts on a playing segment's offset."""
        r, start = seg.rate, seg.start_ns
        lo = media_s - r * (recv_ns - start) / NS  # true at (or before) the answer
        if self.config.source is not Source.STEP:
            return lo, media_s - r * (sent_ns - start) / NS  # ... and after the request
        if edge:  # the step happened after the previous answer
            return lo, media_s - r * (prev_recv - start) / NS
        return lo, lo + self._stale_s()  # a stale value: behind by less than a step

    def _poll_playing(self, cur: Segment, *, sent_ns: int, recv_ns: int, prev_recv: int,
                      boundary: int, media_s: float, edge: bool,
                      events: list[MediaEvent]) -> None:
        def bounds(seg: Segment) -> tuple[float, float]:
            return self._poll_bounds(seg, sent_ns=sent_ns, recv_ns=recv_ns,
                                     prev_recv=prev_recv, media_s=media_s, edge=edge)

        lo, hi = bounds(cur)
        est_lo, est_hi = offset_bounds(cur)
        jump = self._jump_s()
        stepped = self.config.source is Source.STEP
        if not edge and stepped:
            # An unchanged value is no seek (a seek changes it); staler than a step means the
            # player skipped refreshes or stalled: the ceiling holds the clock meanwhile.
            if hi >= est_lo - jump and hi < est_hi:
                cur.highs.append((recv_ns, hi))
                self._fit(cur, recv_ns)
            return
        behind, ahead = cur.slack
        if prev_recv >= cur.start_ns:  # a value changed since this segment began places it
            cur.slack = (0.0, 0.0)
        if lo > est_hi + jump + ahead or hi < est_lo - jump - behind:
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
