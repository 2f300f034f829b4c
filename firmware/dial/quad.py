"""Quadrature decoding: the Gray-code state table and the pin-IRQ fallback counter.

Invariants:
- A state is ``ab = (A << 1) | B`` (A is bit 1, B is bit 0). A transition is decoded by
  ``TABLE[(old_ab << 2) | new_ab]``: one channel changed gives +1 or -1, no change gives 0,
  both changed gives 0 and counts one error (the step is lost: its direction is unknown).
- Direction: A leads B counts up. Turning "forward" the levels run
  AB = 00 -> 10 -> 11 -> 01 -> 00, one quarter-step (+1) per edge, 4 per full cycle.
  machine.Encoder on esp32 counts the same way, and counter_pio negates the PIO count to match.
- Contact bounce toggles one channel back and forth: the table turns each toggle pair into
  +1 -1, so bounce cancels without any time lock-out (a lock-out drops real steps when
  turning fast).
- Counts stay small ints (< 2**30) so the IRQ path never allocates.

Nothing here imports ``machine``: pins are passed in, so the same code runs on the host
with fake pins.
"""

from array import array

try:
    from micropython import const
except ImportError:  # CPython, for the host tests

    def const(x):
        return x


# index = (old_ab << 2) | new_ab
#   old 00: 00 -> 0, 01 -> -1, 10 -> +1, 11 -> illegal
#   old 01: 00 -> +1, 01 -> 0, 10 -> illegal, 11 -> -1
#   old 10: 00 -> -1, 01 -> illegal, 10 -> 0, 11 -> +1
#   old 11: 00 -> illegal, 01 -> +1, 10 -> -1, 11 -> 0
# A tuple of small ints: indexing it never allocates.
# fmt: off
TABLE = (
    0, -1, 1, 0,
    1, 0, 0, -1,
    -1, 0, 0, 1,
    0, 1, -1, 0,
)
# fmt: on

# old_ab ^ new_ab == _BOTH: both channels changed between two looks (illegal).
_BOTH = const(3)


class QuadDecoder:
    """Pure quadrature state machine: feed it levels, it keeps the count.

    ``feed(ab)`` returns the delta (-1, 0, +1); ``count`` and ``errors`` are plain
    attributes. Used by the tests and as the reference for the hardware backends.
    """

    def __init__(self, ab=0):
        self.state = ab & 3
        self.count = 0
        self.errors = 0

    def feed(self, ab):
        old = self.state
        d = TABLE[(old << 2) | ab]
        if (old ^ ab) == _BOTH:
            self.errors += 1
        self.state = ab
        self.count += d
        return d


# Slots of IrqCounter._s, one preallocated array so the handler only stores small ints.
_STATE = const(0)  # last ab seen by the handler
_COUNT = const(1)  # quarter-steps since construction
_ERRORS = const(2)  # illegal transitions seen
_OFFSET = const(3)  # count at the last zero()


class IrqCounter:
    """Pin-IRQ fallback: one IRQ per edge on either channel.

    Use it only where there is no hardware counter (esp32-C3, a board whose encoder is not on
    adjacent pins for PIO). Its limit is IRQ latency, not bounce: if both channels change
    before the handler reads them, the step is lost and counted in ``errors()``. The handler
    is about 30 bytecodes (two pin reads, one table look-up, two or three array stores); on an
    RP2040 at 125 MHz a hard IRQ of that size takes roughly 15-30 us from edge to return
    (estimate from the sizes of similar handlers, not measured here), so edges closer than
    that on different channels can be lost. At 3 rev/s with 96 quarter-steps/rev edges are
    3.5 ms apart: a wide margin, but bounce bursts cost one IRQ per toggle.

    ``pin_a`` and ``pin_b`` are machine.Pin objects (or fakes with ``value()``, ``irq()``,
    ``IRQ_RISING`` and ``IRQ_FALLING``), already configured as inputs with pull-ups.
    """

    name = "irq"

    def __init__(self, pin_a, pin_b):
        self._pin_a = pin_a
        self._pin_b = pin_b
        # Cached bound methods: the handler calls them without an attribute look-up.
        self._a = pin_a.value
        self._b = pin_b.value
        self._t = TABLE
        self._s = array("i", [(self._a() << 1) | self._b(), 0, 0, 0])
        self._handler = self._irq  # one bound method object, made here, not per IRQ
        trigger = pin_a.IRQ_RISING | pin_a.IRQ_FALLING
        try:
            # rp2 and esp32 accept hard=True: the handler runs in the interrupt itself,
            # not later from the scheduler (which a GC pause can delay by milliseconds).
            pin_a.irq(self._handler, trigger, hard=True)
            pin_b.irq(self._handler, trigger, hard=True)
        except TypeError:
            # Ports (and fakes) without hard IRQs: decided once here, never in the IRQ.
            pin_a.irq(self._handler, trigger)
            pin_b.irq(self._handler, trigger)

    def _irq(self, _pin):
        # Reads BOTH pins whichever one fired: the state is what the pins are now, so a
        # bounce that already went back shows up as "no change" and costs nothing.
        s = self._s
        old = s[_STATE]
        ab = (self._a() << 1) | self._b()
        s[_COUNT] += self._t[(old << 2) | ab]
        if (old ^ ab) == _BOTH:
            s[_ERRORS] += 1
        s[_STATE] = ab

    def value(self):
        s = self._s
        return s[_COUNT] - s[_OFFSET]

    def zero(self):
        s = self._s
        s[_OFFSET] = s[_COUNT]

    def errors(self):
        return self._s[_ERRORS]

    def deinit(self):
        self._pin_a.irq(None)
        self._pin_b.irq(None)
