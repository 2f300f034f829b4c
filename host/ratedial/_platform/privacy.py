"""Who can read a recording.

Invariants: on POSIX a recording is created with mode 0600 (owner only) and SQLite gives its
``-wal`` and ``-shm`` files the same mode. Windows ignores that mode: a new file takes the
access rules of its folder, so a recording is private exactly when its folder is, and the
user's own folder (``C:\\Users\\NAME``) is, by default, readable only by that user and
administrators. :func:`privacy_warning` says so when a recording would go elsewhere.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def privacy_warning(path: str | os.PathLike[str], *, platform: str = sys.platform,
                    home: Path | None = None) -> str | None:
    """One line for the user when ``path`` is not private by default on ``platform``."""
    if platform != "win32":
        return None
    home = Path.home() if home is None else home
    target = Path(os.path.abspath(path))
    try:
        target.relative_to(os.path.abspath(home))
    except ValueError:
        return (f"{target} is outside your user folder {home}: on Windows a recording is only "
                "as private as its folder (see README, Windows); record under your user "
                "folder or restrict the folder's access")
    return None
