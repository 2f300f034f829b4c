"""Installing MicroPython on a Pico in BOOTSEL mode.

Holding BOOTSEL while plugging a Pico in starts the boot ROM's USB drive (label ``RPI-RP2``;
``RP2350`` on the Pico 2) with an ``INFO_UF2.TXT`` naming the chip. Copying a UF2 onto it
writes the flash and restarts the board, which then comes back as a USB serial port
(MicroPython's USB id 2e8a:0005).

Steps, each refusing in one line: find the drive (``--drive DIR`` or
``$RATEDIAL_BOOTSEL_DRIVE`` first; else the usual mount points of Linux, macOS and Windows);
read its INFO_UF2.TXT (no such file: not a bootloader drive); check the UF2's family against
the chip; check the drive is writable and has room; copy; wait for a new serial port with
MicroPython's USB id (timeout: the board did not come back).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serial.tools import list_ports

from .board import FlashError
from .uf2 import Uf2Image, check_family, chip_of_board_id, parse_info

DRIVE_ENV = "RATEDIAL_BOOTSEL_DRIVE"
LABELS = ("RPI-RP2", "RP2350")
INFO_FILE = "INFO_UF2.TXT"
# MicroPython's own USB id on RP2040/RP2350 boards (Raspberry Pi vid, MicroPython pid).
MICROPYTHON_USB: frozenset[tuple[int, int]] = frozenset({(0x2E8A, 0x0005)})

# A port lister: pyserial's comports() or a test's stand-in (objects with device, vid, pid).
Comports = Callable[[], Iterable[Any]]


class NotBootloader(FlashError):
    """The named drive is not a Raspberry Pi boot ROM drive."""


@dataclass(frozen=True, slots=True)
class BootselDrive:
    path: Path
    board_id: str
    chip: str  # "RP2040" / "RP2350"
    model: str


# ------------------------------------------------------------------ finding the drive


def _mount_points(mounts: Path = Path("/proc/mounts")) -> list[Path]:
    """Mount points from the Linux mount table (octal escapes undone)."""
    try:
        text = mounts.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2:
            out.append(Path(fields[1].encode().decode("unicode_escape")))
    return out


def candidate_drives(platform: str = sys.platform,
                     environ: Mapping[str, str] = os.environ) -> list[Path]:
    """Where a BOOTSEL drive is mounted on this OS, whether or not one is there now."""
    user = environ.get("USER") or environ.get("LOGNAME") or ""
    out: list[Path] = []
    if platform.startswith("linux"):
        for base in (Path("/media") / user, Path("/run/media") / user, Path("/media"),
                     Path("/mnt")):
            out += [base / label for label in LABELS]
        out += [m for m in _mount_points() if m.name.upper().startswith(LABELS)]
    elif platform == "darwin":
        out += [Path("/Volumes") / label for label in LABELS]
    elif platform == "win32":
        out += [Path(f"{letter}:\\") for letter in "DEFGHIJKLMNOPQRSTUVWXYZ"]
    return list(dict.fromkeys(out))


def find_drive(candidates: Iterable[Path]) -> Path:
    """The one candidate holding an INFO_UF2.TXT."""
    return one_drive(drives_present(candidates))


def drives_present(candidates: Iterable[Path]) -> list[Path]:
    """The candidates holding an INFO_UF2.TXT, each once (a drive letter with no medium or
    a stale mount point is none)."""
    found = []
    for path in candidates:
        with contextlib.suppress(OSError):
            if (path / INFO_FILE).is_file():
                found.append(path)
    return list(dict.fromkeys(found))


def one_drive(found: list[Path]) -> Path:
    """The one BOOTSEL drive of ``found``; one line when there is none or several."""
    if not found:
        raise FlashError("no Pico in BOOTSEL mode found (no RPI-RP2 or RP2350 drive): unplug "
                         "it, hold BOOTSEL while plugging it in, or name the drive with --drive")
    if len(found) > 1:
        raise FlashError(f"several BOOTSEL drives: {', '.join(map(str, found))}: choose one "
                         "with --drive")
    return found[0]


def open_drive(path: Path) -> BootselDrive:
    """Read INFO_UF2.TXT; NotBootloader when ``path`` is not a Pico boot ROM drive."""
    if not path.is_dir():
        raise NotBootloader(f"{path}: no such drive or directory")
    try:
        text = (path / INFO_FILE).read_text(encoding="ascii", errors="replace")
    except OSError:
        raise NotBootloader(f"{path} is not a Pico bootloader drive (no {INFO_FILE}): "
                            "nothing was copied") from None
    info = parse_info(text)
    board_id = info.get("Board-ID", "")
    chip = chip_of_board_id(board_id)
    if chip is None:
        said = f"Board-ID {board_id!r}" if board_id else "no Board-ID"
        raise NotBootloader(f"{path} is not a Raspberry Pi bootloader drive ({INFO_FILE} has "
                            f"{said}): nothing was copied")
    return BootselDrive(path=path, board_id=board_id, chip=chip, model=info.get("Model", ""))


# ------------------------------------------------------------------ copying


def _free_and_writable(path: Path) -> tuple[int, bool]:
    if sys.platform == "win32":
        return shutil.disk_usage(path).free, os.access(path, os.W_OK)
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize, not (st.f_flag & os.ST_RDONLY)


def check_copy(image: Uf2Image, drive: BootselDrive, *,
               space: Callable[[Path], tuple[int, bool]] = _free_and_writable) -> None:
    """Refuse (one line, nothing copied) an image for another chip, a read-only or a full
    drive. ``space`` says (free bytes, writable) for a directory; tests pass their own."""
    check_family(image, drive.chip, drive.path)
    free, writable = space(drive.path)
    if not writable:
        raise FlashError(f"{drive.path} is read-only: nothing was copied (unplug the board "
                         "and plug it in again holding BOOTSEL)")
    if free < image.size:
        raise FlashError(f"{drive.path} is full ({free / 1000:.0f} kB free, "
                         f"{image.path.name} needs {image.size / 1000:.0f} kB): nothing was "
                         "copied")


def copy_uf2(image: Uf2Image, drive: BootselDrive, *,
             space: Callable[[Path], tuple[int, bool]] = _free_and_writable) -> Path:
    """Check the family, room and write access (:func:`check_copy`), then copy; the copied
    file's path."""
    check_copy(image, drive, space=space)
    dest = drive.path / image.path.name
    try:
        with image.path.open("rb") as src, dest.open("wb") as out:
            shutil.copyfileobj(src, out, 64 * 1024)
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        # the board restarts when the last block lands: a vanished drive after that is normal
        if exc.errno in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM):
            why = {errno.ENOSPC: "is full", errno.EROFS: "is read-only"}.get(
                exc.errno or 0, "cannot be written")
            raise FlashError(f"{drive.path} {why} ({exc.strerror}): the copy of "
                             f"{image.path.name} is incomplete; plug the board in again "
                             "holding BOOTSEL") from None
        if dest.parent.exists():
            raise FlashError(f"copying {image.path.name} to {drive.path} failed: "
                             f"{exc.strerror or exc}") from None
    return dest


