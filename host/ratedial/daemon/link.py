"""The serial shell: one asyncio protocol per open port, stamping every read on arrival.

Two ways to read a port feed the same :class:`PortLink`: ``io="asyncio"`` (an asyncio
transport, the default on Linux and macOS) and ``io="thread"`` (a thread blocked in
``Serial.read``, :mod:`.serial_thread`, the default on Windows).

Invariants:

* Bytes are timestamped with ``time.monotonic_ns()`` in ``data_received``, before any
  queueing, so every frame's arrival time is an upper bound on when it left the dial.
* The decoder never raises; rejected chunks are reported to the owner as
  :class:`~ratedial.wire.Rejected` markers in stream order, so nothing downstream depends
  on how the bytes were split into reads.
* Losing the port (unplug, EIO) ends the link exactly once, via :attr:`PortLink.closed`,
  whether a read or a write finds it gone; nothing else is printed (see
  :func:`_quiet_port_losses`).
* On POSIX the event loop reads the port with one ``os.read`` per readiness (see
  :func:`_read_directly`), not pyserial's ``read``, which costs two ``select`` calls a read.
* Every port the loop finds readable is read and stamped before any read is decoded (see
  :class:`_ReadsFirst`): a frame's stamp never waits for another port's frames to be
  processed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

import serial
import serial_asyncio_fast

from ..errors import PortError
from ..wire import Command, Frame, FrameDecoder, Rejected, encode_command

FrameHandler = Callable[[list[Frame | Rejected], int], None]  # frames, host_recv_ns


class PortLink(asyncio.Protocol):
    """Feeds a :class:`FrameDecoder` from a serial transport."""

    def __init__(self, port: str, on_frames: FrameHandler) -> None:
        self.port = port
        self.decoder = FrameDecoder()
        self._on_frames = on_frames
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
        self.bytes_in = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        _read_directly(transport, self)

    def data_received(self, data: bytes) -> None:
        self.received(data, time.monotonic_ns())

    def received(self, data: bytes, now: int) -> None:
        """Bytes that had all arrived by host time ``now``."""
        self.bytes_in += len(data)
        items = self.decoder.feed_marked(data)
        if items:
            self._on_frames(items, now)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(exc)

    def send(self, cmd: Command) -> int:
        """Send a command; return the host time just before it was handed to the OS."""
        now = time.monotonic_ns()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode_command(cmd))
        return now

    def close(self) -> None:
        # A transport that lost its port has already closed itself; closing it again would
        # make serial_asyncio_fast report the loss twice.
        if self.transport is not None and not self.closed.done() \
                and not self.transport.is_closing():
            self.transport.abort()


READ_SIZE = 16384  # bytes per read: a backlog of frames comes in one read, not 1 KiB at a time
_AGAIN = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR)


class _ReadsFirst:
    """One event loop's reads, stamped as they are made and decoded after every port that
    was readable at the same time has been read.

    Dials on one USB bus deliver at the same 1 ms frame boundaries, so the loop often finds
    several ports readable at once and runs their read callbacks one after another. Had each
    callback decoded and handled its frames before the next one read, the last port's stamp
    would carry the others' processing (100-300 µs each), different at every boundary:
    noise on the arrival bounds the clock model rests on (docs/timing.md). Here a read only
    reads, stamps and queues; the first read of a loop iteration schedules one drain, which
    the loop runs after the reads it already had ready. Each port's bytes stay in order, and
    a port's data is handled before its next read (or the read error that closes it).
    """

    __slots__ = ("_pending", "_scheduled")

    def __init__(self) -> None:
        # the loop is not kept here: this is the value of a weak mapping keyed by the loop
        self._pending: deque[tuple[Callable[[bytes, int], None], bytes, int]] = deque()
        self._scheduled = False

    def add(self, received: Callable[[bytes, int], None], data: bytes, now: int) -> None:
        self._pending.append((received, data, now))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._drain)

    def _drain(self) -> None:
        pending = self._pending
        try:
            while pending:
                received, data, now = pending.popleft()
                received(data, now)
        finally:
            self._scheduled = False
            if pending:  # a handler raised: the rest still go, in order, next round
                self._scheduled = True
                asyncio.get_running_loop().call_soon(self._drain)


_reads_first: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _ReadsFirst] = \
    weakref.WeakKeyDictionary()


def _read_directly(transport: Any, link: PortLink) -> None:
    """Make ``transport`` (serial_asyncio_fast's, on POSIX) read its port with one
    ``os.read`` when the event loop reports it readable.

    pyserial's ``Serial.read`` (what the transport calls) runs a ``select`` before each
    ``os.read`` and one more after it to see that nothing is left: at 1,000 frames a second
    that is 2,000 system calls and most of the read path's Python. The transport registers
    ``_read_ready`` with the loop right after ``connection_made``, so the replacement is
    in place before the first read. Errors end the transport as pyserial's would: a read
    that fails, or returns nothing on a readable port (an unplugged device). What is read is
    stamped at once and handed to the loop's :class:`_ReadsFirst`, which decodes it after
    every port that was readable with it has been read. Anything not shaped as expected
    (another transport, Windows' polling one) is left alone.
    """
    ser = getattr(transport, "serial", None)
    fd = getattr(ser, "fd", None)
    close = getattr(transport, "_close", None)
    if os.name != "posix" or not isinstance(fd, int) or close is None \
            or not hasattr(transport, "_read_ready"):
        return
    received = link.received
    loop = asyncio.get_running_loop()
    queue = _reads_first.get(loop)
    if queue is None:
        queue = _reads_first[loop] = _ReadsFirst()
    add = queue.add

    def read_ready() -> None:
        try:
            data = os.read(fd, READ_SIZE)
        except OSError as exc:
            if exc.errno in _AGAIN:
                return
            close(exc=serial.SerialException(f"read failed: {exc}"))
            return
        if not data:
            close(exc=serial.SerialException(
                "device reports readiness to read but returned no data (device disconnected "
                "or multiple access on port?)"))
            return
        add(received, data, time.monotonic_ns())

    transport._read_ready = read_ready


async def open_link(port: str, on_frames: FrameHandler, *, io: str = "asyncio") -> PortLink:
    """Open ``port`` raw (no echo, no line handling) and attach a :class:`PortLink`, read
    by the event loop (``io="asyncio"``) or by a thread of its own (``io="thread"``)."""
    if io == "thread":
        from .serial_thread import open_thread_link

        return await open_thread_link(port, on_frames)
    loop = asyncio.get_running_loop()
    _quiet_port_losses(loop)
    link: PortLink | None = None

    def factory() -> PortLink:
        nonlocal link
        link = PortLink(port, on_frames)
        return link

    try:
        await serial_asyncio_fast.create_serial_connection(
            loop, factory, port, baudrate=115200, exclusive=True
        )
    except (serial.SerialException, OSError, ValueError) as exc:
        raise PortError(describe_open_error(port, exc), gone=port_gone(exc)) from None
    assert link is not None
    return link


_QUIETED: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def _quiet_port_losses(loop: asyncio.AbstractEventLoop) -> None:
    """A write that finds the port gone (a dial unplugged while a PING was on its way) is
    reported by serial_asyncio_fast to the loop's exception handler, whose default prints a
    traceback, and then aborts the transport, which ends the link through
    ``connection_lost`` like a failed read: the daemon reports the loss there, in one line.
    This handler drops that first report (only for a :class:`PortLink`'s transport and a
    serial or OS error); every other context goes to the handler that was in place."""
    if loop in _QUIETED:
        return
    _QUIETED.add(loop)
    previous = loop.get_exception_handler()

    def handler(lp: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if isinstance(context.get("protocol"), PortLink) and \
                isinstance(context.get("exception"), (serial.SerialException, OSError)):
            return
        if previous is not None:
            previous(lp, context)
        else:
            lp.default_exception_handler(context)

    loop.set_exception_handler(handler)


def describe_open_error(port: str, exc: BaseException) -> str:
    return f"cannot open {port}: {_reason(exc)}"


def port_gone(exc: BaseException) -> bool:
    """The port does not exist: unplugged, or never there (ENOENT; on Windows pyserial
    says FileNotFoundError in its message and gives no errno)."""
    text = str(exc)
    return getattr(exc, "errno", None) == 2 or "No such file" in text or \
        "FileNotFoundError" in text or "cannot find the file" in text


def _reason(exc: Any) -> str:
    errno = getattr(exc, "errno", None)
    text = str(exc)
    if port_gone(exc):
        return "no such port"
    if "Access is denied" in text or getattr(exc, "winerror", None) == 5:
        # Windows opens a COM port in one program at a time and says only this.
        return "port is busy: another program has it open (close the Arduino IDE, Thonny, " \
            "a serial monitor or another ratedial, then try again)"
    if errno == 13 or "Permission denied" in text:
        return "permission denied (on Linux, add yourself to the dialout group: " \
            "sudo usermod -aG dialout $USER, then log in again)"
    if "exclusively lock" in text or errno == 11:  # pyserial's exclusive=True on POSIX
        return "port is busy: another program has it open (close Thonny, a serial monitor " \
            "or another ratedial, then try again)"
    if "busy" in text.lower() or errno == 16:
        return "port is busy (another program has it open)"
    if errno == 21 or "Is a directory" in text:
        return "a folder, not a serial port"
    if errno == 25 or "Inappropriate ioctl" in text:  # ENOTTY: /dev/null, a plain file
        return "not a serial port"
    return text.splitlines()[0] if text else type(exc).__name__


async def close_link(link: PortLink) -> None:
    link.close()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.shield(link.closed), 2.0)
