"""Checks of the potentiometer backend (dial.counter_adc) that run unchanged under CPython and
the MicroPython unix port.

FakeAdc stands in for machine.ADC: a true wiper position (0-65535) plus noise (a sum of four
uniform bytes, close to Gaussian, ``sigma`` units rms) plus a slow drift, quantised to 12 bits
and scaled to 16 like rp2's ``read_u16`` (``raw << 4 | raw >> 8``). Its random numbers come
from a 16-bit xorshift kept in an array, so it allocates nothing and gives the same sequence
under both interpreters. Every ``value()`` call runs with the heap locked on MicroPython (an
allocation raises MemoryError).

Each check returns None when it passes and a short reason when it fails; ``main()`` prints
``PASS <label>`` / ``FAIL <label>: <reason>`` and raises at the end if any failed.
"""

from array import array

from dial.counter_adc import AdcCounter

try:
    from micropython import heap_lock, heap_unlock
except ImportError:  # CPython: nothing to lock

    def heap_lock():
        pass

    def heap_unlock():
        pass


RP2040_SIGMA = 48  # ~3 LSB rms of the 12-bit converter, in read_u16 units
_NOISE_SD = 148  # sd of the sum of four uniform bytes: sqrt(4 * (256**2 - 1) / 12)


class FakeAdc:
    """``pos``: true wiper position; ``sigma``: noise rms in units; ``drift``: peak of a
    triangular drift with period ``drift_period`` reads; ``quantise``: 12-bit like rp2."""

    def __init__(self, pos=30000, sigma=RP2040_SIGMA, drift=0, drift_period=40000,
                 seed=0xACE1, quantise=True):
        self.pos = pos
        self.sigma = sigma
        self.drift = drift
        self.drift_period = drift_period
        self.quantise = quantise
        self.reads = 0
        self._st = array("i", [seed & 0xFFFF or 1, 0])  # xorshift state, read count

    def _rand8(self):
        st = self._st
        x = st[0]
        x ^= (x << 7) & 0xFFFF
        x ^= x >> 9
        x ^= (x << 8) & 0xFFFF
        st[0] = x
        return x & 0xFF

    def _drift(self, n):
        if not self.drift:
            return 0
        p = self.drift_period
        k = n % p
        q = p // 4
        # triangle: 0 -> +drift -> 0 -> -drift -> 0
        if k < q:
            return self.drift * k // q
        if k < 3 * q:
            return self.drift * (2 * q - k) // q
        return self.drift * (k - 4 * q) // q

    def read_u16(self):
        st = self._st
        n = st[1]
        st[1] = n + 1
        r = self._rand8() + self._rand8() + self._rand8() + self._rand8() - 510
        v = self.pos + r * self.sigma // _NOISE_SD + self._drift(n)
        if v < 0:
            v = 0
        elif v > 65535:
            v = 65535
        if self.quantise:
            raw = v >> 4
            v = (raw << 4) | (raw >> 8)
        return v


def quantised(pos):
    raw = pos >> 4
    return (raw << 4) | (raw >> 8)


def read_locked(counter):
    heap_lock()
    try:
        return counter.value()
    finally:
        heap_unlock()


def run_locked(counter, n, out=None):
    """n calls of value() with the heap locked; values into the preallocated ``out``."""
    heap_lock()
    try:
        i = 0
        v = 0
        while i < n:
            v = counter.value()
            if out is not None:
                out[i] = v
            i += 1
    finally:
        heap_unlock()
    return v


def _sd_x10(values):
    """Standard deviation times 10, in integers (the same result under both interpreters)."""
    n = len(values)
    s = 0
    for v in values:
        s += v
    ss = 0
    for v in values:
        d = v * n - s
        ss += d * d
    var100 = 100 * ss // (n * n * n)
    r = 0
    while (r + 1) * (r + 1) <= var100:
        r += 1
    return r


