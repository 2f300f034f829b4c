"""Everything that differs between Linux, macOS and Windows, one small seam per difference.

Invariants:

* Nothing here imports a platform-only module (``fcntl``, ``termios``, ``msvcrt``,
  ``_winapi``) at module level: each seam picks its side when called, so every module of the
  package imports on every OS.
* Each seam has a POSIX side and a Windows side with the same signature; where the Windows
  side can run on Linux too (the thread serial reader, the signal path, the thread keyboard
  reader), it is selectable here and tested here.

Seams: :mod:`.lock` (one writer per recording), :mod:`.signals` (Ctrl+C, Ctrl+Break,
SIGTERM stop the daemon), :mod:`.keys` (lines typed at the terminal), :mod:`.pipes` (mpv's
IPC: a Unix socket or a Windows named pipe), :mod:`.loops` (a loop MQTT can use),
:mod:`.privacy` (who can read a recording), :func:`default_serial_io` (the serial reader,
:mod:`ratedial.daemon.serial_thread` on Windows), :func:`clock_note`, :func:`has_display`,
:func:`port_key` (one name for a serial port however written), :func:`is_com_port`,
:func:`shell_quote` (a word of a command the user pastes into their shell).
"""

from __future__ import annotations

import ntpath
import os
import re
import sys

WINDOWS = sys.platform == "win32"
MACOS = sys.platform == "darwin"

SERIAL_IO = ("asyncio", "thread")


def clock_note(platform: str = sys.platform,
               version: tuple[int, int] = (sys.version_info.major, sys.version_info.minor)
               ) -> str | None:
    """One line when this Python's clock is too coarse for ratedial's timing: on Windows,
    ``time.monotonic_ns`` (every host stamp) ticks in 15.6 ms steps before Python 3.13."""
    if platform == "win32" and version < (3, 13):
        return ("Python before 3.13 on Windows stamps time in 15.6 ms steps, so clock and "
                "media times are that coarse: use Python 3.13 or newer")
    return None


def default_serial_io() -> str:
    """``thread`` on Windows (pyserial-asyncio there polls every 0.5 ms, so arrival stamps
    are poll times), ``asyncio`` elsewhere."""
    return "thread" if WINDOWS else "asyncio"


def has_display() -> bool:
    """Whether a program can open a window: Windows and macOS always; Linux and BSD with X11
    or Wayland."""
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


_WIN_COM = re.compile(r"(?:\\\\[.?]\\)?(COM[0-9]+)", re.IGNORECASE)


_WIN_PLAIN = re.compile(r"[A-Za-z0-9_.:\\/-]+")


def shell_quote(arg: str, platform: str = sys.platform) -> str:
    """``arg`` as one word of a command printed for the user to paste: ``shlex.quote`` for
    POSIX shells; on Windows double quotes (cmd and PowerShell both take them, and neither
    takes POSIX single quotes as quoting in cmd) unless it is plain. Inside them cmd still
    expands ``%NAME%`` and PowerShell ``$name`` and backticks: no one quoting serves both
    shells there, and the README says so."""
    if platform == "win32":
        return arg if _WIN_PLAIN.fullmatch(arg) else f'"{arg}"'
    import shlex  # here: this package is imported before a run's stop handlers are in place

    return shlex.quote(arg)


def is_com_port(port: str, platform: str = sys.platform) -> bool:
    """A Windows serial port's name (``COM3``, ``\\\\.\\COM3``): never so elsewhere."""
    return platform == "win32" and _WIN_COM.fullmatch(port.strip()) is not None


def port_key(port: str, platform: str = sys.platform) -> str:
    """One key for a serial port however written: relative or absolute, through a link
    (/dev/serial/by-id/...); on Windows in any case and with or without the device prefix
    (``COM3``, ``com3`` and ``\\\\.\\COM3`` are one port); on macOS the call-in side of a
    device (``/dev/tty.usbmodem1``) is its call-out side (``/dev/cu.usbmodem1``), the one the
    USB scan opens."""
    if platform == "darwin":
        head, name = os.path.split(os.path.realpath(port))
        if head == "/dev" and name.startswith("tty."):
            return f"/dev/cu.{name[4:]}"
        return os.path.join(head, name)
    if platform == "win32":
        com = _WIN_COM.fullmatch(port.strip())
        if com is not None:
            return com.group(1).lower()
        return ntpath.normcase(os.path.realpath(port) if WINDOWS else port)
    return os.path.realpath(port)
