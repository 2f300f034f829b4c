"""Fake VLC and MPC-HC: their web interfaces over HTTP, backed by a ``FakeMedia``.

* :class:`FakeVlcServer`: VLC's ``/requests/status.json`` and ``playlist.json`` with basic
  auth, whole-second ``time``/``length`` and a ``position`` updated in steps;
* :class:`FakeMpcServer`: MPC-HC's ``/variables.html`` and ``/command.html``.

Invariants:
- One request per connection (``Connection: close``); each answer is taken after the
  injected delay (``fake_timing``), at the host time it is sent, and recorded with that
  time's ground truth in ``snapshots``.
- ``stop()`` is a crash: the port stops answering; ``start()`` again brings the player
  back on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from .fake_media import NS, FakeMedia
from .fake_timing import Driven, NetDelay
from .http import basic_auth


class _FakeHttp:
    def __init__(self, media: FakeMedia, *, port: int = 0, latency_s: float, jitter_s: float,
                 seed: int, now: Callable[[], int]) -> None:
        self.media = media
        self.driven = Driven(media, now)
        self.net = NetDelay(latency_s, jitter_s, seed)
        self.port = port
        self.requests = 0
        self.snapshots: list[tuple[int, float | None, str]] = []  # (t, truth, state) per answer
        self._server: asyncio.Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.driven.step()
        self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._task = asyncio.create_task(self._drive(), name="fake http player")

    async def stop(self) -> None:
        """A crash: the port stops answering."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _drive(self) -> None:
        while True:
            self.driven.step()
            await asyncio.sleep(0.002)

    def step(self) -> int:
        t, _ = self.driven.step()
        return t

    # controls for tests
    def pause(self) -> None:
        self.media.pause(self.step())

    def play(self) -> None:
        self.media.play(self.step())

    def seek(self, target: float) -> None:
        self.media.seek(self.step(), target)

    def set_rate(self, rate: float) -> None:
        self.media.set_rate(self.step(), rate)

    def truth(self) -> tuple[int, float | None, str]:
        t = self.step()
        return t, self.media.truth(t), self.media.state

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            headers: dict[str, str] = {}
            while True:
                h = await reader.readline()
                if h in (b"\r\n", b"\n", b""):
                    break
                k, _, v = h.decode("latin-1").partition(":")
                headers[k.strip().lower()] = v.strip()
            parts = line.decode("latin-1").split()
            if len(parts) < 2:
                return
            self.requests += 1
            await asyncio.sleep(self.net.delay_ns() / NS)
            t = self.step()
            status, ctype, body = self.answer(t, parts[1], headers)
            self.snapshots.append((t, self.media.truth(t), self.media.state))
            head = (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
            writer.write(head.encode() + body)
            await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def answer(self, t: int, target: str, headers: dict[str, str]) -> tuple[str, str, bytes]:
        raise NotImplementedError


class FakeVlcServer(_FakeHttp):
    """VLC 3's HTTP interface: status.json (with commands) and playlist.json."""

    def __init__(self, media: FakeMedia, *, password: str = "secret", port: int = 0,
                 latency_s: float = 0.020, jitter_s: float = 0.002, seed: int = 1,
                 play_and_pause: bool = True,
                 now: Callable[[], int] = time.monotonic_ns) -> None:
        super().__init__(media, port=port, latency_s=latency_s, jitter_s=jitter_s, seed=seed,
                         now=now)
        self.password = password
        self.play_and_pause = play_and_pause

    def answer(self, t: int, target: str, headers: dict[str, str]) -> tuple[str, str, bytes]:
        if not self.password:
            return "403 Forbidden", "text/plain", b"Password for Web interface has not been set."
        if headers.get("authorization") != basic_auth("", self.password):
            return "401 Unauthorized", "text/plain", b"Unauthorized"
        u = urlsplit(target)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        m = self.media
        if u.path == "/requests/status.json":
            self._vlc_command(t, q)
            body = json.dumps(m.vlc_status(play_and_pause=self.play_and_pause))
            return "200 OK", "application/json", body.encode()
        if u.path == "/requests/playlist.json":
            return "200 OK", "application/json", json.dumps(m.vlc_playlist()).encode()
        return "404 Not Found", "text/plain", b"not found"

    def _vlc_command(self, t: int, q: dict[str, str]) -> None:
        m = self.media
        cmd = q.get("command")
        if cmd is None:
            return
        val = q.get("val", "")
        actions: dict[str, Callable[[], object]] = {
            "pl_pause": lambda: m.play(t) if m.paused else m.pause(t),
            "pl_forcepause": lambda: m.pause(t),
            "pl_forceresume": lambda: m.play(t),
            "seek": lambda: m.seek(t, _vlc_seek_target(val, m)),
            "rate": lambda: m.set_rate(t, float(val)),
        }
        action = actions.get(cmd)
        if action is not None:
            action()


def _vlc_seek_target(val: str, m: FakeMedia) -> float:
    val = val.strip()
    if val.endswith("%"):
        return float(val[:-1]) / 100 * m.duration_s
    if val[:1] in "+-":
        return m.vlc_value + float(val)
    return float(val)


class FakeMpcServer(_FakeHttp):
    """MPC-HC's web interface: variables.html and command.html."""

    def __init__(self, media: FakeMedia, *, port: int = 0, latency_s: float = 0.003,
                 jitter_s: float = 0.002, seed: int = 1,
                 now: Callable[[], int] = time.monotonic_ns) -> None:
        super().__init__(media, port=port, latency_s=latency_s, jitter_s=jitter_s, seed=seed,
                         now=now)

    def answer(self, t: int, target: str, headers: dict[str, str]) -> tuple[str, str, bytes]:
        u = urlsplit(target)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        m = self.media
        if u.path == "/variables.html":
            return "200 OK", "text/html; charset=utf-8", m.mpc_variables(t).encode()
        if u.path == "/command.html":
            cmd = int(q.get("wm_command", "0"))
            actions: dict[int, Callable[[], object]] = {
                887: lambda: m.play(t), 888: lambda: m.pause(t),
                889: lambda: m.play(t) if m.paused else m.pause(t),
                -1: lambda: m.seek(t, _mpc_position(q.get("position", "0"))),
            }
            action = actions.get(cmd)
            if action is not None:
                action()
            return "200 OK", "text/html", b"<html></html>"
        return "404 Not Found", "text/plain", b"not found"


def _mpc_position(text: str) -> float:
    """``hh:mm:ss[.fff]`` (MPC-HC's command.html seek argument) in seconds."""
    total = 0.0
    for part in text.split(":"):
        total = total * 60 + float(part)
    return total
