"""A scripted dial on a real pty: a thread writes prepared frames at given times.

For inputs no real dial sends (foreign versions, garbage) and for fast, deterministic
streams in daemon tests. The firmware itself is exercised through the virtual dial.
"""

from __future__ import annotations

import os
import pty
import select
import threading
import time
import tty
from collections.abc import Callable, Iterator

from ratedial.wire import Hello, Samples, encode_frame

UID = bytes.fromhex("0123456789abcdef")


class ScriptedPort:
    """A pty whose device end is written by a thread: for inputs no real dial would send."""

    def __init__(self, chunks_fn: Callable[[], Iterator[tuple[bytes, float]]], *,
                 wait_for_host: bool = False) -> None:
        """``wait_for_host``: start the script (its time 0) when the host first writes to
        the port (the daemon's INFO when it has opened it), so nothing is sent unread."""
        self.master, slave = pty.openpty()
        self._wait_for_host = wait_for_host
        self.host_wrote = b""
        tty.setraw(slave)
        self.path = os.ttyname(slave)
        self._slave = slave
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(chunks_fn,), daemon=True)
        self._thread.start()

    def _run(self, chunks_fn: Callable[[], Iterator[tuple[bytes, float]]]) -> None:
        while self._wait_for_host and not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                self.host_wrote = os.read(self.master, 4096)
                break
        t0 = time.monotonic()
        for chunk, at in chunks_fn():
            while time.monotonic() - t0 < at:
                if self._stop.wait(0.005):
                    return
            try:
                view = memoryview(chunk)
                while view:  # a pty takes a large write in parts
                    view = view[os.write(self.master, view):]
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        os.close(self.master)
        os.close(self._slave)


def device_us(index: int) -> int:
    """Device time of sample ``index`` of a scripted dial (sample 0 at 1 s)."""
    return 1_000_000 + 1000 * index


def hello(*, boot: int = 42, index: int = 0) -> Hello:
    """The HELLO a dial sends when sample ``index`` is next (its device time then)."""
    return Hello(seq=0, boot_id=boot, time_us=device_us(index), period_us=1000, rate_hz=1000,
                 batch=10, tick_bits=30, flags=1, debounce_ms=5, uid=UID, board="test",
                 firmware="0.1.0", backend="irq")


def samples(first: int) -> Samples:
    return Samples(seq=first // 10, first_index=first, period_us=1000,
                   counts=tuple(range(first, first + 10)),
                   times_us=tuple(device_us(first + k) for k in range(10)),
                   flags=(0,) * 10)


def stream(n_frames: int, *, period_s: float = 0.01, start: float = 0.0, hello_every: int = 50,
           boot: int = 42, first_frame: int = 0) -> Callable[[], Iterator[tuple[bytes, float]]]:
    """A 1 kHz dial in real time: HELLO, then frames of 10 samples every 10 ms (from index
    ``10 * first_frame``: a boot that went on while nobody read it)."""
    def chunks() -> Iterator[tuple[bytes, float]]:
        for i in range(n_frames):
            f = first_frame + i
            extra = encode_frame(hello(boot=boot, index=10 * f)) if i % hello_every == 0 else b""
            yield extra + encode_frame(samples(10 * f)), start + i * period_s
    return chunks
