"""Manual sync, for any other player: the rater marks the moment the video is at a known time.

A mark says "the video is at SECONDS *now*, playing at normal speed". Marks come from:

* the keyboard of the terminal running ``ratedial run``: Enter marks ``SECONDS`` (from
  ``--player manual:SECONDS``, default 0); a number then Enter marks that time (``754.2``);
  ``p`` then Enter pauses or resumes the clock;
* the dial's button, once the daemon forwards ``button`` events (:meth:`ManualSession.button`):
  the first press of the run marks ``SECONDS``; later presses do not (the long press still
  resets the rating).

Nothing follows the player afterwards: pauses, seeks and speed changes in the player are not
seen. The least accurate mode (docs/timing.md): the error is the rater's reaction time and the
player's start-up delay, typically 0.1-0.5 s, constant over the run.

Invariants: the mark's host time is when the line arrived (Enter) or the button's mapped host
time; nothing here blocks: stdin is read with ``loop.add_reader``, or on Windows (no select on
a console) by a thread (:mod:`ratedial._platform.keys`), and only if it is open.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sys
from typing import Any, TextIO

from .._platform.keys import read_chunks
from ..media import ClockConfig, MediaOutput, Source
from ..recording import MediaState
from .session import PlayerSession

HELP = ("ratedial: manual sync: press Enter when the video is at {at}; type a time in seconds "
        "then Enter to mark another time; p then Enter pauses or resumes.")

MAX_SECONDS = 1e9  # a typed time beyond this (31 years of video) is a typo


class ManualSession(PlayerSession):
    player = "manual"

    def __init__(self, *, seconds: float = 0.0, latency_ms: float = 0.0,
                 stdin: TextIO | None = None, say: TextIO | None = None,
                 thread: bool | None = None) -> None:
        """``thread``: read the keyboard from a thread (default: on Windows only)."""
        super().__init__(ClockConfig(source=Source.NONE, latency_ms=latency_ms))
        self.seconds = seconds
        self.stdin = stdin if stdin is not None else sys.stdin
        self.say = say if say is not None else sys.stderr
        self._button_marked = False
        self._buffer = b""
        self._thread = thread

    async def run(self, out: MediaOutput) -> None:
        self._out = out
        fd = _fileno(self.stdin)
        print(HELP.format(at=_clock(self.seconds)), file=self.say, flush=True)
        if fd is None:
            await asyncio.Event().wait()
            return
        # A regular file or closed stream: keys cannot mark. Stdin closed: marks can still
        # come from the button.
        with contextlib.suppress(OSError, ValueError):
            await read_chunks(fd, self._typed, self.now, thread=self._thread)
        await asyncio.Event().wait()

    def _typed(self, host_ns: int, data: bytes) -> None:
        self._buffer += data
        while b"\n" in self._buffer:
            line, _, self._buffer = self._buffer.partition(b"\n")
            self.command(host_ns, line.decode("utf-8", "replace"))

    def command(self, host_ns: int, line: str) -> None:
        """One line typed by the rater, received at ``host_ns``."""
        text = line.strip().lower()
        if text in ("p", "pause"):
            paused = self.clock.state is MediaState.PLAYING
            self._emit(self.clock.paused(host_ns, paused))
            self._observe(host_ns, self.clock.position_now(host_ns), 1.0, not paused, "key")
            return
        if text:
            try:
                at = float(text)
            except ValueError:
                at = math.nan
            if not (math.isfinite(at) and 0 <= at <= MAX_SECONDS):  # inf, nan, -5: no time
                print(f"ratedial: manual sync: {line.strip()!r} is not a time in seconds "
                      "(0 or more, e.g. 754.5 for 12:34.5)", file=self.say, flush=True)
                return
        else:
            at = self.seconds
        self.mark(host_ns, at, "key")

    def button(self, host_ns: int) -> None:
        """A press of the dial's button at ``host_ns`` (its mapped host time)."""
        if not self._button_marked:
            self._button_marked = True
            self.mark(host_ns, self.seconds, "button")

    def mark(self, host_ns: int, media_s: float, source: str) -> None:
        if not self.connected:
            self.connected = True
        if self.clock.media_id is None and self._out is not None:
            # The video being followed, whatever file it is: a media row of its own (no
            # path, length or fingerprint), so that the media times it gives samples
            # belong to a video as everywhere else (docs/recording.md, table media)
            media_id = self._out.add_media(None, None, None, None)
            self._emit(self.clock.identify(host_ns, media_id=media_id))
        self._emit(self.clock.mark(host_ns, max(0.0, media_s)))
        self._observe(host_ns, media_s, 1.0, True, source)

    def status(self) -> dict[str, Any]:
        st = super().status()
        st["connected"] = self.connected
        return st


def _fileno(stream: TextIO) -> int | None:
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    return fd if fd >= 0 else None


def _clock(seconds: float) -> str:
    m, s = divmod(seconds, 60)
    return f"{int(m)}:{s:06.3f}" if seconds % 1 else f"{int(m)}:{int(s):02d}"
