"""SimHW: the HW object of firmware/README.md for the virtual dial (MicroPython unix port).

A "hardware" thread plays the interrupts. It sleeps until the next due event, then, holding
the IRQ lock (the one ``disable_irq()`` takes, so firmware critical sections are real) and
under ``micropython.heap_lock()`` (so an allocating interrupt handler raises MemoryError),
it applies due pin changes (level first, then the registered IRQ handler, as hardware does)
and calls the timer callback when the device clock reaches the next deadline. Any exception
in an interrupt handler is fatal: it is reported on stderr and the process exits with
status 3.

Invariants:
- Interrupt handlers run one at a time, in event-time order, each pin change seen alone
  (an ideal, zero-latency interrupt controller: no edge is ever coalesced or missed).
- Timer deadlines are in DEVICE time: ``start + k * period``. The host may run this thread
  late (a loaded machine starves it for tens of ms); a dial's hardware timer is never late
  that way, so due deadlines are caught up in event-time order, interleaved with the pin
  changes, and each handler reads ``ticks_us()`` as the moment of its event (the deadline,
  or the pin change), not the host's later "now". Pins then hold exactly the levels they had
  at that moment, so the samples are those the hardware would have taken; only their
  transmission is late. A thread late by more than ``_CATCH_UP_US`` (1 s: the process was
  stopped) skips the missed deadlines instead, and the firmware sees an overrun.
- Device clock (integers only, no allocation; small ints reach 2**62 on 64-bit unix)::

      e        = mono_us - mono0_us                     # CLOCK_MONOTONIC µs since sim start
      D(e)     = e + floor(e * drift_ppb / 10**9)       # device µs elapsed (drift_ppb = 1000 * ppm)
      ticks_us = (tick_start + D(e)) mod 2**wrap_bits

  ``mono_us`` is the unix port's ``time.ticks_us()``, which is CLOCK_MONOTONIC in µs, the
  clock of CPython's ``time.monotonic_ns()``; ``mono0_ns = 1000 * mono0_us``.

Ground truth: at boot one JSON line ``{"uid", "boot_id", "mono0_ns", "drift_ppm",
"drift_ppb", "tick_start", "wrap_bits", "t0_ns", "pid"}`` goes to stderr (prefixed
``sim: boot``) and is appended to the truth file when one is given. A device time ``T``
(the firmware's 64-bit extended µs, as sent in frames) of that boot maps back to host
monotonic time as follows: ``D = T - tick_start + w * 2**wrap_bits`` with ``w = 1`` only
if the raw counter wrapped between sim start and the firmware's first reading (then
``T < tick_start`` early in the boot; pick the ``w`` that puts the result nearest to any
host time of that boot), then ``e`` = the smallest integer with
``e + floor(e * drift_ppb / 10**9) >= D`` and ``host_ns = mono0_ns + 1000 * e`` (exact to
the 1 µs resolution of ``ticks_us``). ``ratedial.virtual.truth`` implements this.
``t0_ns`` is rating time 0 (the first boot's start): the script's ``t_s`` is
``(host_ns - t0_ns) / 1e9``.
"""

import _thread
import gc
import os
import select
import sys
import time

import micropython

from sim.rater import PIN_A, PIN_B, PIN_BUTTON

_REFILL_US = 100_000  # generate pin events 100 ms ahead, outside the heap lock
_MAX_WAIT_US = 20_000  # wake at least every 20 ms (refill, control pipe)
_CATCH_UP_US = 1_000_000  # later than this, missed timer deadlines are skipped
EXIT_IRQ_FAULT = 3


class SimPin:
    """A fake machine.Pin: level, ``irq()`` registration; the hardware thread drives it."""

    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_FALLING = 4  # rp2's values
    IRQ_RISING = 8

    def __init__(self, name, level=0):
        self.name = name
        self._level = level
        self._handler = None
        self._trigger = 0

    def value(self, v=None):
        if v is None:
            return self._level
        self._level = 1 if v else 0
        return None

    def __call__(self, v=None):
        return self.value(v)

    def init(self, *args, **kwargs):
        pass

    def irq(self, handler=None, trigger=12, hard=False):
        self._trigger = trigger if handler is not None else 0
        self._handler = handler

    def __repr__(self):
        return "SimPin(%s)" % self.name


class SocketFlag:
    """The virtual dial's ThreadSafeFlag: ``set()`` from the hardware thread sends a datagram
    to a socket the main loop polls, so the loop wakes at once, as an interrupt wakes a
    board's. (The unix port's own ThreadSafeFlag is not a file descriptor: with one
    registered its poll loop checks every millisecond, for every stream, which a real
    board never does.) ``set()`` allocates nothing: it sends a preallocated byte."""

    def __init__(self):
        import socket

        import asyncio

        rx = None
        for _ in range(64):  # the unix port cannot say which port bind(0) chose
            port = 20000 + int.from_bytes(os.urandom(2), "little") % 40000
            addr = socket.getaddrinfo("127.0.0.1", port)[0][-1]
            rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                rx.bind(addr)
                break
            except OSError:
                rx.close()
                rx = None
        if rx is None:
            raise OSError("no free UDP port for the wake flag")
        rx.setblocking(False)
        self._tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._tx.connect(addr)
        self._tx.setblocking(False)
        self._one = b"\x01"
        self._reader = asyncio.StreamReader(rx)

    def set(self):
        self._tx.send(self._one)

    async def wait(self):
        await self._reader.read(256)  # every pending wake-up at once


