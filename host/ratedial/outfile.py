"""Files a command writes for the user (exports, tables, figures, rendered videos): written in
full or not at all.

Invariants: the output's contents go to a private (0600) hidden temporary file in the
output's own folder (``.NAME.XXXXXXXX.part.SUFFIX``), which is flushed to disk and then takes
the output's name in one step (a rename within the folder), so a reader never sees a file cut
short under the output's name, and an existing output is replaced whole or kept as it was.
When the writer fails (a full disk, a file size limit, an error) or is stopped (Ctrl+C,
SIGTERM, SIGHUP), the temporary file is removed, with any folders made for it, and a write
error names the output (``cannot write OUT: no space left on device``), not the temporary.
Only a kill that cannot be caught (SIGKILL, a power cut) leaves the hidden temporary behind.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ._platform.privacy import make_private_dirs
from ._platform.signals import interrupt_on_terminate
from .errors import RatedialError, UsageError

__all__ = ["OutputWriteError", "staged", "write_failed"]


class OutputWriteError(RatedialError):
    """An output could not be written (its disk filled, say): nothing was left under its
    name. ``str``: ``cannot write OUT: REASON``."""


@contextmanager
def staged(output: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """A private (0600) empty file beside ``output`` for a writer to fill; when the block
    ends without an exception it becomes ``output`` (replacing an existing one only when
    ``overwrite``: without it, one that appeared meanwhile is refused), otherwise it is
    removed, with any folders made for it. Keeps the output's suffix, which tells some
    writers (ffmpeg, matplotlib) the format. An OSError of the writing itself (not one naming
    another file) becomes :class:`OutputWriteError` naming ``output``."""
    output = Path(output)
    folder = output.parent
    made = [d for d in (folder, *folder.parents) if not d.exists()]
    moved = False
    part: Path | None = None
    try:
        try:
            make_private_dirs(folder)  # new folders are private too
            prefix, suffix = _part_name(output)
            try:
                fd, name = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=suffix)
            except OSError as exc:  # the folder cannot be written: said of the output,
                # not of the hidden temporary's name (a review, 2026-12-05)
                raise OutputWriteError(f"cannot write {output}: {_reason(exc)}") from exc
            os.close(fd)
            part = Path(name)
            with interrupt_on_terminate():  # killed (SIGTERM) mid-write: the part is removed
                yield part
            with open(part, "r+b") as fh:  # on disk before it takes the output's name
                os.fsync(fh.fileno())
            _move(part, output, overwrite=overwrite)
            moved = True
        except OSError as exc:
            ours = part is not None and (exc.filename is None or os.fspath(exc.filename) in (
                os.fspath(part), os.fspath(output)))
            if not ours and exc.errno not in _DISK_ERRNOS:
                raise  # another file's (a folder in the way): the OS's words and its path
            raise OutputWriteError(f"cannot write {output}: {_reason(exc)}") from exc
    finally:
        if not moved:
            if part is not None:
                part.unlink(missing_ok=True)
            for d in made:  # deepest first; only folders left empty
                try:
                    d.rmdir()
                except OSError:
                    break


#: The longest file name most file systems take, in bytes (ext4, XFS, APFS, tmpfs; NTFS and
#: FAT take 255 UTF-16 units, never fewer than the UTF-8 bytes of the same name's BMP text).
NAME_MAX = 255
_PART_FIXED = len(".") + len(".") + 8 + len(".part")  # mkstemp's 8 random characters


def _part_name(output: Path) -> tuple[str, str]:
    """``mkstemp``'s prefix and suffix for ``output``'s temporary, ``.STEM.XXXXXXXX.part.SUF``,
    at most :data:`NAME_MAX` bytes in all: the stem cut (whole characters, at most 64 bytes)
    to what the suffix leaves, and a suffix too long to leave room (no format's) dropped.
    An output name the OS takes is never refused for its temporary's longer name (a review,
    2026-12-05: a 247-byte name failed with ENAMETOOLONG naming the temporary)."""
    suf = output.suffix if _bytes(output.suffix) <= NAME_MAX - _PART_FIXED else ""
    room = min(64, NAME_MAX - _PART_FIXED - _bytes(suf))
    stem = ""
    for ch in output.name[:len(output.name) - len(suf)] if suf else output.name:
        if _bytes(stem + ch) > room:
            break
        stem += ch
    return f".{stem}.", f".part{suf}"


def _bytes(text: str) -> int:
    return len(os.fsencode(text))


def _reason(exc: OSError) -> str:
    """The OS's words for its errno (pyarrow's OSError has a text of its own around them)."""
    code = exc.errno
    if code is None:
        found = re.search(r"\[errno (\d+)\]", str(exc), re.IGNORECASE)
        code = int(found.group(1)) if found else None
    why = os.strerror(code) if code else exc.strerror or str(exc)
    return why[:1].lower() + why[1:]


def write_failed(part: Path, what: str) -> OSError:
    """For a writer that failed without an OSError (or did not say it failed, and its file
    was found cut short): a full disk named as such, else ``what``."""
    try:  # shutil: statvfs on POSIX, GetDiskFreeSpaceEx on Windows
        full = shutil.disk_usage(part.parent).free == 0
    except OSError:
        full = False
    if full:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return OSError(None, what)


# the disk's: full, over quota, past the file size limit (ulimit -f)
_DISK_ERRNOS = frozenset(getattr(errno, n) for n in ("ENOSPC", "EDQUOT", "EFBIG")
                         if hasattr(errno, n))


def _move(part: Path, output: Path, *, overwrite: bool) -> None:
    if overwrite:
        os.replace(part, output)
        return
    try:  # a hard link fails if the output appeared meanwhile (another writer to it)
        os.link(part, output)
    except FileExistsError:
        raise UsageError(f"{output} appeared while rendering: not replaced (pass "
                         "--overwrite to replace it)") from None
    except OSError:  # no hard links on this file system (FAT, some network shares)
        if os.path.lexists(output):
            raise UsageError(f"{output} appeared while rendering: not replaced (pass "
                             "--overwrite to replace it)") from None
        os.replace(part, output)
        return
    part.unlink()
