"""Which MicroPython UF2 goes onto a blank Pico: the user's ``--micropython FILE``, or the
official release pinned here, downloaded once over HTTPS into the user's cache directory.

Invariants:
- A downloaded or cached file is used only when its sha256 is the one pinned in RELEASES;
  a mismatch deletes it and stops with one line. There is no unverified download.
- Offline (or the server unreachable), one line names the exact file, its URL and the path to
  put it at.
- ``$RATEDIAL_MICROPYTHON_MIRROR`` replaces the base URL (a local mirror, or a test server);
  the file name and sha256 stay pinned: nothing (no variable, no option) replaces or skips the
  sha256 check. ``$RATEDIAL_CACHE_DIR`` replaces the cache directory. A MicroPython not in
  RELEASES goes in with ``--micropython FILE``, the user's own choice.
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


# The MicroPython the dial firmware is tested with (tests/rp2emu boots the same version, built
# locally from the v1.28.0 tag: that build's sha256 is NOT the official file's, and the tests
# stand it in for the official file explicitly).
# The sha256 values are those of the official files on micropython.org, as pinned by an
# independent public manifest of the official v1.28.0 firmware: github.com/tinyrange/renvo_emu,
# firmware/micropython-v1.28.0.toml, commit 4ccaa5318052114935d51aafcce16026912edb03. They
# were NOT downloaded and checked here (no internet where this was written). To re-check:
#   curl -O https://micropython.org/resources/firmware/RPI_PICO-20260406-v1.28.0.uf2
#   sha256sum RPI_PICO-20260406-v1.28.0.uf2    # must print the sha256 below
# (the same for RPI_PICO2). A moved official file is refused (sha256 mismatch), never used.
# RPI_PICO2 is the Arm build, not RPI_PICO2-RISCV. Its blocks should be rp2350-arm-s
# (0xe48bff59) plus, from the pico-sdk's RP2350-E10 workaround, one "absolute" (0xe48bff57)
# block: the family check (uf2.check_family) takes any UF2 with an RP2350 family block.
RELEASES: dict[str, Release] = {
    "RPI_PICO": Release(
        board="RPI_PICO", version="1.28.0", file="RPI_PICO-20260406-v1.28.0.uf2",
        sha256="00aedb8431ebea83b470ef909509f16432c5b1b43e8f6eaf015f6f9560bc8152",
        chip="RP2040"),
    "RPI_PICO2": Release(
        board="RPI_PICO2", version="1.28.0", file="RPI_PICO2-20260406-v1.28.0.uf2",
        sha256="e65ad62ae886a4f56da8ef2c07904fe504b92de69e5ae6489acf881bcf30b6ae",
        chip="RP2350"),
}
# Dial board config -> MicroPython board whose release is pinned.
BOARD_RELEASE: dict[str, str] = {"pico": "RPI_PICO", "pico_pot": "RPI_PICO",
                                 "pico2": "RPI_PICO2"}
# Boards without a pinned release: the MicroPython board name to download by hand.
MICROPYTHON_BOARD: dict[str, str] = {"pico_w": "RPI_PICO_W"}


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


def mirror_base(base: str) -> str:
    """A base URL, or a folder (``/srv/mirror``, ``C:\\mirror``, ``\\\\nas\\share``) as a
    ``file:`` URL: a local mirror is most often a folder."""
    if "://" in base:
        return base
    return Path(base).expanduser().absolute().as_uri()


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
    base = mirror_base(base or os.environ.get(MIRROR_ENV) or OFFICIAL_BASE)
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
    except (urllib.error.URLError, OSError, TimeoutError, ValueError) as exc:
        # ValueError: a mirror that is no URL urllib can open (http://[::1, a typo)
        with contextlib.suppress(OSError):
            tmp.unlink()
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        raise FlashError(f"cannot download {release.file} ({reason}): fetch {url} and put it "
                         f"at {dest}, or pass --micropython FILE") from None
    if h.hexdigest() != release.sha256:
        tmp.unlink()
        hint = (f"check ${MIRROR_ENV}, or pass" if base != OFFICIAL_BASE else
                "re-check the pin as hardware/README.md says, or pass")
        raise FlashError(f"{url} has sha256 {h.hexdigest()[:16]}..., not the pinned "
                         f"{release.sha256[:16]}...: not used (deleted); {hint} "
                         "--micropython FILE")
    tmp.replace(dest)
    say(f"MicroPython {release.version} for {release.board}: {dest} (sha256 verified)")
    return dest
