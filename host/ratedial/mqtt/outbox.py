"""What the broker is known to have (pure): the bookkeeping behind store-and-forward.

Live samples go out at ``[mqtt] live_qos`` (1 by default, or 0). Every second a QoS 1
checkpoint follows them on the same connection; MQTT keeps one connection's packets in order,
so its PUBACK proves the broker received every live batch sent before it (at either QoS).
"Received" is all a PUBACK says: what a broker loses afterwards (a crash before its next
snapshot) only a subscriber can notice, and a replay request recovers it. Whatever was not
proven when the connection drops, and whatever was produced while it was down, is *backlog*:
it is republished from the recording at QoS 1 and leaves the backlog only on its PUBACK.

A broker can also *refuse* a QoS 1 message (MQTT 5: a PUBACK with a failure reason code, e.g.
a topic its ACL denies): what it refused is kept apart, not republished on this connection or
the next (it would be refused again), and stays unconfirmed in the recording, so that the next
run of the daemon publishes it.

Invariant: every sample range handed to :meth:`Outbox.live_sent` or :meth:`Outbox.missed`
is, at any time, either confirmed, refused or in the backlog (or in flight on the current
connection, in which case it joins the backlog if the connection drops).
:meth:`Outbox.snapshot` is what the recording stores so that a restarted daemon can finish
the job (see ``archive.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Key = tuple[str, int]  # (dial uid, boot id)


def _add(ranges: list[tuple[int, int]], a: int, b: int) -> None:
    """Insert [a, b) into a sorted list of disjoint ranges, merging neighbours."""
    if a >= b:
        return
    out: list[tuple[int, int]] = []
    placed = False
    for lo, hi in ranges:
        if hi < a:
            out.append((lo, hi))
        elif b < lo:
            if not placed:
                out.append((a, b))
                placed = True
            out.append((lo, hi))
        else:
            a, b = min(a, lo), max(b, hi)
    if not placed:
        out.append((a, b))
    ranges[:] = sorted(out)


def _remove(ranges: list[tuple[int, int]], a: int, b: int) -> None:
    out: list[tuple[int, int]] = []
    for lo, hi in ranges:
        if hi <= a or b <= lo:
            out.append((lo, hi))
            continue
        if lo < a:
            out.append((lo, a))
        if b < hi:
            out.append((b, hi))
    ranges[:] = out


@dataclass(slots=True)
class Outbox:
    generation: int = 0
    _live: list[tuple[int, Key, int, int]] = field(default_factory=list)
    backlog: dict[Key, list[tuple[int, int]]] = field(default_factory=dict)
    _live_events: list[tuple[int, int]] = field(default_factory=list)  # (generation, event id)
    event_backlog: set[int] = field(default_factory=set)
    sent_below: dict[Key, int] = field(default_factory=dict)  # end of what was handed to us
    events_handed_max: int = 0
    refused: dict[Key, list[tuple[int, int]]] = field(default_factory=dict)
    refused_events: set[int] = field(default_factory=set)
    # the first index this run handed to us per epoch (live or missed): what restore() brought
    # from an earlier recording of the same epoch lies below it (that run came first). The
    # summary and this recording's mqtt_progress count only what is at or above it.
    own_from: dict[Key, int] = field(default_factory=dict)

    def _handed(self, key: Key, first: int, end: int) -> None:
        self.sent_below[key] = max(self.sent_below.get(key, end), end)
        if first < self.own_from.get(key, first + 1):
            self.own_from[key] = first

    def live_sent(self, key: Key, first: int, end: int) -> None:
        self._live.append((self.generation, key, first, end))
        self._handed(key, first, end)

    def event_sent(self, event_id: int) -> None:
        """An event went out at QoS 1 but its PUBACK has not come yet."""
        self._live_events.append((self.generation, event_id))
        self.events_handed_max = max(self.events_handed_max, event_id)

    def event_acked(self, event_id: int) -> None:
        self._live_events = [(g, e) for g, e in self._live_events if e != event_id]
        self.event_backlog.discard(event_id)

    def missed(self, key: Key, first: int, end: int) -> None:
        _add(self.backlog.setdefault(key, []), first, end)
        self._handed(key, first, end)

    def live_refused(self, key: Key, first: int, end: int) -> None:
        """The broker refused this live batch: it is no longer in flight, and a checkpoint
        after it does not confirm it."""
        self._live = [x for x in self._live if not (x[1] == key and x[2] == first and
                                                     x[3] == end)]
        _add(self.refused.setdefault(key, []), first, end)

    def backfill_refused(self, key: Key, first: int, end: int) -> None:
        """The broker refused these republished samples: out of the backlog (what of them
        was in it), kept as refused."""
        ranges = self.backlog.get(key, [])
        for a, b in list(ranges):
            lo, hi = max(a, first), min(b, end)
            if lo < hi:
                _add(self.refused.setdefault(key, []), lo, hi)
        self.backfill_acked(key, first, end)

    def event_refused(self, event_id: int) -> None:
        self._live_events = [(g, e) for g, e in self._live_events if e != event_id]
        self.event_backlog.discard(event_id)
        self.refused_events.add(event_id)

    @property
    def refused_samples(self) -> int:
        return sum(b - a for ranges in self.refused.values() for a, b in ranges)

    def restore(self, key: Key, first: int, end: int) -> None:
        """Backlog left by an earlier run (its recording said so); not ours to account for."""
        _add(self.backlog.setdefault(key, []), first, end)

    def event_missed(self, event_id: int) -> None:
        self.event_backlog.add(event_id)
        self.events_handed_max = max(self.events_handed_max, event_id)

    def overlaps(self, key: Key, first: int, end: int) -> bool:
        """Is any index of ``[first, end)`` still unconfirmed (backlog or in flight)?"""
        if any(a < end and first < b for a, b in self.backlog.get(key, [])):
            return True
        if any(a < end and first < b for a, b in self.refused.get(key, [])):
            return True
        return any(k == key and a < end and first < b for _, k, a, b in self._live)

    @property
    def unconfirmed(self) -> bool:
        return bool(self.backlog or self._live or self._live_events or self.event_backlog
                    or self.refused or self.refused_events)

    def _pending(self) -> dict[Key, list[tuple[int, int]]]:
        """Every unconfirmed range: backlog, refused and in flight."""
        pending: dict[Key, list[tuple[int, int]]] = {}
        for held in (self.backlog, self.refused):
            for key, ranges in held.items():
                for a, b in ranges:
                    _add(pending.setdefault(key, []), a, b)
        for _, key, a, b in self._live:
            _add(pending.setdefault(key, []), a, b)
        return pending

    def _own_pending(self) -> dict[Key, list[tuple[int, int]]]:
        """The unconfirmed ranges this run handed to us (not an earlier recording's)."""
        out: dict[Key, list[tuple[int, int]]] = {}
        for key, ranges in self._pending().items():
            lo = self.own_from.get(key)
            if lo is None:
                continue  # an earlier recording's epoch this run never saw
            mine = [(max(a, lo), b) for a, b in ranges if b > lo]
            if mine:
                out[key] = mine
        return out

    def own_unconfirmed(self) -> bool:
        """Whether anything this run handed to us is unconfirmed (an earlier recording's
        backlog aside: that recording's own row says whether the broker has all of it)."""
        return bool(self._own_pending() or self.event_backlog or self.refused_events
                    or self._live_events)

    def unconfirmed_samples(self) -> tuple[int, int]:
        """Unconfirmed samples: (this run's, earlier recordings' still to be republished)."""
        total = sum(b - a for rs in self._pending().values() for a, b in rs)
        mine = sum(b - a for rs in self._own_pending().values() for a, b in rs)
        return mine, total - mine

    def snapshot(self, *, complete: bool = False) -> dict[str, Any]:
        """What of this run is not yet confirmed, as JSON for the recording's
        ``mqtt_progress`` row. An earlier recording's backlog (:meth:`restore`) is not in
        it: that recording's own row keeps it until the broker has all of it."""
        pending = self._own_pending()
        keys = sorted(set(pending) | set(self.sent_below))
        return {
            "complete": complete,
            "epochs": [{"dial": k[0], "boot": k[1], "sent_below": self.sent_below.get(k, 0),
                        "pending": [list(r) for r in pending.get(k, [])]} for k in keys],
            "events_pending": sorted(self.event_backlog | self.refused_events
                                     | {e for _, e in self._live_events}),
            "events_handed_max": self.events_handed_max,
        }

    def checkpoint(self) -> int:
        """Call when a QoS 1 checkpoint is published; returns its generation."""
        gen = self.generation
        self.generation += 1
        return gen

    def checkpoint_acked(self, gen: int) -> None:
        self._live = [x for x in self._live if x[0] > gen]

    def disconnected(self) -> None:
        for _, key, a, b in self._live:
            self.missed(key, a, b)
        self._live.clear()
        for _, e in self._live_events:
            self.event_backlog.add(e)
        self._live_events.clear()

    def backfill_acked(self, key: Key, first: int, end: int) -> None:
        ranges = self.backlog.get(key)
        if ranges is not None:
            _remove(ranges, first, end)
            if not ranges:
                del self.backlog[key]

    def pending(self) -> list[tuple[Key, int, int]]:
        return [(key, a, b) for key, ranges in sorted(self.backlog.items()) for a, b in ranges]

    @property
    def backlog_samples(self) -> int:
        return sum(b - a for ranges in self.backlog.values() for a, b in ranges)
