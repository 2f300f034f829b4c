"""The thread serial reader: one thread per port blocked in ``Serial.read``, stamping each
read the moment it returns, for hosts where asyncio cannot wait on a serial port (Windows,
where pyserial-asyncio polls ``in_waiting`` every 0.5 ms so stamps are poll times). Chosen
by ``[serial] io = "thread"`` (``ratedial run --serial-io thread``), the default on Windows;
selectable on every OS, so the daemon tests run it on Linux too.

Invariants:

* The thread only reads and stamps: it blocks in ``Serial.read(1)`` (overlapped I/O on
  Windows, ``select`` on POSIX), then takes what else is waiting, then stamps
  ``time.monotonic_ns()``; every byte was there before its stamp, so a frame's arrival
  time stays an upper bound on when it left the dial. Chunks reach the loop in order,
  each with its own stamp, through a queue; the loop is woken (``call_soon_threadsafe``)
  only when it is not already due to drain it. Decoding and everything after happen on the
  loop, exactly as for :class:`~.link.PortLink`.
* Commands are written from the loop with a zero write timeout (never blocks); the send
  stamp is taken just before the write, as in :class:`~.link.PortLink`.
* The port is closed by its thread alone, which then resolves :attr:`closed` exactly once:
  unplugging (a read error) and :meth:`close` (``cancel_read``) end the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque

import serial

from ..errors import PortError
from ..wire import Command, encode_command
from .link import FrameHandler, PortLink, describe_open_error, port_gone

CHUNK = 4096


class ThreadLink(PortLink):
    """A :class:`PortLink` fed by a reader thread instead of an asyncio transport."""

    def __init__(self, port: str, on_frames: FrameHandler, ser: serial.Serial) -> None:
        super().__init__(port, on_frames)
        self._ser = ser
        self._loop = asyncio.get_running_loop()
        self._closing = False
        self._chunks: deque[tuple[bytes, int]] = deque()  # read by the thread, not yet fed
        self._wake_due = False  # a drain is scheduled on the loop
        self._thread = threading.Thread(target=self._read, name=f"serial {port}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    # --- the reader thread --------------------------------------------------------------

    def _read(self) -> None:
        ser = self._ser
        error: Exception | None = None
        try:
            while not self._closing:
                data = ser.read(1)  # blocks until a byte arrives or cancel_read()
                waiting = ser.in_waiting
                if waiting:
                    data += ser.read(min(waiting, CHUNK))
                now = time.monotonic_ns()
                if data and not self._closing:
                    self._chunks.append((data, now))
                    if not self._wake_due:
                        self._wake_due = True
                        self._loop.call_soon_threadsafe(self._drain)
        except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
            # pyserial raises TypeError/AttributeError when the port is closed under it
            error = None if self._closing else exc
        finally:
            with contextlib.suppress(serial.SerialException, OSError):
                ser.close()
            with contextlib.suppress(RuntimeError):  # the loop has gone away
                self._loop.call_soon_threadsafe(self.connection_lost, error)

    def _drain(self) -> None:
        # Reset first: a chunk queued from here on schedules another drain (which may find
        # the queue already empty). deque append/popleft are atomic.
        self._wake_due = False
        while self._chunks:
            data, now = self._chunks.popleft()
            if not self.closed.done():
                self.received(data, now)

    # --- the loop side -------------------------------------------------------------------

    def send(self, cmd: Command) -> int:
        """Send a command; return the host time just before it was handed to the OS."""
        data = encode_command(cmd)
        now = time.monotonic_ns()
        if not self._closing and not self.closed.done():
            with contextlib.suppress(serial.SerialException, OSError):
                self._ser.write(data)  # write_timeout=0: never blocks; a lost port ends
        return now                     # the reader, which reports it

    def close(self) -> None:
        if not self._closing and not self.closed.done():
            self._closing = True
            with contextlib.suppress(serial.SerialException, OSError):
                self._ser.cancel_read()


async def open_thread_link(port: str, on_frames: FrameHandler) -> ThreadLink:
    """Open ``port`` raw and exclusively, and start its reader thread."""
    def open_port() -> serial.Serial:
        return serial.Serial(port, 115200, timeout=None, write_timeout=0, exclusive=True)

    try:
        ser = await asyncio.to_thread(open_port)
    except (serial.SerialException, OSError, ValueError) as exc:
        raise PortError(describe_open_error(port, exc), gone=port_gone(exc)) from None
    link = ThreadLink(port, on_frames, ser)
    link.start()
    return link
