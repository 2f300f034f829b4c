"""Which field values a frame may carry at all, whatever came before it (pure).

docs/protocol.md ("What a host does with an impossible frame") lists the rules; this table
is them. A frame with a valid CRC that breaks one is *impossible*: the host rejects it whole,
counts it with the reason returned here, and never records any of its values. Checks that
need the dial's history (is this index plausible now?) live in :mod:`ratedial.daemon.placement`
and :mod:`ratedial.daemon.core`.

Invariant: :func:`field_problem` never raises, for any frame the decoder can return.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from .frames import (
    FLAG_BUTTON,
    FLAG_ILLEGAL,
    FLAG_OVERRUN,
    Ack,
    AckCommand,
    Button,
    Drop,
    Error,
    ErrorCode,
    Frame,
    Hello,
    Samples,
    Status,
    Sync,
)
from .layout import MAX_SAMPLES_PER_FRAME

MIN_RATE_HZ, MAX_RATE_HZ = 50, 2000  # what RATE accepts
MIN_PERIOD_US, MAX_PERIOD_US = 500, 20_000  # 1e6 / MAX_RATE_HZ, 1e6 / MIN_RATE_HZ
SAMPLE_FLAGS = FLAG_BUTTON | FLAG_OVERRUN | FLAG_ILLEGAL
# every flags value with no reserved bit set (a sample's flags are one byte on the wire)
_ALLOWED_FLAGS = frozenset(v for v in range(256) if not v & ~SAMPLE_FLAGS)
MAX_UID_BYTES = 32
MAX_NAME_BYTES = 32  # board, firmware and backend names
MAX_ERROR_TEXT = 60
# Device time is a 64-bit microsecond counter that starts below 2^30 (the raw tick) and
# counts up for one boot: 2^53 µs is 285 years of uptime, and stays exact as a float.
MAX_DEVICE_US = 2**53
MAX_INDEX = 2**53  # sample indices: one per period since start, so below device time


def _text(value: str, *, limit: int, empty: bool = False) -> bool:
    """Printable ASCII within ``limit`` bytes (the decoder replaced invalid UTF-8 with U+FFFD,
    which is not ASCII)."""
    return (empty or bool(value)) and len(value) <= limit and all(
        " " <= ch <= "~" for ch in value)


def _hello(f: Hello) -> str | None:
    if not MIN_RATE_HZ <= f.rate_hz <= MAX_RATE_HZ:
        return f"rate_hz {f.rate_hz} outside {MIN_RATE_HZ}-{MAX_RATE_HZ}"
    if f.period_us != round(1e6 / f.rate_hz):
        return f"period_us {f.period_us} is not 1e6 / rate_hz {f.rate_hz}"
    if not 1 <= f.batch <= MAX_SAMPLES_PER_FRAME:  # a frame cannot hold more
        return f"batch {f.batch} outside 1-{MAX_SAMPLES_PER_FRAME}"
    if not 1 <= f.tick_bits <= 64:
        return f"tick_bits {f.tick_bits} outside 1-64"
    if f.flags & ~1:
        return f"flags {f.flags:#x} has reserved bits set"
    if not 1 <= len(f.uid) <= MAX_UID_BYTES:
        return f"uid of {len(f.uid)} bytes"
    if f.time_us >= MAX_DEVICE_US:
        return f"time_us {f.time_us} beyond 2^53"
    for name in ("board", "firmware", "backend"):
        if not _text(getattr(f, name), limit=MAX_NAME_BYTES):
            return f"{name} is not 1-{MAX_NAME_BYTES} printable ASCII characters"
    return None


def _samples(f: Samples) -> str | None:
    if not MIN_PERIOD_US <= f.period_us <= MAX_PERIOD_US:
        return f"period_us {f.period_us} outside {MIN_PERIOD_US}-{MAX_PERIOD_US}"
    if f.end_index > MAX_INDEX:
        return f"index {f.end_index - 1} beyond 2^53"
    if f.times_us[-1] >= MAX_DEVICE_US:
        return f"device time {f.times_us[-1]} beyond 2^53"
    if not _ALLOWED_FLAGS.issuperset(f.flags):  # one C-level pass, not a generator
        return "a sample's flags have reserved bits set"
    # |jitter| < period for a real sampler: times strictly increase within a frame
    times = f.times_us
    if not all(map(operator.lt, times, times[1:])):
        return "device times do not increase within the frame"
    return None


def _sync(f: Sync) -> str | None:
    if f.t_tx_us < f.t_rx_us:
        return f"t_tx_us {f.t_tx_us} before t_rx_us {f.t_rx_us}"
    if f.t_tx_us >= MAX_DEVICE_US:
        return f"t_tx_us {f.t_tx_us} beyond 2^53"
    return None


def _button(f: Button) -> str | None:
    if f.pressed not in (0, 1):
        return f"pressed {int(f.pressed)} is neither 1 (pressed) nor 0 (released)"
    if f.index >= MAX_INDEX:
        return f"index {f.index} beyond 2^53"
    if f.t_us >= MAX_DEVICE_US:
        return f"t_us {f.t_us} beyond 2^53"
    if f.t_edge_us > f.t_us:
        return f"t_edge_us {f.t_edge_us} after t_us {f.t_us}"
    if not index_fits_time(f.index, f.t_us):
        return f"index {f.index} is more than device time {f.t_us} allows since start"
    return None


def index_fits_time(index: int, t_us: int) -> bool:
    """Whether sample ``index`` can have device time ``t_us``: index 0 was taken at a
    device time of 0 or later and each index since took at least MIN_PERIOD_US, less a
    period of jitter at either end (the bound a boot's first SAMPLES frame is held to)."""
    return index * MIN_PERIOD_US <= t_us + 2 * MAX_PERIOD_US


def _status(f: Status) -> str | None:
    if f.queue_depth > f.queue_capacity:
        return f"queue_depth {f.queue_depth} above queue_capacity {f.queue_capacity}"
    if f.time_us >= MAX_DEVICE_US or f.samples_taken >= MAX_INDEX:
        return "time_us or samples_taken beyond 2^53"
    return None


def _error(f: Error) -> str | None:
    if f.code not in ErrorCode._value2member_map_:
        return f"unknown error code {f.code}"
    if not _text(f.text, limit=MAX_ERROR_TEXT, empty=True):
        return f"text is not printable ASCII of at most {MAX_ERROR_TEXT} bytes"
    return None


def _drop(f: Drop) -> str | None:
    if f.end_index > MAX_INDEX:
        return f"dropped range ends beyond 2^53 ({f.end_index})"
    # n_samples > 0 with n_frames 0 is honest: the sample ring overflowed before frames were
    # built (the firmware's gap entries); a hog-starved virtual dial sent one
    return None


_ACK_VALUES: dict[int, Callable[[int], bool]] = {
    AckCommand.RATE: lambda v: MIN_RATE_HZ <= v <= MAX_RATE_HZ,
    AckCommand.BATCH: lambda v: 1 <= v <= 100,
    AckCommand.ZERO: lambda v: v == 0,
}


def _ack(f: Ack) -> str | None:
    ok = _ACK_VALUES.get(f.command)
    if ok is None:
        return f"unknown command {f.command}"
    if not ok(f.value):
        return f"value {f.value} impossible for {AckCommand(f.command).name}"
    if f.index >= MAX_INDEX:
        return f"index {f.index} beyond 2^53"
    return None


_CHECKS: dict[type[Any], Callable[[Any], str | None]] = {
    Hello: _hello,
    Samples: _samples,
    Sync: _sync,
    Button: _button,
    Status: _status,
    Error: _error,
    Drop: _drop,
    Ack: _ack,
}


def field_problem(frame: Frame) -> str | None:
    """Why ``frame`` cannot be what a ratedial dial sends (one line), or None if it can."""
    return _CHECKS[type(frame)](frame)
