"""mpv's IPC through the thread path that Windows named pipes take (a thread reads the
endpoint and hands the bytes to asyncio streams), run here over mpv's Unix socket with a real
headless mpv: the daemon's mpv session follows it, commands and replies flow both ways, and
closing or losing the connection ends it once."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from typing import Any

import pytest

from conftest_media import have, make_test_video
from ratedial._platform.pipes import connect_ipc
from ratedial.players.mpv import MpvSession

pytestmark = pytest.mark.timeout(120)
FRAME = 1 / 30


class Out:
    def __init__(self) -> None:
        self.events: list[str] = []

    def event(self, kind: str, data: dict[str, Any], host_ns: int) -> None:
        self.events.append(kind)

    def add_media(self, *args: object) -> int:
        return 1

    def observation(self, *args: object) -> None:
        pass


async def until(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)  # polling a condition


async def ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rid: int,
              *command: Any) -> tuple[Any, int, int]:
    """mpv's answer to one command, with the host times it was sent and answered."""
    sent = time.monotonic_ns()
    writer.write(json.dumps({"command": list(command), "request_id": rid}).encode() + b"\n")
    while True:
        line = await asyncio.wait_for(reader.readline(), 5)
        assert line, "mpv closed the connection"
        msg = json.loads(line)
        if msg.get("request_id") == rid:
            assert msg["error"] == "success", msg
            return msg.get("data"), sent, time.monotonic_ns()


@pytest.mark.skipif(not have("mpv", "ffmpeg"), reason="needs mpv and ffmpeg")
def test_the_mpv_session_follows_mpv_through_the_thread_ipc_path(tmp_path):
    video = make_test_video(tmp_path / "v.mp4", seconds=20.0)
    sock = str(tmp_path / "mpv.sock")
    mpv = subprocess.Popen(
        ["mpv", "--vo=null", "--ao=null", "--idle=yes", "--pause", "--no-terminal",
         "--keep-open=yes", f"--input-ipc-server={sock}", str(video)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def main() -> tuple[list[float], list[str]]:
        session = MpvSession(sock)
        session.ipc_thread = True
        out = Out()
        task = asyncio.create_task(session.run(out))
        await until(lambda: "media_load" in out.events)
        reader, writer = await _connect(sock)
        await ask(reader, writer, 1, "set_property", "pause", False)
        await until(lambda: "media_play" in out.events)
        errors = []
        for rid in range(2, 40):
            pos, sent, recv = await ask(reader, writer, rid, "get_property", "time-pos")
            # mpv's time-pos was true between our send and its answer
            lo = session.clock.position_now(sent)
            hi = session.clock.position_now(recv)
            assert lo is not None and hi is not None
            errors.append(min(abs(pos - lo), abs(pos - hi)) if not lo <= pos <= hi else 0.0)
            await asyncio.sleep(0.05)  # spacing the probes over 2 s of playback
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 2)
        assert reader.at_eof() or await reader.read() == b""
        mpv.terminate()
        await until(lambda: "player_lost" in out.events)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return errors, out.events

    try:
        errors, events = asyncio.run(main())
    finally:
        if mpv.poll() is None:
            mpv.kill()
        mpv.wait(10)
    assert len(errors) == 38
    assert max(errors) <= 1.5 * FRAME, max(errors)  # the clock's lead bound for mpv
    assert events.count("player_lost") == 1


async def _connect(sock: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """asyncio streams over the reader-thread transport (the path named pipes take)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20, loop=loop)
    transport, protocol = await connect_ipc(
        sock, lambda: asyncio.StreamReaderProtocol(reader, loop=loop), thread=True)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)
