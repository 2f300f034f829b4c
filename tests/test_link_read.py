"""The asyncio serial link reads a real pty with one ``os.read`` per readiness: frames split
across writes arrive whole and in order, and a hung-up port ends the link with a one-line
reason (the path the daemon takes for every port on Linux and macOS)."""

from __future__ import annotations

import asyncio
import os
import pty
import sys
import tty

import pytest
import serial

from ratedial.daemon.link import PortLink, _read_directly, close_link, open_link
from ratedial.wire import Frame, Rejected, Samples, encode_frame

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="ptys are POSIX")


def samples(first: int) -> Samples:
    return Samples(seq=first // 10, first_index=first, period_us=1000,
                   counts=tuple(range(first, first + 10)),
                   times_us=tuple(1000 * i for i in range(first, first + 10)), flags=(0,) * 10)


async def _read_then_hang_up() -> tuple[list[Frame | Rejected], list[int], int,
                                       Exception | None, bool]:
    master, slave = pty.openpty()
    tty.setraw(slave)
    got: list[Frame | Rejected] = []
    stamps: list[int] = []
    enough = asyncio.Event()

    def on_frames(items: list[Frame | Rejected], host_ns: int) -> None:
        got.extend(items)
        stamps.append(host_ns)
        if len(got) >= 30:
            enough.set()

    link = await open_link(os.ttyname(slave), on_frames)
    try:
        wire = b"\x00" + b"".join(encode_frame(samples(10 * k)) for k in range(30))
        cut = len(wire) // 2 + 3  # mid-frame
        os.write(master, wire[:cut])
        await asyncio.sleep(0)
        os.write(master, wire[cut:])
        await asyncio.wait_for(enough.wait(), 10)
        direct = getattr(link.transport, "_read_ready", None).__name__ == "read_ready"
        os.close(master)  # the device end goes away: the next read fails (EIO)
        exc = await asyncio.wait_for(asyncio.shield(link.closed), 10)
        return got, stamps, link.bytes_in, exc, direct
    finally:
        await close_link(link)
        os.close(slave)


def test_frames_split_across_writes_arrive_whole_and_a_hang_up_ends_the_link() -> None:
    got, stamps, bytes_in, exc, direct = asyncio.run(_read_then_hang_up())
    assert direct  # the transport reads with os.read, not pyserial's select-read loop
    assert got == [samples(10 * k) for k in range(30)]
    assert bytes_in == 1 + 30 * len(encode_frame(samples(0)))
    assert stamps == sorted(stamps)
    assert isinstance(exc, serial.SerialException)
    # Linux reports a hung-up pty as an empty read, pyserial's words for which are kept
    assert "disconnected" in str(exc) or str(exc).startswith("read failed")


def test_a_transport_of_another_shape_is_left_alone() -> None:
    class Other:
        def _read_ready(self) -> None:
            pass

    async def attach() -> Other:
        t = Other()
        _read_directly(t, PortLink("x", lambda _i, _t: None))
        return t

    t = asyncio.run(attach())
    assert "_read_ready" not in vars(t)  # no serial fd: the transport's own read stays
