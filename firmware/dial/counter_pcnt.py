"""esp32 backend: the quadrature encoder counted by the PCNT peripheral via machine.Encoder.

Invariants:
- Needs MicroPython >= 1.26 on a chip with PCNT (esp32, -S2, -S3, -C6; not -C3).
- machine.Encoder already extends the 16-bit hardware counter, so this wrapper does not.
  In MicroPython's ports/esp32/modules/machine.py the Encoder runs esp32.PCNT with limits
  +-32000, counts overflows in a PCNT IRQ, and value() returns
  ``overflows * 32000 + pcnt.value() + offset``. PCNT.value() (ports/esp32/esp32_pcnt.c)
  first runs any pending overflow handler synchronously, so a read is consistent even when
  the (soft, scheduled) IRQ has not run yet. Nothing here needs polling: a count is lost only
  if 32000 quarter-steps (333 turns of a 96-step dial) pass with the scheduler stalled.
- value() allocates nothing while the count is a small int (< 2**30): Encoder.value() is
  Python code doing small-int arithmetic on a small int from PCNT.value(). esp32 timers are
  soft IRQs anyway (the heap is usable there).
- Direction: with phases=4 machine.Encoder counts up when A leads B, the project convention
  (see dial.quad).
- The PCNT glitch filter tops out at 1023 APB cycles (12.8 us): it removes spikes, not
  millisecond contact bounce. Bounce does not need removing: each toggle counts +1/-1.
- errors() is always 0: PCNT counts every edge and cannot see a double change.
"""


class PcntCounter:
    """Counter over a machine.Encoder(..., phases=4) (or a fake with ``value([x])`` and
    ``deinit()``)."""

    name = "pcnt"

    def __init__(self, encoder):
        self._enc = encoder
        self._value = encoder.value  # cached bound method
        self.zero()

    def value(self):
        return self._value()

    def zero(self):
        # Encoder.value(0) zeroes the overflow count and takes an offset in software;
        # the PCNT unit itself keeps running, so no edge is lost.
        self._enc.value(0)

    def errors(self):
        return 0

    def deinit(self):
        self._enc.deinit()


def make_pcnt_counter(unit, pin_a, pin_b, filter_ns=1000, pull_up=True):
    """Count GPIO ``pin_a`` (A) and ``pin_b`` (B) on PCNT ``unit`` (0-7 on esp32, fewer on
    the other chips). ``filter_ns`` is the glitch filter; machine.Encoder clamps it to 1023
    APB cycles (12787 ns). Returns a PcntCounter.
    """
    from machine import Encoder, Pin

    pull = Pin.PULL_UP if pull_up else None
    a = Pin(pin_a, Pin.IN, pull)
    b = Pin(pin_b, Pin.IN, pull)
    enc = Encoder(unit, a, b, filter_ns=filter_ns, phases=4)
    return PcntCounter(enc)
