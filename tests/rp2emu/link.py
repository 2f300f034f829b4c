"""The host side of an emulated Pico's serial port: pyserial on the pty, frames decoded by
``ratedial.wire``, collected by a reader thread.

Waiting is on conditions over what arrived (``wait_for``), with a wall-clock limit only as a
safety net; time on the board is read from the frames themselves (device microseconds).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import serial

from ratedial.wire import Command, FrameDecoder, Hello, Rejected, Samples, Status, encode_command


class Link:
    def __init__(self, port: str) -> None:
        self.ser = serial.Serial(port, timeout=0.2)
        self.dec = FrameDecoder()
        self.frames: list[Any] = []
        self.rejected: list[Rejected] = []
        self._cv = threading.Condition()
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True, name="rp2emu-link")
        self._t.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data = self.ser.read(4096)
            except (serial.SerialException, OSError, TypeError):
                return
            if not data:
                continue
            out = self.dec.feed_marked(data)
            with self._cv:
                for f in out:
                    (self.rejected if isinstance(f, Rejected) else self.frames).append(f)
                self._cv.notify_all()

    def send(self, cmd: Command) -> None:
        self.ser.write(encode_command(cmd))
        self.ser.flush()

    def wait_for(self, pred: Callable[[list[Any]], Any], timeout: float, what: str) -> Any:
        """Wait until ``pred(frames)`` is truthy and return its value."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                r = pred(self.frames)
                if r:
                    return r
                left = deadline - time.monotonic()
                if left <= 0:
                    kinds: dict[str, int] = {}
                    for f in self.frames:
                        kinds[type(f).__name__] = kinds.get(type(f).__name__, 0) + 1
                    raise AssertionError(f"rp2emu: timed out waiting for {what}; got {kinds}")
                self._cv.wait(min(left, 1.0))

    def mark(self) -> int:
        with self._cv:
            return len(self.frames)

    def since(self, mark: int, kind: type | None = None) -> list[Any]:
        with self._cv:
            fs = self.frames[mark:]
        return fs if kind is None else [f for f in fs if isinstance(f, kind)]

    def last_time_us(self, frames: list[Any]) -> int | None:
        for f in reversed(frames):
            if isinstance(f, Samples):
                return f.times_us[-1]
            if isinstance(f, (Status, Hello)):
                return f.time_us
        return None

    def wait_device_time(self, t_us: int, timeout: float) -> None:
        """Until a frame stamped at or after device time ``t_us`` arrived."""
        self.wait_for(lambda fs: (self.last_time_us(fs) or -1) >= t_us, timeout,
                      f"device time {t_us} us")

    def close(self) -> None:
        self._stop = True
        self._t.join(timeout=2)
        self.ser.close()
