"""Ground truth of a virtual dial: map device time back to host time exactly (pure).

At every boot the simulated hardware records one JSON line (see ``firmware/sim/hw.py``); the
file format (keys, types, the mapping) is specified in docs/recording.md, "The virtual
dial's ground-truth file".
The device clock of that boot is, with integer arithmetic::

    e        = mono_us - mono0_us                    # host CLOCK_MONOTONIC µs since boot
    D(e)     = e + floor(e * drift_ppb / 10**9)      # device µs elapsed
    raw      = (tick_start + D(e)) mod 2**wrap_bits  # what ticks_us() returns

and the firmware sends ``T = tick_start + D(e) - w * 2**wrap_bits`` (its 64-bit extension
of ``raw``), where ``w = 1`` only if the raw counter wrapped before the firmware first read
it (``tick_start`` within about a second of ``2**wrap_bits``). So a device time ``T`` was
taken at host ``mono0_ns + 1000 * e`` with ``e`` the smallest integer for which
``D(e) >= T - tick_start + w * 2**wrap_bits`` (exact to the 1 µs tick). ``w`` is chosen as
the candidate whose host time is nearest to ``near_ns`` (any host time of that boot, e.g.
when the frame arrived); without ``near_ns``, ``w = 1`` exactly when ``T < tick_start``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_BILLION = 1_000_000_000


@dataclass(frozen=True, slots=True)
class BootTruth:
    uid: str
    boot_id: int
    mono0_ns: int  # CLOCK_MONOTONIC (time.monotonic_ns) when this boot's clock started
    t0_ns: int  # rating time 0: the first boot's start; script time t_s is at t0_ns + t_s*1e9
    drift_ppb: int
    tick_start: int
    wrap_bits: int

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> BootTruth:
        return cls(
            uid=str(obj["uid"]),
            boot_id=int(obj["boot_id"]),
            mono0_ns=int(obj["mono0_ns"]),
            t0_ns=int(obj["t0_ns"]),
            drift_ppb=int(obj["drift_ppb"]),
            tick_start=int(obj["tick_start"]),
            wrap_bits=int(obj["wrap_bits"]),
        )

    def device_elapsed_us(self, e_us: int) -> int:
        """D(e): device µs elapsed after ``e_us`` host µs."""
        return e_us + (e_us * self.drift_ppb) // _BILLION

    def host_elapsed_us(self, d_us: int) -> int:
        """The smallest e with D(e) >= d (the inverse of ``device_elapsed_us``)."""
        if d_us <= 0:
            return d_us  # before the boot: no drift applied (never used by firmware times)
        e = d_us - (d_us * self.drift_ppb) // (_BILLION + self.drift_ppb)
        while self.device_elapsed_us(e) < d_us:
            e += 1
        while e > 0 and self.device_elapsed_us(e - 1) >= d_us:
            e -= 1
        return e

    def host_ns(self, device_us: int, *, near_ns: int | None = None) -> int:
        """Host CLOCK_MONOTONIC ns at which the device read ``device_us`` (its 64-bit time)."""
        d0 = device_us - self.tick_start
        cands = [d0, d0 + (1 << self.wrap_bits)]
        if near_ns is None:
            d = d0 if d0 >= 0 else cands[1]
        else:
            d = min(cands, key=lambda d: abs(self._host(d) - near_ns))
        return self._host(d)

    def _host(self, d_us: int) -> int:
        return self.mono0_ns + 1000 * self.host_elapsed_us(d_us)

    def device_us(self, host_ns: int) -> int:
        """Device time (64-bit, unwrapped from tick_start) at host time ``host_ns``."""
        e = (host_ns - self.mono0_ns) // 1000
        return self.tick_start + self.device_elapsed_us(e)


def parse_truth(text: str) -> list[BootTruth]:
    return [BootTruth.from_json(json.loads(line)) for line in text.splitlines() if line.strip()]


def read_truth(path: str | Path) -> list[BootTruth]:
    """The boots a ``--truth`` file holds (none if it does not exist yet)."""
    try:
        return parse_truth(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