class SimHW:
    """The HW object of the virtual dial. Call ``start()`` to power up the hardware thread."""

    board = "virtual"

    def __init__(
        self,
        *,
        uid,
        make_rater,
        t0_us,
        tick_bits=30,
        tick_start=0,
        drift_ppb=0,
        spin_us=0,
        button=True,
        counter_factory=None,
        ctl_path=None,
    ):
        self._mono = time.ticks_us
        self._mono0 = time.ticks_us()
        self._t0 = t0_us if t0_us is not None else self._mono0
        self._uid = uid
        self._boot_id = int.from_bytes(os.urandom(4), "little")
        self.tick_bits = tick_bits
        self._mask = (1 << tick_bits) - 1
        self._half = 1 << (tick_bits - 1)
        self._tick_start = tick_start & self._mask
        self._ppb = drift_ppb
        self._spin = spin_us

        # Pins at power-up show the knob where the rater has it now.
        r0 = self._mono0 - self._t0
        self._rater = make_rater(r0)
        ab = self._rater.ab0()
        self._pins = (
            SimPin("A", ab >> 1),
            SimPin("B", ab & 1),
            SimPin("BUTTON", self._rater.button0),
        )
        self.button = self._pins[PIN_BUTTON] if button else None
        if counter_factory is None:
            from dial.quad import IrqCounter

            counter_factory = IrqCounter
        self.counter = counter_factory(self._pins[PIN_A], self._pins[PIN_B])

        self._ev_t = []
        self._ev_c = []
        self._ev_i = 0
        self._horizon = r0  # events with rating time < horizon are in _ev_t

        self._irq = _thread.allocate_lock()
        self._masked = False
        self._hw_ident = -1
        self._at = -1  # device µs elapsed of the event being serviced (hardware thread only)
        self._period = 0
        self._deadline = 0
        self._cb = None
        self._running = False
        self._fatal = 0

        self.rx = sys.stdin.buffer
        self._write = sys.stdout.buffer.write

        self._ctl = None
        self._ctl_poll = None
        self._ctl_buf = bytearray()
        if ctl_path:
            self._ctl = open(ctl_path, "rb")
            self._ctl_poll = select.poll()
            self._ctl_poll.register(self._ctl, select.POLLIN)

        # Timer slack defaults to 50 µs on Linux; the thread created below inherits ours.
        try:
            with open("/proc/self/timerslack_ns", "w") as f:
                f.write("1")
        except OSError:
            pass

    # --- identity ---------------------------------------------------------------------
    def unique_id(self):
        return self._uid

    def boot_id(self):
        return self._boot_id

    def mem_free(self):
        return gc.mem_free()

    def boot_info(self):
        return {
            "uid": self._uid.hex() if hasattr(self._uid, "hex") else "",
            "boot_id": self._boot_id,
            "mono0_ns": self._mono0 * 1000,
            "t0_ns": self._t0 * 1000,
            "drift_ppb": self._ppb,
            "drift_ppm": self._ppb / 1000,
            "tick_start": self._tick_start,
            "wrap_bits": self.tick_bits,
        }

    # --- device clock (IRQ-safe: small-int arithmetic only) ----------------------------
    def _elapsed(self):
        e = self._mono() - self._mono0
        return e + e * self._ppb // 1_000_000_000

    def ticks_us(self):
        if self._at >= 0 and _thread.get_ident() == self._hw_ident:
            return (self._tick_start + self._at) & self._mask  # inside a handler: its moment
        e = self._mono() - self._mono0
        return (self._tick_start + e + e * self._ppb // 1_000_000_000) & self._mask

    def ticks_diff(self, a, b):
        return ((a - b + self._half) & self._mask) - self._half

    # --- critical sections --------------------------------------------------------------
    def disable_irq(self):
        if self._masked or _thread.get_ident() == self._hw_ident:
            return 0  # already masked, or called from an interrupt handler
        self._irq.acquire()
        self._masked = True
        return 1

    def enable_irq(self, state):
        if state:
            self._masked = False
            self._irq.release()

    # --- timer ----------------------------------------------------------------------------
    def start_timer(self, period_us, callback):
        st = self.disable_irq()
        self._cb = callback
        self._deadline = self._elapsed() + period_us
        self._period = period_us
        self.enable_irq(st)

    def stop_timer(self):
        st = self.disable_irq()
        self._period = 0
        self._cb = None
        self.enable_irq(st)

    # --- link ------------------------------------------------------------------------------
    def tx_write(self, buf):
        if self._fatal:
            raise SystemExit(self._fatal)
        try:
            n = self._write(buf)
        except OSError as e:
            if e.args and e.args[0] == 32:  # EPIPE: the host side is gone
                raise SystemExit(0) from None
            if e.args and e.args[0] == 11:  # EAGAIN
                return 0
            raise
        return n or 0  # None when the pipe is full (EAGAIN on a non-blocking fd)

    # --- the hardware thread ----------------------------------------------------------------
    def wake_flag(self):
        return SocketFlag()

    def start(self):
        self._running = True
        self._refill(self._mono() - self._t0)
        _thread.start_new_thread(self._hw_main, ())

    def stop(self):
        self._running = False

    def press(self, ms):
        """Press the button 1 ms from now for ``ms`` milliseconds (from the control pipe).

        Runs in the hardware thread, outside the heap lock, like ``_refill``."""
        r = self._mono() - self._t0
        early = self._rater.press(r + 1000, ms * 1000, self._horizon)
        if early:
            ev = list(zip(self._ev_t[self._ev_i :], self._ev_c[self._ev_i :])) + early
            ev.sort()
            self._ev_t = [e[0] for e in ev]
            self._ev_c = [e[1] for e in ev]
            self._ev_i = 0

    def _refill(self, r):
        t = self._ev_t[self._ev_i :]
        c = self._ev_c[self._ev_i :]
        self._horizon = r + _REFILL_US
        self._rater.take(self._horizon, t, c)
        self._ev_t = t
        self._ev_c = c
        self._ev_i = 0

    def _poll_ctl(self):
        while self._ctl_poll.poll(0):
            b = self._ctl.read(1)
            if not b:
                self._ctl_poll.unregister(self._ctl)
                self._ctl = None
                return
            if b != b"\n":
                self._ctl_buf.extend(b)
                continue
            line = bytes(self._ctl_buf).decode()
            self._ctl_buf = bytearray()
            parts = line.split()
            if len(parts) == 2 and parts[0] == "button":
                self.press(int(parts[1]))

    def _hw_main(self):
        self._hw_ident = _thread.get_ident()
        mono = self._mono
        last_ctl = 0
        try:
            while self._running:
                now = mono()
                r = now - self._t0
                if r + _REFILL_US // 2 >= self._horizon:
                    self._refill(r)
                if self._ctl is not None and now - last_ctl >= _MAX_WAIT_US:
                    last_ctl = now
                    self._poll_ctl()
                # Next due moment, in host µs.
                due = now + _MAX_WAIT_US
                if self._ev_i < len(self._ev_t):
                    te = self._ev_t[self._ev_i] + self._t0
                    if te < due:
                        due = te
                if self._period:
                    # Device µs to the deadline ~ host µs (drift is < 0.1% of a period).
                    tt = now + self._deadline - self._elapsed()
                    if tt < due:
                        due = tt
                wait = due - now
                if wait > self._spin:
                    time.sleep_us(wait - self._spin)
                    continue
                if wait > 0:
                    while mono() < due:
                        pass
                self._service()
        except BaseException as e:  # a fault in the simulator itself
            self._die("hardware thread failed", e)

    def _service(self):
        """Run every due interrupt, in time order, masked and with the heap locked."""
        mono = self._mono
        ev_t = self._ev_t
        ev_c = self._ev_c
        pins = self._pins
        t0 = self._t0
        self._irq.acquire()
        micropython.heap_lock()
        what = None
        try:
            while True:
                now = mono()
                i = self._ev_i
                te = ev_t[i] + t0 if i < len(ev_t) else now + 1
                timer_due = False
                if self._period:
                    late = self._elapsed() - self._deadline
                    # due, not after the next pin change, and within the pin events generated
                    # so far (past the horizon, the hardware thread refills first)
                    timer_due = late >= 0 and now - late <= te and now - late < self._horizon + t0
                if timer_due:
                    what = self._cb
                    self._at = self._deadline
                    self._cb(self)
                    self._at = -1
                    p = self._period
                    if p:
                        d = self._deadline + p
                        e = self._elapsed()
                        if e - d >= _CATCH_UP_US:  # stopped for a second: skip, as hardware
                            d += ((e - d) // p + 1) * p  # would not catch up either
                        self._deadline = d
                elif te <= now:
                    code = ev_c[i]
                    self._ev_i = i + 1
                    pin = pins[code >> 1]
                    level = code & 1
                    if pin._level != level:
                        pin._level = level
                        h = pin._handler
                        if h is not None and pin._trigger & (8 if level else 4):
                            what = h
                            x = te - self._mono0
                            self._at = x + x * self._ppb // 1_000_000_000
                            h(pin)
                            self._at = -1
                else:
                    break
        except BaseException as e:
            self._at = -1
            micropython.heap_unlock()
            self._irq.release()
            self._die("interrupt handler %r failed (MemoryError means it allocated)" % (what,), e)
            return
        micropython.heap_unlock()
        self._irq.release()

    def _die(self, msg, exc):
        self._running = False
        self._fatal = EXIT_IRQ_FAULT
        sys.stderr.write("sim: FATAL: %s: %r\n" % (msg, exc))
        sys.print_exception(exc, sys.stderr)
        # The main thread exits at its next tx_write; if it does not within a second
        # (blocked somewhere), end the process from here.
        time.sleep_ms(1000)
        os.system("kill -KILL $PPID")
