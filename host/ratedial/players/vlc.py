"""VLC over its HTTP interface (``/requests/status.json``, basic auth with an empty user).

VLC reports ``time`` and ``length`` in whole seconds (floored) and ``position`` as a fraction
of the length that VLC updates in steps of 0.25-0.5 s of media. The media time is
``position x length``, with the exact length from ``ffprobe`` when the file is local and
ffprobe is installed, else narrowed down from the whole-second values
(:class:`LengthEstimate`). Between steps the clock extrapolates; the step edges bound it (the
clock is :data:`Source.STEP`). Accuracy: docs/timing.md.

Invariants: the password comes from ``RATEDIAL_VLC_PASSWORD`` or the file named by
``RATEDIAL_VLC_PASSWORD_FILE``, never from the command line; parsing is pure.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from typing import Any
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from ..config import read_secret
from ..errors import UsageError
from ..media import ClockConfig, Source
from .http import basic_auth, http_get
from .identity import MediaIdentity
from .polled import PolledSession, Snapshot

END_S = 0.75  # paused this close to the end (VLC --play-and-pause) counts as the end
# Largest staleness of VLC's position at normal speed: it refreshes every 0.25 s and sometimes
# skips one (measured steps 0.25-0.5 s); allow one more skip. Scaled by the rate.
MAX_STEP_S = 1.05
# The largest step measured (0.5 s, scaled by the rate): the first answer of a VLC found
# playing is placed in its middle, and VLC's own position moves by up to it at a rate change
# (-0.12 to +0.37 s measured, VLC 3.0 over HTTP); neither is recorded as a seek.
STEP_S = 0.5


def vlc_clock_config(latency_ms: float) -> ClockConfig:
    return ClockConfig(source=Source.STEP, latency_ms=latency_ms, window_s=10.0,
                       max_lead_s=MAX_STEP_S, step_s=STEP_S)


def vlc_password() -> str:
    env = os.environ.get("RATEDIAL_VLC_PASSWORD")
    if env:
        return env
    path = os.environ.get("RATEDIAL_VLC_PASSWORD_FILE")
    if path:
        return read_secret(path, "RATEDIAL_VLC_PASSWORD_FILE")
    raise UsageError("--player vlc: set VLC's web interface password in RATEDIAL_VLC_PASSWORD "
                     "or in a file named by RATEDIAL_VLC_PASSWORD_FILE (see docs/players.md)")


class LengthEstimate:
    """The file's length from VLC's floored whole seconds (pure).

    ``length`` gives ``[length, length + 1)``; a snapshot whose position just changed gives
    ``time <= position x L < time + 1``. The intersection narrows as playback crosses whole
    seconds; an exact length (ffprobe) overrides it.
    """

    def __init__(self) -> None:
        self.exact: float | None = None
        self.lo = 0.0
        self.hi = math.inf

    def update(self, *, length: float, time: float, position: float, edge: bool) -> None:
        if length <= 0:
            return
        lo, hi = max(self.lo, length), min(self.hi, length + 1.0)
        if edge and position > 0 and time >= 0:
            lo, hi = max(lo, time / position), min(hi, (time + 1.0) / position)
        if lo >= hi:  # inconsistent (a new file, or a snapshot taken mid-update): start over
            lo, hi = float(length), length + 1.0
        self.lo, self.hi = lo, hi

    @property
    def value(self) -> float | None:
        if self.exact is not None:
            return self.exact
        if self.hi == math.inf:
            return None
        return (self.lo + self.hi) / 2

    def reset(self) -> None:
        self.exact = None
        self.lo, self.hi = 0.0, math.inf


def _obj(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _number(v: Any, lo: float, hi: float) -> float:
    """A number VLC sent, in ``[lo, hi]``; ValueError for anything else (0 for null)."""
    if v is None:
        return 0.0
    if not isinstance(v, int | float) or isinstance(v, bool):
        raise ValueError(f"not a number: {v!r:.40}")
    try:
        f = float(v)
    except OverflowError:
        raise ValueError("number out of range") from None
    if not lo <= f <= hi:  # also NaN
        raise ValueError(f"number out of range: {f!r}")
    return f


def _video_fps(info: dict[str, Any]) -> float | None:
    for stream in _obj(info.get("category")).values():
        if isinstance(stream, dict) and stream.get("Type") == "Video":
            try:
                fps = float(str(stream.get("Frame_rate")).replace(",", "."))
            except ValueError:
                return None
            return fps if 0 < fps < 1000 else None
    return None


class VlcSession(PolledSession):
    player = "vlc"
    target = "/requests/status.json"
    interface = "VLC's web interface"

    def __init__(self, *, host: str, port: int, password: str, latency_ms: float = 0.0) -> None:
        super().__init__(vlc_clock_config(latency_ms), host=host, port=port,
                         authorization=basic_auth("", password))
        self.length = LengthEstimate()
        self._last: tuple[float, float] | None = None  # (position, media_s) of the last answer
        self._file: str | None = None

    def auth_problem(self, status: int) -> str | None:
        return {
            401: "VLC rejected the password (RATEDIAL_VLC_PASSWORD / RATEDIAL_VLC_PASSWORD_FILE)",
            403: "VLC's web interface has no password set: start VLC with --http-password or "
                 "set one under Preferences > Interface > Main interfaces > Lua",
        }.get(status)

    def parse(self, body: bytes) -> Snapshot:
        """Raises only ValueError (not JSON, not a status) or KeyError/TypeError."""
        try:
            status = json.loads(body)
        except RecursionError:
            raise ValueError("status.json nested beyond reason") from None
        if not isinstance(status, dict):
            raise ValueError("status.json is not an object")
        return self.parse_status(status)

    def parse_status(self, s: dict[str, Any]) -> Snapshot:
        state = s.get("state")
        info = _obj(s.get("information"))
        meta = _obj(_obj(info.get("category")).get("meta"))
        if state == "stopped" or (not s.get("length") and not s.get("position")):
            # Stopped (VLC forgets the position): the end if it was just there.
            last = self._last
            if state == "stopped" and last is not None and self._near_end(last[1]):
                return Snapshot(loaded=True, media_s=last[1], ended=True, key=self._file)
            self._last = None
            return Snapshot(loaded=False)
        key = f"{s.get('currentplid')}:{meta.get('filename')}"
        if key != self._file:
            self._file = key
            self.length.reset()
            self._last = None
        position = _number(s.get("position"), 0.0, 1.0)
        edge = self._last is None or self._last[0] != position
        was = self.length.value if self._last is not None else None
        self.length.update(length=_number(s.get("length"), 0.0, 1e7),
                           time=_number(s.get("time"), 0.0, 1e7), position=position, edge=edge)
        length = self.length.value
        # A better known length moves media_s with VLC's position unchanged: not a step
        rescale = length / was if was and length else 1.0
        media_s = None if length is None else position * length
        playing = state == "playing"
        ended = not playing and media_s is not None and self._near_end(media_s, END_S)
        if media_s is not None:
            self._last = (position, media_s)
        rate = _number(s.get("rate"), 0.0, 1000.0) or 1.0
        return Snapshot(loaded=True, media_s=media_s, playing=playing, rate=rate, ended=ended,
                        key=key, duration_s=length, fps=_video_fps(info), changed=edge,
                        rescale=rescale)

    def _forget(self) -> None:
        # A VLC started again answers "stopped" at first: that is not the end of the file
        # the old one played (its position would be given to the new file's samples).
        self._last = None
        self._file = None
        self.length.reset()

    def _near_end(self, media_s: float, within: float = 1.5) -> bool:
        length = self.length.value
        return length is not None and media_s >= length - within

    def _new_file(self, host_ns: int, snap: Snapshot) -> None:
        if self._identify_task is not None:
            self._identify_task.cancel()
        self._identify_task = asyncio.create_task(self._identify_vlc(host_ns, snap),
                                                  name="vlc identify")

    async def _identify_vlc(self, host_ns: int, snap: Snapshot) -> None:
        path = None
        try:
            body = await http_get(self.host, self.port, "/requests/playlist.json",
                                  authorization=self.authorization, timeout=2.0)
            path = current_path(json.loads(body))
        except (OSError, ValueError, TimeoutError, RecursionError):
            pass
        await self._identify(host_ns, path, duration_s=None, fps=snap.fps, use_probe=True)

    def _on_identity(self, ident: MediaIdentity) -> None:
        if ident.duration_s is not None:
            self.exact_length(ident.duration_s)

    def exact_length(self, duration_s: float) -> None:
        """The file's exact length (ffprobe): positions already taken are converted to it."""
        was = self.length.value
        self.length.exact = duration_s
        if was and self._last is not None:
            self.clock.rescale(duration_s / was)
            self._last = (self._last[0], self._last[1] * duration_s / was)


def current_path(playlist: Any) -> str | None:
    """The local path of the current item in VLC's ``playlist.json`` (None if not a file).

    Raises ValueError when it is not a playlist."""
    if not isinstance(playlist, dict):
        raise ValueError("playlist.json is not an object")
    stack = [playlist]
    while stack:
        node = stack.pop()
        if node.get("current") == "current" and isinstance(node.get("uri"), str):
            u = urlsplit(str(node["uri"]))
            if u.scheme != "file":
                return str(node["uri"])
            return url2pathname(unquote(u.path))
        stack.extend(c for c in node.get("children") or [] if isinstance(c, dict))
    return None
