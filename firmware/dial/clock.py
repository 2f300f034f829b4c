"""Device time: the sample period of a rate, and 64-bit time from the raw wrapping ticks.

Invariants:
- ``period_for(rate_hz)`` is round(1e6 / rate_hz) in integers (no float: rp2 floats are
  single precision), halves to even like Python's round.
- Device time starts at the raw tick value at start (docs/protocol.md) and is kept as
  ``hi * 2**29 + lo`` with ``0 <= lo < 2**29``: two small ints. On rp2 and esp32 a small
  int holds 31 bits, so a 64-bit time as one int would be a heap object (a "bigint")
  from 2**30 us (17.9 min) after boot on, and every frame would allocate it. ``put``
  writes a 64-bit time into a frame without ever making that int; ``base`` makes it
  (for rare frames: SYNC, BUTTON, ERROR).
- ``now()`` must run more often than every 2**29 us (9 min); the packer calls it every
  few ms. ``raw`` is the raw tick of the last ``now()``.
"""

import struct

try:
    from micropython import const
except ImportError:  # CPython (tools only)

    def const(x):
        return x


_LBITS = const(29)
_LMASK = const(0x1FFFFFFF)


def period_for(rate_hz):
    """round(1e6 / rate_hz) in integers, halves to even like Python's round (128 Hz and
    640 Hz are exact halves: 7812 and 1562 us)."""
    q, r = divmod(1_000_000, rate_hz)
    if 2 * r > rate_hz or (2 * r == rate_hz and q & 1):
        q += 1
    return q


def put_time(buf, off, hi, lo):
    """Write ``hi * 2**29 + lo`` as u64 little-endian at ``buf[off:off + 8]`` from 16-bit
    pieces (each a small int: nothing allocated)."""
    struct.pack_into("<HHHH", buf, off, lo & 0xFFFF, (lo >> 16) | ((hi & 7) << 13),
                     (hi >> 3) & 0xFFFF, (hi >> 19) & 0xFFFF)


try:
    from . import fast as _fast

    _put = _fast.put_time if _fast.NATIVE else put_time
except ImportError:  # a tool importing this file alone
    _put = put_time


class Clock:
    """64-bit device time from the raw wrapping ticks of the HW object."""

    def __init__(self, hw):
        self._ticks = hw.ticks_us
        self._diff = hw.ticks_diff
        raw = self._ticks()
        self.raw = raw
        self.hi = raw >> _LBITS
        self.lo = raw & _LMASK

    def now(self):
        """Read the ticks and move device time on (returns nothing: see ``base``)."""
        raw = self._ticks()
        lo = self.lo + self._diff(raw, self.raw)  # < 2**30: still a small int
        self.raw = raw
        if lo >> _LBITS:
            self.hi += lo >> _LBITS
            lo &= _LMASK
        self.lo = lo

    @property
    def base(self):
        """Device time of the last ``now()`` as one int (a bigint past 2**30 us)."""
        return (self.hi << _LBITS) + self.lo

    def extend(self, raw):
        """Device time of a raw tick within 2**29 us of the last ``now()``, as one int."""
        return self.base + self._diff(raw, self.raw)

    def put(self, buf, off, raw):
        """Write the device time of raw tick ``raw`` (within 2**29 us of the last ``now()``)
        as u64 at ``buf[off:off + 8]``; allocates nothing."""
        lo = self.lo + self._diff(raw, self.raw)
        hi = self.hi
        if lo >> _LBITS:
            hi += lo >> _LBITS
            lo &= _LMASK
        _put(buf, off, hi, lo)

    def put_now(self, buf, off):
        """Write the device time of the last ``now()`` as u64 at ``buf[off:off + 8]``."""
        _put(buf, off, self.hi, self.lo)
