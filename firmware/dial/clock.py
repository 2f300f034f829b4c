"""Device time: the sample period of a rate, and 64-bit time from the raw wrapping ticks.

Invariants:
- ``period_for(rate_hz)`` is round(1e6 / rate_hz) in integers (no float: rp2 floats are
  single precision), halves to even like Python's round.
- ``Clock.now()`` must run more often than every 2**29 us (9 min); the packer calls it
  every few ms. Device time starts at the raw tick value at start, as docs/protocol.md says.
"""


def period_for(rate_hz):
    """round(1e6 / rate_hz) in integers, halves to even like Python's round (128 Hz and
    640 Hz are exact halves: 7812 and 1562 us)."""
    q, r = divmod(1_000_000, rate_hz)
    if 2 * r > rate_hz or (2 * r == rate_hz and q & 1):
        q += 1
    return q


class Clock:
    """64-bit device time from the raw wrapping ticks of the HW object."""

    def __init__(self, hw):
        self._ticks = hw.ticks_us
        self._diff = hw.ticks_diff
        self._raw = self._ticks()
        self.base = self._raw

    def now(self):
        raw = self._ticks()
        self.base += self._diff(raw, self._raw)
        self._raw = raw
        return self.base

    def extend(self, raw):
        """Device time of a raw tick within 2**29 us of the last ``now()``."""
        return self.base + self._diff(raw, self._raw)
