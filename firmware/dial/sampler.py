"""The sampling interrupt: one sample per timer tick into a preallocated ring.

Invariants:
- ``irq`` runs in interrupt context (hard IRQ on rp2): it allocates nothing, uses only small
  ints (< 2**30) and cached bound methods, and stores into preallocated ``array``s.
  The virtual dial and the tests run it under ``micropython.heap_lock()`` to prove it.
- Per sample, in this order: raw tick (``hw.ticks_us()``), counter value, button. The tick
  is the sample time; the main loop extends it to 64-bit device time, never this handler.
- ``w`` is the number of samples taken modulo 2**30, i.e. the low 30 bits of the next
  sample index. Sample ``k`` lives in slot ``k & mask`` until sample ``k + size`` overwrites
  it: the reader detects that from ``w`` alone (see dial.app) and counts the loss.
- Flags per sample: bit 0 debounced button, bit 1 overrun (interval > 1.5 periods since the
  previous sample), bit 2 counter errors() increased since the previous sample.
- Button changes confirmed by the debounce go into a small event ring (state, index low
  bits, tick of the confirming sample, tick of the first sample of the stable run), with its
  own 30-bit write counter ``ev_w``.
- Settings (period, debounce length) change only through ``configure`` with the timer
  stopped or interrupts disabled.
- ``wake_at``: when the sample with these index low bits is stored, ``wake.set()`` (an
  asyncio ThreadSafeFlag, safe from an interrupt) tells the packer that its open frame is
  full, so a frame leaves as soon as its last sample is taken, not at the next poll.

Cost: about 45 bytecodes per sample (one tick read, one counter read, a button read, six
array stores). Measured on the real MicroPython rp2 port (emulated RP2040, cycle-counted,
tests/test_rp2emu.py): ~190 us per sample as first written (19 % of the CPU at 1 kHz; the
estimate here used to say 40-60 us); see firmware/README.md for the current figure.
"""

from array import array

try:
    from micropython import const
except ImportError:  # CPython (tools); the firmware always has micropython

    def const(x):
        return x


M30 = const(0x3FFFFFFF)

# Ring size: 1024 samples = 1.02 s at 1 kHz, 0.51 s at 2 kHz, 20 s at 50 Hz. The main loop
# drains it every few ms; the longest stall it must ride out is a USB write that times out
# (TinyUSB gives up after 500 ms when the host stops reading), plus a GC pass. Memory:
# 1024 x (4 + 4 + 1) bytes = 9 KB.
RING = const(1024)
# Event ring: 16 debounced changes. A change needs debounce_ms (5 ms) of stable readings,
# so 16 changes take at least 80 ms, far longer than the main loop ever leaves it unread.
EVENTS = const(16)


def debounce_samples(debounce_ms, rate_hz):
    """Samples of unchanged readings that confirm a button change:
    ceil(debounce_ms * rate / 1000), at least 1."""
    n = (debounce_ms * rate_hz + 999) // 1000
    return n if n > 0 else 1


class Sampler:
    def __init__(self, hw, size=RING, events=EVENTS):
        if size & (size - 1) or events & (events - 1):
            raise ValueError("ring sizes must be powers of two")
        self.size = size
        self.mask = size - 1
        self.tick = array("i", [0] * size)
        self.count = array("i", [0] * size)
        self.flags = bytearray(size)
        self.w = 0

        self.events = events
        self.ev_mask = events - 1
        self.ev_state = bytearray(events)
        self.ev_idx = array("i", [0] * events)
        self.ev_tick = array("i", [0] * events)
        self.ev_edge = array("i", [0] * events)
        self.ev_w = 0

        self.overruns = 0  # since start, modulo 2**30
        self.jitter_max = 0  # largest |interval - period| since the last reset (STATUS)

        # Cached bound methods: the handler makes no attribute look-ups on hw.
        self._ticks = hw.ticks_us
        self._diff = hw.ticks_diff
        counter = hw.counter
        self._value = counter.value
        # A counter that can never report errors (the PIO program drops illegal transitions
        # silently) says so with ``no_errors``: one Python call less per sample.
        self._errors = None if getattr(counter, "no_errors", False) else counter.errors
        # The button is read as pin_value() ^ invert when the HW object offers its pin
        # (dial.hw_board.Button): a native call instead of a Python method per sample.
        btn = hw.button
        if btn is None:
            self._button = None
            self._binv = 0
        elif hasattr(btn, "pin_value"):
            self._button = btn.pin_value
            self._binv = btn.invert
        else:
            self._button = btn.value
            self._binv = 0

        self._period = 1000
        self._need = 1
        self._have_prev = False
        self._prev_t = 0
        self._prev_err = 0 if self._errors is None else self._errors()
        self._state = 0  # debounced button
        self._cand = 0  # reading being confirmed
        self._run = 1  # consecutive samples with reading == _cand
        self._run_t = 0  # tick of the first sample of that run
        self.wake = None  # set before wake_at is: an object with set()
        self.wake_at = -1  # index low bits of the sample that completes the open frame
        self.irq = self._irq  # one bound method object, made here, passed to the timer

    def configure(self, period_us, need):
        """Set the nominal period and the debounce length in samples. Call with the timer
        stopped or interrupts disabled. The next interval is not judged (the timer was
        restarted, so it is not a real sample interval)."""
        self._period = period_us
        self._need = need
        self._have_prev = False

    def _irq(self, _timer):
        t = self._ticks()
        c = self._value()
        w = self.w
        i = w & self.mask
        self.tick[i] = t
        self.count[i] = c
        f = 0
        if self._have_prev:
            d = self._diff(t, self._prev_t) - self._period
            if d + d > self._period:  # interval > 1.5 periods
                f = 2
                self.overruns = (self.overruns + 1) & M30
            if d < 0:
                d = -d
            if d > self.jitter_max:
                self.jitter_max = d
        else:
            self._have_prev = True
        self._prev_t = t
        if self._errors is not None:
            e = self._errors()
            if e != self._prev_err:
                self._prev_err = e
                f |= 4
        b = self._button
        if b is not None:
            r = b() ^ self._binv
            if r != self._cand:
                self._cand = r
                self._run = 1
                self._run_t = t
            elif self._run < self._need:
                self._run += 1
            if r != self._state and self._run >= self._need:
                self._state = r
                j = self.ev_w & self.ev_mask
                self.ev_state[j] = r
                self.ev_idx[j] = w
                self.ev_tick[j] = t
                self.ev_edge[j] = self._run_t
                self.ev_w = (self.ev_w + 1) & M30
            f |= self._state
        self.flags[i] = f
        self.w = (w + 1) & M30
        if w == self.wake_at:
            self.wake.set()
