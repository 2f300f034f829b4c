"""The ``ratedial flash`` command: MicroPython first when the board has none (a Pico in
BOOTSEL mode, or an ESP32 through esptool), then the dial firmware and the HELLO check."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click
from serial.tools import list_ports

from .._paths import install_hint
from ..cli_types import FiniteRange, HomePath
from ..errors import PortError, UsageError
from . import bootsel, esp32, uf2source
from .board import KNOWN_VIDS, NotMicroPython, checked_board_name, load_board, locate_firmware
from .install import FlashResult, flash_board
from .uf2 import read_uf2

INSTALL_HELP = f"""\
The board must run MicroPython before ratedial flash can install the dial firmware:
  Raspberry Pi Pico / Pico W / Pico 2: unplug it, hold the BOOTSEL button and plug it in (it
    shows up as a drive, RPI-RP2 or RP2350), then run: ratedial flash --board pico
    (pico2 for a Pico 2; pico_w: add --micropython FILE with the .uf2 from
    micropython.org/download).
  ESP32 (MicroPython 1.26 or newer): {install_hint('esp32')} (esptool), then
    ratedial flash --board esp32_devkitc --port PORT --micropython ESP32_GENERIC-*.bin
    (ESP32-S3: --board esp32_s3 and the ESP32_GENERIC_S3 .bin).
