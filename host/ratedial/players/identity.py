"""Media identity: path, duration, frame rate and a content fingerprint (reads the file).

The fingerprint lets recordings of the same video by different raters be matched even when
the file was copied or renamed: ``"rdfp1:" + sha256(size as 8 bytes little-endian, the first
MiB, the last MiB)`` in hex. It reads at most 2 MiB, so it is quick on any file size; two files
that differ only in their middle would collide (no video container does that in practice).

Durations come from the player when it says them exactly (mpv, MPC), else from ``ffprobe``
when it is installed, else from an MP4/MOV file's ``mvhd`` box (VLC only says whole seconds).

Invariants: never raises for an unreadable or missing file (the identity then has
``fingerprint=None``); the blocking reads run in a worker thread (:func:`identify`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO

from ..config import child_env

MIB = 1 << 20
PREFIX = "rdfp1:"


@dataclass(frozen=True, slots=True)
class MediaIdentity:
    path: str | None
    duration_s: float | None
    fps: float | None
    fingerprint: str | None


def fingerprint(path: str) -> str | None:
    """The content fingerprint of a local file, or None when it cannot be read."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            h = hashlib.sha256(size.to_bytes(8, "little"))
            h.update(f.read(MIB))
            if size > MIB:
                f.seek(max(MIB, size - MIB))
                h.update(f.read(MIB))
    except OSError:
        return None
    return PREFIX + h.hexdigest()


def probe(path: str, *, timeout: float = 5.0) -> tuple[float | None, float | None]:
    """(duration_s, fps) from ``ffprobe`` when it is installed, else (None, None)."""
    exe = shutil.which("ffprobe")
    if exe is None or not os.path.isfile(path):
        return None, None
    try:
        out = subprocess.run(
            [exe, "-v", "error", "-print_format", "json", "-show_format", "-show_streams",
             "-select_streams", "v:0", path],
            capture_output=True, timeout=timeout, check=False, env=child_env()).stdout
        info = json.loads(out or b"{}")
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None, None
    duration = _float(info.get("format", {}).get("duration"))
    fps = None
    for stream in info.get("streams", []):
        fps = _rate(stream.get("avg_frame_rate")) or _rate(stream.get("r_frame_rate"))
        if fps:
            break
    return duration, fps


_CONTAINERS = {b"moov", b"trak", b"mdia"}


def mp4_duration(path: str) -> float | None:
    """The duration in an MP4/MOV file's ``mvhd`` box (duration / timescale), else None.

    For when ffprobe is not installed: reads box headers only (a few KiB)."""
    try:
        with open(path, "rb") as f:
            end = os.fstat(f.fileno()).st_size
            return _find_mvhd(f, 0, end, depth=0)
    except (OSError, ValueError):
        return None


def _find_mvhd(f: BinaryIO, start: int, end: int, *, depth: int) -> float | None:
    pos = start
    while pos + 8 <= end and depth < 4:
        f.seek(pos)
        head = f.read(16)
        if len(head) < 8:
            return None
        size, kind = int.from_bytes(head[:4], "big"), head[4:8]
        body = pos + 8
        if size == 1 and len(head) == 16:
            size, body = int.from_bytes(head[8:16], "big"), pos + 16
        elif size == 0:
            size = end - pos
        if size < 8:
            return None
        if kind == b"mvhd":
            f.seek(body)
            box = f.read(32)
            if box[:1] == b"\x01":
                timescale = int.from_bytes(box[20:24], "big")
                duration = int.from_bytes(box[24:32], "big")
            else:
                timescale = int.from_bytes(box[12:16], "big")
                duration = int.from_bytes(box[16:20], "big")
            return duration / timescale if timescale else None
        if kind in _CONTAINERS:
            found = _find_mvhd(f, body, min(end, pos + size), depth=depth + 1)
            if found is not None:
                return found
        pos += size
    return None


def _float(v: object) -> float | None:
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _rate(v: object) -> float | None:
    try:
        r = float(Fraction(str(v)))
    except (ValueError, ZeroDivisionError):
        return None
    return r if r > 0 else None


def identify_sync(path: str | None, *, duration_s: float | None = None,
                  fps: float | None = None, use_probe: bool = False) -> MediaIdentity:
    if path is None:
        return MediaIdentity(None, duration_s, fps, None)
    if use_probe and (duration_s is None or fps is None):
        d, r = probe(path)
        duration_s = duration_s if duration_s is not None else d
        fps = fps if fps is not None else r
    if use_probe and duration_s is None:
        duration_s = mp4_duration(path)
    return MediaIdentity(path, duration_s, fps, fingerprint(path))


async def identify(path: str | None, *, duration_s: float | None = None,
                   fps: float | None = None, use_probe: bool = False) -> MediaIdentity:
    """:func:`identify_sync` in a worker thread."""
    return await asyncio.to_thread(identify_sync, path, duration_s=duration_s, fps=fps,
                                   use_probe=use_probe)
