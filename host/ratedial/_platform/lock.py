"""One writer per recording: an exclusive lock held for as long as a process writes the file.

Invariants:

* The lock is released by the OS when the descriptor is closed or the process ends, even by
  SIGKILL or a crash: a stale lock never outlives its writer.
* SQLite never sees it: on POSIX ``flock`` (whole-file, separate from SQLite's ``fcntl``
  byte locks); on Windows ``msvcrt.locking`` of one byte inside SQLite's lock-byte page that
  SQLite itself never reads, writes or locks (:data:`WINDOWS_LOCK_OFFSET`). Windows locks
  are mandatory, so the byte must be one no reader ever needs.
* The caller gets a plain descriptor (``int``) and releases the lock with ``os.close``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

# SQLite's lock-byte page starts at 1 GiB (PENDING_BYTE); its own locks take the first 512
# bytes of it (PENDING, RESERVED, 510 SHARED bytes), and the rest of the page is never read
# or written. Our recordings use 4096-byte pages; any page size from 1024 up keeps this byte
# on that page.
SQLITE_PENDING_BYTE = 0x4000_0000
SQLITE_LOCK_BYTES = 512
WINDOWS_LOCK_OFFSET = SQLITE_PENDING_BYTE + 1023

Locker = Callable[[int], bool]  # descriptor -> taken (False: another process holds it)


def _posix_lock(fd: int) -> bool:
    if sys.platform == "win32":
        raise OSError("fcntl.flock does not exist on Windows")
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _windows_lock(fd: int) -> bool:
    if sys.platform != "win32":
        raise OSError("msvcrt.locking exists on Windows only")
    import msvcrt

    os.lseek(fd, WINDOWS_LOCK_OFFSET, os.SEEK_SET)  # locking() starts at the file position
    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


def locker_for(platform: str) -> Locker:
    """The lock implementation used on ``platform`` (a ``sys.platform`` value)."""
    return _windows_lock if platform == "win32" else _posix_lock


def try_lock(path: Path) -> int | None:
    """Take the exclusive lock the process writing a recording keeps on it (one writer per
    file): the descriptor holding it, or None if another process holds it. Closing the
    descriptor releases the lock, and so does the process ending, even by SIGKILL.
    OSError if the file cannot be opened."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))  # LockFile needs read only
    if not locker_for(sys.platform)(fd):
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def held(path: Path) -> Iterator[bool]:
    """Try to take the exclusive lock a running writer keeps on its recording: yields
    whether it was taken (False: a process writes it, or it cannot be opened), and releases
    it on leaving."""
    try:
        fd = try_lock(path)
    except (OSError, ImportError):  # (ImportError: no lock module on this system)
        fd = None
    try:
        yield fd is not None
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock
