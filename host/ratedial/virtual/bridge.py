"""The bridge of a virtual dial: firmware pipes <-> link model <-> pseudo-terminal.

One thread runs ``Bridge.run``: a poll loop over the firmware's pipes, the pty master, the
control socket and a wake-up pipe, with a timer heap. It is where the link model and the
faults live.

Invariants:
- Device -> host: bytes are read from the firmware's stdout only while the bridge holds
  fewer than ``HOLD_BYTES`` (a USB FIFO's worth) and no ``stall`` is on, so a host that
  does not read fills the 4 KB pipe and the firmware drops frames itself, exactly counted.
  Bytes are delivered at the link model's times, never reordered, and only while the host
  has fewer than ``HOST_BUFFER`` bytes unread (a real tty's buffer).
- While no process has the port open (POLLHUP on the master), or while it is unplugged,
  device output is read and discarded at once, as TinyUSB discards writes to a port that
  is not open. Bytes already on the link when the port closes are discarded too.
- A reboot kills the firmware (SIGKILL: nothing more runs) and starts a new one: what was
  still in the pipe (the device's FIFO) is lost, bytes already on the link still arrive
  (a UART bridge chip), unless ``native_usb``: then the port disappears for the reboot.
- Every command gets exactly one reply line, ``ok ...`` once it has been carried out
  (for timed faults: once they have ended) or ``error ...``.
- If the firmware dies on its own, the bridge stops and ``error`` holds a SimulatorError
  with the interpreter's last words.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import heapq
import json
import logging
import os
import queue
import select
import socket
import subprocess as sp
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SimulatorError, UsageError
from .device import DeviceProcess, spawn_device
from .faults import Command, FaultError, parse_command
from .linkmodel import BitErrors, LinkSchedule
from .options import DialOptions
from .port import PtyPort
from .script import load_script
from .truth import BootTruth

log = logging.getLogger("ratedial.virtual")

HOLD_BYTES = 256  # device -> host bytes held by the bridge (TinyUSB's TX FIFO is 256 bytes)
HOST_BUFFER = 4096  # unread bytes at the host before the link pushes back (n_tty buffer)
H2D_HOLD = 4096  # host -> device bytes held before the bridge stops reading the pty
HOST_CHECK_NS = 10_000_000  # look for a host opening the port every 10 ms
RETRY_NS = 1_000_000  # retry a blocked write after 1 ms (one USB frame)
BOOT_TIMEOUT_S = 30.0

Reply = Callable[[str], None]


@dataclass
class _Chunk:
    t_ns: int
    data: bytearray
    flipped: bool = False  # bit errors already applied


@dataclass
class Stats:
    bytes_from_device: int = 0
    bytes_to_host: int = 0
    bytes_discarded: int = 0  # device output nobody received (port closed or unplugged)
    bytes_to_device: int = 0
    bytes_lost_to_device: int = 0  # host -> device bytes lost by unplug or reboot


@dataclass
class _Client:
    sock: socket.socket
    buf: bytearray = field(default_factory=bytearray)


class Bridge:
    """A running virtual dial. Build it, ``start()`` it, then ``run()`` it in one thread;
    ``submit()`` and ``stop()`` may be called from any thread."""

    def __init__(
        self,
        options: DialOptions,
        *,
        link: Path,
        firmware: Path,
        workdir: Path,
        truth: Path | None = None,
        control: Path | None = None,
    ) -> None:
        self.opts = options
        self.link = link
        self.firmware = firmware
        self.workdir = workdir
        self.truth_path = truth
        self.control_path = control
        self.stats = Stats()
        self.error: SimulatorError | None = None
        self.ready = threading.Event()  # first firmware alive (or failed: check .error)

        self._knots: Path | None = None
        self._dev: DeviceProcess | None = None
        self._dev_alive = False  # first byte from the current firmware seen
        self._dev_boot: BootTruth | None = None
        self._boots = 0
        self._t0_us: int | None = None  # rating time 0 (first boot), passed to later boots
        self._boot_waiters: list[Reply] = []
        self._err_buf = bytearray()
        self._err_tail: deque[str] = deque(maxlen=20)
        self._out_tail = bytearray()  # last device output: the port prints tracebacks there

        self._port: PtyPort | None = None
        self._host_open = False
        self._next_host_check = 0
        self._unread = 0  # upper bound of bytes the host has not read
        self._unplug_gen = 0
        self._stalled = False
        self._stall_gen = 0

        self._d2h: deque[_Chunk] = deque()
        self._d2h_bytes = 0
        self._h2d: deque[tuple[int, bytes]] = deque()
        self._h2d_bytes = 0
        self._blocked_until = 0

        self._origin = time.monotonic_ns()
        self._sched = LinkSchedule(options.link, seed=options.seed, origin_ns=self._origin)
        self._bits = BitErrors(ber=options.ber, seed=options.seed)
        self._flip_waiters: list[tuple[int, int, Reply]] = []

        self._timers: list[tuple[int, int, Callable[[], None]]] = []
        self._timer_seq = 0
        self._stopping = False
        self._stop_at: int | None = None

        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._inbox: queue.SimpleQueue[tuple[str, Future[str]]] = queue.SimpleQueue()
        self._listener: socket.socket | None = None
        self._clients: dict[int, _Client] = {}

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        """Create the port and the control socket, start the firmware. Raises on failure."""
        if self.opts.script is not None:
            script = load_script(self.opts.script, counts_per_point=self.opts.counts_per_point)
            self._knots = self.workdir / "knots.txt"
            self._knots.write_text(script.sim_text(), encoding="ascii")
        if self.link.exists() and not self.link.is_symlink():
            raise UsageError(f"--link {self.link}: exists and is not a symlink")
        if self.control_path is not None:
            if self.control_path.exists() and not self.control_path.is_socket():
                raise UsageError(f"--control {self.control_path}: exists and is not a socket")
            with contextlib.suppress(FileNotFoundError):
                self.control_path.unlink()
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.bind(str(self.control_path))
            except OSError as exc:
                s.close()
                raise UsageError(f"--control {self.control_path}: {exc.strerror}") from None
            s.listen(8)
            s.setblocking(False)
            self._listener = s
        try:
            self._plug()
        except OSError as exc:
            raise UsageError(f"--link {self.link}: {exc.strerror}") from None
        self._spawn()
        for f in self.opts.faults:
            self._at(self._origin + int(f.at_s * 1e9), self._scheduled(f.command))

    def _scheduled(self, cmd: Command) -> Callable[[], None]:
        def fire() -> None:
            log.info("fault %s", cmd)
            self._do(cmd, lambda reply: log.info("fault %s: %s", cmd, reply))

        return fire

    def stop(self) -> None:
        """Ask the loop to end (thread-safe)."""
        self._stopping = True
        self._wake()

    def stop_at(self, t_ns: int) -> None:
        self._stop_at = t_ns

    def submit(self, line: str) -> Future[str]:
        """Run a control command (thread-safe); the future gets its reply line."""
        fut: Future[str] = Future()
        self._inbox.put((line, fut))
        self._wake()
        return fut

    def close(self) -> None:
        """Kill the firmware, remove the port and the control socket. Idempotent."""
        if self._dev is not None:
            self._dev.kill()
            self._dev.close()
            self._dev = None
        self._unplug()
        for c in list(self._clients.values()):
            c.sock.close()
        self._clients.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            if self.control_path is not None:
                with contextlib.suppress(FileNotFoundError):
                    self.control_path.unlink()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_r = self._wake_w = -1
        while not self._inbox.empty():
            _line, fut = self._inbox.get_nowait()
            if not fut.done():
                fut.set_result("error virtual dial stopped")

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\0")

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        dev = self._dev
        b = self._dev_boot
        return {
            "boots": self._boots,
            "boot_id": None if b is None else b.boot_id,
            "pid": None if dev is None else dev.pid,
            "port": str(self.link),
            "tty": None if self._port is None else self._port.slave_name,
            "unplugged": self._port is None,
            "host_open": self._host_open,
            "stalled": self._stalled,
            "link_model": self.opts.link_model,
            "bits_flipped": self._bits.flipped,
            "uptime_s": round((time.monotonic_ns() - self._origin) / 1e9, 3),
            **vars(self.stats),
        }

    # ------------------------------------------------------------------ firmware

    def _spawn(self) -> None:
        args = self.opts.sim_args(knots=self._knots, t0_us=self._t0_us, truth=self.truth_path,
                                  ctl=None)
        self._dev = spawn_device(args, firmware=self.firmware, heap_kb=self.opts.heap_kb)
        self._dev_alive = False
        self._dev_boot = None
        self._out_tail.clear()
        self._boots += 1
        log.info("firmware started (boot %d, pid %d)", self._boots, self._dev.pid)

    def _reboot(self, reply: Reply) -> None:
        dev = self._dev
        if dev is not None:
            dev.kill()
            dev.close()
            self._dev = None
        self.stats.bytes_lost_to_device += self._h2d_bytes
        self._h2d.clear()
        self._h2d_bytes = 0
        if self.opts.native_usb:
            self._unplug()
            gen = self._unplug_gen
            self._after(self.opts.reenumerate_s, lambda: self._plug(gen))
        self._spawn()
        self._boot_waiters.append(reply)

    def _device_alive(self) -> None:
        self._dev_alive = True
        if self.opts.realtime and self._dev is not None and not self._dev.realtime_irqs():
            log.info("no real-time priority for the simulated interrupts (needs CAP_SYS_NICE)")
        self.ready.set()
        waiters, self._boot_waiters = self._boot_waiters, []
        b = self._dev_boot
        for w in waiters:
            w(f"ok reboot boots={self._boots} boot_id={b.boot_id if b else 0}")

    def _device_died(self) -> None:
        dev = self._dev
        assert dev is not None
        try:
            rc = dev.proc.wait(timeout=5)
        except sp.TimeoutExpired:  # a stuck child is killed below either way
            rc = None
        # Drain what it said last.
        with contextlib.suppress(OSError):
            while chunk := os.read(dev.err_r, 65536):
                self._on_stderr(chunk)
        if self._err_buf:
            self._on_stderr(b"\n")
        dev.kill()
        dev.close()
        self._dev = None
        # MicroPython prints an uncaught exception on stdout (the board's console): the
        # text after the last frame delimiter.
        text = bytes(self._out_tail).rsplit(b"\0", 1)[-1].decode("ascii", "replace")
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        last = " | ".join([*self._err_tail, *lines[-4:]]) or "no output"
        self.error = SimulatorError(f"the firmware exited (status {rc}): {last}")
        log.error("%s", self.error)
        self._stopping = True
        self.ready.set()

    def _on_stderr(self, data: bytes) -> None:
        self._err_buf += data
        while (i := self._err_buf.find(b"\n")) >= 0:
            line = self._err_buf[:i].decode("utf-8", "replace").rstrip()
            del self._err_buf[: i + 1]
            if line.startswith("sim: boot "):
                try:
                    self._dev_boot = BootTruth.from_json(json.loads(line[10:]))
                except (ValueError, KeyError) as exc:
                    log.warning("bad boot line %r: %s", line, exc)
                    continue
                if self._t0_us is None:
                    self._t0_us = self._dev_boot.t0_ns // 1000
                log.info("boot id %08x", self._dev_boot.boot_id)
                continue
            if line:
                self._err_tail.append(line)
                log.warning("firmware: %s", line)

    # ------------------------------------------------------------------ port

    def _plug(self, gen: int | None = None) -> None:
        if gen is not None and gen != self._unplug_gen:
            return  # a later plug/unplug took over
        if self._port is not None:
            return
        self._unplug_gen += 1
        self._port = PtyPort(self.link)
        self._host_open = False
        self._next_host_check = 0
        log.info("port %s -> %s", self.link, self._port.slave_name)

    def _unplug(self) -> None:
        self._unplug_gen += 1
        if self._port is None:
            return
        self._port.close()
        self._port = None
        self._host_open = False
        self._drop_d2h()
        self.stats.bytes_lost_to_device += self._h2d_bytes
        self._h2d.clear()
        self._h2d_bytes = 0

    def _drop_d2h(self) -> None:
        self.stats.bytes_discarded += self._d2h_bytes
        self._d2h.clear()
        self._d2h_bytes = 0

    def _check_host(self, now: int) -> None:
        """Notice a host opening the port (while none has, the master shows POLLHUP)."""
        port = self._port
        if port is None or self._host_open or now < self._next_host_check:
            return
        self._next_host_check = now + HOST_CHECK_NS
        if port.host_open():
            self._host_open = True
            self._unread = 0
            log.info("host opened the port")

    def _host_closed(self) -> None:
        self._host_open = False
        self._next_host_check = time.monotonic_ns() + HOST_CHECK_NS
        self._drop_d2h()
        if self._port is not None:
            self._port.flush_host_input()
        log.info("host closed the port")

    def _host_room(self, n: int) -> bool:
        if self._unread + n <= HOST_BUFFER:
            return True
        assert self._port is not None
        m = self._port.backlog()
        if m is None:
            return True
        self._unread = m
        return m + n <= HOST_BUFFER

    # ------------------------------------------------------------------ data paths

    def _read_device(self, now: int) -> None:
        dev = self._dev
        if dev is None:
            return
        room = 65536 if not self._connected() else HOLD_BYTES - self._d2h_bytes
        try:
            data = os.read(dev.out_r, max(room, 1))
        except BlockingIOError:
            return
        if not data:
            self._device_died()
            return
        if not self._dev_alive:
            self._device_alive()
        self.stats.bytes_from_device += len(data)
        self._out_tail += data
        if len(self._out_tail) > 4096:
            del self._out_tail[:-2048]
        if not self._connected():
            self.stats.bytes_discarded += len(data)
            return
        if self.opts.link_model:
            off = 0
            for t, n in self._sched.to_host(now, len(data)):
                self._d2h.append(_Chunk(t, bytearray(data[off : off + n])))
                off += n
        else:
            self._d2h.append(_Chunk(now, bytearray(data)))
        self._d2h_bytes += len(data)

    def _connected(self) -> bool:
        return self._port is not None and self._host_open

    def _deliver_to_host(self, now: int) -> None:
        if now < self._blocked_until:
            return
        while self._d2h and self._d2h[0].t_ns <= now:
            port = self._port
            if port is None or not self._host_open:
                self._drop_d2h()
                return
            c = self._d2h[0]
            if not self._host_room(len(c.data)):
                self._blocked_until = now + RETRY_NS
                return
            if not c.flipped:
                c.flipped = True
                if self._bits.apply(c.data):
                    self._flips_done()
            try:
                n = os.write(port.master, c.data)
            except BlockingIOError:
                n = 0
            except OSError as exc:
                if exc.errno != errno.EIO:
                    raise
                self._host_closed()
                return
            self.stats.bytes_to_host += n
            self._unread += n
            self._d2h_bytes -= n
            if n < len(c.data):
                del c.data[:n]
                self._blocked_until = now + RETRY_NS
                return
            self._d2h.popleft()

    def _flips_done(self) -> None:
        keep = []
        for target, n, reply in self._flip_waiters:
            if self._bits.forced >= target:
                reply(f"ok corrupt {n}")
            else:
                keep.append((target, n, reply))
        self._flip_waiters = keep

    def _read_host(self, now: int) -> None:
        port = self._port
        if port is None:
            return
        try:
            data = os.read(port.master, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            self._host_closed()
            return
        if not data:
            return
        t = self._sched.to_device(now) if self.opts.link_model else now
        self._h2d.append((t, data))
        self._h2d_bytes += len(data)

    def _deliver_to_device(self, now: int) -> None:
        dev = self._dev
        while self._h2d and self._h2d[0][0] <= now and dev is not None:
            _t, data = self._h2d[0]
            try:
                n = os.write(dev.in_w, data)
            except BlockingIOError:
                n = 0
            except BrokenPipeError:
                return  # the firmware is gone; its stdout EOF reports it
            self.stats.bytes_to_device += n
            self._h2d_bytes -= n
            if n < len(data):
                self._h2d[0] = (now + RETRY_NS, data[n:])
                return
            self._h2d.popleft()

    # ------------------------------------------------------------------ commands

    def _do(self, cmd: Command, reply: Reply) -> None:
        handlers: dict[str, Callable[[float | int | None, Reply], None]] = {
            "status": self._cmd_status,
            "reboot": self._cmd_reboot,
            "unplug": self._cmd_unplug,
            "plug": self._cmd_plug,
            "stall": self._cmd_stall,
            "unstall": self._cmd_unstall,
            "corrupt": self._cmd_corrupt,
            "button": self._cmd_button,
            "quit": self._cmd_quit,
        }
        handlers[cmd.kind](cmd.arg, reply)

    def _cmd_status(self, _arg: float | int | None, reply: Reply) -> None:
        reply("ok " + json.dumps(self.status(), separators=(",", ":")))

    def _cmd_reboot(self, _arg: float | int | None, reply: Reply) -> None:
        self._reboot(reply)

    def _cmd_unplug(self, arg: float | int | None, reply: Reply) -> None:
        self._unplug()
        if not arg:
            reply("ok unplug")
            return
        gen = self._unplug_gen

        def replug() -> None:
            self._plug(gen)
            reply(f"ok unplug {arg:g}")

        self._after(float(arg), replug)

    def _cmd_plug(self, _arg: float | int | None, reply: Reply) -> None:
        self._plug()
        reply("ok plug")

    def _cmd_stall(self, arg: float | int | None, reply: Reply) -> None:
        self._stalled = True
        self._stall_gen += 1
        if not arg:
            reply("ok stall")
            return
        gen = self._stall_gen

        def unstall() -> None:
            if gen == self._stall_gen:
                self._stalled = False
            reply(f"ok stall {arg:g}")

        self._after(float(arg), unstall)

    def _cmd_unstall(self, _arg: float | int | None, reply: Reply) -> None:
        self._stalled = False
        self._stall_gen += 1
        reply("ok unstall")

    def _cmd_corrupt(self, arg: float | int | None, reply: Reply) -> None:
        n = int(arg or 0)
        self._bits.corrupt(n)
        self._flip_waiters.append((self._bits.forced + self._bits.pending, n, reply))

    def _cmd_button(self, arg: float | int | None, reply: Reply) -> None:
        ms = max(1, round(float(arg or 0) * 1000))
        if self._dev is not None:
            with contextlib.suppress(OSError):
                os.write(self._dev.ctl_w, f"button {ms}\n".encode())
        self._after(ms / 1000 + 0.01, lambda: reply(f"ok button {arg:g}"))

    def _cmd_quit(self, _arg: float | int | None, reply: Reply) -> None:
        reply("ok quit")
        self._stopping = True

    def _line(self, line: str, reply: Reply) -> None:
        try:
            cmd = parse_command(line)
        except FaultError as exc:
            reply(f"error {exc}")
            return
        self._do(cmd, reply)

    # ------------------------------------------------------------------ timers

    def _at(self, t_ns: int, fn: Callable[[], None]) -> None:
        self._timer_seq += 1
        heapq.heappush(self._timers, (t_ns, self._timer_seq, fn))

    def _after(self, seconds: float, fn: Callable[[], None]) -> None:
        self._at(time.monotonic_ns() + int(seconds * 1e9), fn)

    # ------------------------------------------------------------------ control socket

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            sock, _ = self._listener.accept()
        except BlockingIOError:
            return
        sock.setblocking(False)
        self._clients[sock.fileno()] = _Client(sock)

    def _client_reply(self, client: _Client) -> Reply:
        def reply(text: str) -> None:
            with contextlib.suppress(OSError):
                client.sock.setblocking(True)
                client.sock.settimeout(1.0)
                client.sock.sendall(text.encode() + b"\n")
                client.sock.setblocking(False)

        return reply

    def _read_client(self, fd: int) -> None:
        c = self._clients[fd]
        try:
            data = c.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            del self._clients[fd]
            c.sock.close()
            return
        c.buf += data
        while (i := c.buf.find(b"\n")) >= 0:
            line = c.buf[:i].decode("utf-8", "replace").strip()
            del c.buf[: i + 1]
            if line:
                self._line(line, self._client_reply(c))
        if len(c.buf) > 4096:
            del self._clients[fd]
            c.sock.close()

    def _drain_inbox(self) -> None:
        with contextlib.suppress(OSError):
            os.read(self._wake_r, 4096)
        while not self._inbox.empty():
            line, fut = self._inbox.get_nowait()

            def reply(text: str, fut: Future[str] = fut) -> None:
                if not fut.done():
                    fut.set_result(text)

            self._line(line, reply)

    # ------------------------------------------------------------------ the loop

    def run(self) -> None:
        """Run until ``quit``, ``stop()``, the stop time, or the firmware dying."""
        try:
            self._loop()
        except Exception as exc:
            self.error = SimulatorError(f"virtual dial bridge failed: {exc!r}")
            log.exception("bridge failed")
            self.ready.set()
            raise

    def _handlers(self) -> dict[int, Callable[[int, int], None]]:
        """What to poll now (fd -> handler(events, now)): the state decides."""
        h: dict[int, Callable[[int, int], None]] = {self._wake_r: self._on_wake}
        dev = self._dev
        if dev is not None:
            h[dev.err_r] = self._on_err
            if not self._stalled and (not self._connected() or self._d2h_bytes < HOLD_BYTES):
                h[dev.out_r] = lambda _ev, now: self._read_device(now)
        if self._port is not None and self._host_open and self._h2d_bytes < H2D_HOLD:
            h[self._port.master] = self._on_master
        if self._listener is not None:
            h[self._listener.fileno()] = lambda _ev, _now: self._accept()
        for fd in self._clients:
            h[fd] = functools.partial(self._on_client, fd)
        return h

    def _on_client(self, fd: int, _ev: int, _now: int) -> None:
        if fd in self._clients:
            self._read_client(fd)

    def _wait_events(self, fds: list[int], deadline: int) -> list[tuple[int, int]]:
        p = select.poll()
        for fd in fds:
            p.register(fd, select.POLLIN)
        wait = deadline - time.monotonic_ns()
        if wait >= 1_000_000:
            return p.poll(wait // 1_000_000)  # whole ms, early: the loop comes back round
        ready = p.poll(0)
        if not ready and wait > 0:
            time.sleep(wait / 1e9)  # the last fraction of a ms, precisely
        return ready

    def _on_wake(self, _ev: int, _now: int) -> None:
        self._drain_inbox()

    def _on_err(self, _ev: int, _now: int) -> None:
        if self._dev is None:
            return
        try:
            data = os.read(self._dev.err_r, 65536)
        except BlockingIOError:
            return
        if data:
            self._on_stderr(data)

    def _on_master(self, ev: int, now: int) -> None:
        if self._port is None:
            return
        if ev & select.POLLHUP:
            self._host_closed()
        elif ev & select.POLLIN:
            self._read_host(now)

    def _next_deadline(self, now: int) -> int:
        d = now + 100_000_000
        if self._timers:
            d = min(d, self._timers[0][0])
        if self._d2h:
            d = min(d, max(self._d2h[0].t_ns, self._blocked_until))
        if self._h2d:
            d = min(d, self._h2d[0][0])
        if self._port is not None and not self._host_open:
            d = min(d, self._next_host_check)
        if self._stop_at is not None:
            d = min(d, self._stop_at)
        return max(d, now)

    def _loop(self) -> None:
        boot_deadline = time.monotonic_ns() + int(BOOT_TIMEOUT_S * 1e9)
        while not self._stopping:
            now = time.monotonic_ns()
            if self._stop_at is not None and now >= self._stop_at:
                break
            if not self.ready.is_set() and now > boot_deadline:
                self.error = SimulatorError(
                    f"the firmware did not start within {BOOT_TIMEOUT_S:g} s")
                self.ready.set()
                break
            while self._timers and self._timers[0][0] <= now:
                _t, _s, fn = heapq.heappop(self._timers)
                fn()
            self._check_host(now)
            self._deliver_to_host(now)
            self._deliver_to_device(now)
            if self._stopping:
                break
            handlers = self._handlers()
            for fd, ev in self._wait_events(list(handlers), self._next_deadline(now)):
                if self._stopping:
                    break
                # A handler earlier in this round may have closed this fd (reboot, unplug).
                # Handlers read the current state, so one whose fd a handler before it in
                # this round closed (reboot, unplug) finds nothing to do.
                handlers[fd](ev, time.monotonic_ns())
