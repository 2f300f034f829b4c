"""An emulated Raspberry Pi Pico running the real MicroPython rp2 UF2 and the dial firmware.

Invariants:
- Real parts only: MicroPython v1.28.0's RPI_PICO UF2 (the official rp2 port, built from
  source: its sha256 is not the released file's) and the RP2040 boot ROM from
  ``../shared/rp2emu/`` (or ``$RATEDIAL_RP2EMU``), rp2040js pinned in ``package.json`` beside
  this file, the firmware compiled with the same mpy-cross and file set ``ratedial flash``
  writes, put into a littlefs image made by MicroPython's own VfsLfs2 (``mkfs_mpy.py``).
- The board's USB CDC appears as a real pseudo-terminal (``EmuPico.port``) in raw mode, which
  pyserial, mpremote and ``ratedial`` open like a Pico's /dev/ttyACM0. The harness keeps the
  slave open itself, so a host closing and reopening the port never ends the link.
- Time on the board is emulated (cycles at 125 MHz), about 0.1-0.2x wall time: everything is
  judged on the board's clock (frame device times, ``stats()["nanos"]``), never on sleeps.
- ``skip_reason()`` says in one line why the emulator cannot run here (no node, no UF2, npm
  packages not installed); the tests skip with it.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import queue
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
import tty
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
FIRMWARE = ROOT / "firmware"
UF2_NAME = "RPI_PICO-v1.28.0.uf2"
BOOTROM_NAME = "rp2040-bootrom-b1.mjs"
MPY_VERSION = (6, 3)  # .mpy format of MicroPython v1.28


def shared_dir() -> Path:
    env = os.environ.get("RATEDIAL_RP2EMU")
    return Path(env) if env else ROOT.parent / "shared" / "rp2emu"


def skip_reason() -> str | None:
    """None when the emulated Pico can run here, else one line saying what is missing."""
    if shutil.which("node") is None:
        return "rp2emu: node is not installed (the emulated-Pico tests need node and rp2040js)"
    d = shared_dir()
    if not (d / UF2_NAME).is_file() or not (d / BOOTROM_NAME).is_file():
        return f"rp2emu: no {UF2_NAME} and boot ROM in {d} (set RATEDIAL_RP2EMU)"
    if not (HERE / "node_modules" / "rp2040js").is_dir():
        return "rp2emu: rp2040js is not installed (run: npm ci --prefix tests/rp2emu)"
    return None


# ------------------------------------------------------------------ the flash image


def firmware_files(board: str, extra: dict[str, bytes] | None = None, *,
                   firmware: Path | None = None) -> dict[str, bytes]:
    """What ``ratedial flash --board BOARD`` writes: dial/*.mpy, dial_board.py, main.py.
    ``firmware``: another firmware/ tree (e.g. an older commit's, for a baseline)."""
    from ratedial import flash

    fw = FIRMWARE if firmware is None else firmware
    compiler = flash.find_compiler(MPY_VERSION)
    files = flash.compile_firmware(compiler, fw / "dial")
    files["dial_board.py"] = flash.load_board(fw, board).source.encode()
    files["main.py"] = (fw / "main.py").read_bytes()
    files.update(extra or {})
    return files


def make_image(files: dict[str, bytes], cache: Path) -> Path:
    """The littlefs image holding ``files``; cached by content under ``cache``."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    h.update((HERE / "mkfs_mpy.py").read_bytes())
    out = cache / f"fs-{h.hexdigest()[:16]}.img"
    if out.exists():
        return out
    src = cache / f"src-{h.hexdigest()[:16]}"
    for name, data in files.items():
        p = src / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    from mpy import micropython_exe

    tmp = out.with_suffix(".tmp")
    subprocess.run([micropython_exe(), "-X", "heapsize=16M", str(HERE / "mkfs_mpy.py"),
                    str(tmp), str(src)], check=True, capture_output=True, timeout=120)
    tmp.replace(out)
    return out


# ------------------------------------------------------------------ the board


class EmuPico:
    """One emulated Pico: node runner + pty. Use as a context manager."""

    def __init__(self, *, image: Path, pio: str = "faithful", high: Iterable[int] = (),
                 start_us: int = 0, uf2: Path | None = None) -> None:
        d = shared_dir()
        self._ctl, child = socket.socketpair()
        self.proc = subprocess.Popen(
            ["node", str(HERE / "runner.mjs"), "--uf2", str(uf2 or d / UF2_NAME),
             "--bootrom", str(d / BOOTROM_NAME), "--fs", str(image), "--pio", pio,
             "--ctl-fd", str(child.fileno()),
             "--high", ",".join(str(p) for p in high), "--start-us", str(start_us)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            pass_fds=(child.fileno(),), cwd=HERE,
        )
        child.close()
        self._master, self._slave = os.openpty()
        tty.setraw(self._master)
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)
        self._ids = itertools.count(1)
        self._replies: dict[int, queue.Queue[dict[str, Any]]] = {}
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stderr = bytearray()
        self._lock = threading.Lock()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._pump_out, daemon=True, name="rp2emu-out"),
            threading.Thread(target=self._pump_in, daemon=True, name="rp2emu-in"),
            threading.Thread(target=self._read_ctl, daemon=True, name="rp2emu-ctl"),
            threading.Thread(target=self._read_err, daemon=True, name="rp2emu-err"),
        ]
        for t in self._threads:
            t.start()

    # ---- pumps between the runner's stdio and the pty master
    def _pump_out(self) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while True:
            data = os.read(fd, 65536)
            if not data:
                return
            view = memoryview(data)
            while view:
                try:
                    n = os.write(self._master, view)
                except OSError:
                    return
                view = view[n:]

    def _pump_in(self) -> None:
        assert self.proc.stdin is not None
        while not self._closed:
            try:
                r, _, _ = select.select([self._master], [], [], 0.2)
            except (OSError, ValueError):
                return  # close() closed the pty meanwhile
            if not r:
                continue
            try:
                data = os.read(self._master, 4096)
            except OSError:
                return
            try:
                self.proc.stdin.write(data)
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                return

    def _read_ctl(self) -> None:
        f = self._ctl.makefile("rb")
        for line in f:
            msg = json.loads(line)
            rid = msg.get("id")
            if rid is not None and rid in self._replies:
                self._replies[rid].put(msg)
            else:
                self.events.put(msg)

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr += line

    # ---- control
    def call(self, op: str, timeout: float = 60.0, **kw: Any) -> dict[str, Any]:
        rid = next(self._ids)
        q: queue.Queue[dict[str, Any]] = queue.Queue()
        self._replies[rid] = q
        with self._lock:
            self._ctl.sendall((json.dumps({"id": rid, "op": op, **kw}) + "\n").encode())
        try:
            msg = q.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(
                f"rp2emu: no answer to {op}; stderr: {self.stderr[-2000:]!r}") from None
        finally:
            del self._replies[rid]
        if "error" in msg:
            raise RuntimeError(f"rp2emu {op}: {msg['error']}")
        return msg

    def stats(self) -> dict[str, Any]:
        return self.call("stats")

    def stall(self, on: bool) -> dict[str, Any]:
        return self.call("stall", on=on)

    def wave(self, events: Sequence[tuple[int, int, int]], *, delay_ns: int = 0,
             init: Iterable[tuple[int, int, int]] = ()) -> int:
        """Schedule pin levels [(t_ns from start, pin, level)] on the emulated clock; returns
        the emulated time of the start. A ``wave_done`` event follows the last change."""
        r = self.call("wave", events=[list(e) for e in events], delay_ns=delay_ns,
                      init=[list(e) for e in init])
        return int(r["t0"])

    def wait_event(self, name: str, timeout: float) -> dict[str, Any]:
        while True:
            msg = self.events.get(timeout=timeout)
            if msg.get("event") == name:
                return msg

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError, TimeoutError, RuntimeError):
            self.call("quit", timeout=5)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._ctl.close()
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        for s in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if s is not None:
                with contextlib.suppress(OSError):
                    s.close()

    def __enter__(self) -> EmuPico:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------ counting collections

# Runs as main.py: prints the C function behind gc.collect (py_gc_collect) and its first
# 16 halfwords, then, after one byte from the host, collects 3 times; after a second byte it
# makes 400 KB of garbage (the heap is ~160 KB: the allocator must collect by itself).
_GC_PROBE = b"""import gc, machine, sys
f = machine.mem32[id(gc.collect) + 4] & ~1
print('GCFUN', f, ' '.join(str(machine.mem16[f + k]) for k in range(0, 32, 2)))
sys.stdin.buffer.read(1)
for _ in range(3):
    gc.collect()
print('GCDONE')
sys.stdin.buffer.read(1)
for _ in range(4000):
    bytearray(100)
print('GCAUTO')
"""
_gc_collect_addr: dict[Path, int] = {}


def _first_bl(fun: int, halfwords: list[int]) -> int:
    """Target of the first Thumb BL in a function's code (ARMv6-M encoding T1)."""
    for k in range(len(halfwords) - 1):
        h1, h2 = halfwords[k], halfwords[k + 1]
        if h1 & 0xF800 == 0xF000 and h2 & 0xD000 == 0xD000:
            s = (h1 >> 10) & 1
            i1 = 1 - (((h2 >> 13) & 1) ^ s)
            i2 = 1 - (((h2 >> 11) & 1) ^ s)
            imm = (s << 24) | (i1 << 23) | (i2 << 22) | ((h1 & 0x3FF) << 12) | ((h2 & 0x7FF) << 1)
            if s:
                imm -= 1 << 25
            return fun + 2 * k + 4 + imm
    raise LookupError("no BL in py_gc_collect's first instructions")


def find_gc_collect(cache: Path, uf2: Path | None = None, timeout: float = 300.0) -> int:
    """Address of the interpreter's ``gc_collect()`` in this UF2: the first call made by the
    function behind ``gc.collect`` (MicroPython's py/modgc.c), which every collection goes
    through, whether asked for or forced by an allocation that found the heap full. Checked
    with the runner's ``watch_pc``: 3 explicit collections count 3, and garbage beyond the
    heap's size counts the allocator's own. Cached per UF2."""
    import serial

    key = (uf2 or shared_dir() / UF2_NAME).resolve()
    if key in _gc_collect_addr:
        return _gc_collect_addr[key]
    image = make_image({"main.py": _GC_PROBE}, cache)
    with EmuPico(image=image, uf2=uf2) as emu:
        ser = serial.Serial(emu.port, timeout=0.5)
        try:
            text = b""
            deadline = time.monotonic() + timeout
            while b"GCFUN" not in text or not text.split(b"GCFUN", 1)[1].count(b"\n"):
                if time.monotonic() > deadline:
                    raise TimeoutError(text[-500:])
                text += ser.read(4096)
            line = text.split(b"GCFUN", 1)[1].split(b"\n", 1)[0].split()
            fun, hws = int(line[0]), [int(x) for x in line[1:]]
            addr = _first_bl(fun, hws)
            emu.call("watch_pc", addr=addr)
            ser.write(b"x")
            while b"GCDONE" not in text:
                if time.monotonic() > deadline:
                    raise TimeoutError(text[-500:])
                text += ser.read(4096)
            hits = emu.stats()["watch_hits"]
            ser.write(b"x")
            while b"GCAUTO" not in text:
                if time.monotonic() > deadline:
                    raise TimeoutError(text[-500:])
                text += ser.read(4096)
            auto = emu.stats()["watch_hits"] - hits
        finally:
            ser.close()
    if hits != 3 or auto < 2:
        raise LookupError(f"gc_collect at {addr:#x} ran {hits} times for 3 gc.collect() and "
                          f"{auto} times for 400 KB of garbage")
    _gc_collect_addr[key] = addr
    return addr


if __name__ == "__main__":  # pragma: no cover - manual use: print the port, run until ^C
    sys.path.insert(0, str(HERE.parent))
    board = sys.argv[1] if len(sys.argv) > 1 else "pico"
    cache = Path(os.environ.get("TMPDIR", "/tmp")) / "ratedial-rp2emu"
    cache.mkdir(exist_ok=True)
    img = make_image(firmware_files(board), cache)
    with EmuPico(image=img) as pico:
        print(pico.port, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