# ------------------------------------------------------------------ the board comes back


def micropython_ports(comports: Comports,
                      usb: frozenset[tuple[int, int]] = MICROPYTHON_USB) -> list[str]:
    return sorted(str(p.device) for p in comports()
                  if (getattr(p, "vid", None), getattr(p, "pid", None)) in usb)


def wait_for_port(*, before: Iterable[str], timeout: float, comports: Comports,
                  usb: frozenset[tuple[int, int]] = MICROPYTHON_USB,
                  poll: float = 0.2) -> str:
    """The first MicroPython serial port (by USB vid:pid) that was not there ``before``.

    The operating system has no event for a new port that works on every platform, so this
    asks it every ``poll`` seconds."""
    seen = set(before)
    ids = ", ".join(f"{v:04x}:{p:04x}" for v, p in sorted(usb))
    deadline = time.monotonic() + timeout
    while True:
        new = [d for d in micropython_ports(comports, usb) if d not in seen]
        if new:
            return new[0]
        if time.monotonic() >= deadline:
            raise FlashError(f"the board did not come back as a MicroPython serial port (USB "
                             f"{ids}) within {timeout:g} s of the copy: unplug it and plug it "
                             "in again (without BOOTSEL), then run ratedial flash --port PORT")
        time.sleep(poll)


def install_micropython(image: Uf2Image, drive: BootselDrive, *, timeout: float,
                        comports: Comports = list_ports.comports,
                        space: Callable[[Path], tuple[int, bool]] = _free_and_writable,
                        say: Callable[[str], None] = lambda _line: None) -> str:
    """Copy ``image`` onto ``drive`` and return the serial port the board comes back on."""
    before = micropython_ports(comports)
    check_copy(image, drive, space=space)  # a refusal comes before "copying" is said
    say(f"{drive.path}: {drive.model or 'Raspberry Pi boot ROM'} ({drive.chip}, Board-ID "
        f"{drive.board_id}): copying {image.describe()}")
    copy_uf2(image, drive, space=space)
    say(f"copied; waiting up to {timeout:g} s for the board to restart as MicroPython")
    port = wait_for_port(before=before, timeout=timeout, comports=comports)
    say(f"MicroPython came up on {port}")
    return port
