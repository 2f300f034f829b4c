"""Potentiometer backend ("adc"): an absolute dial read by the ADC, with the counter interface.

Invariants:
- ``value()`` is the pointer position in ADC units, 0-65535 (``read_u16`` scale on rp2 and
  esp32), minus the position at the last ``zero()``. It runs in the sampling interrupt:
  it allocates nothing (small ints only: the largest intermediate is the oversampling sum,
  64 x 65535 = 4.2 M < 2**30), reads one preallocated ``array`` and calls one cached bound
  method.
- Oversampling: ``oversample`` reads (a power of two, 1-64; default 8) are summed and
  shifted, no division. Independent noise falls by sqrt(n): 8 reads = 2.8x less.
- Smoothing: the averages go through a first-order low-pass in integers,
  ``acc += avg - (acc >> smooth)``, output ``acc >> smooth`` (default smooth 3: time constant
  8 samples = 8 ms at 1 kHz, noise rms x0.26). At rest it converges to the input exactly
  (the integer fixed point is ``acc >> smooth == avg``).
- Hysteresis (a dead band of +-``hysteresis`` units, default 96 = 6 LSB of the 12-bit
  converter = 0.15 % of the travel): while the average stays within the band around the
  held value, the value does not move, so noise and slow drift at rest never flicker.
  When the average leaves the band the held value follows it at the band's edge
  (monotonic while turning: a turn upwards never reports a step down).
- Settling: after ``settle`` calls (default 64 = 64 ms at 1 kHz) inside the band the held
  value snaps once to the current smoothed average, so the position at rest is the true position
  (within the averaged noise), not the band edge the turn ended on. Then it is frozen again.
  So a turn produces exactly one run of changes and at most one settling step after it.
- errors() is always 0: an ADC has no illegal transitions.

Numbers (RP2040): the 12-bit SAR converter needs 2 us per conversion (500 ksps); one
``read_u16`` call from Python is ~6-8 us, so 8 reads add ~60 us to the sampling interrupt,
about 6 % of the CPU at 1 kHz. Its noise is ~3 LSB rms (ENOB ~8.7 bits in the datasheet),
i.e. ~50 units of 65535; 8 reads bring it to ~17 units rms and the low-pass to ~5, so the
96-unit band is ~20 sigma wide: slow drift of +-50 units at rest still moves nothing. On a
0-100 scale (``counts_per_point`` 655) the band is 0.15 points; the low-pass delays a turn by
8 ms, far below a rater's reaction time.

The ADC object is passed in (``read_u16()`` is all that is used), so the same code runs on
the host with a fake ADC.
"""

from array import array

try:
    from micropython import const
except ImportError:  # CPython, for the host tests

    def const(x):
        return x


FULL_SCALE = const(65535)
OVERSAMPLE = const(8)
HYSTERESIS = const(96)
SMOOTH = const(3)
SETTLE = const(64)

# Slots of AdcCounter._s (one preallocated array: the IRQ path only stores small ints).
_HELD = const(0)  # the reported position, before the zero offset
_STILL = const(1)  # consecutive calls inside the band (capped at settle)
_OFFSET = const(2)  # held position at the last zero()
_ACC = const(3)  # low-pass accumulator: the smoothed average << smooth


class AdcCounter:
    """Counter over an ADC (machine.ADC or a fake with ``read_u16()``)."""

    name = "adc"

    def __init__(self, adc, oversample=OVERSAMPLE, hysteresis=HYSTERESIS, settle=SETTLE,
                 smooth=SMOOTH):
        if oversample < 1 or oversample > 64 or oversample & (oversample - 1):
            raise ValueError("oversample must be a power of two, 1-64")
        if hysteresis < 0 or settle < 1 or smooth < 0 or smooth > 8:
            raise ValueError("hysteresis >= 0, settle >= 1 and smooth 0-8, please")
        self._adc = adc
        self._read = adc.read_u16  # cached bound method for the IRQ path
        self._n = oversample
        self._shift = 0
        while (1 << self._shift) < oversample:
            self._shift += 1
        self._h = hysteresis
        self._settle = settle
        self._k = smooth
        self._s = array("i", [0, 0, 0, 0])
        avg = self._average()
        s = self._s
        s[_HELD] = avg
        s[_STILL] = settle  # start settled: the first reading is the position
        s[_ACC] = avg << smooth

    def _average(self):
        read = self._read
        n = self._n
        acc = 0
        while n:
            acc += read()
            n -= 1
        return acc >> self._shift

    def value(self):
        s = self._s
        k = self._k
        acc = s[_ACC]
        acc += self._average() - (acc >> k)  # at most 65535 << 8 = 16.8 M: a small int
        s[_ACC] = acc
        avg = acc >> k
        held = s[_HELD]
        h = self._h
        if avg > held + h:
            held = avg - h
            s[_HELD] = held
            s[_STILL] = 0
        elif avg < held - h:
            held = avg + h
            s[_HELD] = held
            s[_STILL] = 0
        else:
            still = s[_STILL]
            if still < self._settle:
                still += 1
                s[_STILL] = still
                if still == self._settle:
                    held = avg
                    s[_HELD] = held
        return held - s[_OFFSET]

    def zero(self):
        s = self._s
        s[_OFFSET] = s[_HELD]

    def errors(self):
        return 0

    def deinit(self):
        pass


def make_adc_counter(pin, oversample=OVERSAMPLE, hysteresis=HYSTERESIS, settle=SETTLE,
                     smooth=SMOOTH):
    """Read the potentiometer wiper on GPIO ``pin`` (rp2: 26-28 = ADC0-2; esp32: an ADC1
    pin, e.g. 34-39, since ADC2 is unusable with Wi-Fi). Returns an AdcCounter."""
    from machine import ADC, Pin

    adc = ADC(Pin(pin))
    atten = getattr(ADC, "ATTN_11DB", None)
    if atten is not None:  # esp32: full 0-3.3 V range (default is 0-1.1 V)
        adc.atten(atten)
    return AdcCounter(adc, oversample, hysteresis, settle, smooth)
