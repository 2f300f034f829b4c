"""A recording's write-ahead log (``FILE-wal``): folding it into the file, and saying so
when it cannot be (docs/recording.md, docs/reliability.md "Disk fills").

Invariant: a ``-wal`` with data in it may hold commits the file itself lacks (without it,
the file lacks its end or reads as damaged); whatever leaves one behind says so.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["fold", "wal_has_data", "wal_left", "wal_of"]


def wal_of(path: Path) -> Path:
    """SQLite's write-ahead log beside ``path``."""
    return path.with_name(path.name + "-wal")


def wal_has_data(wal: Path) -> bool:
    """A ``-wal`` file is there and not empty (it may hold commits the file lacks)."""
    try:
        return wal.stat().st_size > 0
    except OSError:
        return False


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
