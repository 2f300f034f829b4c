"""The bridge of a virtual dial: firmware pipes <-> link model <-> pseudo-terminal.

One thread runs ``Bridge.run``: a poll loop over the firmware's pipes (``supervisor``), the
pty master (``usb``), the control socket and a wake-up pipe (``control``), with a timer
heap. It carries out the control commands and the scheduled faults.

Invariants:
- The link's rules (what is read from the firmware when, what reaches the host, what is
  discarded) are ``usb``'s; the bridge only adds ``stall``: while it is on, the firmware's
  stdout is not read at all.
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
import heapq
import json
import logging
import os
import select
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from ..errors import SimulatorError, UsageError
from .control import ControlChannel, Reply
from .faults import Command, FaultError, parse_command
from .options import DialOptions
from .script import load_script
from .supervisor import Supervisor
from .usb import UsbLink

log = logging.getLogger("ratedial.virtual")

BOOT_TIMEOUT_S = 30.0


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
        self.error: SimulatorError | None = None
        self.ready = threading.Event()  # first firmware alive (or failed: check .error)

        self._fw = Supervisor(options, firmware=firmware, truth=truth)
        self._boot_waiters: list[Reply] = []
        self._stalled = False
        self._stall_gen = 0

        self._origin = time.monotonic_ns()
        self._usb = UsbLink(options, link=link, origin_ns=self._origin,
                            on_flips=self._flips_done)
        self.stats = self._usb.stats
        self._flip_waiters: list[tuple[int, int, Reply]] = []

        self._timers: list[tuple[int, int, Callable[[], None]]] = []
        self._timer_seq = 0
        self._stopping = False
        self._stop_at: int | None = None

        self._control = ControlChannel()

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        """Create the port and the control socket, start the firmware. Raises on failure."""
        if self.opts.script is not None:
            script = load_script(self.opts.script, counts_per_point=self.opts.counts_per_point)
            self._fw.knots = self.workdir / "knots.txt"
            self._fw.knots.write_text(script.sim_text(), encoding="ascii")
        if self.link.exists() and not self.link.is_symlink():
            raise UsageError(f"--link {self.link}: exists and is not a symlink")
        if self.link.is_symlink() and self.link.exists():  # it leads to a live pty
            raise UsageError(f"--link {self.link}: is the port of a running dial (it leads to "
                             f"{os.readlink(self.link)}); choose another path or stop that dial")
        if self.control_path is not None:
            self._control.listen(self.control_path)
        try:
            self._usb.plug()
        except OSError as exc:
            raise UsageError(f"--link {self.link}: {exc.strerror}") from None
        self._fw.spawn()
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
        self._control.wake()

    def stop_at(self, t_ns: int) -> None:
        self._stop_at = t_ns

    def submit(self, line: str) -> Future[str]:
        """Run a control command (thread-safe); the future gets its reply line."""
        return self._control.submit(line)

    def close(self) -> None:
        """Kill the firmware, remove the port and the control socket. Idempotent."""
        self._fw.kill()
        self._usb.unplug()
        self._control.close()

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        dev = self._fw.dev
        b = self._fw.boot
        port = self._usb.port
        return {
            "boots": self._fw.boots,
            "boot_id": None if b is None else b.boot_id,
            "pid": None if dev is None else dev.pid,
            "port": str(self.link),
            "tty": None if port is None else port.slave_name,
            "unplugged": port is None,
            "host_open": self._usb.host_open,
            "stalled": self._stalled,
            "link_model": self.opts.link_model,
            "bits_flipped": self._usb.bits.flipped,
            "uptime_s": round((time.monotonic_ns() - self._origin) / 1e9, 3),
            **vars(self.stats),
        }

    # ------------------------------------------------------------------ firmware

    def _reboot(self, reply: Reply) -> None:
        self._fw.kill()
        self._usb.lose_to_device()
        if self.opts.native_usb:
            self._usb.unplug()
            gen = self._usb.unplug_gen
            self._after(self.opts.reenumerate_s, lambda: self._usb.plug(gen))
        self._fw.spawn()
        self._boot_waiters.append(reply)

    def _device_alive(self) -> None:
        self._fw.alive = True
        dev = self._fw.dev
        if self.opts.realtime and dev is not None and not dev.realtime_irqs():
            log.info("no real-time priority for the simulated interrupts (needs CAP_SYS_NICE)")
        self.ready.set()
        waiters, self._boot_waiters = self._boot_waiters, []
        b = self._fw.boot
        for w in waiters:
            w(f"ok reboot boots={self._fw.boots} boot_id={b.boot_id if b else 0}")

    def _device_died(self) -> None:
        self.error = self._fw.reap()
        log.error("%s", self.error)
        self._stopping = True
        self.ready.set()

    def _read_device(self, now: int) -> None:
        dev = self._fw.dev
        if dev is None:
            return
        try:
            data = os.read(dev.out_r, max(self._usb.device_room(), 1))
        except BlockingIOError:
            return
        if not data:
            self._device_died()
            return
        if not self._fw.alive:
            self._device_alive()
        self._fw.output(data)
        self._usb.from_device(now, data)

    def _flips_done(self) -> None:
        keep = []
        for target, n, reply in self._flip_waiters:
            if self._usb.bits.forced >= target:
                reply(f"ok corrupt {n}")
            else:
                keep.append((target, n, reply))
        self._flip_waiters = keep

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
        self._usb.unplug()
        if not arg:
            reply("ok unplug")
            return
        gen = self._usb.unplug_gen

        def replug() -> None:
            self._usb.plug(gen)
            reply(f"ok unplug {arg:g}")

        self._after(float(arg), replug)

    def _cmd_plug(self, _arg: float | int | None, reply: Reply) -> None:
        self._usb.plug()
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
        bits = self._usb.bits
        bits.corrupt(n)
        self._flip_waiters.append((bits.forced + bits.pending, n, reply))

    def _cmd_button(self, arg: float | int | None, reply: Reply) -> None:
        ms = max(1, round(float(arg or 0) * 1000))
        if self._fw.dev is not None:
            with contextlib.suppress(OSError):
                os.write(self._fw.dev.ctl_w, f"button {ms}\n".encode())
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
        h: dict[int, Callable[[int, int], None]] = {self._control.wake_r: self._on_wake}
        dev = self._fw.dev
        if dev is not None:
            h[dev.err_r] = lambda _ev, _now: self._fw.read_stderr()
            if not self._stalled and self._usb.takes_device_output():
                h[dev.out_r] = lambda _ev, now: self._read_device(now)
        master = self._usb.host_fd()
        if master is not None:
            h[master] = self._usb.on_master
        h.update(self._control.socket_handlers(self._line))
        return h

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
        self._control.drain_inbox(self._line)

    def _next_deadline(self, now: int) -> int:
        d = now + 100_000_000
        if self._timers:
            d = min(d, self._timers[0][0])
        d = self._usb.next_deadline(d)
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
            self._usb.check_host(now)
            self._usb.deliver_to_host(now)
            dev = self._fw.dev
            self._usb.deliver_to_device(now, None if dev is None else dev.in_w)
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
