"""A fake player with an exact ground-truth clock (pure): for tests, the benchmark and demos.

:class:`FakeMedia` is the player itself, pure and driven by explicit host times: what is on
the screen at any time (:meth:`FakeMedia.truth`), and what mpv would push, VLC and MPC would
answer, at that time. The servers put it behind the real protocols: ``fake_mpv`` (mpv's JSON
IPC) and ``fake_http`` (VLC's and MPC-HC's web interfaces).

Invariants: :class:`FakeMedia` never reads a clock; the ground truth while playing is the
continuous position ``pts + rate x (t - t_pts)`` of the frame on the screen, while paused,
seeking or ended the shown frame's ``pts``. Frame ``k`` has ``pts = k / fps``.
"""

from __future__ import annotations

import functools
import heapq
import math
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Emit:
    """Something mpv would push: a property change or an event, at host time ``t_ns``."""

    t_ns: int
    kind: str  # "prop" | "event"
    name: str
    value: Any = None


class FakeMedia:
    """A player with one file: exact position at any host time, mpv/VLC/MPC views of it.

    Drive it in time order: :meth:`advance` to ``t`` (returns what happened since), then
    commands at ``t``. ``vlc_step_s``: VLC's position is refreshed every so many seconds of
    host time while playing (measured: 0.25 s, sometimes 0.5 s), so a client that starts
    polling a VLC already playing first sees a value up to a step old.

    ``vlc_rate_shift_s``: real VLC 3.0 (measured over HTTP, a 30 fps MP4, three runs) moves
    its own position at a rate change: its values after the change lie on a line (at the new
    rate) off the one continued from before, by +0.2 to +0.3 s when the rate goes up (1x or
    0.5x to 2x; VLC then shows a new value at once, within one 40 ms poll) and -0.05 to
    -0.10 s when it goes down (2x to 1x, 1x to 0.5x; the old value stays until VLC's next
    refresh), and stay on it; after a seek its values go on from the target. Whether the
    picture moves too is not known (headless). The fake models it in what VLC reports only,
    the picture (the truth) goes on: each change adds ``vlc_rate_shift_s x (new - old rate)``
    to VLC's value (0.2 s gives +0.2 and +0.3 s up, -0.1 and -0.2 s down: more than measured
    down), a rise refreshes VLC's value at once, a seek ends the shift; 0 (the default)
    models none.
    """

    def __init__(self, *, duration_s: float = 150.0, fps: float = 30.0,
                 path: str = "/videos/fake.mp4", t_ns: int = 0, paused: bool = True,
                 seek_s: float = 0.005, keep_open: bool = True, eof_pause_s: float = 0.1,
                 vlc_step_s: float = 0.25, vlc_skip: float = 0.0,
                 vlc_rate_shift_s: float = 0.0, seed: int = 1) -> None:
        self.duration_s = duration_s
        self.fps = fps
        self.path = path
        self.seek_ns = round(seek_s * NS)
        self.keep_open = keep_open
        self.eof_pause_ns = round(eof_pause_s * NS)
        self.vlc_step_ns = round(vlc_step_s * NS)
        self.vlc_skip = vlc_skip  # probability that VLC skips a refresh (0.5 s steps, measured)
        self.vlc_rate_shift_s = vlc_rate_shift_s
        self.vlc_shift = 0.0  # VLC's value minus the truth, from rate changes
        self._rng = random.Random(seed)
        self._tick_at = t_ns + self.vlc_step_ns
        self._skipped = False
        self.loaded = True
        self.paused = paused
        self.rate = 1.0
        self.eof = False
        self.seeking_until: int | None = None
        self.reported = 0.0  # mpv's time-pos: pts of the frame on the screen (or seek target)
        self.vlc_value = 0.0  # VLC's last refreshed position (media seconds)
        self._t0 = t_ns  # the shown frame's pts was self.reported at ... (moving: anchor)
        self._p0 = 0.0
        self._now = t_ns
        self._later: list[tuple[int, int, Emit]] = []  # delayed emits (eof pause)
        self._seq = 0
        self.last_frame = max(0.0, (math.ceil(duration_s * fps - 1e-6) - 1) / fps)

    # --- ground truth -----------------------------------------------------------------------

    @property
    def moving(self) -> bool:
        return self.loaded and not self.paused and self.seeking_until is None and not self.eof

    def truth(self, t: int) -> float | None:
        """The media time on the screen at ``t`` (after :meth:`advance` to at least ``t``)."""
        if not self.loaded:
            return None
        if not self.moving:
            return self.reported
        return min(self._p0 + self.rate * (t - self._t0) / NS, self.duration_s)

    @property
    def state(self) -> str:
        if not self.loaded:
            return "idle"
        if self.eof:
            return "ended"
        if self.seeking_until is not None:
            return "seeking"
        return "paused" if self.paused else "playing"

    # --- time -------------------------------------------------------------------------------

    def advance(self, t: int) -> list[Emit]:
        """Everything that happens in ``(last, t]``: frame edges, seek ends, end of file."""
        out: list[Emit] = []
        while True:
            nxt = self._next_transition()
            if nxt is None or nxt[0] > t:
                break
            at, what = nxt
            self._now = max(self._now, at)
            out += what(at)
        self._now = max(self._now, t)
        return out

    def _next_transition(self) -> tuple[int, Callable[[int], list[Emit]]] | None:
        cands: list[tuple[int, int, Callable[[int], list[Emit]]]] = []
        if self.seeking_until is not None:
            cands.append((self.seeking_until, 0, self._seek_done))
        if self._later:
            cands.append((self._later[0][0], 1, self._pop_later))
        if self.moving:
            k = math.floor(self.reported * self.fps + 1e-6) + 1  # next frame
            pts = k / self.fps
            if pts < self.duration_s - 1e-9:
                cands.append((self._time_of(pts), 2, functools.partial(self._frame, pts=pts)))
            else:
                cands.append((self._time_of(self.duration_s), 2, self._end))
            if self.vlc_step_ns:
                cands.append((self._tick_at, 3, self._vlc_tick))
        if not cands:
            return None
        at, _, what = min(cands, key=lambda c: (c[0], c[1]))
        return at, what

    def _time_of(self, pts: float) -> int:
        return self._t0 + math.ceil((pts - self._p0) / self.rate * NS)

    def _frame(self, at: int, *, pts: float) -> list[Emit]:
        self.reported = pts
        return [Emit(at, "prop", "time-pos", pts)]

    def _vlc_tick(self, at: int) -> list[Emit]:
        self._tick_at = at + self.vlc_step_ns
        if self._skipped or self._rng.random() >= self.vlc_skip:  # never two in a row
            self.vlc_value = min(max(0.0, (self.truth(at) or 0.0) + self.vlc_shift),
                                 self.duration_s)
            self._skipped = False
        else:
            self._skipped = True
        return []

    def _end(self, at: int) -> list[Emit]:
        self.eof = True
        self.reported = self.last_frame
        self._p0, self._t0 = self.reported, at
        out = [Emit(at, "prop", "eof-reached", True)]
        if self.keep_open:
            self._push_later(Emit(at + self.eof_pause_ns, "prop", "pause", True))
        else:
            self.loaded = False
            out += [Emit(at, "event", "end-file", {"reason": "eof"}),
                    Emit(at, "prop", "idle-active", True), Emit(at, "prop", "time-pos", None)]
        return out

    def _push_later(self, e: Emit) -> None:
        self._seq += 1
        heapq.heappush(self._later, (e.t_ns, self._seq, e))

    def _pop_later(self, at: int) -> list[Emit]:
        e = heapq.heappop(self._later)[2]
        if e.name == "pause" and e.value is True:
            if self.paused:
                return []
            self.paused = True
        return [e]

    def _seek_done(self, at: int) -> list[Emit]:
        self.seeking_until = None
        self._p0, self._t0 = self.reported, at
        self._tick_at = at + self.vlc_step_ns
        return [Emit(at, "event", "playback-restart"), Emit(at, "prop", "seeking", False)]

    # --- commands (call advance(t) first) ---------------------------------------------------

    def _freeze(self, t: int) -> None:
        """Re-anchor at ``t`` (before a change of play state or rate)."""
        if self.moving:
            self._p0, self._t0 = self.truth(t) or 0.0, t

    def pause(self, t: int) -> list[Emit]:
        if self.paused or not self.loaded:
            return []
        self._freeze(t)
        self.paused = True
        self._p0 = self.reported  # the frame on the screen stays
        return [Emit(t, "prop", "pause", True)]

    def play(self, t: int) -> list[Emit]:
        if not self.paused or not self.loaded:
            return []
        self.paused = False
        self._p0, self._t0 = self.reported, t
        self._tick_at = t + self.vlc_step_ns
        return [Emit(t, "prop", "pause", False)]

    def set_rate(self, t: int, rate: float) -> list[Emit]:
        if rate <= 0 or rate == self.rate:
            return []
        self._freeze(t)
        if self.vlc_rate_shift_s:
            self.vlc_shift += self.vlc_rate_shift_s * (rate - self.rate)
            if rate > self.rate:
                self._tick_at, self._skipped = t, True  # VLC shows a new value at once
        self.rate = rate
        return [Emit(t, "prop", "speed", rate)]

    def seek(self, t: int, target: float) -> list[Emit]:
        if not self.loaded:
            return []
        target = min(max(0.0, target), self.last_frame)
        out = []
        if self.eof:
            self.eof = False
            out.append(Emit(t, "prop", "eof-reached", False))
        self.reported = self.vlc_value = self._p0 = target
        self.vlc_shift = 0.0  # VLC's values go on from the target
        self._t0 = t
        self.seeking_until = t + self.seek_ns
        return [*out, Emit(t, "event", "seek"), Emit(t, "prop", "time-pos", target),
                Emit(t, "prop", "seeking", True)]

    def load(self, t: int, *, path: str, duration_s: float, fps: float) -> list[Emit]:
        self.path, self.duration_s, self.fps = path, duration_s, fps
        self.last_frame = max(0.0, (math.ceil(duration_s * fps - 1e-6) - 1) / fps)
        self.loaded, self.eof = True, False
        self.reported = self.vlc_value = self._p0 = 0.0
        self._t0 = t
        self._tick_at = t + self.vlc_step_ns
        self.seeking_until = t + self.seek_ns
        return [Emit(t, "event", "start-file"), Emit(t, "prop", "path", path),
                Emit(t, "event", "file-loaded"), Emit(t, "prop", "duration", duration_s),
                Emit(t, "prop", "eof-reached", False), Emit(t, "prop", "idle-active", False),
                Emit(t, "prop", "time-pos", 0.0), Emit(t, "prop", "seeking", True)]

    # --- what each player says --------------------------------------------------------------

    def mpv_property(self, name: str) -> Any:
        loaded = self.loaded
        return {
            "time-pos": self.reported if loaded else None,
            "playback-time": self.reported if loaded else None,
            "pause": self.paused,
            "speed": self.rate,
            "seeking": self.seeking_until is not None,
            "eof-reached": self.eof if loaded else None,
            "idle-active": not loaded,
            "path": self.path if loaded else None,
            "working-directory": "/",
            "duration": self.duration_s if loaded else None,
            "container-fps": self.fps if loaded else None,
            "estimated-vf-fps": self.fps if loaded else None,
        }.get(name, MISSING)

    def vlc_status(self, *, play_and_pause: bool = True) -> dict[str, Any]:
        """``status.json`` now (whole-second ``time``/``length``, stepped ``position``)."""
        if not self.loaded or (self.eof and not play_and_pause):
            return {"state": "stopped", "time": 0, "length": 0, "position": 0.0,
                    "rate": self.rate, "currentplid": -1, "apiversion": 3,
                    "information": {"category": {"meta": {}}}}
        state = "paused" if self.paused or self.eof else "playing"
        return {
            "state": state, "time": math.floor(self.vlc_value),
            "length": math.floor(self.duration_s),
            "position": self.vlc_value / self.duration_s, "rate": self.rate,
            "currentplid": 2, "apiversion": 3, "version": "3.0.24 fake",
            "information": {"category": {
                "meta": {"filename": os.path.basename(self.path)},
                "Stream 0": {"Type": "Video", "Frame_rate": f"{self.fps:g}"}}},
        }

    def vlc_playlist(self) -> dict[str, Any]:
        leaf = {"ro": "rw", "id": "2", "type": "leaf", "duration": math.floor(self.duration_s),
                "uri": "file://" + quote(self.path), "current": "current",
                "name": os.path.basename(self.path)}
        return {"ro": "rw", "id": "0", "type": "node", "name": "", "children": [
            {"ro": "ro", "id": "1", "type": "node", "name": "Playlist",
             "children": [leaf] if self.loaded else []}]}

    def mpc_variables(self, t: int) -> str:
        """MPC-HC's ``variables.html`` at ``t``: position and duration in ms."""
        if not self.loaded:
            state, pos_ms, dur_ms, path = -1, 0, 0, ""
        else:
            state = 1 if self.paused or self.eof else 2  # DirectShow runs through a seek
            pos_ms = math.floor((self.truth(t) or 0.0) * 1000)
            dur_ms, path = round(self.duration_s * 1000), self.path
        fields = {"file": os.path.basename(path), "filepatharg": quote(path), "filepath": path,
                  "filedirarg": "", "filedir": os.path.dirname(path), "state": state,
                  "statestring": {2: "Playing", 1: "Paused", -1: "N/A"}.get(state, "Stopped"),
                  "position": pos_ms, "positionstring": _hms(pos_ms), "duration": dur_ms,
                  "durationstring": _hms(dur_ms), "volumelevel": 100, "muted": 0,
                  "playbackrate": f"{self.rate:.6f}", "size": "1 MB", "reloadtime": 0,
                  "version": "2.1.0 fake"}
        body = "\n".join(f'\t<p id="{k}">{_html(str(v))}</p>' for k, v in fields.items())
        return ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
                "<title>MPC-HC WebServer - Variables</title>\n</head>\n"
                f'<body class="page-variables">\n{body}\n</body>\n</html>\n')


MISSING = object()  # mpv_property of a property mpv does not have


def _hms(ms: int) -> str:
    s = ms // 1000
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"


def _html(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
