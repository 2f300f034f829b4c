"""Host-to-device commands: printable ASCII lines (docs/protocol.md, "Host → device").

Never produces 0x03 or any byte outside 0x20-0x7E besides the final newline, so Ctrl-C
and ``mpremote`` keep working on the dial.
"""

from __future__ import annotations

from dataclasses import dataclass

RATE_MIN_HZ = 50
RATE_MAX_HZ = 2000
BATCH_MIN = 1
BATCH_MAX = 100
TOKEN_MAX = 0xFFFFFFFF
MAX_LINE = 40


@dataclass(frozen=True, slots=True)
class Ping:
    token: int


@dataclass(frozen=True, slots=True)
class Info:
    pass


@dataclass(frozen=True, slots=True)
class Rate:
    hz: int


@dataclass(frozen=True, slots=True)
class Batch:
    n: int


@dataclass(frozen=True, slots=True)
class Zero:
    pass


Command = Ping | Info | Rate | Batch | Zero


def encode_command(cmd: Command) -> bytes:
    """The line to send for ``cmd``; raises ValueError for an out-of-range argument."""
    match cmd:
        case Ping(token):
            if not 0 <= token <= TOKEN_MAX:
                raise ValueError(f"PING token {token} outside 0-{TOKEN_MAX}")
            line = f"PING {token}"
        case Info():
            line = "INFO"
        case Rate(hz):
            if not RATE_MIN_HZ <= hz <= RATE_MAX_HZ:
                raise ValueError(f"rate {hz} Hz outside {RATE_MIN_HZ}-{RATE_MAX_HZ}")
            line = f"RATE {hz}"
        case Batch(n):
            if not BATCH_MIN <= n <= BATCH_MAX:
                raise ValueError(f"batch {n} outside {BATCH_MIN}-{BATCH_MAX}")
            line = f"BATCH {n}"
        case Zero():
            line = "ZERO"
    return line.encode("ascii") + b"\n"


def period_us(rate_hz: int) -> int:
    """Nominal sample period the device uses for ``rate_hz``."""
    return round(1_000_000 / rate_hz)
