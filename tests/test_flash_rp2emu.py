"""From a blank Pico to a dial that answers, end to end on the emulated RP2040.

``ratedial flash --board pico`` runs with a fake BOOTSEL drive (a directory holding the boot
ROM's INFO_UF2.TXT) and the pinned MicroPython served by a local HTTP server standing in for
micropython.org. The test's fake USB bus plays the part of the board: once a whole UF2 has
landed on the drive it restarts the board, i.e. boots the emulated RP2040 (tests/rp2emu) from
exactly the file that was copied, and lists the emulated USB CDC as a serial port with
MicroPython's USB id 2e8a:0005 once the emulated device has enumerated. The flash then finds
that port by its USB id and carries on over the emulated USB CDC: probe, compile, write, soft
reset, HELLO. Three runs: the pinned release downloaded; offline with it already cached; offline
with ``--micropython FILE``. The refusals, which stop before a board would boot, are in
tests/test_flash_bootsel.py.

The UF2 the emulator boots is MicroPython v1.28.0 RPI_PICO built locally from the tag, not the
file micropython.org serves, so its sha256 is not the pinned one (that local build is refused
against the real pin in tests/test_flash_bootsel.py). The download and cache runs stand it in
for the official file by pinning its sha256 in this process (``stand_in``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import queue
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from flash_fakes import Mirror, bootsel_drive
from ratedial.cli import cli
from ratedial.flash import command, firmware_version, uf2, uf2source
from ratedial.wire import Samples
from rp2emu import board as rp2board
from rp2emu.link import Link

_SKIP = rp2board.skip_reason()
if _SKIP is not None:
    pytest.skip(_SKIP, allow_module_level=True)
pytestmark = pytest.mark.rp2emu

WALL = 120.0  # s: safety nets only (the emulator runs ~0.12x real time on a loaded box)
PINNED = uf2source.RELEASES["RPI_PICO"]
VERSION = firmware_version(rp2board.FIRMWARE)


def stand_in(monkeypatch: pytest.MonkeyPatch, data: bytes) -> uf2source.Release:
    """Pin ``data``'s sha256 for RPI_PICO in this process: it stands in for the official file
    (name, URL and everything else stay the pinned ones)."""
    release = dataclasses.replace(PINNED, sha256=hashlib.sha256(data).hexdigest())
    monkeypatch.setitem(uf2source.RELEASES, "RPI_PICO", release)
    return release


class FakeUsb:
    """The host's USB bus with one Pico on it, in BOOTSEL mode until a UF2 lands."""

    def __init__(self, drive: Path, fs_image: Path) -> None:
        self.drive = drive
        self.fs_image = fs_image
        self.emu: rp2board.EmuPico | None = None
        self.booted_from: Path | None = None
        self.connected = False
        self.listings = 0

    def _restart_if_written(self) -> None:
        for path in sorted(self.drive.glob("*.uf2")):
            try:
                image = uf2.read_uf2(path)
            except Exception:  # a partial copy: not a whole UF2 yet
                continue
            if uf2.RP2040 in image.families:
                self.booted_from = path
                self.emu = rp2board.EmuPico(image=self.fs_image, uf2=path)
                return

    def comports(self) -> list[Any]:
        self.listings += 1
        if self.emu is None:
            self._restart_if_written()
        if self.emu is not None and not self.connected:
            try:
                while not self.connected:
                    self.connected = self.emu.events.get_nowait().get("event") == "connected"
            except queue.Empty:
                pass
        if not self.connected:
            return []
        assert self.emu is not None
        return [SimpleNamespace(device=self.emu.port, vid=0x2E8A, pid=0x0005,
                                description="Board in FS mode")]

    def close(self) -> None:
        if self.emu is not None:
            self.emu.close()


@pytest.fixture
def usb(tmp_path: Path):
    drive = bootsel_drive(tmp_path / "media" / "RPI-RP2")
    fs = rp2board.make_image({"README.txt": b"a new Pico: MicroPython formats this\n"},
                             tmp_path)
    bus = FakeUsb(drive, fs)
    try:
        yield bus
    finally:
        bus.close()


def _invoke(usb: FakeUsb, *extra: str) -> tuple[str, list[str]]:
    result = CliRunner().invoke(
        cli, ["flash", "--board", "pico", "--drive", str(usb.drive), *extra,
              "--wait", str(WALL), "--timeout", str(WALL)], catch_exceptions=False)
    out = result.output
    print(out)
    assert result.exit_code == 0, out
    return out, out.splitlines()


