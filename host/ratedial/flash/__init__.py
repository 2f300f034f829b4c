"""``ratedial flash``: from a blank board to a dial that answers.

Modules, lower ones never importing higher ones:
- ``board``: board configs, the board's probe answers, what to write (pure);
- ``compiler``: the mpy-cross for the board's ``.mpy`` format;
- ``session``: the port, the raw REPL (mpremote) and the HELLO check;
- ``install``: the dial firmware onto a board that runs MicroPython (see its docstring);
- ``uf2``, ``uf2source``, ``bootsel``: MicroPython onto a Pico in BOOTSEL mode;
- ``esp32``: MicroPython onto an ESP32 with esptool;
- ``command``: the click command tying them together.
"""

from __future__ import annotations

from .board import (
    DEFAULT_BOARD,
    KNOWN_VIDS,
    MIN_VERSION,
    MPY_MAJOR,
    BoardConfig,
    BoardInfo,
    FlashError,
    NotMicroPython,
    Plan,
    board_names,
    check_board,
    firmware_version,
    load_board,
    locate_firmware,
    parse_board_config,
    parse_probe,
    plan_writes,
)
from .command import INSTALL_HELP, flash
from .compiler import Compiler, compile_firmware, find_compiler
from .install import FlashResult, flash_board
from .session import find_port, probe, wait_hello

__all__ = [
    "DEFAULT_BOARD", "INSTALL_HELP", "KNOWN_VIDS", "MIN_VERSION", "MPY_MAJOR", "BoardConfig",
    "BoardInfo", "Compiler", "FlashError", "FlashResult", "NotMicroPython", "Plan",
    "board_names", "check_board", "compile_firmware", "find_compiler", "find_port",
    "firmware_version", "flash", "flash_board", "load_board", "locate_firmware",
    "parse_board_config", "parse_probe", "plan_writes", "probe", "wait_hello",
]
