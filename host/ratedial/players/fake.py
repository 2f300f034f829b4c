"""Fake players with an exact ground-truth clock: for tests, the benchmark and demos.

:class:`FakeMedia` is the player itself, pure and driven by explicit host times: what is on
the screen at any time (:meth:`FakeMedia.truth`), and what mpv would push, VLC and MPC would
answer, at that time. The servers put it behind the real protocols:

* :class:`FakeMpvServer`: mpv's JSON IPC on a unix socket (``observe_property``,
  ``get_property``, ``set_property``, ``seek``, ``cycle``, ``osd-overlay``, ``quit``), pushing
  ``time-pos`` at every frame edge and the ``seek``/``playback-restart``/``file-loaded``/
  ``end-file`` events in mpv's order;
* :class:`FakeVlcServer`: VLC's ``/requests/status.json`` and ``playlist.json`` with basic
  auth, whole-second ``time``/``length`` and a ``position`` updated in steps;
* :class:`FakeMpcServer`: MPC-HC's ``/variables.html`` and ``/command.html``.

Each server injects a fixed latency plus uniform jitter (seeded, so runs repeat), and can
crash (:meth:`stop`: connections cut, mpv's socket file left behind as mpv does) and restart.

Invariants: :class:`FakeMedia` never reads a clock; the ground truth while playing is the
continuous position ``pts + rate x (t - t_pts)`` of the frame on the screen, while paused,
seeking or ended the shown frame's ``pts``. Frame ``k`` has ``pts = k / fps``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from .http import basic_auth

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
    host time while playing (measured: 0.25 s, sometimes 0.5 s).
    """

    def __init__(self, *, duration_s: float = 150.0, fps: float = 30.0,
                 path: str = "/videos/fake.mp4", t_ns: int = 0, paused: bool = True,
                 seek_s: float = 0.005, keep_open: bool = True, eof_pause_s: float = 0.1,
                 vlc_step_s: float = 0.25, vlc_skip: float = 0.0, seed: int = 1) -> None:
        self.duration_s = duration_s
        self.fps = fps
        self.path = path
        self.seek_ns = round(seek_s * NS)
        self.keep_open = keep_open
        self.eof_pause_ns = round(eof_pause_s * NS)
        self.vlc_step_ns = round(vlc_step_s * NS)
        self.vlc_skip = vlc_skip  # probability that VLC skips a refresh (0.5 s steps, measured)
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
            self.vlc_value = self.truth(at) or 0.0
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
        }.get(name, _MISSING)

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


_MISSING = object()


def _hms(ms: int) -> str:
    s = ms // 1000
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"


def _html(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class _Net:
    """Injected network delay: ``latency + U(0, jitter)``, seeded."""

    def __init__(self, latency_s: float, jitter_s: float, seed: int) -> None:
        self.latency_s = latency_s
        self.jitter_s = jitter_s
        self.rng = random.Random(seed)

    def delay_ns(self) -> int:
        return round((self.latency_s + self.rng.uniform(0, self.jitter_s)) * NS)


class _Driven:
    """A FakeMedia advanced by a task in real time (CLOCK_MONOTONIC)."""

    def __init__(self, media: FakeMedia, now: Callable[[], int]) -> None:
        self.media = media
        self.now = now

    def step(self) -> tuple[int, list[Emit]]:
        t = self.now()
        return t, self.media.advance(t)


# --- mpv ------------------------------------------------------------------------------------


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
        self.driven = _Driven(media, now)
        self.net = _Net(latency_s, jitter_s, seed)
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
            if value is _MISSING:
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
        if value is _MISSING:
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


# --- HTTP (VLC, MPC) ------------------------------------------------------------------------


class _FakeHttp:
    def __init__(self, media: FakeMedia, *, port: int = 0, latency_s: float, jitter_s: float,
                 seed: int, now: Callable[[], int]) -> None:
        self.media = media
        self.driven = _Driven(media, now)
        self.net = _Net(latency_s, jitter_s, seed)
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
