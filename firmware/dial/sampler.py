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

- All scalar state lives in one ``array("i")`` ``st`` (offsets ``S_*``), so the handler can
  be native code (dial.fast, viper) that touches no Python object but ``self.st``. The
  attributes ``w``, ``overruns``, ``jitter_max``, ``ev_w``, ``wake_at`` read and write it.
- Direct hardware reads (rp2): when the HW object offers ``fast_regs()`` (timer register,
  counter PIO block and SM, SIO input register) and the counter ``fast_zero`` (its zero
  offset as a one-word array), the native handler reads registers and calls nothing.

Cost measured on the real MicroPython rp2 port (emulated RP2040, cycle-counted,
tests/rp2emu/profile.py): ~190 us per sample as first written, ~138 us in bytecode with
cached calls; the native handler with register reads: see firmware/README.md.
"""

from array import array

from . import fast

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
    """Samples of unchanged readings that confirm a button change: the first that reads the
    new level and enough more that the run spans ``debounce_ms``,
    ceil(debounce_ms * rate / 1000) + 1 (6 at 1 kHz, 2 at 200 Hz); 1 when it is 0."""
    if debounce_ms <= 0:
        return 1
    return (debounce_ms * rate_hz + 999) // 1000 + 1


# Offsets in Sampler.st (dial.fast's native handler uses the same numbers).
S_W = const(0)
S_PERIOD = const(1)
S_HAVE_PREV = const(2)
S_PREV_T = const(3)
S_OVERRUNS = const(4)
S_JMAX = const(5)
S_STATE = const(6)
S_CAND = const(7)
S_RUN = const(8)
S_RUN_T = const(9)
S_NEED = const(10)
S_BINV = const(11)
S_EV_W = const(12)
S_WAKE_AT = const(13)
S_PREV_ERR = const(14)
S_TIMER_REG = const(15)
S_PIO_BASE = const(16)
S_PIO_SM = const(17)
S_BTN_PIN = const(18)
S_MASK = const(19)
S_EV_MASK = const(20)
S_HAS_BTN = const(21)
S_HAS_ERR = const(22)
S_RAW = const(23)
S_ZERO_ADDR = const(24)
S_TICK_ADDR = const(25)
S_COUNT_ADDR = const(26)
S_FLAGS_ADDR = const(27)
S_SIO_IN = const(28)
S_SIZE = const(29)


def _addr(buf):
    import uctypes

    return uctypes.addressof(buf)


class Sampler:
    def __init__(self, hw, size=RING, events=EVENTS):
        if size & (size - 1) or events & (events - 1):
            raise ValueError("ring sizes must be powers of two")
        self.size = size
        self.mask = size - 1
        self.tick = array("i", [0] * size)
        self.count = array("i", [0] * size)
        self.flags = bytearray(size)

        self.events = events
        self.ev_mask = events - 1
        self.ev_state = bytearray(events)
        self.ev_idx = array("i", [0] * events)
        self.ev_tick = array("i", [0] * events)
        self.ev_edge = array("i", [0] * events)

        st = self.st = array("i", [0] * S_SIZE)
        st[S_MASK] = self.mask
        st[S_EV_MASK] = self.ev_mask
        st[S_PERIOD] = 1000
        st[S_NEED] = 1
        st[S_RUN] = 1
        st[S_WAKE_AT] = -1
        st[S_BTN_PIN] = -1

        # Cached bound methods: the handler makes no attribute look-ups on hw.
        self._ticks = hw.ticks_us
        self._diff = hw.ticks_diff
        counter = hw.counter
        self._value = counter.value
        # A counter that can never report errors (the PIO program drops illegal transitions
        # silently) says so with ``no_errors``: one call less per sample.
        no_err = getattr(counter, "no_errors", False)
        self._errors = None if no_err else counter.errors
        st[S_HAS_ERR] = 0 if no_err else 1
        st[S_PREV_ERR] = 0 if no_err else counter.errors()
        # The button is read as pin_value() ^ invert when the HW object offers its pin
        # (dial.hw_board.Button): a native call instead of a Python method per sample.
        btn = hw.button
        if btn is None:
            self._button = None
        elif hasattr(btn, "pin_value"):
            self._button = btn.pin_value
            st[S_BINV] = btn.invert
        else:
            self._button = btn.value
        st[S_HAS_BTN] = 0 if btn is None else 1
        self.wake = None  # set before wake_at is: an object with set()
        self.native = fast.NATIVE
        if self.native:
            # Addresses fit a 32-bit word only on 32-bit ports (rp2, esp32); on 64-bit ones
            # (the unix port) the native handler looks the buffers up instead.
            wide = _addr(self.tick) > 0x7FFFFFFF
            if not wide:
                st[S_TICK_ADDR] = _addr(self.tick)
                st[S_COUNT_ADDR] = _addr(self.count)
                st[S_FLAGS_ADDR] = _addr(self.flags)
            regs = getattr(hw, "fast_regs", None)
            regs = regs() if regs is not None and not wide else None
            if regs is not None:
                timer_reg, pio_base, pio_sm, sio_in = regs
                st[S_TIMER_REG] = timer_reg
                zero = getattr(counter, "fast_zero", None)
                if pio_base and zero is not None:
                    st[S_PIO_BASE] = pio_base
                    st[S_PIO_SM] = pio_sm
                    st[S_ZERO_ADDR] = _addr(zero)
                pin = getattr(btn, "pin_id", None)
                if sio_in and pin is not None and hasattr(btn, "pin_value"):
                    st[S_SIO_IN] = sio_in
                    st[S_BTN_PIN] = pin
            # The native function bound as a method: no bytecode frame in between.
            self.irq = self._irq_native  # one bound method object, passed to the timer
        else:
            self.irq = self._irq

    # Scalar state, kept in ``st`` (module docstring).
    @property
    def w(self):
        return self.st[S_W]

    @property
    def overruns(self):
        return self.st[S_OVERRUNS]

    @property
    def jitter_max(self):
        return self.st[S_JMAX]

    @jitter_max.setter
    def jitter_max(self, v):
        self.st[S_JMAX] = v

    @property
    def ev_w(self):
        return self.st[S_EV_W]

    @property
    def wake_at(self):
        return self.st[S_WAKE_AT]

    @wake_at.setter
    def wake_at(self, v):
        self.st[S_WAKE_AT] = v

    @property
    def _need(self):
        return self.st[S_NEED]

    def configure(self, period_us, need):
        """Set the nominal period and the debounce length in samples. Call with the timer
        stopped or interrupts disabled. The next interval is not judged (the timer was
        restarted, so it is not a real sample interval)."""
        st = self.st
        st[S_PERIOD] = period_us
        st[S_NEED] = need
        st[S_HAVE_PREV] = 0

    if fast.NATIVE:
        _irq_native = fast.sampler_irq

    def _irq(self, _timer):
        # The bytecode twin of dial.fast's native handler (ports without a native emitter).
        st = self.st
        t = self._ticks()
        c = self._value()
        w = st[S_W]
        i = w & st[S_MASK]
        self.tick[i] = t
        self.count[i] = c
        f = 0
        if st[S_HAVE_PREV]:
            p = st[S_PERIOD]
            d = self._diff(t, st[S_PREV_T]) - p
            if d + d > p:  # interval > 1.5 periods
                f = 2
                st[S_OVERRUNS] = (st[S_OVERRUNS] + 1) & M30
            if d < 0:
                d = -d
            if d > st[S_JMAX]:
                st[S_JMAX] = d
        else:
            st[S_HAVE_PREV] = 1
        st[S_PREV_T] = t
        if self._errors is not None:
            e = self._errors()
            if e != st[S_PREV_ERR]:
                st[S_PREV_ERR] = e
                f |= 4
        b = self._button
        if b is not None:
            r = b() ^ st[S_BINV]
            if r != st[S_CAND]:
                st[S_CAND] = r
                st[S_RUN] = 1
                st[S_RUN_T] = t
            elif st[S_RUN] < st[S_NEED]:
                st[S_RUN] += 1
            if r != st[S_STATE] and st[S_RUN] >= st[S_NEED]:
                st[S_STATE] = r
                j = st[S_EV_W] & st[S_EV_MASK]
                self.ev_state[j] = r
                self.ev_idx[j] = w
                self.ev_tick[j] = t
                self.ev_edge[j] = st[S_RUN_T]
                st[S_EV_W] = (st[S_EV_W] + 1) & M30
            f |= st[S_STATE]
        self.flags[i] = f
        st[S_W] = (w + 1) & M30
        if w == st[S_WAKE_AT]:
            self.wake.set()
