"""A virtual MicroPython board on a pty, for flashing tests (``ratedial flash`` end to end).

The real MicroPython unix port runs with its stdio on the slave of one pty pair and its
working directory in ``flash_dir``, which stands for the board's flash filesystem. The host
(mpremote, pyserial) opens the slave of a second pty pair: ``board.port``. A bridge thread
copies bytes between the two masters and adds what a real board's USB stack and soft reset
do and the unix port does not:

- Ctrl-C (0x03) while a program runs is turned into SIGINT (the unix port then raises
  KeyboardInterrupt), as TinyUSB's interrupt character does; the byte itself is consumed.
  At a prompt it is passed on, as a REPL sees it. Bytes after it are held until the
  interpreter shows a prompt again (at most 5 s), so the program cannot eat them.
- Ctrl-D (0x04) at an empty prompt is a soft reset: the interpreter is restarted. At the
  friendly prompt (``>>> ``) the new one boots: it runs ``main.py`` if there is one (then
  stays in the REPL, like ``-i``), as a board does after a soft reset. In the raw REPL the new
  one goes straight back to the raw REPL and the host sees
  ``OK\\r\\nMPY: soft reboot\\r\\nraw REPL; CTRL-B to exit\\r\\n>`` as from a real board.
- If the interpreter exits on its own, the board "soft reboots" into a plain REPL.

Booting runs ``main.py`` with the virtual hardware (``VHW`` below, MicroPython code written to
a ROM directory beside the flash): ``dial.app.make_hw`` has no hardware for the unix port, so
the boot shim points it at ``VHW``: real time from ``time.ticks_us``, the sample timer as an
asyncio task, the link on stdio, and a counter for the configured backend (a still encoder
for ``irq``/``pio``/``pcnt``, a noisy fake potentiometer for ``adc``, read through the
flashed ``dial.counter_adc``).

Both pty slaves are in raw mode before any byte flows (otherwise the host side echoes into a
loop and the device side turns ``\\r\\n`` into ``\\r\\r\\n``). Host-bound bytes are buffered
(up to 1 MB) and the bridge stops reading the device while that buffer is full, so a host that
does not read stalls the device's writes like a USB CDC port that is open but not read.

``GarbageBoard`` is a pty whose other end is not MicroPython: it prints sensor-like lines
and ignores what it gets.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import subprocess
import sys
import termios
import threading
import time
import tty
from pathlib import Path

from mpy import micropython_exe

RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n>"
RUN_MARK = b"\x1b[vbR"
END_MARK = b"\x1b[vbE"
FRIENDLY_PROMPT = b">>> "
LIMIT = 1 << 20

# The virtual hardware and the boot shim, written to the ROM directory (MicroPython code).
VHW_SOURCE = '''\
"""Virtual hardware for the virtual board (written by tests/virtual_board.py)."""
import gc
import os
import select
import sys
import time

try:
    import asyncio
except ImportError:
    import uasyncio as asyncio

from array import array

MASK = (1 << 30) - 1
HALF = 1 << 29


class StillCounter:
    def __init__(self, name):
        self.name = name
        self._off = 0

    def value(self):
        return 0

    def zero(self):
        pass

    def errors(self):
        return 0

    def deinit(self):
        pass


class PotAdc:
    """A wiper that sweeps 10000 -> 50000 units and back over 20 s, with ~48 units of noise
    (four uniform bytes from a 16-bit xorshift): allocation-free, like an ADC."""

    def __init__(self):
        self._st = array("i", [0xACE1, 0])
        self._t0 = time.ticks_ms()

    def _r8(self):
        st = self._st
        x = st[0]
        x ^= (x << 7) & 0xFFFF
        x ^= x >> 9
        x ^= (x << 8) & 0xFFFF
        st[0] = x
        return x & 0xFF

    def position(self):
        k = time.ticks_diff(time.ticks_ms(), self._t0) % 20000
        if k < 10000:
            return 10000 + 4 * k
        return 50000 - 4 * (k - 10000)

    def read_u16(self):
        n = self._r8() + self._r8() + self._r8() + self._r8() - 510
        v = self.position() + n * 48 // 148
        if v < 0:
            v = 0
        if v > 65535:
            v = 65535
        raw = v >> 4
        return (raw << 4) | (raw >> 8)


class VHW:
    tick_bits = 30

    def __init__(self, cfg):
        self.board = cfg["board"]
        backend = cfg["backend"]
        if backend == "adc":
            from dial.counter_adc import AdcCounter

            self.adc = PotAdc()
            self.counter = AdcCounter(self.adc, cfg.get("adc_oversample", 8),
                                      cfg.get("adc_hysteresis", 96), cfg.get("adc_settle", 64))
        else:
            self.counter = StillCounter(backend)
        self.button = None
        self.rx = sys.stdin.buffer
        self._out = sys.stdout.buffer
        self._wpoll = select.poll()
        self._wpoll.register(sys.stdout, select.POLLOUT)
        self._task = None
        self._boot = int.from_bytes(os.urandom(4), "little")

    def ticks_us(self):
        return time.ticks_us() & MASK

    def ticks_diff(self, a, b):
        return ((a - b + HALF) & MASK) - HALF

    def unique_id(self):
        return b"\\x76\\x62\\x6f\\x61\\x72\\x64\\x00\\x01"

    def boot_id(self):
        return self._boot

    async def _timer(self, period, cb):
        nxt = self.ticks_us()
        while True:
            while self.ticks_diff(self.ticks_us(), nxt) >= 0:
                cb(self)
                nxt = (nxt + period) & MASK
            await asyncio.sleep_ms(1)

    def start_timer(self, period_us, callback):
        self.stop_timer()
        self._task = asyncio.create_task(self._timer(period_us, callback))

    def stop_timer(self):
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def disable_irq(self):
        return 0

    def enable_irq(self, state):
        pass

    def tx_write(self, buf):
        if not self._wpoll.poll(0):
            return 0
        if len(buf) > 256:
            buf = buf[:256]
        return self._out.write(buf) or 0

    def mem_free(self):
        return gc.mem_free()
'''

BOOT_SOURCE = '''\
# Boot shim of the virtual board (written by tests/virtual_board.py): run main.py from the
# flash directory (the working directory) with the virtual hardware, then the REPL follows.
import os
import sys

sys.path.insert(0, "")
try:
    os.stat("main.py")
    _main = True
except OSError:
    _main = False
if _main:
    import vhw
    try:
        import dial.app
        dial.app.make_hw = vhw.VHW
    except ImportError:
        pass
    with open("main.py") as _f:
        _code = _f.read()
    # markers for the bridge (it removes them): a program runs between them, so a Ctrl-C
    # becomes SIGINT only when the interpreter has its SIGINT handler installed
    sys.stdout.buffer.write(b"\x1b[vbR")
    try:
        exec(_code, {"__name__": "__main__"})
    finally:
        sys.stdout.buffer.write(b"\x1b[vbE")
'''


def _tail_state(tail: bytes) -> str | None:
    if tail.endswith(FRIENDLY_PROMPT):
        return "friendly"
    if tail.endswith((RAW_BANNER, b"\x04>")):
        return "raw"
    return None


class VirtualBoard:
    """The unix port on a pty as a MicroPython board whose flash is ``flash_dir``."""

    def __init__(self, flash_dir: Path, *, heapsize: str = "4M") -> None:
        self.flash_dir = Path(flash_dir)
        self.rom = self.flash_dir.parent / (self.flash_dir.name + "-rom")
        self.heapsize = heapsize
        self.proc: subprocess.Popen[bytes] | None = None
        self.boots = 0  # interpreter starts that ran main.py
        self.soft_resets = 0
        self.log = bytearray()  # everything the device printed (capped)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- lifecycle

    def __enter__(self) -> VirtualBoard:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> VirtualBoard:
        self.flash_dir.mkdir(parents=True, exist_ok=True)
        self.rom.mkdir(parents=True, exist_ok=True)
        (self.rom / "vhw.py").write_text(VHW_SOURCE)
        (self.rom / "vboot.py").write_text(BOOT_SOURCE)
        self._dev_m, self._dev_s = os.openpty()
        self._host_m, self._host_s = os.openpty()
        for fd in (self._dev_s, self._host_s):
            tty.setraw(fd)
        self.port = os.ttyname(self._host_s)
        self._to_host = bytearray()
        self._to_dev = bytearray()
        self._held = bytearray()
        self._tail = b""
        self._state: str | None = None  # "friendly", "raw" or None (running)
        self._typed = False  # host bytes forwarded since the prompt appeared
        self._hold_until = 0.0  # after a SIGINT: hold host bytes until a prompt
        self._swallow: bytes | None = None  # drop device output up to this marker
        self._spawn(boot=True)
        self._thread = threading.Thread(target=self._run, name="virtual-board", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._kill()
        for fd in (self._dev_m, self._dev_s, self._host_m, self._host_s):
            with contextlib.suppress(OSError):
                os.close(fd)

    # ---------------------------------------------------------------- interpreter

    def _spawn(self, *, boot: bool) -> None:
        args = [micropython_exe(), "-X", f"heapsize={self.heapsize}"]
        if boot:
            args += ["-i", str(self.rom / "vboot.py")]
            self.boots += 1
        env = {**os.environ, "MICROPYPATH": f".frozen:{self.rom}"}
        self.proc = subprocess.Popen(
            args,
            stdin=self._dev_s,
            stdout=self._dev_s,
            stderr=self._dev_s,
            cwd=self.flash_dir,
            env=env,
            start_new_session=True,
        )
        self._state = None
        self._typed = False
        self._tail = b""
        self._running = False  # main.py runs (between the boot shim's markers)
        self._partial = b""

    def _kill(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)
        self.proc = None

    def _soft_reset(self, *, raw: bool) -> None:
        self.soft_resets += 1
        self._kill()
        termios.tcflush(self._dev_s, termios.TCIOFLUSH)
        self._drain_device()
        if raw:
            self._to_host += b"OK\r\nMPY: soft reboot\r\n"
            self._spawn(boot=False)
            # the new REPL reads this when it starts; its banners are dropped up to the raw one
            os.write(self._dev_m, b"\x01")
            self._swallow = RAW_BANNER
            self._to_host += RAW_BANNER
            self._state = "raw"
        else:
            self._to_host += b"\r\nMPY: soft reboot\r\n"
            self._spawn(boot=True)

    def _drain_device(self) -> None:
        while select.select([self._dev_m], [], [], 0)[0]:
            try:
                if not os.read(self._dev_m, 65536):
                    break
            except OSError:
                break

    # ---------------------------------------------------------------- bridge

    def _from_device(self, data: bytes) -> None:
        if not data and not self._partial:
            return
        data = self._partial + data
        self._partial = b""
        for k in range(1, len(RUN_MARK)):  # a marker cut by the read: keep its start
            if data.endswith(RUN_MARK[:k]):
                self._partial = data[-k:]
                data = data[:-k]
                break
        while True:
            r, e = data.find(RUN_MARK), data.find(END_MARK)
            if r < 0 and e < 0:
                break
            if e < 0 or 0 <= r < e:
                self._running = True
                self._from_device_plain(data[:r])
                data = data[r + len(RUN_MARK):]
            else:
                self._from_device_plain(data[:e])
                self._running = False
                data = data[e + len(END_MARK):]
        self._from_device_plain(data)

    def _from_device_plain(self, data: bytes) -> None:
        if not data:
            return
        if len(self.log) < LIMIT:
            self.log += data
        if self._swallow is not None:
            self._tail = (self._tail + data)[-256:]
            idx = self._tail.find(self._swallow)
            if idx < 0:
                return
            data = self._tail[idx + len(self._swallow):]
            self._swallow = None
            self._tail = b""
            if not data:
                self._state = "raw"
                self._typed = False
                return
        self._to_host += data
        self._tail = (self._tail + data)[-64:]
        state = _tail_state(self._tail)
        if state is not None:
            self._state = state
            self._typed = False
        else:
            self._state = None

    def _from_host(self, data: bytes) -> None:
        for i, byte in enumerate(data):
            if self._hold_until:
                self._held += data[i:]  # released when a prompt shows (or on time-out)
                return
            if byte == 0x03 and self._running:
                proc = self.proc
                if proc is not None and proc.poll() is None:
                    os.kill(proc.pid, signal.SIGINT)
                self._hold_until = time.monotonic() + 5.0
                continue
            if byte == 0x03 and self._state is None:
                # Starting, or between programs: the SIGINT handler may not be installed (the
                # signal would kill the interpreter). Hold it until a prompt or a program.
                self._held += data[i:]
                self._hold_until = time.monotonic() + 5.0
                return
            if byte == 0x04 and self._state is not None and not self._typed:
                self._soft_reset(raw=self._state == "raw")
                continue
            self._to_dev.append(byte)
            if self._state is not None:
                self._typed = True

    def _run(self) -> None:
        while not self._stop.is_set():
            self._housekeeping()
            rl = [self._host_m]
            if len(self._to_host) < LIMIT:
                rl.append(self._dev_m)
            wl = []
            if self._to_host:
                wl.append(self._host_m)
            if self._to_dev:
                wl.append(self._dev_m)
            r, w, _ = select.select(rl, wl, [], 0.02)
            if self._dev_m in r:
                self._from_device(self._read(self._dev_m))
            if self._host_m in r:
                self._from_host(self._read(self._host_m))
            if self._host_m in w:
                del self._to_host[:os.write(self._host_m, bytes(self._to_host[:4096]))]
            if self._dev_m in w:
                del self._to_dev[:os.write(self._dev_m, bytes(self._to_dev[:4096]))]

    @staticmethod
    def _read(fd: int) -> bytes:
        try:
            return os.read(fd, 65536)
        except OSError as exc:  # EIO: the other side is closed (the interpreter exited)
            if exc.errno != errno.EIO:
                raise
            return b""

    def _housekeeping(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is not None:
            # the interpreter exited by itself: a board would soft-reboot
            self._drain_device()
            self._to_host += b"\r\nMPY: soft reboot\r\n"
            self._spawn(boot=False)
        if self._hold_until and (self._state is not None
                                 or (self._running and self._held[:1] == b"\x03")
                                 or time.monotonic() > self._hold_until):
            held = bytes(self._held)
            self._held.clear()
            self._hold_until = 0.0
            self._from_host(held)


class GarbageBoard:
    """A serial device that is not MicroPython: it prints sensor readings and ignores input."""

    def __init__(self, text: bytes = b"temp=23.5C hum=41%\r\n") -> None:
        self.text = text
        self._stop = threading.Event()
        self._m, self._s = os.openpty()
        tty.setraw(self._s)
        os.set_blocking(self._m, False)
        self.port = os.ttyname(self._s)
        self.received = bytearray()
        self._thread = threading.Thread(target=self._run, name="garbage-board", daemon=True)

    def __enter__(self) -> GarbageBoard:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        for fd in (self._m, self._s):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _run(self) -> None:
        while not self._stop.is_set():
            r, _, _ = select.select([self._m], [], [], 0.05)
            if r:
                with contextlib.suppress(OSError):
                    self.received += os.read(self._m, 4096)
            with contextlib.suppress(OSError):
                os.write(self._m, self.text)


if __name__ == "__main__":  # manual use: python tests/virtual_board.py DIR
    with VirtualBoard(Path(sys.argv[1])) as vb:
        print(vb.port, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(1)
