"""The shell every player adapter shares: reconnect loop, lost/back events, media identity.

Invariants:

* One task per player (:meth:`PlayerSession.run`); everything the player says goes through
  the pure :class:`~ratedial.media.MediaClock`, so :meth:`annotate` never waits for I/O.
* The player going away never ends the run: the clock turns UNKNOWN, a ``player_lost`` event
  is recorded, the adapter reconnects with jittered back-off (0.1 s doubling to
  ``max_backoff_s``: 2 s, mpv's local socket 0.25 s) and
  ``player_back`` is recorded when it answers again. A player that is not there at the start
  gets ``player_lost`` once (``reason: "not running"``).
* Configuration mistakes the player reveals (wrong password) end the run with a one-line
  :class:`UsageError`, but only if the player never answered properly in this run.
* Media identities are cached per file (path, size, mtime): reloading a file gives the same
  ``media_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..media import Annotation, ClockConfig, MediaClock, MediaEvent, MediaOutput
from .identity import MediaIdentity, identify

MAX_BACKOFF_S = 2.0

log = logging.getLogger("ratedial.players")


class PlayerGone(Exception):
    """The connection to the player ended or it stopped answering."""


class NotThePlayer(PlayerGone):
    """Something else answers where the player should be (another service on its port)."""

    def __init__(self, where: str, why: str) -> None:
        super().__init__(why)
        self.where = where


class PlayerSession:
    """Base class: subclasses implement :meth:`_follow` (one connection's lifetime)."""

    player = "player"
    max_backoff_s = MAX_BACKOFF_S  # between reconnection attempts

    def __init__(self, clock_config: ClockConfig, *,
                 monotonic_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self.clock = MediaClock(clock_config)
        self.now = monotonic_ns
        self.connected = False
        self._announced_lost = False
        self._ever_connected = False
        self._out: MediaOutput | None = None
        self._media_cache: dict[tuple[str, int, int], tuple[int, MediaIdentity]] = {}
        self._identify_task: asyncio.Task[None] | None = None

    # --- MediaSession ------------------------------------------------------------------------

    def poll(self) -> None:
        """Adapters that can read what the player already sent without waiting do it here."""

    def annotate(self, host_ns: Sequence[int | None]) -> Annotation:
        return self.clock.annotate(host_ns)

    def status(self) -> dict[str, Any]:
        now = self.now()
        media_id, media_s, state = self.clock.at(now)
        return {"player": self.player, "state": state.name.lower(),
                "media_s": None if media_s is None else round(media_s, 3),
                "media_id": media_id, "rate": self.clock.rate, "connected": self.connected}

    async def run(self, out: MediaOutput) -> None:
        self._out = out
        backoff = 0.1
        try:
            await self._start()
            while True:
                why = "connection closed"
                other: str | None = None
                try:
                    await self._follow(out)
                except (OSError, EOFError, PlayerGone, TimeoutError,
                        asyncio.IncompleteReadError) as exc:
                    why = _why(exc)
                    other = exc.where if isinstance(exc, NotThePlayer) else None
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError  # a cancellation hidden in a timeout
                if self.connected:
                    backoff = 0.1
                self._gone(why, other=other)
                await asyncio.sleep(backoff * random.uniform(0.75, 1.25))
                backoff = min(self.max_backoff_s, backoff * 2)
        finally:
            if self._identify_task is not None:
                self._identify_task.cancel()
            await self._stop()

    # --- for subclasses ---------------------------------------------------------------------

    async def _start(self) -> None:
        """Before the first connection (e.g. launch the player)."""

    async def _stop(self) -> None:
        """After the last connection (e.g. stop the launched player)."""

    async def _follow(self, out: MediaOutput) -> None:
        raise NotImplementedError

    def _forget(self) -> None:
        """Hook: the player is gone; forget what was known of its file (a player started
        again starts from nothing)."""

    def _connected(self, host_ns: int) -> None:
        """Call when the player answered: records ``player_back`` after a loss."""
        if self.connected:
            return
        self.connected = True
        self._ever_connected = True
        self._emit(self.clock.connected(host_ns))
        if self._announced_lost and self._out is not None:
            self._out.event("player_back", {"player": self.player}, host_ns)
            self._announced_lost = False
            log.warning("player %s is back: media times recorded again", self.player)

    def _gone(self, why: str = "connection closed", *, other: str | None = None) -> None:
        """The player went away (or never came); ``other``: where something else answers."""
        host_ns = self.now()
        was = self.connected
        self.connected = False
        if self._identify_task is not None:
            self._identify_task.cancel()
            self._identify_task = None
        if was:
            self.clock.lost(host_ns)
        self._forget()
        if self._out is not None and not self._announced_lost:
            data: dict[str, Any] = {"player": self.player}
            if not was:
                data["reason"] = "not running"
            self._out.event("player_lost", data, host_ns)
            self._announced_lost = True
            if other is not None and not was:
                log.warning("player %s not found: something else answers on %s (%s); check "
                            "the port: media time unknown until %s answers there",
                            self.player, other, why, self.player)
                return
            log.warning("player %s %s (%s): media time unknown until it answers again",
                        self.player, "lost" if was else "not running", why)

    def _emit(self, events: list[MediaEvent]) -> None:
        if self._out is None:
            return
        for e in events:
            self._out.event(e.kind, e.data, e.host_ns)

    def _observe(self, host_ns: int, media_s: float | None, rate: float | None,
                 playing: bool | None, source: str) -> None:
        if self._out is not None:
            self._out.observation(host_ns, self.clock.media_id, media_s, rate, playing, source)

    # --- media identity ---------------------------------------------------------------------

    def _identify_later(self, host_ns: int, path: str | None, *, duration_s: float | None,
                        fps: float | None, use_probe: bool = False) -> None:
        """Identify the loaded file in the background and attach it to the clock."""
        if self._identify_task is not None:
            self._identify_task.cancel()
        self._identify_task = asyncio.create_task(
            self._identify(host_ns, path, duration_s=duration_s, fps=fps, use_probe=use_probe),
            name=f"{self.player} identify")

    def _known_file(self, path: str | None) -> bool:
        """This file (same path, size and mtime) was identified before in this run."""
        key = _file_key(path)
        return key is not None and key in self._media_cache

    async def _identify(self, host_ns: int, path: str | None, *, duration_s: float | None,
                        fps: float | None, use_probe: bool) -> None:
        key = _file_key(path)
        cached = self._media_cache.get(key) if key is not None else None
        media_id: int | None
        if cached is not None:
            media_id, ident = cached
        else:
            ident = await identify(path, duration_s=duration_s, fps=fps, use_probe=use_probe)
            media_id = self._add_media(ident)
            if key is not None and media_id is not None:
                self._media_cache[key] = (media_id, ident)
        self._on_identity(ident)
        self._emit(self.clock.identify(host_ns, media_id=media_id, path=ident.path,
                                       duration_s=ident.duration_s, fps=ident.fps))

    def _on_identity(self, ident: MediaIdentity) -> None:
        """Hook: a subclass may use the identity (e.g. VLC's exact duration)."""

    def _add_media(self, ident: MediaIdentity) -> int | None:
        if self._out is None:
            return None
        return self._out.add_media(ident.path, ident.duration_s, ident.fps, ident.fingerprint)


def _why(exc: BaseException) -> str:
    """A few words on why the connection to the player ended."""
    if isinstance(exc, TimeoutError):
        return "not answering"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, EOFError | asyncio.IncompleteReadError):
        return "connection closed"
    return str(exc) or type(exc).__name__


def _file_key(path: str | None) -> tuple[str, int, int] | None:
    if path is None:
        return None
    with contextlib.suppress(OSError):
        st = os.stat(path)
        return (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    return None
