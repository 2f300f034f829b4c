"""Installing MicroPython on an ESP32 with esptool (the optional ``esp32`` extra).

The flow: esptool detects the chip on the port; the image's own header must name the same
chip; then ``erase-flash`` and ``write-flash -z OFFSET IMAGE`` at the offset of that chip
family (MicroPython's ESP32 images start with the second-stage bootloader, which the ROM
loads from 0x1000 on the ESP32 and ESP32-S2 and from 0x0 on the S3, C3 and C6); esptool
resets the board afterwards. Boards without auto-reset need the BOOT button held while
EN/RST is pressed: the messages say so.
"""

from __future__ import annotations

import contextlib
import io
import struct
from collections.abc import Callable, Sequence
from pathlib import Path

from .._paths import install_hint
from .board import FlashError

# esptool's chip name -> flash offset of MicroPython's image, which starts with the bootloader:
# the chip ROM's bootloader offset (esptool's BOOTLOADER_FLASH_OFFSET; MicroPython's deploy
# notes: esp32 and esp32s2 0x1000, esp32s3 and esp32c3 0x0). The tests check both tables
# against esptool's chip definitions.
OFFSETS: dict[str, int] = {
    "esp32": 0x1000, "esp32s2": 0x1000, "esp32s3": 0x0, "esp32c3": 0x0, "esp32c6": 0x0,
}
# ESP image extended header: chip id (uint16 at byte 12) per chip (esptool's IMAGE_CHIP_ID).
IMAGE_CHIP_ID: dict[int, str] = {0: "esp32", 2: "esp32s2", 9: "esp32s3", 5: "esp32c3",
                                 13: "esp32c6"}
ESP_IMAGE_MAGIC = 0xE9
BAUD = 460800

BOOT_DANCE = ("on a board without auto-reset: hold BOOT (IO0), press and release EN/RST, "
              "release BOOT, then run ratedial flash again")

DetectChip = Callable[[str], str]
RunEsptool = Callable[[Sequence[str]], None]


def chip_key(name: str) -> str:
    """esptool's CHIP_NAME ("ESP32-S3") as its --chip value ("esp32s3")."""
    return name.lower().replace("-", "").replace(" ", "")


def image_chip(image: Path) -> str | None:
    """The chip an ESP image is built for (its extended header), None for an unknown id;
    FlashError when the file is not an ESP image."""
    try:
        with image.open("rb") as f:
            head = f.read(24)
    except OSError as exc:
        raise FlashError(f"{image}: cannot read it ({exc.strerror or exc})") from None
    if len(head) < 24 or head[0] != ESP_IMAGE_MAGIC:
        raise FlashError(f"{image} is not an ESP32 firmware image (no 0xE9 header): use the "
                         "MicroPython .bin for the board")
    (chip_id,) = struct.unpack_from("<H", head, 12)
    return IMAGE_CHIP_ID.get(chip_id)


def esptool_commands(chip: str, port: str, image: Path, *, baud: int = BAUD) -> list[list[str]]:
    """The esptool command lines (arguments after ``esptool``): erase, then write."""
    if chip not in OFFSETS:
        raise FlashError(f"ratedial does not know where MicroPython goes on a {chip}: "
                         f"use esptool by hand (see hardware/README.md)")
    return [
        ["--chip", chip, "--port", port, "erase-flash"],
        ["--chip", chip, "--port", port, "--baud", str(baud), "write-flash", "-z",
         f"0x{OFFSETS[chip]:x}", str(image)],
    ]


def _import_esptool() -> object:
    try:
        import esptool
    except ImportError:
        raise FlashError("esptool is not installed: " + install_hint("esp32")) from None
    return esptool


def detect_chip(port: str, attempts: int = 3) -> str:
    """esptool's chip detection (default reset: DTR/RTS), as an --chip value."""
    _import_esptool()
    import serial
    from esptool.cmds import detect_chip as _detect
    from esptool.util import FatalError

    noise = io.StringIO()  # esptool's connect chatter; its reason is in the exception
    try:
        with contextlib.redirect_stdout(noise), contextlib.redirect_stderr(noise):
            loader = _detect(port=port, connect_attempts=attempts)
    except (FatalError, serial.SerialException, OSError) as exc:
        first = (str(exc).strip().splitlines() or ["no answer"])[0]
        raise FlashError(f"no ESP32 bootloader answered on {port} ({first[:80]}): "
                         f"{BOOT_DANCE}") from None
    try:
        return chip_key(str(loader.CHIP_NAME))
    finally:
        with contextlib.suppress(Exception):
            loader._port.close()


def run_esptool(argv: Sequence[str]) -> None:
    """esptool in this process; its failures as one-line FlashErrors."""
    _import_esptool()
    import esptool
    from esptool.util import FatalError

    command = next((a for a in argv if a.endswith("-flash")), "")
    try:
        esptool.main(list(argv))
    except (FatalError, OSError, SystemExit) as exc:
        first = (str(exc).strip().splitlines() or ["failed"])[0]
        raise FlashError(f"esptool {command} failed: {first[:120]}; {BOOT_DANCE}") from None


def install_esp32(image: Path, port: str, *, detect: DetectChip = detect_chip,
                  run: RunEsptool = run_esptool,
                  say: Callable[[str], None] = lambda _line: None) -> str:
    """Detect, check the image, erase, write; the chip name."""
    built_for = image_chip(image)
    chip = detect(port)
    say(f"{port}: esptool detected {chip}")
    if built_for is not None and built_for != chip:
        raise FlashError(f"{image.name} is built for {built_for}, the board is {chip}: "
                         "nothing was written (use the MicroPython .bin for this chip)")
    for argv in esptool_commands(chip, port, image):
        say("esptool " + " ".join(argv))
        run(argv)
    say(f"MicroPython written at 0x{OFFSETS[chip]:x}; esptool reset the board (no auto-reset: "
        "press EN/RST now)")
    return chip
