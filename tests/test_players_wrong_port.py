"""``--player vlc:PORT`` (or mpc) pointing at a port where something else answers: the line
says so, not "not running" (2026 players audit, F5).

Real parts: TCP servers on free ports that answer as other services do (reset the connection
like mosquitto does to an HTTP request, a non-HTTP greeting, another web server's 404), the
real session's HTTP client, and ``ratedial run`` as a subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest

from ratedial.players.mpc import MpcSession
from ratedial.players.vlc import VlcSession


class Out:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def event(self, kind: str, data: dict[str, Any], host_ns: int) -> None:
        self.events.append((kind, data))

    def add_media(self, *a: Any) -> int:
        return 1

    def observation(self, *a: Any) -> None:
        pass


def reset(conn: socket.socket) -> None:
    conn.recv(4096)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def greeting(conn: socket.socket) -> None:
    conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
    conn.recv(4096)


def not_found(conn: socket.socket) -> None:
    conn.recv(4096)
    conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


class Other(threading.Thread):
    """Another service on a free port, answering every connection with ``answer``."""

    def __init__(self, answer: Callable[[socket.socket], None]) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.answer = answer
        self.start()

    def run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn, contextlib.suppress(OSError):
                self.answer(conn)


@pytest.mark.parametrize(("answer", "why"), [
    (reset, "Connection reset by peer"),
    (greeting, r"not an HTTP answer: b'SSH-2.0-OpenSSH_9.2\r\n'"),
    (not_found, "HTTP 404 Not Found")])
@pytest.mark.parametrize("player", ["vlc", "mpc"])
def test_something_else_on_the_port_is_said_to_be_something_else(caplog, answer, why, player):
    other = Other(answer)
    session: VlcSession | MpcSession = (
        VlcSession(host="127.0.0.1", port=other.port, password="pw") if player == "vlc"
        else MpcSession(host="127.0.0.1", port=other.port))
    out = Out()

    async def main() -> None:
        task = asyncio.create_task(session.run(out))
        for _ in range(400):
            if out.events:
                break
            await asyncio.sleep(0.005)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    with caplog.at_level(logging.WARNING, logger="ratedial.players"):
        asyncio.run(main())
    other.sock.close()
    assert out.events == [("player_lost", {"player": player, "reason": "not running"})]
    (line,) = [r.getMessage() for r in caplog.records]
    name = {"vlc": "VLC", "mpc": "MPC"}[player]
    assert line == (f"player {player} not found: something else answers on "
                    f"127.0.0.1:{other.port}, not {name}'s web interface ({why}); check the "
                    f"port: media time unknown until {player} answers there")


def test_nothing_on_the_port_is_still_not_running(caplog):
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]  # closed again: nothing listens there
    session = VlcSession(host="127.0.0.1", port=port, password="pw")
    out = Out()

    async def main() -> None:
        task = asyncio.create_task(session.run(out))
        while not out.events:
            await asyncio.sleep(0.005)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    with caplog.at_level(logging.WARNING, logger="ratedial.players"):
        asyncio.run(main())
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("player vlc not running (") and "something else" not in line


def test_ratedial_run_says_something_else_answers_on_the_vlc_port(tmp_path):
    other = Other(reset)
    rec = tmp_path / "r.ratedial"
    r = subprocess.run(
        [sys.executable, "-m", "ratedial", "run", "--player", f"vlc:{other.port}",
         "--broker", "none", "--record", str(rec), "--duration", "1.5"],
        env={**os.environ, "RATEDIAL_VLC_PASSWORD": "x"}, capture_output=True, text=True,
        timeout=60, check=False)
    other.sock.close()
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "player vlc" in ln]
    assert lines == [f"player vlc not found: something else answers on 127.0.0.1:{other.port}, "
                     "not VLC's web interface (Connection reset by peer); check the port: "
                     "media time unknown until vlc answers there"], r.stderr
    assert "Traceback" not in r.stderr
    with sqlite3.connect(rec) as db:
        kinds = [k for (k,) in db.execute("SELECT kind FROM events WHERE kind LIKE 'player%'")]
    assert kinds == ["player_lost"]
