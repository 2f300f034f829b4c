"""UF2 files and the Raspberry Pi boot ROM's INFO_UF2.TXT: the pure parts of the BOOTSEL path.

A UF2 file is a sequence of 512-byte blocks, each with two start magics, an end magic, the
flash address of its payload and (flag 0x2000) the id of the chip family it is for. The boot
ROM ignores blocks of another family, so copying an RP2350 image onto an RP2040 would do
nothing visible: the family is checked before anything is copied.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from .board import FlashError

MAGIC_START0 = 0x0A324655  # "UF2\n"
MAGIC_START1 = 0x9E5D5157
MAGIC_END = 0x0AB16F30
FLAG_FAMILY_ID = 0x00002000
BLOCK = 512

# Family ids of the Raspberry Pi chips (pico-sdk, picotool "uf2 info").
RP2040 = 0xE48BFF56
ABSOLUTE = 0xE48BFF57  # RP2350: written where it says, whatever the image (erratum E10 block)
DATA = 0xE48BFF58
RP2350_ARM_S = 0xE48BFF59
RP2350_RISCV = 0xE48BFF5A
RP2350_ARM_NS = 0xE48BFF5B
FAMILY_NAMES: dict[int, str] = {
    RP2040: "RP2040", ABSOLUTE: "absolute", DATA: "data", RP2350_ARM_S: "RP2350 (Arm)",
    RP2350_RISCV: "RP2350 (RISC-V)", RP2350_ARM_NS: "RP2350 (Arm, non-secure)",
}
# The chip of a bootloader drive -> the families it boots (ABSOLUTE/DATA blocks ride along).
BOOTS: dict[str, frozenset[int]] = {
    "RP2040": frozenset({RP2040}),
    "RP2350": frozenset({RP2350_ARM_S, RP2350_RISCV, RP2350_ARM_NS}),
}
# Board-ID in INFO_UF2.TXT -> chip; RP2350 boards say "RP2350" (sometimes with a suffix).
BOARD_IDS: tuple[tuple[str, str], ...] = (("RPI-RP2", "RP2040"), ("RP2350", "RP2350"))


@dataclass(frozen=True, slots=True)
class Uf2Image:
    path: Path
    size: int
    blocks: int
    families: frozenset[int]

    def describe(self) -> str:
        names = sorted(FAMILY_NAMES.get(f, f"0x{f:08x}") for f in self.families)
        return f"{self.path.name} ({self.size / 1000:.0f} kB, {', '.join(names) or 'no family'})"


def read_uf2(path: Path) -> Uf2Image:
    """The families a UF2 file is for; FlashError (one line) when it is not a UF2 file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FlashError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if not data or len(data) % BLOCK:
        raise FlashError(f"{path} is not a UF2 file (its size, {len(data)} bytes, is not a "
                         f"multiple of {BLOCK})")
    families: set[int] = set()
    for off in range(0, len(data), BLOCK):
        m0, m1, flags, _addr, _size, _no, _total, family = struct.unpack_from(
            "<8I", data, off)
        (end,) = struct.unpack_from("<I", data, off + BLOCK - 4)
        if (m0, m1, end) != (MAGIC_START0, MAGIC_START1, MAGIC_END):
            raise FlashError(f"{path} is not a UF2 file (bad magic in block {off // BLOCK})")
        if flags & FLAG_FAMILY_ID:
            families.add(family)
    return Uf2Image(path=path, size=len(data), blocks=len(data) // BLOCK,
                    families=frozenset(families))


def parse_info(text: str) -> dict[str, str]:
    """INFO_UF2.TXT: ``Key: value`` lines (the first line names the bootloader)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def chip_of_board_id(board_id: str) -> str | None:
    for prefix, chip in BOARD_IDS:
        if board_id.upper().startswith(prefix):
            return chip
    return None


def check_family(image: Uf2Image, chip: str, drive: Path) -> None:
    """Refuse (one line) a UF2 with no block the chip behind ``drive`` would boot."""
    if not image.families & BOOTS[chip]:
        raise FlashError(f"{image.describe()} is not for the {chip} behind {drive}: "
                         f"nothing was copied (use the MicroPython .uf2 built for this board)")
