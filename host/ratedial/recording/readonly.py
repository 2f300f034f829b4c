"""Opening a recording read-only: one place that turns a path into SQLite's ``file:`` URI.

Invariants:

* The path is quoted (:func:`file_uri`): a folder named ``study #3?`` is that folder, not
  ``study `` (an unquoted ``#`` or ``?`` ends SQLite's file name), and a Windows share keeps
  its host in the path.
* ``immutable`` is for a file no process has open: SQLite then makes no ``-wal`` and
  ``-shm`` beside it, which a read-only connection could not remove (a finished recording
  would look like a crashed one). It ignores a ``-wal`` file, so callers pass it only when
  none holds data.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from .._platform.lock import held


def uri(path: str | Path, mode: str = "ro", *, immutable: bool = False) -> str:
    """SQLite's URI for ``path`` opened with ``mode`` (``ro`` or ``rw``)."""
    return file_uri(Path(path).resolve().as_posix()) + f"?mode={mode}" + (
        "&immutable=1" if immutable else "")


def file_uri(posix_path: str) -> str:
    """``file:`` URI of an absolute path written with ``/``, as SQLite reads it: an empty
    authority, then the path quoted (``%``, ``?``, ``#`` and non-ASCII). A Windows share
    (``//nas/study/a.ratedial``) keeps its two leading slashes in the path:
    ``Path.as_uri()`` makes ``nas`` the authority, which SQLite refuses ("invalid uri
    authority"); a drive path (``C:/study``) gets the ``/`` SQLite expects before it."""
    lead = "" if posix_path.startswith("/") else "/"
    # the path's bytes as the file system has them: a name that is not UTF-8 (a Latin-1
    # é on Linux, kept by Python as a surrogate) is quoted byte for byte, not a traceback
    return "file://" + lead + quote(os.fsencode(posix_path), safe="/:")


def connect_ro(path: str | Path, *, immutable: bool = False, timeout: float = 5.0,
               check_same_thread: bool = True) -> sqlite3.Connection:
    """A read-only connection to ``path`` (see the module's invariants for ``immutable``)."""
    return sqlite3.connect(uri(path, immutable=immutable), uri=True, timeout=timeout,
                           check_same_thread=check_same_thread)


def closed(path: str | Path, *, lock_held: bool = False) -> bool:
    """No process has the recording open: no ``-wal`` beside it (a writer's connection keeps
    one; the last to close removes it) and the writers' lock is free (``lock_held``: the
    caller holds it, so nobody writes the file)."""
    if Path(f"{path}-wal").exists():
        return False
    if lock_held:
        return True
    try:
        with held(Path(path)) as free:
            return free
    except ImportError:  # no lock module here (an interpreter without fcntl): not known
        return False
