"""The collector's records: what it asks the daemons for, and what it knows of each dial,
epoch and run (plain data with small pure methods; :mod:`ratedial.mqtt.collector` drives them).

Invariants:

* An epoch ``(dial, boot)`` has at most one outstanding :class:`ReplayRequest`, a daemon's
  run at most one outstanding :class:`EventRequest`; ``attempts`` and ``not_before`` carry
  the back-off between them.
* A horizon (the daemon's ``next_index`` or ``next_event``, or the end of a received batch)
  counts only once it has been known for ``settle_s`` (a final one, from the status a daemon
  leaves when it stops, at once); the settled horizon never moves back. Holes lie below it,
  never on received samples or known gaps (received or absent events). An epoch known only
  from a status has holes from index 0: a collector that started late asks for the whole boot.
* An epoch's row in the recording is made with its first sample or gap (``epoch_id`` is
  ``None`` until then), so its ``hello`` has the rate of the samples, not a status's guess;
  a row made without a sample (a gap, an uncollected hole) takes the status's measured rate
  (``period_us`` null) until a batch tells the period (:meth:`Store.epoch_hello`).
* After a reboot, the old boot's :meth:`EpochState.tail` (:data:`TAIL_SPAN` indices past
  what is known) is asked for too, until the daemon's answer says where that boot ended.
* :class:`Store` is the only way rows leave the collector (a
  :class:`~ratedial.mqtt.collect_store.RecorderStore`, or a list in tests).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from .collect_ranges import Range, RangeSet, subtract

TAIL_SPAN = 1_000_000  # asked for past the known end of a boot the dial has left
EVENT_TAIL = 10_000  # event ids asked for past what is known of a run that ended unseen
UNCOLLECTED = "uncollected"  # gap reason for holes left when a collection ends


class Store(Protocol):
    """Where collected rows go (a :class:`~ratedial.mqtt.collect_store.RecorderStore`, or a
    list in tests)."""

    def add_dial(self, uid: str, rater: str | None, board: str, firmware: str,
                 backend: str) -> int: ...

    def dial_info(self, dial_id: int, rater: str | None, board: str, firmware: str,
                  backend: str) -> None:
        """The dial row's fields as now known (learnt after the row was written)."""

    def add_epoch(self, dial_id: int, boot: int, first_host_ns: int,
                  hello: dict[str, Any]) -> int: ...

    def epoch_hello(self, epoch_id: int, hello: dict[str, Any]) -> None:
        """The epoch row's ``hello`` as now known (its nominal rate told after the row)."""

    def add_media(self, daemon: str) -> int: ...

    def samples(self, rows: list[tuple[Any, ...]]) -> None: ...

    def gap(self, epoch_id: int, dial_id: int, first: int, end: int, reason: str) -> None: ...

    def gap_reason(self, epoch_id: int, first: int, end: int, reason: str) -> None:
        """Give the gap row ``[first, end)`` of the epoch another reason."""

    def uncollected(self, rows: list[tuple[int, int, int, int]]) -> None:
        """The holes still open as the collection ends, ``(epoch_id, dial_id, first, end)``:
        they replace the file's ``uncollected`` gap rows (an earlier run's)."""

    def event(self, host_ns: int, dial_id: int | None, kind: str,
              data: dict[str, Any]) -> None: ...

    def meta(self, key: str, value: Any) -> None: ...


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    daemon: str
    dial: str
    boot: int
    ranges: tuple[Range, ...]

    def topic(self, prefix: str) -> str:
        return f"{prefix}/v1/daemons/{self.daemon}/replay"

    def payload(self) -> bytes:
        return json.dumps({"v": 1, "dial": self.dial, "boot": self.boot,
                           "ranges": [list(r) for r in self.ranges]},
                          separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class EventRequest:
    """Ask a daemon for the events of one of its runs by id (docs/mqtt.md)."""

    daemon: str
    run: str
    ids: tuple[Range, ...]

    def topic(self, prefix: str) -> str:
        return f"{prefix}/v1/daemons/{self.daemon}/replay"

    def payload(self) -> bytes:
        return json.dumps({"v": 1, "run": self.run, "events": [list(r) for r in self.ids]},
                          separators=(",", ":")).encode()


@dataclass(slots=True)
class RunState:
    """The events of one run of one daemon: ids count from 1; the daemon's status says how far.

    Ids below the ``next_event`` the status showed ``settle_s`` ago that have not arrived
    (and were not declared absent) are asked for."""

    daemon: str
    run: str
    received: RangeSet = field(default_factory=RangeSet)
    absent: RangeSet = field(default_factory=RangeSet)
    marks: list[tuple[float, int]] = field(default_factory=list)  # (when, next_event)
    horizon: int = 1
    outstanding: EventRequest | None = None
    sent_at: float = 0.0
    attempts: int = 0
    not_before: float = 0.0
    final: bool = False  # its daemon's ``offline`` status gave its last next_event
    ended: bool = False  # a later run of its daemon was seen: it has ended
    tail_done: bool = False  # the daemon's answer showed where its events end
    probe: Range | None = None  # the tail the outstanding request asks for

    def mark(self, next_event: int, now: float) -> None:
        if next_event > (self.marks[-1][1] if self.marks else self.horizon):
            self.marks.append((now, next_event))

    def tail(self) -> Range | None:
        """A run that ended with no final status (killed, or its ``offline`` status never
        came) may hold events past every status it published (recorded while the broker was
        away, published by its daemon's next run while this collector was not listening): the
        ids past what is known (settled: not ids a recent status announced, which may still
        be on their way) are asked for until an answer says where they end."""
        if not self.ended or self.final or self.tail_done:
            return None
        top = max([self.horizon, *(b for _, b in self.received.ranges),
                   *(b for _, b in self.absent.ranges)])
        return (top, top + EVENT_TAIL)

    def tail_answered(self, tail: Range, absent: list[Range]) -> None:
        """The daemon's answer to a :meth:`tail` request: the ids it lacks from some id to
        the tail's end are past the run's end (not absent ids of it: a run that proves live
        later announces them); the ids below that end are the run's, so those not received
        are holes, asked for and counted missing until they come."""
        end = next((a for a, b in absent if b == tail[1]), tail[1])
        self.tail_done = end < tail[1]
        self.horizon = max(self.horizon, end)
        for a, b in absent:
            if b <= end:  # inside the run: ids its daemon has no record of
                self.absent.add(a, b)

    def holes(self, now: float, settle_s: float) -> list[Range]:
        while self.marks and self.marks[0][0] <= now - settle_s:
            self.horizon = max(self.horizon, self.marks.pop(0)[1])
        return subtract([(1, self.horizon)], self.received, self.absent)


@dataclass(slots=True)
class EpochState:
    dial: str
    boot: int
    epoch_id: int | None  # None: no sample or gap of it written yet (no row)
    dial_id: int
    daemon: str | None = None
    hello: dict[str, Any] | None = None  # the row's hello (None: no row yet)
    received: RangeSet = field(default_factory=RangeSet)
    gaps: RangeSet = field(default_factory=RangeSet)
    absent_rows: list[Range] = field(default_factory=list)  # gap rows written as ``absent``
    floor: int | None = None  # the daemon's lowest index of this boot; None: not yet known
    head_from: int = 0  # while floor is None, [head_from, first seen) is asked for
    superseded_at: float | None = None  # when a newer boot of this dial was seen
    ended: bool = False  # the daemon's end of this (superseded) boot is known
    marks: list[tuple[int, float]] = field(default_factory=list)  # (horizon, when learned)
    settled: int = 0  # horizon known for at least settle_s
    outstanding: ReplayRequest | None = None
    sent_at: float = 0.0
    attempts: int = 0
    not_before: float = 0.0

    def mark(self, horizon: int, now: float, *, final: bool = False) -> None:
        """A horizon learnt at ``now``; ``final``: nothing below it is still on the way (the
        daemon has stopped), so it counts at once."""
        if final:
            self.settled = max(self.settled, horizon)
        elif horizon > max(self.settled, self.marks[-1][0] if self.marks else 0):
            self.marks.append((horizon, now))

    def settle(self, now: float, settle_s: float) -> None:
        while self.marks and self.marks[0][1] <= now - settle_s:
            self.settled = max(self.settled, self.marks.pop(0)[0])

    def known_end(self) -> int:
        return max(self.settled, self.received.end or 0, self.gaps.end or 0)

    def first_seen(self) -> int | None:
        """The lowest index received or known as a gap."""
        seen = [x for x in (self.received.first, self.gaps.first) if x is not None]
        return min(seen) if seen else None

    def head(self) -> int:
        """Where holes start: the daemon's first index, or the head still to be asked for."""
        start = self.head_from if self.floor is None else self.floor
        seen = self.first_seen()
        return start if seen is None else min(start, seen)

    def tail(self) -> Range:
        """After a reboot: everything the daemon may hold past what is known of this boot."""
        end = self.known_end()
        return (end, end + TAIL_SPAN)

    def holes(self, now: float | None = None, settle_s: float = 0.0) -> list[Range]:
        lo = self.head()
        out = subtract([(lo, self.settled)] if lo < self.settled else [],
                       self.received, self.gaps)
        if (now is not None and self.superseded_at is not None and not self.ended
                and now - self.superseded_at >= settle_s):
            out.append(self.tail())
        return out


@dataclass(slots=True)
class DialInfo:
    dial_id: int
    rater: str | None = None
    board: str = ""
    firmware: str = ""
    backend: str = ""
    daemon: str | None = None
    rate_hz: float | None = None
    rater_live: bool = False  # the rater was told by a live samples message (not retained)

    def fill(self, *, rater: str | None = None, board: str = "", firmware: str = "",
             backend: str = "") -> bool:
        """Fill the fields still unknown; True if one was (the first value stays, as in a
        daemon's recording)."""
        before = self.row()
        self.rater = self.rater or rater or None
        self.board = self.board or board
        self.firmware = self.firmware or firmware
        self.backend = self.backend or backend
        return self.row() != before

    def row(self) -> tuple[str | None, str, str, str]:
        return (self.rater, self.board, self.firmware, self.backend)


@dataclass(slots=True)
class Stats:
    samples: int = 0  # written
    backfilled: int = 0  # of which arrived as backfill (replayed from a daemon's recording)
    duplicates: int = 0  # arrived again and were dropped
    conflicts: int = 0  # arrived inside a known gap: not written
    rejected: int = 0  # messages that are not valid payloads
    events: int = 0
    gaps: int = 0
    gap_samples: int = 0
    absent: int = 0  # samples declared absent by a daemon
    requests: int = 0
    requested_samples: int = 0
    requested_events: int = 0
    event_probes: int = 0  # requests for the events past a run's known end (not counted above)
    answers: int = 0
    timeouts: int = 0


@dataclass(slots=True)
class ResumeState:
    """What an existing collected recording already holds."""

    dial_ids: dict[str, int] = field(default_factory=dict)
    dial_rows: dict[str, tuple[str | None, str, str, str]] = field(default_factory=dict)
    dial_events: dict[str, dict[str, str]] = field(default_factory=dict)  # from dial_connected
    epochs: dict[tuple[str, int], tuple[int, str | None]] = field(default_factory=dict)
    hellos: dict[int, dict[str, Any]] = field(default_factory=dict)  # by epoch_id
    received: dict[int, list[Range]] = field(default_factory=dict)
    gaps: dict[int, list[Range]] = field(default_factory=dict)
    uncollected: dict[int, list[Range]] = field(default_factory=dict)  # holes again
    media: dict[str, int] = field(default_factory=dict)
    events: set[tuple[str, str, int]] = field(default_factory=set)
    daemons: set[str] = field(default_factory=set)
    brokers: list[str] = field(default_factory=list)
    next_ids: dict[str, int] = field(default_factory=dict)
    wall_offset_ns: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)
