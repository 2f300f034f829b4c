"""Frames of the ratedial wire protocol v1, as frozen dataclasses.

One class per frame type of ``docs/protocol.md``. Every frame carries the header's ``seq``.
Values are exactly what the device sent; nothing here is derived from host time.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

PROTOCOL_VERSION = 1
MAX_BODY = 1024  # bytes of header + payload + CRC; longer bodies are garbage


class FrameType(IntEnum):
    HELLO = 1
    SAMPLES = 2
    SYNC = 3
    BUTTON = 4
    STATUS = 5
    ERROR = 6
    DROP = 7
    ACK = 8


class ErrorCode(IntEnum):
    UNKNOWN_COMMAND = 1
    BAD_ARGUMENT = 2
    BAD_LINE = 3
    INTERNAL = 4


class AckCommand(IntEnum):
    RATE = 1
    BATCH = 2
    ZERO = 3


# Bits of each sample's flags byte.
FLAG_BUTTON = 0x01
FLAG_OVERRUN = 0x02
FLAG_ILLEGAL = 0x04


@dataclass(frozen=True, slots=True)
class Hello:
    seq: int
    boot_id: int
    time_us: int
    period_us: int
    rate_hz: int
    batch: int
    tick_bits: int
    flags: int
    debounce_ms: int
    uid: bytes
    board: str
    firmware: str
    backend: str

    @property
    def uid_hex(self) -> str:
        return self.uid.hex()

    @property
    def has_button(self) -> bool:
        return bool(self.flags & 1)


@dataclass(frozen=True, slots=True)
class Samples:
    """A run of consecutive samples: ``counts[k]``, ``times_us[k]`` and ``flags[k]`` belong
    to sample index ``first_index + k``."""

    seq: int
    first_index: int
    period_us: int
    counts: tuple[int, ...]
    times_us: tuple[int, ...]
    flags: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.counts)

    @property
    def indices(self) -> range:
        return range(self.first_index, self.first_index + len(self.counts))

    @property
    def end_index(self) -> int:
        """One past the last sample index in this frame."""
        return self.first_index + len(self.counts)


@dataclass(frozen=True, slots=True)
class Sync:
    seq: int
    token: int
    t_rx_us: int
    t_tx_us: int


@dataclass(frozen=True, slots=True)
class Button:
    seq: int
    pressed: int  # 1 pressed, 0 released (any other value is impossible: wire.checks)
    index: int
    t_us: int
    t_edge_us: int


@dataclass(frozen=True, slots=True)
class Status:
    seq: int
    time_us: int
    samples_taken: int
    frames_dropped: int
    samples_dropped: int
    overruns: int
    jitter_max_us: int
    mem_free: int
    queue_depth: int
    queue_capacity: int


@dataclass(frozen=True, slots=True)
class Error:
    seq: int
    code: int
    text: str


@dataclass(frozen=True, slots=True)
class Drop:
    seq: int
    first_index: int
    n_samples: int
    n_frames: int

    @property
    def end_index(self) -> int:
        return self.first_index + self.n_samples


@dataclass(frozen=True, slots=True)
class Ack:
    seq: int
    command: int
    index: int
    value: int


@dataclass(frozen=True, slots=True)
class Rejected:
    """Not a frame: where the decoder rejected a chunk (``reason``: ``cobs``, ``too_short``,
    ``too_long``, ``crc``, ``version`` with the ``version`` byte, or ``malformed``)."""

    reason: str
    version: int | None = None


Frame = Hello | Samples | Sync | Button | Status | Error | Drop | Ack

FRAME_TYPES: dict[type[Frame], FrameType] = {
    Hello: FrameType.HELLO,
    Samples: FrameType.SAMPLES,
    Sync: FrameType.SYNC,
    Button: FrameType.BUTTON,
    Status: FrameType.STATUS,
    Error: FrameType.ERROR,
    Drop: FrameType.DROP,
    Ack: FrameType.ACK,
}
