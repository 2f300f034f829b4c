"""A recording's write-ahead log (``FILE-wal``): folding it into the file, and saying so
when it cannot be (docs/recording.md, docs/reliability.md "Disk fills").

Invariant: a ``-wal`` with data in it may hold commits the file itself lacks (without it,
the file lacks its end or reads as damaged); whatever leaves one behind says so.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["fold", "wal_has_data", "wal_left", "wal_of", "wal_pages"]


def wal_of(path: Path) -> Path:
    """SQLite's write-ahead log beside ``path``."""
    return path.with_name(path.name + "-wal")


def wal_has_data(wal: Path) -> bool:
    """A ``-wal`` file is there and not empty (it may hold commits the file lacks)."""
    try:
        return wal.stat().st_size > 0
    except OSError:
        return False


def wal_pages(wal: Path, page: int) -> frozenset[int]:
    """The page numbers a ``-wal`` holds in its valid, committed frames: what SQLite would
    copy into the file on a fold (empty when there is no ``-wal`` or it is not one). WAL
    format: a 32-byte header (page size at bytes 8-11, salts at 16-23), then frames of a
    24-byte header (page number at 0-3, the database's page count after a commit at 4-7,
    nonzero on a commit's last frame; salts at 8-15, equal to the header's) and one page.
    Frames end at the first one cut short or with other salts (an older log's), and those
    after the last commit frame are not part of the database. Checksums are not checked."""
    found: set[int] = set()
    pending: set[int] = set()
    try:
        with open(wal, "rb") as f:
            head = f.read(32)
            if (len(head) < 32 or head[:4] not in (b"\x37\x7f\x06\x82", b"\x37\x7f\x06\x83")
                    or int.from_bytes(head[8:12], "big") != page):
                return frozenset()
            salts = head[16:24]
            at = 32
            while True:
                f.seek(at)
                frame = f.read(24)
                if len(frame) < 24 or frame[8:16] != salts:
                    break
                f.seek(at + 24 + page - 1)
                if len(f.read(1)) < 1:  # its page cut short
                    break
                pending.add(int.from_bytes(frame[:4], "big"))
                if int.from_bytes(frame[4:8], "big"):
                    found |= pending
                    pending.clear()
                at += 24 + page
    except OSError:
        return frozenset()
    return frozenset(found)


def fold(con: sqlite3.Connection, *, wait: bool = True) -> bool:
    """Fold the ``-wal`` into the database file (and empty it). True when everything is in
    the file itself; False when a reader (``analyze`` on a recording being made) still
    reads an older state, so the last commits stay in the ``-wal`` until it is opened
    again (``wait``: for up to the connection's busy timeout first). A failure to write
    (a full disk) raises :class:`sqlite3.Error`: the data is then in the file and its
    ``-wal`` together, never in the file alone."""
    mode = "TRUNCATE" if wait else "PASSIVE"
    busy, log, done = con.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
    return bool(busy == 0 and log == done)


def wal_left(path: Path, error: BaseException | str) -> str:
    """``error``'s line for a recording that stopped with its last part only in its
    ``-wal`` (SQLite could not fold it into the file: the disk is full)."""
    wal = wal_of(path)
    return (f"{error}; its last part is in {wal.name}: keep {wal.name} and {path.name}-shm "
            f"beside {path.name} (without them the file lacks its end or reads as damaged), "
            f"and once the disk has room open it once (ratedial analyze {path}) to fold "
            "them in")
