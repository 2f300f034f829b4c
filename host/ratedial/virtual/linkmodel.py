"""The USB link between the virtual dial and the host, as a schedule (pure).

Device -> host bytes are handed to the host at 1 ms USB frame boundaries (full-speed bulk
IN transfers complete per frame), plus a host-side delay (driver, scheduler) drawn per
frame, and now and then the host side stalls for a few milliseconds (a busy USB hub, a
descheduled reader). Host -> device bytes arrive at the next frame boundary.

Invariants:
- Deterministic: the jitter of frame ``k`` and the stall intervals are functions of the
  seed and the frame index only, not of the traffic, so two runs with the same seed see
  the same link.
- Delivery times never decrease (the link never reorders bytes), and bytes are never
  delivered before they were ready.
- ``bytes_per_frame`` (optional) caps the bytes per frame: a UART bridge at 115200 baud
  carries 11.52 bytes per ms. Excess bytes move on to later frames.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass

from ..errors import UsageError


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkParams:
    frame_us: int = 1000
    jitter_us: int = 150  # host-side delay after the frame boundary: uniform 0..jitter_us
    stall_per_s: float = 0.05  # mean stalls per second (a Poisson process)
    stall_min_us: int = 5_000
    stall_max_us: int = 30_000
    bytes_per_frame: float | None = None  # None: as fast as a USB full-speed port

    def __post_init__(self) -> None:
        if self.frame_us < 1:
            raise UsageError("link frame must be at least 1 us")
        if self.jitter_us < 0:
            raise UsageError("link jitter must not be negative")
        if self.stall_per_s < 0:
            raise UsageError("link stall rate must not be negative")
        if not 0 <= self.stall_min_us <= self.stall_max_us:
            raise UsageError("link stall durations: need 0 <= min <= max")
        if self.bytes_per_frame is not None and self.bytes_per_frame <= 0:
            raise UsageError("link bytes per frame must be positive")


def _frame_hash(seed: int, k: int) -> int:
    h = hashlib.blake2b(f"{seed}:{k}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little")


class LinkSchedule:
    """When bytes that are ready at some host time reach the other side."""

    def __init__(self, params: LinkParams, *, seed: int, origin_ns: int) -> None:
        self.params = params
        self._seed = seed
        self._origin = origin_ns
        self._frame_ns = params.frame_us * 1000
        self._rng = random.Random(f"stalls:{seed}")
        self._stalls: list[tuple[int, int]] = []  # (start_ns, end_ns), increasing
        self._stall_horizon = origin_ns
        self._last_d2h = 0
        self._frame_k = -1  # frame being filled under a byte cap
        self._frame_fill = 0

    # --- stalls ------------------------------------------------------------------------
    def _extend_stalls(self, t_ns: int) -> None:
        p = self.params
        while self._stall_horizon <= t_ns:
            if p.stall_per_s <= 0:
                self._stall_horizon = t_ns + 1
                return
            gap = self._rng.expovariate(p.stall_per_s)
            start = self._stall_horizon + int(gap * 1e9)
            dur = self._rng.randint(p.stall_min_us, p.stall_max_us) * 1000
            self._stalls.append((start, start + dur))
            self._stall_horizon = start + dur

    def stall_end(self, t_ns: int) -> int | None:
        """End of the link stall covering ``t_ns``, or None."""
        self._extend_stalls(t_ns)
        while self._stalls and self._stalls[0][1] <= t_ns - 10_000_000_000:
            self._stalls.pop(0)  # keep 10 s of history at most
        for start, end in self._stalls:
            if start <= t_ns < end:
                return end
            if start > t_ns:
                break
        return None

    def stalls_between(self, a_ns: int, b_ns: int) -> list[tuple[int, int]]:
        """Stall intervals overlapping [a, b) (for tests and status)."""
        self._extend_stalls(b_ns)
        return [(s, e) for s, e in self._stalls if s < b_ns and e > a_ns]

    # --- frames --------------------------------------------------------------------------
    def _frame_after(self, t_ns: int) -> int:
        """Index of the first frame boundary strictly after t."""
        return (t_ns - self._origin) // self._frame_ns + 1

    def _boundary(self, k: int) -> int:
        return self._origin + k * self._frame_ns

    def jitter_ns(self, k: int) -> int:
        j = self.params.jitter_us
        return 0 if j == 0 else (_frame_hash(self._seed, k) % (j + 1)) * 1000

    def _allowance(self, k: int) -> int:
        """Bytes frame k may carry under the cap (fractional caps carried over exactly)."""
        cap = self.params.bytes_per_frame
        assert cap is not None
        return math.floor((k + 1) * cap) - math.floor(k * cap)

    def to_host(self, ready_ns: int, nbytes: int) -> list[tuple[int, int]]:
        """Delivery (time_ns, byte count) pieces for ``nbytes`` ready at ``ready_ns``."""
        capped = self.params.bytes_per_frame is not None
        k = self._frame_after(ready_ns)
        if capped:
            k = max(k, self._frame_k)
        out: list[tuple[int, int]] = []
        left = nbytes
        while left > 0:
            b = self._boundary(k)
            end = self.stall_end(b)
            if end is not None:
                k = self._frame_after(end - 1)  # the first boundary at or after the end
                continue
            n = left
            if capped:
                if k != self._frame_k:
                    self._frame_k = k
                    self._frame_fill = 0
                n = min(left, self._allowance(k) - self._frame_fill)
                if n <= 0:
                    k += 1
                    continue
                self._frame_fill += n
            t = max(b + self.jitter_ns(k), self._last_d2h)
            self._last_d2h = t
            out.append((t, n))
            left -= n
            k += 1
        return out

    def to_device(self, ready_ns: int) -> int:
        """Delivery time of host -> device bytes ready at ``ready_ns``."""
        return self._boundary(self._frame_after(ready_ns))


class BitErrors:
    """Flips bits in bytes on their way to the host: a continuous bit-error rate and
    ``corrupt(n)`` requests (one flipped bit in each of the next n bytes)."""

    def __init__(self, *, ber: float, seed: int) -> None:
        if not 0 <= ber < 1:
            raise UsageError("bit error rate must be in [0, 1)")
        self._ber = ber
        self._rng = random.Random(f"bits:{seed}")
        self._next_error = self._draw_gap()  # bits until the next BER flip
        self.pending = 0  # requested flips still to do
        self.forced = 0  # requested flips done so far
        self.flipped = 0  # every bit flipped so far (requested and random)

    def _draw_gap(self) -> int:
        if self._ber <= 0:
            return -1
        # Geometric: bits up to and including the next error.
        return int(self._rng.expovariate(-math.log1p(-self._ber))) + 1

    def corrupt(self, n: int) -> None:
        self.pending += n

    def apply(self, data: bytearray) -> int:
        """Flip bits of ``data`` in place; return how many requested flips were done."""
        done = 0
        i = 0
        while self.pending and i < len(data):
            data[i] ^= 1 << self._rng.randrange(8)
            self.pending -= 1
            self.forced += 1
            self.flipped += 1
            done += 1
            i += 1
        if self._ber > 0:
            nbits = len(data) * 8
            pos = 0
            while True:
                pos += self._next_error
                if pos > nbits:
                    self._next_error = pos - nbits
                    break
                bit = pos - 1
                data[bit // 8] ^= 1 << (bit % 8)
                self.flipped += 1
                self._next_error = self._draw_gap()
        return done

