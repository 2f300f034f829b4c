"""The daemon's event loop on each OS.

Invariants:

* POSIX: a selector loop on ``select``, whose timeouts are in microseconds (the default
  epoll selector waits whole milliseconds, which keeps PINGs at one phase of the USB
  frame; docs/timing.md). A daemon has far fewer than its 1024 descriptors.
* Windows: the Proactor loop, the only one there with subprocesses (``--video`` starts
  mpv) and named pipes (mpv's IPC). Serial ports are read by the thread reader there, so
  arrival stamps do not depend on the loop's timer resolution; the send stamp of a PING is
  taken just before its write, whenever the loop gets to it.
"""

from __future__ import annotations

import asyncio
import selectors
import sys


def precise_loop() -> asyncio.AbstractEventLoop:
    if sys.platform == "win32":
        return asyncio.ProactorEventLoop()
    return asyncio.SelectorEventLoop(selectors.SelectSelector())
