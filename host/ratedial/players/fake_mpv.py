"""A fake mpv: its JSON IPC on a Unix socket, backed by a :class:`~.fake_media.FakeMedia`.

:class:`FakeMpvServer` answers ``observe_property``, ``get_property``, ``set_property``,
``seek``, ``cycle``, ``osd-overlay``, ``show-text`` and ``quit``, and pushes ``time-pos`` at
every frame edge and the ``seek``/``playback-restart``/``file-loaded``/``end-file`` events in
mpv's order. Unix only (``asyncio.start_unix_server``).

Invariants:
- Every message to a client leaves after the injected delay (``fake_timing``) and never
  before an earlier one to the same client: one socket keeps its order.
- :meth:`FakeMpvServer.stop` is a crash: connections are cut and the socket file stays
  behind, as mpv leaves it, so a connect fails with ECONNREFUSED until :meth:`start`.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .fake_media import MISSING, Emit, FakeMedia
from .fake_timing import Driven, NetDelay


@dataclass(eq=False)
class _MpvClient:
    writer: asyncio.StreamWriter
    observed: dict[str, list[int]] = field(default_factory=dict)  # property -> observer ids
    queue: list[tuple[int, int, bytes]] = field(default_factory=list)  # (due_ns, seq, line)
    last_due: int = 0


class FakeMpvServer:
    """mpv's JSON IPC on a unix socket, backed by a :class:`FakeMedia`."""

    def __init__(self, path: str, media: FakeMedia, *, latency_s: float = 0.0005,
                 jitter_s: float = 0.001, seed: int = 1,
                 now: Callable[[], int] = time.monotonic_ns) -> None:
        self.path = path
        self.media = media
        self.driven = Driven(media, now)
        self.net = NetDelay(latency_s, jitter_s, seed)
        self.clients: list[_MpvClient] = []
        self.commands: list[list[Any]] = []  # every command received, for tests
        self.truth_log: list[tuple[int, float | None, str]] = []  # (t, truth, state) per tick
        self._server: asyncio.AbstractServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._seq = 0

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self.driven.step()
        self._server = await asyncio.start_unix_server(self._client, self.path)
        self._task = asyncio.create_task(self._drive(), name="fake mpv")

    async def stop(self) -> None:
        """A crash: the socket stops answering, clients are cut, the socket file stays."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._server is not None:
            self._server.close()
        for c in self.clients:
            c.writer.transport.abort()
        self.clients.clear()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        # mpv leaves its socket file behind; a connect then fails with ECONNREFUSED.
        if not os.path.exists(self.path):
            with open(self.path, "w"):
                pass

    # controls for tests (as a rater would use the player's own keys)
    def _apply(self, emits: list[Emit]) -> None:
        for e in emits:
            self._broadcast(e)

    def pause(self) -> None:
        t, emits = self.driven.step()
        self._apply(emits + self.media.pause(t))

    def play(self) -> None:
        t, emits = self.driven.step()
        self._apply(emits + self.media.play(t))

    def seek(self, target: float) -> None:
        t, emits = self.driven.step()
        self._apply(emits + self.media.seek(t, target))

    def set_rate(self, rate: float) -> None:
        t, emits = self.driven.step()
        self._apply(emits + self.media.set_rate(t, rate))

    def load(self, path: str, *, duration_s: float, fps: float) -> None:
        t, emits = self.driven.step()
        self._apply(emits + self.media.load(t, path=path, duration_s=duration_s, fps=fps))

    def truth(self) -> tuple[int, float | None, str]:
        t, emits = self.driven.step()
        self._apply(emits)
        return t, self.media.truth(t), self.media.state

    async def _drive(self) -> None:
        while True:
            t, emits = self.driven.step()
            self._apply(emits)
            self.truth_log.append((t, self.media.truth(t), self.media.state))
            self._flush(t)
            await asyncio.sleep(0.0005)

    def _flush(self, t: int) -> None:
        for c in list(self.clients):
            while c.queue and c.queue[0][0] <= t:
                line = heapq.heappop(c.queue)[2]
                try:
                    c.writer.write(line)
                except (ConnectionError, RuntimeError):
                    self.clients.remove(c)
                    break

    def _send(self, c: _MpvClient, t: int, msg: dict[str, Any]) -> None:
        due = max(c.last_due, t + self.net.delay_ns())  # in order, like one socket
        c.last_due = due
        self._seq += 1
        heapq.heappush(c.queue, (due, self._seq, json.dumps(msg).encode() + b"\n"))

    def _broadcast(self, e: Emit) -> None:
        for c in self.clients:
            if e.kind == "event":
                msg = {"event": e.name}
                if isinstance(e.value, dict):
                    msg.update(e.value)
                self._send(c, e.t_ns, msg)
            else:
                for oid in c.observed.get(e.name, []):
                    self._send(c, e.t_ns, {"event": "property-change", "id": oid,
                                           "name": e.name, "data": e.value})

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        c = _MpvClient(writer)
        self.clients.append(c)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                t, emits = self.driven.step()
                self._apply(emits)
                req: Any = None
                try:
                    req = json.loads(line)
                    reply, follow = self._command(t, c, req.get("command"))
                except (ValueError, AttributeError, TypeError, IndexError):
                    reply, follow = {"error": "invalid parameter"}, []
                if isinstance(req, dict):
                    reply["request_id"] = req.get("request_id", 0)
                self._send(c, t, reply)
                for msg in follow:
                    self._send(c, t, msg)
                self._flush(self.driven.now())
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if c in self.clients:
                self.clients.remove(c)
            writer.close()

    def _command(self, t: int, c: _MpvClient,
                 cmd: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The reply to one command, and messages that follow it."""
        if not isinstance(cmd, list) or not cmd:
            return {"error": "invalid parameter"}, []
        self.commands.append(cmd)
        if cmd[0] == "observe_property":
            oid, prop = int(cmd[1]), str(cmd[2])
            value = self.media.mpv_property(prop)
            if value is MISSING:
                return {"error": "property not found"}, []
            c.observed.setdefault(prop, []).append(oid)
            return {"error": "success"}, [{"event": "property-change", "id": oid,
                                           "name": prop, "data": value}]
        return self._simple_command(t, cmd), []

    def _simple_command(self, t: int, cmd: list[Any]) -> dict[str, Any]:
        handler = _MPV_COMMANDS.get(str(cmd[0]))
        if handler is None:
            return {"error": "invalid parameter"}
        return handler(self, t, cmd[1:])

    def _get_property(self, t: int, args: list[Any]) -> dict[str, Any]:
        value = self.media.mpv_property(str(args[0]))
        if value is MISSING:
            return {"error": "property not found"}
        if value is None:
            return {"error": "property unavailable"}
        return {"error": "success", "data": value}

    def _set_property(self, t: int, args: list[Any]) -> dict[str, Any]:
        prop, value, m = str(args[0]), args[1], self.media
        if prop == "pause":
            self._apply(m.pause(t) if value else m.play(t))
        elif prop == "speed":
            self._apply(m.set_rate(t, float(value)))
        else:
            return {"error": "property not found"}
        return {"error": "success"}

    def _cycle(self, t: int, args: list[Any]) -> dict[str, Any]:
        if args[:1] != ["pause"]:
            return {"error": "invalid parameter"}
        m = self.media
        self._apply(m.play(t) if m.paused else m.pause(t))
        return {"error": "success"}

    def _seek_command(self, t: int, args: list[Any]) -> dict[str, Any]:
        target = float(args[0])
        mode = str(args[1]) if len(args) > 1 else "relative"
        if mode.startswith("relative"):
            target += self.media.reported
        self._apply(self.media.seek(t, target))
        return {"error": "success"}

    def _accept(self, t: int, args: list[Any]) -> dict[str, Any]:
        return {"error": "success"}

    def _quit(self, t: int, args: list[Any]) -> dict[str, Any]:
        asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(self.stop()))
        return {"error": "success"}


_MPV_COMMANDS: dict[str, Callable[[FakeMpvServer, int, list[Any]], dict[str, Any]]] = {
    "get_property": FakeMpvServer._get_property,
    "set_property": FakeMpvServer._set_property,
    "cycle": FakeMpvServer._cycle,
    "seek": FakeMpvServer._seek_command,
    "osd-overlay": FakeMpvServer._accept,
    "show-text": FakeMpvServer._accept,
    "quit": FakeMpvServer._quit,
}