def check_oversampling(n_reads=8):
    """With the dead band and the low-pass off, the spread of value() at rest falls by
    ~sqrt(n) from single reads."""
    single = AdcCounter(FakeAdc(seed=11), oversample=1, hysteresis=0, settle=1, smooth=0)
    avg = AdcCounter(FakeAdc(seed=11), oversample=n_reads, hysteresis=0, settle=1, smooth=0)
    a = array("i", [0] * 4000)
    b = array("i", [0] * 4000)
    run_locked(single, 4000, a)
    run_locked(avg, 4000, b)
    sd1 = _sd_x10(a)
    sd8 = _sd_x10(b)
    # sqrt(8) = 2.83: expect the averaged spread below 45 % of the single-read spread
    if sd1 < 300:
        return "fake noise too small: sd %d.%d" % (sd1 // 10, sd1 % 10)
    if sd8 * 100 > sd1 * 45:
        return "oversampling %d: sd %d.%d vs %d.%d single" % (
            n_reads, sd8 // 10, sd8 % 10, sd1 // 10, sd1 % 10)
    return None


def check_smoothing(smooth=3):
    """The low-pass (time constant 2**smooth samples) cuts the spread of the averages further:
    by sqrt(alpha / (2 - alpha)) = 0.26 for smooth 3."""
    raw = AdcCounter(FakeAdc(seed=12), hysteresis=0, settle=1, smooth=0)
    low = AdcCounter(FakeAdc(seed=12), hysteresis=0, settle=1, smooth=smooth)
    a = array("i", [0] * 4000)
    b = array("i", [0] * 4000)
    run_locked(raw, 4000, a)
    run_locked(low, 4000, b)
    sd0 = _sd_x10(a)
    sdk = _sd_x10(b)
    if sdk * 100 > sd0 * 40:
        return "smooth %d: sd %d.%d vs %d.%d unsmoothed" % (
            smooth, sdk // 10, sdk % 10, sd0 // 10, sd0 % 10)
    return None


def check_rest(hysteresis=96, oversample=8, seed=3):
    """At rest with noise and a slow drift (+-40 units), 30 s at 1 kHz: the value never moves."""
    c = AdcCounter(FakeAdc(pos=30000, seed=seed, drift=40, drift_period=120000),
                   oversample=oversample, hysteresis=hysteresis)
    out = array("i", [0] * 3000)
    first = read_locked(c)
    changes = 0
    for _ in range(10):
        run_locked(c, 3000, out)
        for v in out:
            if v != first:
                changes += 1
                first = v
    if changes:
        return "%d changes at rest" % changes
    return None


def check_turn_exact():
    """Noise-free turn up, rest, turn down, rest: after each rest the value is the position
    exactly; while turning it is monotonic and lags by at most the band."""
    adc = FakeAdc(pos=10000, sigma=0, quantise=False)
    c = AdcCounter(adc)
    if read_locked(c) != 10000:
        return "start %d" % read_locked(c)
    for target, step in ((50000, 80), (20000, -150), (20500, 3)):
        prev = read_locked(c)
        while adc.pos != target:
            adc.pos += step
            if (step > 0 and adc.pos > target) or (step < 0 and adc.pos < target):
                adc.pos = target
            v = read_locked(c)
            if (v - prev) * step < 0:
                return "not monotonic turning to %d: %d after %d" % (target, v, prev)
            # the dead band plus the low-pass's lag of 2**smooth samples at this speed
            if abs(v - adc.pos) > c._h + abs(step) * (1 << c._k):
                return "lag %d turning to %d" % (abs(v - adc.pos), target)
            prev = v
        v = run_locked(c, 400)
        if v != target:
            return "rest at %d reads %d" % (target, v)
    return None


def check_turn_noisy(seed=5):
    """With RP2040-like noise a turn is followed: monotonic while turning, and at rest
    within 3 sigma of the averaged noise (3 x 17) of the true position."""
    adc = FakeAdc(pos=5000, seed=seed)
    c = AdcCounter(adc)
    run_locked(c, 100)
    prev = read_locked(c)
    # 2 s sweep over 55000 units at 1 kHz: a brisk turn of a 270-degree pot
    while adc.pos < 60000:
        adc.pos += 27
        v = read_locked(c)
        if v < prev:
            return "stepped back %d -> %d at %d" % (prev, v, adc.pos)
        prev = v
    v = run_locked(c, 400)
    err = v - quantised(60000)
    # 3 sigma of the averaged (17) noise; the low-pass makes it ~5 in practice
    if err < -51 or err > 51:
        return "rest error %d" % err
    return None


def check_zero_and_range():
    adc = FakeAdc(pos=65535, sigma=0)
    c = AdcCounter(adc)
    if read_locked(c) != 65535:
        return "full scale reads %d" % read_locked(c)
    adc.pos = 0
    if run_locked(c, 400) != 0:
        return "zero scale reads %d" % read_locked(c)
    adc.pos = 32768
    run_locked(c, 400)
    heap_lock()
    try:
        c.zero()
        z = c.value()
    finally:
        heap_unlock()
    if z != 0:
        return "after zero() %d" % z
    adc.pos = 32768 + 6550
    v = run_locked(c, 400)
    if v != quantised(32768 + 6550) - quantised(32768):
        return "relative after zero: %d" % v
    if c.errors() != 0 or c.name != "adc":
        return "errors/name"
    return None


def check_bad_args():
    for kw in ({"oversample": 3}, {"oversample": 128}, {"hysteresis": -1}, {"settle": 0},
               {"smooth": 9}):
        try:
            AdcCounter(FakeAdc(), **kw)
        except ValueError:
            continue
        return "accepted %r" % (kw,)
    return None


def all_checks():
    return [
        ("oversampling", check_oversampling, ()),
        ("smoothing", check_smoothing, ()),
        ("rest_no_flicker", check_rest, ()),
        ("rest_no_flicker_seed9", check_rest, (96, 8, 9)),
        ("turn_exact", check_turn_exact, ()),
        ("turn_noisy", check_turn_noisy, ()),
        ("turn_noisy_seed8", check_turn_noisy, (8,)),
        ("zero_and_range", check_zero_and_range, ()),
        ("bad_args", check_bad_args, ()),
    ]


def main():
    failed = 0
    for label, fn, args in all_checks():
        r = fn(*args)
        if r is None:
            print("PASS " + label)
        else:
            failed += 1
            print("FAIL %s: %s" % (label, r))
    if failed:
        raise AssertionError("%d checks failed" % failed)
