"""Which MicroPython UF2 goes onto a blank Pico: the user's ``--micropython FILE``, or the
official release pinned here, downloaded once over HTTPS into the user's cache directory.

Invariants:
- A downloaded or cached file is used only when its sha256 is the one pinned in RELEASES;
  a mismatch deletes it and stops with one line. There is no unverified download.
- Offline (or the server unreachable), one line names the exact file, its URL and the path to
  put it at.
- ``$RATEDIAL_MICROPYTHON_MIRROR`` replaces the base URL (a local mirror, or a test server);
  the file name and sha256 stay pinned. ``$RATEDIAL_CACHE_DIR`` replaces the cache directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from .board import FlashError

MIRROR_ENV = "RATEDIAL_MICROPYTHON_MIRROR"
CACHE_ENV = "RATEDIAL_CACHE_DIR"
OFFICIAL_BASE = "https://micropython.org/resources/firmware"


@dataclass(frozen=True, slots=True)
class Release:
    """One pinned MicroPython build: the official file name (``BOARD-DATE-vVERSION.uf2``)."""

    board: str  # MicroPython's board name
    version: str
    file: str
    sha256: str
    chip: str

    def url(self, base: str) -> str:
        return f"{base.rstrip('/')}/{self.file}"


# The MicroPython the dial firmware is tested with (tests/rp2emu boots this version).
# The sha256 is that of the RPI_PICO v1.28.0 UF2 the emulated-Pico tests boot
# (../shared/rp2emu/RPI_PICO-v1.28.0.uf2, built from the v1.28.0 tag); re-pin it against the
# file micropython.org serves before relying on the download (see hardware/README.md).
RELEASES: dict[str, Release] = {
    "RPI_PICO": Release(
        board="RPI_PICO", version="1.28.0", file="RPI_PICO-20260406-v1.28.0.uf2",
        sha256="736852bda78bdfacaaab3d5fe02c82d6b147a509da1b723eef5a3fae77735901",
        chip="RP2040"),
}
# Dial board config -> MicroPython board whose release is pinned.
BOARD_RELEASE: dict[str, str] = {"pico": "RPI_PICO", "pico_pot": "RPI_PICO"}
# Boards without a pinned release: the MicroPython board name to download by hand.
MICROPYTHON_BOARD: dict[str, str] = {"pico_w": "RPI_PICO_W", "pico2": "RPI_PICO2"}


def user_cache_dir(platform: str = sys.platform,
                   environ: Mapping[str, str] = os.environ) -> Path:
    """Where ratedial caches downloads: $RATEDIAL_CACHE_DIR, else the OS's user cache dir
    (Linux $XDG_CACHE_HOME or ~/.cache; macOS ~/Library/Caches; Windows %LOCALAPPDATA%)."""
    if environ.get(CACHE_ENV):
        return Path(environ[CACHE_ENV])
    home = Path(environ.get("HOME") or Path.home())
    if platform == "win32":
        local = environ.get("LOCALAPPDATA")
        return (Path(local) if local else home / "AppData" / "Local") / "ratedial" / "Cache"
    if platform == "darwin":
        return home / "Library" / "Caches" / "ratedial"
    xdg = environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else home / ".cache") / "ratedial"


def release_for(board_name: str) -> Release:
    name = BOARD_RELEASE.get(board_name)
    if name is None:
        mp = MICROPYTHON_BOARD.get(board_name, "the board's")
        raise UsageError(f"no MicroPython release is pinned for --board {board_name}: "
                         f"download the {mp} .uf2 from micropython.org/download and pass "
                         "--micropython FILE")
    return RELEASES[name]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_release(release: Release, *, cache: Path | None = None, base: str | None = None,
                  say: Callable[[str], None] = lambda _line: None,
                  timeout: float = 30.0) -> Path:
    """The pinned release's file in the cache, downloaded and verified on first use."""
    cache = (cache or user_cache_dir()) / "micropython"
    base = base or os.environ.get(MIRROR_ENV) or OFFICIAL_BASE
    dest = cache / release.file
    if dest.is_file():
        if _sha256(dest) == release.sha256:
            say(f"MicroPython {release.version} for {release.board}: {dest} (cached)")
            return dest
        say(f"{dest}: sha256 does not match the pinned one: downloading it again")
        dest.unlink()
    url = release.url(base)
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FlashError(f"cannot create the cache directory {cache}: {exc.strerror}") from None
    tmp = dest.with_name(dest.name + ".part")
    h = hashlib.sha256()
    say(f"downloading {url}")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, tmp.open("wb") as out:
            for chunk in iter(lambda: resp.read(1 << 16), b""):
                h.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        raise FlashError(f"cannot download {release.file} ({reason}): fetch {url} and put it "
                         f"at {dest}, or pass --micropython FILE") from None
    if h.hexdigest() != release.sha256:
        tmp.unlink()
        raise FlashError(f"{url} has sha256 {h.hexdigest()[:16]}..., not the pinned "
                         f"{release.sha256[:16]}...: not used (deleted); check "
                         f"${MIRROR_ENV} or pass --micropython FILE")
    tmp.replace(dest)
    say(f"MicroPython {release.version} for {release.board}: {dest} (sha256 verified)")
    return dest
