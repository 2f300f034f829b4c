"""Ctrl+C, Ctrl+Break, SIGTERM and SIGHUP ask a running loop to stop cleanly (recording closed, end
of run published), instead of tearing the loop down with KeyboardInterrupt.

Invariants:

* ``stop`` runs on the loop's thread, never inside a signal handler.
* POSIX: ``loop.add_signal_handler``, which wakes the loop at once.
* Windows has no ``add_signal_handler``: a ``signal.signal`` handler hands ``stop`` to the
  loop with ``call_soon_threadsafe`` (this also wakes a loop waiting in ``select``).
  Python runs that handler between bytecodes of the main thread, so it takes effect at the
  loop's next wake-up (the daemon wakes at least every 0.25 s). Ctrl+Break is SIGBREAK.
* The returned function puts the previous handlers back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from .stopsignal import raise_on_terminate, stop_signals


def stop_on_signals(loop: asyncio.AbstractEventLoop, stop: Callable[[], None], *,
                    portable: bool | None = None) -> Callable[[], None]:
    """Call ``stop`` on ``loop`` when a stop signal arrives; returns the undo function.

    ``portable=True`` takes the Windows path (``signal.signal``) on any OS, so it is tested
    on Linux; the default is that path on Windows only. Must be called from the main thread.
    """
    if portable is None:
        portable = sys.platform == "win32"
    # `nohup ratedial run`: a hangup (the SSH session closed) must not end the session
    hup = getattr(signal, "SIGHUP", None)
    signals = tuple(s for s in stop_signals()
                    if not (s == hup and signal.getsignal(s) is signal.SIG_IGN))
    if not portable:
        installed: list[tuple[signal.Signals, Any]] = []
        ttys = terminal_fds()
        for sig in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                before = signal.getsignal(sig)
                if sig == getattr(signal, "SIGHUP", None):
                    loop.add_signal_handler(sig, _hung_up, ttys, stop)
                else:
                    loop.add_signal_handler(sig, stop)
                installed.append((sig, before))

        def undo_loop() -> None:
            for sig, before in installed:
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.remove_signal_handler(sig)
                # asyncio puts back Python's default, not what was there (SIG_IGN when
                # started in the background, a caller's own handler)
                with contextlib.suppress(ValueError, OSError, TypeError):
                    signal.signal(sig, before)

        return undo_loop

    def handler(signum: int, frame: FrameType | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(stop)

    previous: dict[signal.Signals, Any] = {}
    for sig in signals:
        with contextlib.suppress(ValueError, OSError):  # not the main thread; not this OS
            previous[sig] = signal.signal(sig, handler)

    def undo() -> None:
        for sig, old in previous.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(sig, old)

    return undo


def terminal_fds() -> list[int]:
    """Which of stdout and stderr are a terminal now (after a hangup a terminal no longer
    says it is one: its ioctls fail)."""
    out = []
    for fd in (1, 2):
        with contextlib.suppress(OSError, ValueError):
            if os.isatty(fd):
                out.append(fd)
    return out


def _hung_up(ttys: list[int], stop: Callable[[], None]) -> None:
    """SIGHUP: if it is the terminal's hangup (stdout or stderr was a terminal and is no
    longer one), every later write to it fails (EIO). What the run still prints on its way
    out (its last table, the summary) goes to the null device instead, so the run ends the
    same clean way as on SIGTERM. A `kill -HUP` with the terminal still there changes
    nothing: the summary is shown."""
    alive = set(terminal_fds())
    gone = [fd for fd in ttys if fd not in alive]  # `kill -HUP` with the terminal open: none
    if gone:
        with contextlib.suppress(OSError):
            null = os.open(os.devnull, os.O_WRONLY)
            for fd in gone:
                os.dup2(null, fd)
            os.close(null)
    stop()


@contextlib.contextmanager
def interrupt_on_terminate() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise KeyboardInterrupt like Ctrl+C, so the
    block's cleanup runs (a half-written file removed) instead of the process dying on the
    spot. POSIX only, main thread only; elsewhere a no-op."""
    previous = raise_on_terminate()
    try:
        yield
    finally:
        for sig, old in previous.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(sig, old)


def write_errors_for_file_size_limit() -> None:
    """A file size limit (``ulimit -f``) makes a write fail with EFBIG, said in one line like
    any write error, instead of SIGXFSZ killing the process silently (POSIX; Windows has
    no such signal)."""
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
