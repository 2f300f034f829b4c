"""What a dial's core puts out and every sink takes in: the out-records (pure data).

:class:`~ratedial.daemon.core.DialCore` turns frames into these records; the shells (the
recorder, MQTT, LSL, the live view) only move them, each a :class:`Sink`. Records and
protocol sit below both, so a sink never imports the daemon.

Invariants:

* Frozen: a record handed to the sinks is the same for all of them.
* Every record about a dial names it (``uid``); every record about its samples names their
  ``boot_id``: indices of different boots are never mixed.
* Gaps are records of their own (:class:`GapOut`), never values in a :class:`SamplesOut`.
* :meth:`Sink.handle` must not block: the daemon calls every sink from its read path.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol

from .integrity import Gap
from .wire import Hello


@dataclass(frozen=True, slots=True)
class EpochOut:
    uid: str
    boot_id: int
    hello: Hello
    host_ns: int
    previous_boot_id: int | None


@dataclass(frozen=True, slots=True)
class SamplesOut:
    uid: str
    boot_id: int
    first_index: int
    period_us: int
    device_us: tuple[int, ...]
    host_ns: tuple[int | None, ...]
    counts: tuple[int, ...]
    ratings: tuple[float, ...]
    flags: tuple[int, ...]
    # Filled in by the daemon from the media clock (empty: no player).
    media_ids: tuple[int | None, ...] = ()
    media_s: tuple[float | None, ...] = ()
    media_states: tuple[int, ...] = ()

    def __len__(self) -> int:
        return len(self.counts)


@dataclass(frozen=True, slots=True)
class GapOut:
    uid: str
    boot_id: int
    gap: Gap
    first_host_ns: int | None
    end_host_ns: int | None


@dataclass(frozen=True, slots=True)
class EventOut:
    uid: str  # "" for events not about one dial
    host_ns: int
    kind: str
    data: dict[str, Any]
    event_id: int = 0  # assigned by the daemon before the sinks see it


# Event data that names files (a video's path, the recording's name, a serial port's path):
# kept in the recording, never sent off this computer (MQTT, LSL: a video's name may be a
# client's name).
LOCAL_ONLY = frozenset({"path", "recording", "port", "file"})


def public_data(data: dict[str, Any]) -> dict[str, Any]:
    """An event's ``data`` without the :data:`LOCAL_ONLY` keys, for publishing."""
    if LOCAL_ONLY.intersection(data):
        return {k: v for k, v in data.items() if k not in LOCAL_ONLY}
    return data


@dataclass(frozen=True, slots=True)
class SyncOut:
    uid: str
    boot_id: int
    token: int
    host_send_ns: int
    device_rx_us: int
    device_tx_us: int
    host_recv_ns: int


@dataclass(frozen=True, slots=True)
class ArrivalOut:
    uid: str
    boot_id: int
    last_index: int
    device_us: int
    host_recv_ns: int


@dataclass(frozen=True, slots=True)
class ClockOut:
    uid: str
    boot_id: int
    host_ns: int
    estimate: Any


Out = EpochOut | SamplesOut | GapOut | EventOut | SyncOut | ArrivalOut | ClockOut


class Sink(Protocol):
    def handle(self, outs: list[Out]) -> None: ...


def hello_dict(h: Hello) -> dict[str, Any]:
    """An :class:`EpochOut`'s HELLO as plain data (the uid in hex), as the sinks record it."""
    d = asdict(h)
    d["uid"] = h.uid.hex()
    return d
