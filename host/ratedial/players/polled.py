"""The shell shared by players that are polled over HTTP (VLC, MPC-HC/MPC-BE).

Invariants:

* One request at a time, a new one every :attr:`PolledSession.period_s` (start to start);
  each answer goes to the clock with the host times the request was sent and the answer
  received, which bound when the snapshot was taken.
* Parsing an answer is a pure function of its body (and the adapter's small state), so the
  benchmark feeds the same parsers from a simulated player.
* A file is known by :attr:`Snapshot.key`; a new key is a new file (``media_load``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ..errors import UsageError
from ..media import ClockConfig, MediaOutput
from .http import HttpError, NotHttpAnswer, http_get
from .session import NotThePlayer, PlayerSession


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one poll says, in the clock's terms."""

    loaded: bool
    media_s: float | None = None
    playing: bool = False
    rate: float = 1.0
    ended: bool = False
    key: str | None = None  # identifies the file, to notice a new one
    path: str | None = None
    duration_s: float | None = None
    fps: float | None = None
    changed: bool | None = None  # the player's own value changed (None: compare media_s)
    rescale: float = 1.0  # positions are now read on this much larger a scale (VLC's length)


class PolledSession(PlayerSession):
    target = "/"
    interface = "the player's web interface"  # for "something else answers on ..., not ..."
    period_s = 0.04  # 25 polls a second (VLC takes ~21 ms to answer one)
    timeout_s = 1.0

    def __init__(self, clock_config: ClockConfig, *, host: str, port: int,
                 authorization: str | None = None) -> None:
        super().__init__(clock_config)
        self.host = host
        self.port = port
        self.authorization = authorization
        self._key: str | None = None

    def parse(self, body: bytes) -> Snapshot:
        raise NotImplementedError

    def auth_problem(self, status: int) -> str | None:
        """A one-line message for an HTTP status that means misconfiguration."""
        return None

    async def _follow(self, out: MediaOutput) -> None:
        self._key = None
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            sent = self.now()
            try:
                body = await http_get(self.host, self.port, self.target,
                                      authorization=self.authorization, timeout=self.timeout_s)
            except HttpError as exc:
                problem = self.auth_problem(exc.status)
                if problem is not None and not self._ever_connected:
                    raise UsageError(problem) from None
                if problem is None and not self.connected:  # e.g. 404: another web server
                    raise NotThePlayer(self._where(), str(exc)) from None
                raise
            except NotHttpAnswer as exc:
                if not self.connected:  # not a web server at all (mosquitto, ssh, ...)
                    raise NotThePlayer(self._where(), exc.strerror or str(exc)) from None
                raise
            recv = self.now()
            try:
                snap = self.parse(body)
            except (ValueError, KeyError, TypeError):
                await asyncio.sleep(self.period_s)
                continue
            self._connected(recv)
            if self.snapshot(sent, recv, snap):
                self._new_file(recv, snap)
            await asyncio.sleep(max(0.0, self.period_s - (loop.time() - started)))

    def _where(self) -> str:
        return f"{self.host}:{self.port}, not {self.interface}"

    def snapshot(self, sent: int, recv: int, snap: Snapshot) -> bool:
        """Feed one parsed answer to the clock (pure); True when it shows a new file."""
        new_file = snap.loaded and snap.key != self._key
        if new_file:
            self._key = snap.key
            self._emit(self.clock.load(recv, fps=snap.fps, duration_s=snap.duration_s))
        elif not snap.loaded:
            self._key = None
        else:
            self.clock.rescale(snap.rescale)
        self._emit(self.clock.poll(sent, recv, media_s=snap.media_s if snap.loaded else None,
                                   playing=snap.playing, rate=snap.rate, ended=snap.ended,
                                   changed=snap.changed))
        self._observe(recv, snap.media_s, snap.rate, snap.playing, self.target.lstrip("/"))
        return new_file

    def _new_file(self, host_ns: int, snap: Snapshot) -> None:
        self._identify_later(host_ns, snap.path, duration_s=snap.duration_s, fps=snap.fps,
                             use_probe=True)
