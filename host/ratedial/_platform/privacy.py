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


def make_private_dirs(folder: Path) -> list[Path]:
    """Create ``folder`` and every missing folder above it with mode 0700 (owner only):
    ``mkdir(parents=True)`` gives the parents the umask's mode (usually 0755). Returns the
    folders it created, outermost first (what :func:`remove_made_dirs` may take back)."""
    missing = []
    for p in (folder, *folder.parents):
        if p.exists():
            break
        missing.append(p)
    made = []
    for p in reversed(missing):
        p.mkdir(mode=0o700, exist_ok=True)
        made.append(p)
    if not folder.is_dir():  # a file in the way: the OS's own error, with the path
        raise NotADirectoryError(20, "Not a directory", str(folder))
    return made


def remove_made_dirs(made: list[Path]) -> None:
    """Remove the folders :func:`make_private_dirs` created, innermost first, as long as they
    are empty (quietly: a folder something else was put in stays)."""
    for p in reversed(made):
        try:
            p.rmdir()
        except OSError:
            return


def open_private(path: Path) -> int:
    """Open ``path`` for writing (its folders created, its contents truncated) as a file only
    its owner can read (0600 on POSIX), also when it was there before with a wider mode: an
    export written over last week's copy is as private as a new one. Returns the descriptor."""
    make_private_dirs(path.parent)  # new folders are private too
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    if sys.platform != "win32":
        try:
            os.fchmod(fd, 0o600)
        except OSError:
            os.close(fd)
            raise
    return fd


def create_private(path: Path) -> Path:
    """:func:`open_private`, closed at once: the file then takes what a library writes to it,
    keeping the mode."""
    os.close(open_private(path))
    return path
