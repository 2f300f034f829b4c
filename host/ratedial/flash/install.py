"""Putting the dial firmware on a board that runs MicroPython and checking that it answers.

The steps, each ending with a one-line reason when it fails:

1. find the board: the one serial port with a known USB vendor id, or ``--port``;
2. talk to it: mpremote's raw REPL after a soft reset (so nothing else runs). A port that does
   not answer like MicroPython is refused before anything is written;
3. ask it: MicroPython version, platform, the ``.mpy`` format it loads
   (``sys.implementation._mpy``) and the sha256 of every file that would be written;
4. compile ``firmware/dial/*.py`` to ``.mpy`` with the mpy-cross that emits that format;
5. write what differs (everything with ``--force``): ``/dial/*.mpy``, ``/dial_board.py`` (the
   chosen board config, as source), ``/main.py``; remove stale files from ``/dial/`` (a ``.py``
   there would shadow its ``.mpy``); then hash everything again;
6. soft reset (``main.py`` runs, as after power-on) and wait for a HELLO that carries the
   firmware version just installed and the board name of the config.

Invariants:
- Nothing is written unless step 3 showed MicroPython >= 1.23 (esp32: >= 1.26, for
  ``machine.Encoder``) with ``.mpy`` major version 6, on the platform the config is for.
- What is written depends only on the firmware tree, the board config and the compiler:
  mpy-cross output is deterministic, so flashing the same tree twice writes nothing.
- ``main.py`` is written last: until then an interrupted flash leaves the old entry point.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serial.tools import list_ports

from ..errors import UsageError
from ..wire import Hello
from .board import (
    DEFAULT_BOARD,
    BoardConfig,
    BoardInfo,
    FlashError,
    Plan,
    check_board,
    firmware_version,
    load_board,
    locate_firmware,
    plan_writes,
)
from .compiler import Compiler, compile_firmware, find_compiler
from .session import _check_port_access, _Session, find_port, probe, wait_hello

# ------------------------------------------------------------------ the whole flash


@dataclass(slots=True)
class FlashResult:
    port: str
    board: BoardInfo
    compiler: Compiler
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    bytes_written: int = 0
    hello: Hello | None = None
    seconds: float = 0.0


def flash_board(
    *,
    port: str | None,
    board_name: str | None,
    force: bool = False,
    timeout: float = 15.0,
    fw: Path | None = None,
    say: Callable[[str], None] = lambda _line: None,
    comports: Callable[[], Iterable[Any]] = list_ports.comports,
) -> FlashResult:
    """Flash the dial firmware (see the module docstring). ``say`` gets progress lines."""
    t0 = time.monotonic()
    fw = fw if fw is not None else locate_firmware()
    if port is None:
        port = find_port(comports())
    version = firmware_version(fw)
    board = load_board(fw, board_name) if board_name is not None else None
    module_paths = sorted(f"dial/{p.stem}.mpy" for p in (fw / "dial").glob("*.py"))
    paths = [*module_paths, "dial_board.py", "main.py"]

    _check_port_access(port)
    session = _Session(port)
    try:
        session.enter()
        info = probe(session, paths)
        if board is None:
            name = DEFAULT_BOARD.get(info.platform)
            if name is None:
                raise UsageError(f"{port} is a {info.platform} board: choose --board")
            board = load_board(fw, name)
            say(f"no --board given: using {name}, the default for {info.platform}")
        check_board(info, board, port)
        say(f"{port}: {info.describe()}")

        result = _install(session, info, board, fw, force=force, say=say)
        session.soft_reset()
    finally:
        session.close()

    hello = wait_hello(port, firmware=version, board=str(board.config.get("board", board.name)),
                       timeout=timeout)
    result.hello = hello
    result.seconds = time.monotonic() - t0
    return result


def _install(session: _Session, info: BoardInfo, board: BoardConfig, fw: Path, *, force: bool,
             say: Callable[[str], None]) -> FlashResult:
    """Steps 4 and 5: compile, write what differs, remove stale files, verify."""
    compiler = find_compiler(info.mpy_version)
    files = compile_firmware(compiler, fw / "dial")
    files["dial_board.py"] = board.source.encode("utf-8")
    files["main.py"] = (fw / "main.py").read_bytes()
    size = sum(len(b) for p, b in files.items() if p.endswith(".mpy"))
    say(f"compiled {len(files) - 2} modules with mpy-cross {compiler.version} "
        f"(.mpy v{compiler.mpy[0]}.{compiler.mpy[1]}): {size / 1000:.1f} kB")

    plan = plan_writes(files, info, force=force)
    result = FlashResult(port=session.port, board=info, compiler=compiler,
                         unchanged=plan.unchanged, removed=plan.remove)
    if plan.remove:
        session.exec(f"import os\nfor p in {plan.remove!r}:\n os.remove(p)\n",
                     "removing stale files")
    if plan.write and info.dial_files is None:
        session.exec("import os\nos.mkdir('dial')\n", "creating /dial")
    for path in plan.write:
        session.write_file(path, files[path])
        result.written.append(path)
        result.bytes_written += len(files[path])
    if plan.write:
        check = probe(session, plan.write)
        bad = [p for p in plan.write if not _same(check.hashes.get(p), files[p])]
        if bad:
            raise FlashError(f"verification failed for {', '.join(bad)}: flash again")
    say(_summary(plan, result.bytes_written))
    return result


def _same(on_board: bytes | None, data: bytes) -> bool:
    """The board's hash matches (b"": the board cannot hash, only its presence counts)."""
    return on_board is not None and on_board in (b"", hashlib.sha256(data).digest())


def _summary(plan: Plan, nbytes: int) -> str:
    parts = [f"wrote {len(plan.write)} files ({nbytes / 1000:.1f} kB)" if plan.write
             else "nothing to write"]
    parts.append(f"{len(plan.unchanged)} unchanged")
    if plan.remove:
        parts.append(f"removed {', '.join(plan.remove)}")
    return ", ".join(parts)


