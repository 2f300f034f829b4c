"""A small synchronous client of mpv's JSON IPC, for replaying segments in the interview.

mpv is started by us with ``--input-ipc-server=SOCKET --idle=yes`` (a Unix socket; on
Windows a named pipe, :mod:`ratedial._platform.pipes`) (and ``--vo=null
--ao=null`` without a display). Messages are JSON lines; replies carry our ``request_id``;
everything else (events, observed property changes) is queued until asked for.

Invariants:

* Every wait has a timeout; a dead or silent mpv becomes a :class:`PlayerError`, never a hang.
* We only ever stop the mpv process we started (``quit``, then terminate, then kill).
* mpv ended by its user (``q``, its window closed) is :class:`PlayerClosed`, not a failure.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .._platform import has_display
from .._platform.pipes import Channel, connect_sync, private_endpoint
from .errors import PlayerClosed, PlayerError

Event = dict[str, Any]


class MpvClient:
    """Commands and events over one connected IPC socket."""

    def __init__(self, sock: Channel, *, timeout: float = 10.0) -> None:
        self._sock = sock
        self._buf = b""
        self._next_id = 1
        self.timeout = timeout
        self.events: deque[Event] = deque(maxlen=10_000)

    @classmethod
    def connect(cls, path: str, *, timeout: float = 10.0,
                alive: Callable[[], bool] = lambda: True) -> MpvClient:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return cls(connect_sync(path), timeout=timeout)
            except OSError:
                if time.monotonic() > deadline or not alive():
                    raise PlayerError(f"mpv did not open its IPC socket {path}") from None
                time.sleep(0.05)

    def _read_message(self, deadline: float) -> Event:
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            try:
                chunk = self._sock.recv(65536, left)
            except TimeoutError:
                raise
            except OSError as exc:
                raise PlayerError(f"lost the connection to mpv: {exc}") from None
            if not chunk:
                raise PlayerError("mpv closed its IPC connection")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        try:
            msg = json.loads(line)
        except ValueError:
            return {}
        return msg if isinstance(msg, dict) else {}

    def command(self, *args: Any, timeout: float | None = None) -> Any:
        """Run an mpv command; returns its ``data``; raises on an error reply."""
        rid = self._next_id
        self._next_id += 1
        payload = json.dumps({"command": list(args), "request_id": rid}) + "\n"
        try:
            self._sock.sendall(payload.encode())
        except OSError as exc:
            raise PlayerError(f"cannot talk to mpv: {exc}") from None
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            try:
                msg = self._read_message(deadline)
            except TimeoutError:
                raise PlayerError(f"mpv did not answer {args[0]!r}") from None
            if msg.get("request_id") == rid and "error" in msg:
                if msg["error"] != "success":
                    raise PlayerError(f"mpv: {args[0]} failed: {msg['error']}")
                return msg.get("data")
            if "event" in msg:
                self.events.append(msg)

    def get(self, name: str) -> Any:
        return self.command("get_property", name)

    def set(self, name: str, value: Any) -> None:
        self.command("set_property", name, value)

    def observe(self, name: str, ident: int) -> None:
        self.command("observe_property", ident, name)

    def wait_for(self, predicate: Callable[[Event], bool], timeout: float) -> Event:
        """The first queued or arriving event that satisfies ``predicate``; earlier events
        are dropped."""
        while self.events:
            ev = self.events.popleft()
            if predicate(ev):
                return ev
        deadline = time.monotonic() + timeout
        while True:
            try:
                ev = self._read_message(deadline)
            except TimeoutError:
                raise PlayerError("mpv did not get there in time") from None
            if "event" in ev and predicate(ev):
                return ev

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()


class MpvPlayer:
    """An mpv process we start, load one video into, and play spans of."""

    TIME_POS = 1
    EOF = 2

    def __init__(self, video: str | Path, *, mpv: str = "mpv", headless: bool | None = None,
                 speed: float = 1.0, extra_args: Sequence[str] = (),
                 timeout: float = 15.0) -> None:
        exe = shutil.which(mpv)
        if exe is None:
            raise PlayerError(f"{mpv} not found: install mpv (apt-get install mpv; macOS: brew "
                              "install mpv; Windows: winget install mpv) or pass --mpv PATH, "
                              "or use --no-video")
        self.video = str(video)
        self.speed = speed
        self._sock_path, self._dir = private_endpoint()
        headless = not has_display() if headless is None else headless
        args = [exe, "--idle=yes", "--pause", "--keep-open=yes", "--no-terminal",
                "--really-quiet", f"--input-ipc-server={self._sock_path}",
                "--osd-level=1", *(["--vo=null", "--ao=null"] if headless else []),
                *extra_args]
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self.client = MpvClient.connect(self._sock_path, timeout=timeout,
                                            alive=lambda: self._proc.poll() is None)
            self.client.observe("time-pos", self.TIME_POS)
            self.client.observe("eof-reached", self.EOF)
            self.client.command("loadfile", self.video)
            loaded = self.client.wait_for(
                lambda e: e.get("event") in ("file-loaded", "end-file"), timeout)
            try:
                if loaded.get("event") != "file-loaded" or self.client.get("path") is None:
                    raise PlayerError("")
                self.duration_s: float | None = self.client.get("duration")
            except PlayerError:  # e.g. "get_property failed: property unavailable"
                raise PlayerError(f"mpv could not play {self.video} (not a video or audio "
                                  "file mpv can read)") from None
            self.client.set("speed", speed)
        except BaseException:
            self.close()
            raise

    def play(self, start_s: float, end_s: float) -> float:
        """Play ``[start_s, end_s)`` and pause; returns where playback stopped. Raises
        :class:`PlayerClosed` when mpv is gone (its user quit it or closed its window)."""
        try:
            return self._play(start_s, end_s)
        except PlayerError:
            if self._exited():
                raise PlayerClosed("mpv was closed") from None
            raise

    def _exited(self, wait_s: float = 2.0) -> bool:
        """mpv has ended (or does within ``wait_s``: its IPC closes just before it exits)."""
        try:
            self._proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            return False
        return True

    def _play(self, start_s: float, end_s: float) -> float:
        c = self.client
        c.set("pause", True)
        c.events.clear()
        c.command("seek", max(0.0, start_s), "absolute+exact")
        with contextlib.suppress(PlayerError):
            c.wait_for(lambda e: e.get("event") == "playback-restart", 5.0)
        c.set("pause", False)

        def done(e: Event) -> bool:
            if e.get("event") == "end-file":
                return True
            if e.get("event") != "property-change":
                return False
            if e.get("id") == self.EOF:
                return e.get("data") is True
            pos = e.get("data")
            return e.get("id") == self.TIME_POS and isinstance(pos, int | float) and (
                pos >= end_s - 0.02)

        try:
            c.wait_for(done, (end_s - start_s) / self.speed + 10.0)
        finally:
            with contextlib.suppress(PlayerError):
                c.set("pause", True)
        pos = c.get("time-pos")
        return float(pos) if isinstance(pos, int | float) else end_s

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            with contextlib.suppress(PlayerError):
                client.command("quit", timeout=2.0)
            client.close()
        try:
            self._proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
