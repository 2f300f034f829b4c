"""What the rater types at the terminal, as chunks of bytes stamped when they arrived.

Invariants:

* Each chunk is stamped with ``now()`` as soon as it is known to be there (readable, or the
  blocking read returned), before any queueing, and handed to the loop in order.
* POSIX: ``loop.add_reader`` on the descriptor (nothing blocks). Windows cannot select on a
  console: a daemon thread blocks in ``os.read`` and hands each chunk to the loop with
  ``call_soon_threadsafe``; the same thread path runs on any OS with ``thread=True``.
* :func:`read_chunks` returns when the input ends (EOF or a read error).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections.abc import Callable

OnChunk = Callable[[int, bytes], None]  # host_ns, data


async def read_chunks(fd: int, on_chunk: OnChunk, now: Callable[[], int], *,
                      thread: bool | None = None) -> None:
    """Feed ``on_chunk`` from ``fd`` until it ends. OSError or ValueError if ``fd`` cannot
    be watched this way (e.g. a regular file under epoll)."""
    if thread is None:
        thread = sys.platform == "win32"
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    if thread:
        def reader() -> None:
            while True:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    data = b""
                host_ns = now()
                try:
                    loop.call_soon_threadsafe(_deliver, on_chunk, done, host_ns, data)
                except RuntimeError:  # the loop has closed
                    return
                if not data:
                    return

        threading.Thread(target=reader, name="keyboard", daemon=True).start()
        await done.wait()
        return

    def readable() -> None:
        host_ns = now()
        try:
            data = os.read(fd, 4096)
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
        _deliver(on_chunk, done, host_ns, data)

    loop.add_reader(fd, readable)
    try:
        await done.wait()
    finally:
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(fd)


def _deliver(on_chunk: OnChunk, done: asyncio.Event, host_ns: int, data: bytes) -> None:
    if done.is_set():
        return
    if data:
        on_chunk(host_ns, data)
    else:
        done.set()
