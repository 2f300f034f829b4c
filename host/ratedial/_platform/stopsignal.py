"""Stop signals before a loop runs: which they are, and SIGTERM/SIGHUP raised like Ctrl+C.

Kept apart from :mod:`.signals` (which imports asyncio, ~0.1-0.2 s): the command's entry point
installs these first, so that no moment of its start is a silent kill.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from types import FrameType
from typing import Any, NoReturn


def stop_signals() -> tuple[signal.Signals, ...]:
    """The signals that stop a run on this OS."""
    if sys.platform == "win32":
        return (signal.SIGINT, signal.SIGBREAK)  # Ctrl+C, Ctrl+Break
    # SIGHUP: the terminal or SSH session that started the run was closed
    return (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopSignal(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where Ctrl+C raises KeyboardInterrupt; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise StopSignal(signum)


def raise_on_terminate() -> dict[signal.Signals, Any]:
    """From now on SIGTERM and SIGHUP raise :class:`StopSignal` (a KeyboardInterrupt) like
    Ctrl+C, instead of killing the process on the spot; returns the handlers replaced. A
    signal already ignored (``nohup``) stays ignored. POSIX only, main thread only;
    elsewhere nothing changes."""
    previous: dict[signal.Signals, Any] = {}
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is None or sys.platform == "win32":
            continue
        with contextlib.suppress(ValueError, OSError):  # not the main thread
            if signal.getsignal(sig) is signal.SIG_IGN:
                continue  # `nohup ratedial ...`, `trap '' TERM`: the caller's choice stands
            previous[sig] = signal.signal(sig, _raise_stop)
    return previous


def ignore_stop_signals() -> None:
    """From now on the stop signals do nothing (a run has ended and only says so: a second
    Ctrl+C must not turn its clean end into a kill). Main thread only."""
    for sig in stop_signals():
        with contextlib.suppress(ValueError, OSError):
            signal.signal(sig, signal.SIG_IGN)


def exit_stopped(exc: KeyboardInterrupt) -> NoReturn:
    """End the process for a stop signal (Ctrl+C, or :class:`StopSignal`): one line and the
    shell's status for that signal (128 + its number)."""
    signum = getattr(exc, "signum", signal.SIGINT)
    print(f"ratedial: stopped ({signal.Signals(signum).name})", file=sys.stderr)
    sys.exit(128 + signum)
