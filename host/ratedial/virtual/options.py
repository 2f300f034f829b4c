"""Options of a virtual dial, checked once, in one frozen object (pure).

The same object drives the in-process bridge, the ``ratedial virtual-dial`` command line
(``to_argv`` renders it back) and the MicroPython process (``sim_args``).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError
from .faults import FaultSpec
from .linkmodel import LinkParams

WRAP_BITS_MIN = 24  # ticks_diff must cover the firmware's ~1 s sample ring many times over
WRAP_BITS_MAX = 30  # the firmware keeps raw ticks in 32-bit arrays (small ints < 2**30)
MAX_DRIFT_PPM = 1000.0


@dataclass(frozen=True, slots=True, kw_only=True)
class DialOptions:
    rate_hz: int | None = None  # None: the board config's (1000)
    batch: int | None = None
    debounce_ms: int | None = None
    script: Path | None = None  # None: the seeded random-walk rater
    seed: int = 1
    counts_per_point: float = 1.0
    drift_ppm: float = 0.0
    wrap_bits: int = 30
    tick_start_us: int = 0
    uid: str | None = None  # hex; None: derived from the seed
    truth: Path | None = None
    link_model: bool = True
    link: LinkParams = field(default_factory=LinkParams)
    ber: float = 0.0
    faults: tuple[FaultSpec, ...] = ()
    native_usb: bool = False  # a reboot makes the port disappear (rp2) instead of staying
    reenumerate_s: float = 0.8  # native USB: how long the port is gone after a reboot
    realtime: bool = True  # SCHED_FIFO for the simulated interrupts, when permitted
    spin_us: int = 0  # sim: busy-wait this long before each interrupt (less jitter, more CPU)
    heap_kb: int = 512  # MicroPython heap (64-bit objects: about twice an RP2040's ~190 KB)

    def __post_init__(self) -> None:
        checks = [
            (self.rate_hz is None or 50 <= self.rate_hz <= 2000, "--rate must be 50..2000 Hz"),
            (self.batch is None or 1 <= self.batch <= 100, "--batch must be 1..100"),
            (self.debounce_ms is None or 0 <= self.debounce_ms <= 1000,
             "--debounce-ms must be 0..1000"),
            (WRAP_BITS_MIN <= self.wrap_bits <= WRAP_BITS_MAX,
             f"--wrap-bits must be {WRAP_BITS_MIN}..{WRAP_BITS_MAX}"),
            (0 <= self.tick_start_us < (1 << self.wrap_bits),
             f"--tick-start-us must be 0..2**{self.wrap_bits}-1"),
            (math.isfinite(self.drift_ppm) and abs(self.drift_ppm) <= MAX_DRIFT_PPM,
             f"--drift-ppm must be within +-{MAX_DRIFT_PPM:g}"),
            (math.isfinite(self.counts_per_point) and 0 < self.counts_per_point <= 100,
             "--counts-per-point must be in (0, 100]"),
            (0 <= self.ber < 1, "--ber must be in [0, 1)"),
            (0 <= self.spin_us <= 2000, "--spin-us must be 0..2000"),
            (64 <= self.heap_kb <= 65536, "heap must be 64 KB..64 MB"),
            (self.reenumerate_s >= 0, "--reenumerate-s must not be negative"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)
        if self.uid is not None:
            try:
                raw = bytes.fromhex(self.uid)
            except ValueError:
                raise UsageError(f"--uid {self.uid!r} is not hex") from None
            if not 1 <= len(raw) <= 16:
                raise UsageError("--uid must be 1..16 bytes")

    @property
    def uid_bytes(self) -> bytes:
        if self.uid is not None:
            return bytes.fromhex(self.uid)
        return hashlib.sha256(f"ratedial-virtual:{self.seed}".encode()).digest()[:8]

    @property
    def drift_ppb(self) -> int:
        return round(self.drift_ppm * 1000)

    @property
    def range_mc(self) -> int:
        """Random walk: the knob stays within +-this many milli-counts (0..100 points)."""
        return round(50 * self.counts_per_point * 1000)

    def sim_args(self, *, knots: Path | None, t0_us: int | None, truth: Path | None,
                 ctl: str | None) -> list[str]:
        """Arguments of firmware/sim/run.py."""
        a = [
            f"uid={self.uid_bytes.hex()}",
            f"seed={self.seed}",
            f"drift_ppb={self.drift_ppb}",
            f"wrap_bits={self.wrap_bits}",
            f"tick_start={self.tick_start_us}",
            f"spin_us={self.spin_us}",
        ]
        if knots is not None:
            a.append(f"script={knots}")
        else:
            a.append(f"range_mc={self.range_mc}")
        for key, v in (("rate_hz", self.rate_hz), ("batch", self.batch),
                       ("debounce_ms", self.debounce_ms), ("t0", t0_us)):
            if v is not None:
                a.append(f"{key}={v}")
        if truth is not None:
            a.append(f"truth={truth}")
        if ctl is not None:
            a.append(f"ctl={ctl}")
        return a

    def to_argv(self) -> list[str]:
        """The ``ratedial virtual-dial`` options that rebuild these options."""
        a: list[str] = ["--seed", str(self.seed)]
        for flag, v in (("--rate", self.rate_hz), ("--batch", self.batch),
                        ("--debounce-ms", self.debounce_ms), ("--script", self.script),
                        ("--uid", self.uid), ("--truth", self.truth)):
            if v is not None:
                a += [flag, str(v)]
        a += ["--counts-per-point", repr(self.counts_per_point),
              "--drift-ppm", repr(self.drift_ppm),
              "--wrap-bits", str(self.wrap_bits),
              "--tick-start-us", str(self.tick_start_us),
              "--ber", repr(self.ber),
              "--spin-us", str(self.spin_us),
              "--heap-kb", str(self.heap_kb)]
        if self.native_usb:  # the CLI refuses it without --native-usb
            a += ["--reenumerate-s", repr(self.reenumerate_s)]
        if not self.link_model:
            a.append("--no-link-model")
        if not self.realtime:
            a.append("--no-realtime")
        lp = self.link
        a += ["--jitter-us", str(lp.jitter_us), "--stall-rate", repr(lp.stall_per_s),
              "--stall-ms", f"{lp.stall_min_us / 1000:g}:{lp.stall_max_us / 1000:g}"]
        if lp.bytes_per_frame is not None:
            a += ["--baud", f"{lp.bytes_per_frame * 10 * 1_000_000 / lp.frame_us:g}"]
        if self.native_usb:
            a.append("--native-usb")
        for f in self.faults:
            a += ["--fault", str(f)]
        return a
