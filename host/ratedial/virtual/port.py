"""The host side of the virtual dial: a pseudo-terminal behind a stable symlink.

Invariants:
- The slave is in raw mode before any byte flows, and the bridge never holds it open, so
  the master reports POLLHUP exactly while no process has the port open (TinyUSB's "not
  connected"). The bridge opens the slave only for an instant, to measure or flush it.
- The symlink is replaced atomically, so a reader never sees a half-made link; on close it
  is removed only if it still points at this pty.
- ``backlog()`` is what the host has not read yet, as the line discipline counts it (at
  most 4095 bytes). Bytes the bridge wrote since are counted on top, so the bridge can keep
  what is unread at about 4 KB, like the tty buffer of a real serial port.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import struct
import termios
import tty
from pathlib import Path


class PtyPort:
    """One pseudo-terminal and its symlink. ``close()`` is the cable being pulled."""

    def __init__(self, link: Path) -> None:
        master, slave = os.openpty()
        try:
            tty.setraw(slave)
            self.slave_name = os.ttyname(slave)
        finally:
            os.close(slave)
        fl = fcntl.fcntl(master, fcntl.F_GETFL)
        fcntl.fcntl(master, fcntl.F_SETFL, fl | os.O_NONBLOCK)
        self.master = master
        self.link = link
        tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(self.slave_name, tmp)
        os.replace(tmp, link)
        self._poll = select.poll()
        self._poll.register(master, select.POLLIN)
        self.closed = False

    def host_open(self) -> bool:
        """True while some process has the port open."""
        return all(not ev & select.POLLHUP for _fd, ev in self._poll.poll(0))

    def _with_slave(self, op: str) -> int | None:
        try:
            fd = os.open(self.slave_name, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            return None  # e.g. TIOCEXCL by the host: then we cannot look
        try:
            if op == "backlog":
                raw = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
                return int(struct.unpack("i", raw)[0])
            termios.tcflush(fd, termios.TCIFLUSH)
            return 0
        except OSError:
            return None
        finally:
            os.close(fd)

    def backlog(self) -> int | None:
        """Bytes waiting in the host's input buffer (None: cannot tell)."""
        return self._with_slave("backlog")

    def flush_host_input(self) -> None:
        """Discard what the last host left unread (a real tty starts empty at open)."""
        self._with_slave("flush")

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(OSError):
            if os.readlink(self.link) == self.slave_name:
                self.link.unlink()
        os.close(self.master)
