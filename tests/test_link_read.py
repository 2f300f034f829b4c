"""The asyncio serial link reads a real pty with one ``os.read`` per readiness: frames split
across writes arrive whole and in order, and a hung-up port ends the link with a one-line
reason (the path the daemon takes for every port on Linux and macOS)."""

from __future__ import annotations

import asyncio
import os
import pty
import select
import sys
import time
import tty
from collections.abc import Callable

import pytest
import serial

from ratedial.daemon.link import PortLink, _read_directly, close_link, open_link
from ratedial.wire import Frame, Ping, Rejected, Samples, encode_frame

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


async def _write_after_hang_up() -> tuple[Exception | None, list[dict[str, object]]]:
    master, slave = pty.openpty()
    tty.setraw(slave)
    reported: list[dict[str, object]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _lp, context: reported.append(context))
    link = await open_link(os.ttyname(slave), lambda items, host_ns: None)
    try:
        await asyncio.sleep(0)  # connection_made runs on the loop's next turn
        assert isinstance(link.transport, asyncio.ReadTransport)
        link.transport.pause_reading()  # the write, not a read, finds the port gone
        os.close(master)  # unplugged, and a PING is written
        link.send(Ping(token=7))
        exc = await asyncio.wait_for(asyncio.shield(link.closed), 10)
        loop.call_exception_handler({"message": "another problem"})  # still reported
        return exc, reported
    finally:
        await close_link(link)
        os.close(slave)


def test_a_write_to_a_lost_port_ends_the_link_without_a_traceback() -> None:
    exc, reported = asyncio.run(_write_after_hang_up())
    assert isinstance(exc, serial.SerialException)  # the link ends with the write's error
    assert "write failed" in str(exc)
    assert [c["message"] for c in reported] == ["another problem"]


async def _two_ports_ready_together(busy_ns: int) -> tuple[dict[str, int], dict[str, int]]:
    """Two ptys with a frame each, written before the loop looks: both are readable in the
    same loop iteration. Handling a frame costs ``busy_ns`` of CPU here."""
    ptys = {name: pty.openpty() for name in ("a", "b")}
    stamps: dict[str, int] = {}
    handled: dict[str, int] = {}  # when each port's frames were handled
    both = asyncio.Event()

    def handler(name: str) -> Callable[[list[Frame | Rejected], int], None]:
        def on_frames(_items: list[Frame | Rejected], host_ns: int) -> None:
            stamps[name] = host_ns
            handled[name] = time.monotonic_ns()
            end = handled[name] + busy_ns
            while time.monotonic_ns() < end:  # the cost of handling a frame
                pass
            if len(stamps) == 2:
                both.set()
        return on_frames

    links = []
    try:
        for name, (_, slave) in ptys.items():
            tty.setraw(slave)
            links.append(await open_link(os.ttyname(slave), handler(name)))
        # A transport starts reading with a callback the loop runs next (call_soon): one
        # pass of the loop, and both ports are watched before anything is written.
        await asyncio.sleep(0)
        wire = b"\x00" + encode_frame(samples(0))
        for master, _ in ptys.values():
            os.write(master, wire)
        # The tty layer hands written bytes to the slave side asynchronously: wait (without
        # yielding to the loop) until both ends are readable, so the loop's next select
        # finds both ports ready at once.
        slaves = [slave for _, slave in ptys.values()]
        deadline = time.monotonic() + 10
        while len(select.select(slaves, [], [], 0.1)[0]) < 2 and time.monotonic() < deadline:
            pass
        await asyncio.wait_for(both.wait(), 10)
    finally:
        for link in links:
            await close_link(link)
        for master, slave in ptys.values():
            os.close(master)
            os.close(slave)
    return stamps, handled


def test_every_ready_port_is_stamped_before_any_is_handled() -> None:
    """A frame's arrival stamp must not carry another port's processing: ports readable at
    once are all read and stamped first (the clock model's arrival bounds; docs/timing.md).
    Fails when each read is handled before the next port is read: the second stamp then
    comes after the first port's 20 ms of handling."""
    busy = 20_000_000
    stamps, handled = asyncio.run(_two_ports_ready_together(busy))
    first = min(handled, key=handled.__getitem__)
    second = "b" if first == "a" else "a"
    assert handled[second] >= handled[first] + busy  # handled one after the other
    assert stamps[second] <= handled[first]  # but stamped before the first was handled