def _assert_flashed_and_answered(usb: FakeUsb, copied: Path, out: str, lines: list[str]) -> None:
    """The board booted from exactly the file copied, came back by its USB id, got the dial
    firmware and answered HELLO."""
    assert usb.booted_from == copied
    assert usb.emu is not None
    assert lines.index(f"MicroPython came up on {usb.emu.port}") > 0
    assert f"{usb.emu.port}: MicroPython 1.28.0 on rp2 (Raspberry Pi Pico with RP2040), " \
           ".mpy v6.3" in lines
    assert any(ln.startswith("wrote ") and ln.endswith(" 0 unchanged") for ln in lines), out
    assert f"board=pico firmware={VERSION} backend=pio rate=1000Hz" in lines[-1]
    assert usb.emu.stats()["flash_programmed"] > 20_000  # the firmware really went into flash


def test_blank_pico_to_hello(usb: FakeUsb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                             ) -> None:
    """Download (once, sha256-checked, cached), copy, the emulated board boots exactly that
    UF2, comes back as 2e8a:0005, gets the dial firmware and answers HELLO; its stream then
    decodes."""
    shared = rp2board.shared_dir() / rp2board.UF2_NAME
    release = stand_in(monkeypatch, shared.read_bytes())
    monkeypatch.setattr(command, "comports", usb.comports)
    monkeypatch.setenv("RATEDIAL_CACHE_DIR", str(tmp_path / "cache"))
    with Mirror({PINNED.file: shared.read_bytes()}) as mirror:
        monkeypatch.setenv("RATEDIAL_MICROPYTHON_MIRROR", mirror.url)
        out, lines = _invoke(usb)
        assert mirror.requests == [f"/resources/firmware/{PINNED.file}"]
    cached = tmp_path / "cache" / "micropython" / PINNED.file
    copied = usb.drive / PINNED.file
    assert hashlib.sha256(copied.read_bytes()).hexdigest() == release.sha256
    assert cached.read_bytes() == copied.read_bytes()
    assert lines[0] == f"downloading {mirror.url}/{PINNED.file}"
    assert lines[1] == f"MicroPython 1.28.0 for RPI_PICO: {cached} (sha256 verified)"
    assert lines[2] == (f"{usb.drive}: Raspberry Pi RP2 (RP2040, Board-ID RPI-RP2): copying "
                        f"{PINNED.file} ({copied.stat().st_size / 1000:.0f} kB, RP2040)")
    _assert_flashed_and_answered(usb, copied, out, lines)
    assert usb.emu is not None
    link = Link(usb.emu.port)
    try:
        link.wait_for(lambda fs: sum(isinstance(f, Samples) for f in fs) >= 5, WALL,
                      "samples from the flashed firmware")
    finally:
        link.close()


@pytest.mark.parametrize("source", ["cached", "file"])
def test_blank_pico_offline(usb: FakeUsb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            source: str) -> None:
    """Offline (the mirror asks for nothing and answers nothing): the release already in the
    cache, or the user's --micropython FILE, goes onto the drive and the board boots it."""
    shared = rp2board.shared_dir() / rp2board.UF2_NAME
    stand_in(monkeypatch, shared.read_bytes())
    monkeypatch.setattr(command, "comports", usb.comports)
    monkeypatch.setenv("RATEDIAL_CACHE_DIR", str(tmp_path / "cache"))
    with Mirror({}) as mirror:
        monkeypatch.setenv("RATEDIAL_MICROPYTHON_MIRROR", mirror.url)
        if source == "cached":
            given = tmp_path / "cache" / "micropython" / PINNED.file
            given.parent.mkdir(parents=True)
            shutil.copyfile(shared, given)
            out, lines = _invoke(usb)
            assert lines[0] == f"MicroPython 1.28.0 for RPI_PICO: {given} (cached)"
        else:
            given = tmp_path / "downloads" / "my-pico-micropython.uf2"
            given.parent.mkdir()
            shutil.copyfile(shared, given)
            out, lines = _invoke(usb, "--micropython", str(given))
        assert mirror.requests == []
    copied = usb.drive / given.name
    assert copied.read_bytes() == given.read_bytes()
    _assert_flashed_and_answered(usb, copied, out, lines)