Details: hardware/README.md."""

CHIP_BOARD = {"RP2040": "pico", "RP2350": "pico2"}
BOARD_CHIP = {"pico": "RP2040", "pico_w": "RP2040", "pico_pot": "RP2040", "pico2": "RP2350"}


def comports() -> Iterable[Any]:
    """The serial ports (pyserial); tests replace this with their emulated USB."""
    return list(list_ports.comports())


def _bootsel_drive(drive: Path | None, port: str | None) -> Path | None:
    """The BOOTSEL drive to use: --drive, else the one found when no port was named. A
    board in BOOTSEL mode next to a serial port that may be a MicroPython board (a dial
    flashed before, a USB-serial adapter) is a choice only the user can make: refused,
    never guessed (flashing the other device would overwrite a working dial)."""
    if drive is not None:
        return drive
    if port is not None:
        return None
    found = bootsel.drives_present(bootsel.candidate_drives())
    if not found:
        return None
    where = bootsel.one_drive(found)
    boards = [str(p.device) for p in comports() if getattr(p, "vid", None) in KNOWN_VIDS]
    if boards:
        raise UsageError(f"both a Pico in BOOTSEL mode ({where}) and a serial port that may be "
                         f"a MicroPython board ({', '.join(boards)}) are plugged in: name the "
                         "one to flash with --drive or --port")
    return where


def run_flash(*, board_name: str | None, port: str | None, force: bool, timeout: float,
              drive: Path | None, micropython: Path | None, wait: float) -> FlashResult:
    say = click.echo
    if board_name is not None:  # a typo is named before any board is looked for
        board_name = checked_board_name(board_name, locate_firmware())
    is_bin = micropython is not None and micropython.suffix.lower() == ".bin"
    is_uf2 = micropython is not None and micropython.suffix.lower() == ".uf2"
    esp = (board_name or "").startswith("esp32")
    if is_bin or (esp and micropython is not None and not is_uf2):
        if board_name is None or not board_name.startswith("esp32"):
            raise UsageError("a .bin MicroPython image is for an ESP32: add --board "
                             "esp32_devkitc or esp32_s3")
        assert micropython is not None
        if port is None:
            from .session import find_port

            port = find_port(comports())
        esp32.install_esp32(micropython, port, say=say)
        return flash_board(port=port, board_name=board_name, force=force, timeout=timeout,
                           say=say, comports=comports)

    where = _bootsel_drive(drive, port)
    if where is None:
        if esp and is_uf2:  # with a BOOTSEL drive, the chip check below says it
            raise UsageError(f"{micropython} is a .uf2 image, for a Pico (RP2040, RP2350), "
                             f"not for --board {board_name}: an ESP32 takes MicroPython's "
                             ".bin (micropython.org/download)")
        if micropython is not None:
            raise UsageError("--micropython FILE.uf2 is copied onto a Pico in BOOTSEL mode, "
                             "and none was found: hold BOOTSEL while plugging it in, or name "
                             "the drive with --drive")
        return flash_board(port=port, board_name=board_name, force=force, timeout=timeout,
                           say=say, comports=comports)

    boot = bootsel.open_drive(where)
    name = board_name or CHIP_BOARD[boot.chip]
    board = load_board(locate_firmware(), name)
    if board.platform != "rp2" or BOARD_CHIP.get(name, boot.chip) != boot.chip:
        target = BOARD_CHIP.get(name, board.platform)
        raise UsageError(f"{where} is an {boot.chip} in BOOTSEL mode but --board {name} is for "
                         f"{target}: use --board {CHIP_BOARD[boot.chip]}")
    if micropython is None:
        micropython = uf2source.fetch_release(uf2source.release_for(name), say=say)
    image = read_uf2(micropython)
    new_port = bootsel.install_micropython(image, boot, timeout=wait, comports=comports, say=say)
    return flash_board(port=new_port, board_name=name, force=force, timeout=timeout, say=say,
                       comports=comports)


@click.command()
@click.option("--board", "board_name", metavar="NAME", default=None,
              help="Board config to install: pico, pico_w, pico2, pico_pot, esp32_devkitc, "
                   "esp32_s3 (see firmware/boards/). Default: pico on rp2 (pico2 for an "
                   "RP2350 in BOOTSEL mode), esp32_devkitc on esp32.")
@click.option("--port", default=None, metavar="PORT", type=HomePath(readable=False),
              help="Serial port of a board that runs MicroPython, or of an ESP32 (default: "
                   "the one board with a Raspberry Pi, Espressif, CP210x, CH340 or FTDI USB "
                   "id).")
@click.option("--drive", type=HomePath(path_type=Path, file_okay=False), default=None,
              envvar=bootsel.DRIVE_ENV, metavar="DIR",
              help="The Pico's BOOTSEL drive (env RATEDIAL_BOOTSEL_DRIVE). Default: found "
                   "by its INFO_UF2.TXT at /media/$USER/RPI-RP2, /run/media/$USER/..., in "
                   "the mount table, /Volumes/RPI-RP2 (macOS) or a drive letter (Windows); "
                   "RP2350 boards label it RP2350.")
@click.option("--micropython", type=HomePath(path_type=Path, dir_okay=False, exists=True),
              default=None, metavar="FILE",
              help="Install this MicroPython first: a .uf2 copied onto the BOOTSEL drive, or "
                   "an ESP32 .bin written with esptool. Default for a Pico in BOOTSEL mode: "
                   "the pinned official release (MicroPython 1.28.0, RPI_PICO or RPI_PICO2), "
                   "downloaded once over HTTPS, sha256-checked against the pin (no way "
                   "around it) and cached in the user cache directory "
                   "(env RATEDIAL_MICROPYTHON_MIRROR: another base URL, e.g. a local mirror; "
                   "RATEDIAL_CACHE_DIR: another cache directory).")
@click.option("--wait", type=FiniteRange(min=1), default=60.0, show_default=True,
              help="Seconds to wait for the board to come back as a MicroPython serial port "
                   "(USB 2e8a:0005) after the UF2 copy.")
@click.option("--force", is_flag=True, help="Write every file, even those already on the board.")
@click.option("--timeout", type=FiniteRange(min=1), default=15.0, show_default=True,
              help="Seconds to wait for the dial to answer after the restart.")
def flash(board_name: str | None, port: str | None, drive: Path | None,
          micropython: Path | None, wait: float, force: bool, timeout: float) -> None:
    """Install the dial firmware; on a blank board, MicroPython first.

    First time on a Pico: hold BOOTSEL, plug it in, run ratedial flash --board pico.
    The MicroPython UF2 is copied onto the BOOTSEL drive (after checking the drive's
    INFO_UF2.TXT and the UF2's chip family), then the board comes back as a serial port and
    the dial firmware is installed. ESP32: --port PORT --micropython FILE.bin (esptool).

    On a board that runs MicroPython: compiles the firmware for its MicroPython version,
    copies only what changed, writes the board config, restarts the board and checks that
    the dial answers with the firmware version just installed.
    """
    try:
        result = run_flash(board_name=board_name, port=port, force=force, timeout=timeout,
                           drive=drive, micropython=micropython, wait=wait)
    except NotMicroPython as exc:
        click.echo(f"ratedial: error: {exc}", err=True)
        if "binary data" not in str(exc):  # not a dial already: how to put MicroPython on it
            click.echo(INSTALL_HELP, err=True)
        sys.exit(exc.exit_code)
    except PortError as exc:
        if "no MicroPython board found" not in str(exc):
            raise
        raise PortError(f"{exc}; a blank Pico: hold BOOTSEL while plugging it in") from None
    h = result.hello
    assert h is not None  # flash_board returns only after a HELLO
    click.echo(f"dial answered in {result.seconds:.1f} s: {h.uid_hex}  board={h.board} "
               f"firmware={h.firmware} backend={h.backend} rate={h.rate_hz}Hz")
