"""The analysis commands never write over what they read (path checks, no I/O beyond stat).

Invariant: an output of ``analyze --table``, ``study``, ``export`` or ``render`` is never a
recording given to the command, nor one of its SQLite side files (``-wal``, ``-shm``,
``-journal``: writing over one loses what it holds), nor another input (an annotations
table, the video), nor any existing SQLite database or write-ahead log (a recording not
given this time, or what a crashed one left). The
refusal is one line, before anything is written.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from .errors import UsageError

#: SQLite's side files of a recording.
_SIDE_FILES = ("", "-wal", "-shm", "-journal")
#: The first 16 bytes of an SQLite 3 database.
SQLITE_MAGIC = b"SQLite format 3\x00"


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file (or would, once created)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (or cannot be looked at)
        return os.path.realpath(a) == os.path.realpath(b)


def is_sqlite(path: Path) -> bool:
    """Whether ``path`` starts as an SQLite 3 database does."""
    try:
        with open(path, "rb") as f:
            return f.read(16) == SQLITE_MAGIC
    except OSError:
        return False


# the first bytes of an SQLite write-ahead log (two byte orders of its checksums) and of a
# rollback journal: a crashed recording's last commits may be nowhere else
_SIDE_MAGIC = (b"\x37\x7f\x06\x82", b"\x37\x7f\x06\x83", b"\xd9\xd5\x05\xf9")


def is_sqlite_side_file(path: Path) -> bool:
    """Whether ``path`` starts as an SQLite ``-wal`` or ``-journal`` file does."""
    try:
        with open(path, "rb") as f:
            return f.read(4) in _SIDE_MAGIC
    except OSError:
        return False


def refuse_inputs(outputs: Iterable[Path], *, recordings: Iterable[Path],
                  others: Iterable[Path] = (), option: str = "the output") -> None:
    """One line (:class:`UsageError`) if any of ``outputs`` would write over a recording,
    its side files, another input or an existing SQLite database."""
    recordings, others = list(recordings), list(others)
    for out in outputs:
        for rec in recordings:
            for side in _SIDE_FILES:
                if same_file(out, Path(f"{rec}{side}")):
                    raise UsageError(
                        f"{option} {out} is the recording {rec}"
                        f"{' (its ' + side[1:] + ' file)' if side else ''}: ratedial never "
                        "writes over a recording; choose another name")
        for other in others:
            if same_file(out, other):
                raise UsageError(f"{option} {out} is the input {other}: ratedial never "
                                 "writes over its inputs; choose another name")
        if is_sqlite(out):
            raise UsageError(f"{option} {out} is an SQLite database (a recording?): ratedial "
                             "never writes over one; choose another name")
        if is_sqlite_side_file(out):
            raise UsageError(f"{option} {out} is an SQLite write-ahead log or journal (part of "
                             "a recording?): ratedial never writes over one; choose another "
                             "name")
