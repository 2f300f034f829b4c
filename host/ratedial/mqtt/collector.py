"""``ratedial record --mqtt``: one recording of a whole session, collected from the broker.

The pure part (:class:`Collector`) turns MQTT messages into recording rows and decides which
missing samples to ask the daemons for; the asyncio/aiomqtt shell (:func:`collect`) only
moves bytes between the broker, the collector and the :class:`Recorder`.

Invariants:

* Exactly once: a sample is written once per ``(dial, boot, index)``, whether it arrives
  live, again as backfill, or as the answer to a replay request; events once per
  ``(daemon, run, id)``.
* A missing sample is never a row in ``samples``; it lies in at most one gap. A gap comes
  either from a daemon's ``gap`` event (its reason kept) or from a replay answer that lists
  the index as ``absent`` (reason ``absent``; a daemon's ``gap`` event that comes later gives
  the rows it covers its reason). Samples that arrive inside a known gap are
  counted as ``conflicts`` and not written.
* A *hole* of an epoch ``(dial, boot)`` is an index between the first index seen and the
  settled horizon (what the daemon's retained status ``next_index`` or the received batches
  said at least ``settle_s`` ago) that is neither received nor a known gap. Holes are asked
  for with at most one outstanding request per epoch, at most 100 ranges per request, with
  back-off when a request brings nothing new.
* Times: ``host_ns`` in the collected file is the daemons' ``wall_ns`` minus one fixed
  offset (the collector's first wall anchor), so samples of all daemons share one time base.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import random
import socket
import sqlite3
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeGuard

from .._platform.loops import selector_loop
from .._platform.signals import stop_on_signals
from ..config import MqttConfig
from ..errors import RatedialError, UsageError
from ..recording.schema import FORMAT, FORMAT_VERSION, MediaState
from ..recording.writer import Recorder, RecordingError, try_lock
from .acks import AckRouter, PublishRefused, subscribe

log = logging.getLogger("ratedial.collector")

Range = tuple[int, int]  # [first, end)
MAX_RANGES = 100  # per replay request (the daemon's limit)
MAX_SAMPLES = 3_600_000  # per replay request (the daemon's limit: one hour at 1 kHz)
TAIL_SPAN = 1_000_000  # asked for past the known end of a boot the dial has left
ABSENT = "absent"  # gap reason for indices no daemon recording holds
REQUEST_TIMEOUT_S = 10.0  # a replay request's PUBACK slower than this: the connection is gone


# --- ranges -------------------------------------------------------------------------------


class RangeSet:
    """Sorted, disjoint, merged half-open integer ranges."""

    __slots__ = ("_r",)

    def __init__(self, ranges: Iterable[Range] = ()) -> None:
        self._r: list[Range] = []
        for a, b in ranges:
            self.add(a, b)

    @property
    def ranges(self) -> list[Range]:
        return list(self._r)

    def __bool__(self) -> bool:
        return bool(self._r)

    def __contains__(self, i: object) -> bool:
        return isinstance(i, int) and any(a <= i < b for a, b in self._r)

    def total(self) -> int:
        return sum(b - a for a, b in self._r)

    def add(self, a: int, b: int) -> None:
        if a >= b:
            return
        out: list[Range] = []
        for lo, hi in self._r:
            if hi < a or b < lo:
                out.append((lo, hi))
            else:
                a, b = min(a, lo), max(b, hi)
        out.append((a, b))
        out.sort()
        self._r = out

    def missing(self, a: int, b: int) -> list[Range]:
        """The parts of ``[a, b)`` not in the set."""
        out: list[Range] = []
        pos = a
        for lo, hi in self._r:
            if hi <= pos:
                continue
            if lo >= b:
                break
            if lo > pos:
                out.append((pos, lo))
            pos = max(pos, hi)
            if pos >= b:
                break
        if pos < b:
            out.append((pos, b))
        return out

    @property
    def first(self) -> int | None:
        return self._r[0][0] if self._r else None

    @property
    def end(self) -> int | None:
        return self._r[-1][1] if self._r else None


def subtract(ranges: Iterable[Range], *sets: RangeSet) -> list[Range]:
    out = list(ranges)
    for s in sets:
        out = [p for a, b in out for p in s.missing(a, b)]
    return out


# --- what the collector writes ------------------------------------------------------------


class Store(Protocol):
    """Where collected rows go (a :class:`RecorderStore`, or a list in tests)."""

    def add_dial(self, uid: str, rater: str | None, board: str, firmware: str) -> int: ...

    def add_epoch(self, dial_id: int, boot: int, first_host_ns: int,
                  hello: dict[str, Any]) -> int: ...

    def add_media(self, daemon: str) -> int: ...

    def samples(self, rows: list[tuple[Any, ...]]) -> None: ...

    def gap(self, epoch_id: int, dial_id: int, first: int, end: int, reason: str) -> None: ...

    def gap_reason(self, epoch_id: int, first: int, end: int, reason: str) -> None:
        """Give the gap row ``[first, end)`` of the epoch another reason."""

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

    def mark(self, next_event: int, now: float) -> None:
        if next_event > (self.marks[-1][1] if self.marks else self.horizon):
            self.marks.append((now, next_event))

    def holes(self, now: float, settle_s: float) -> list[Range]:
        while self.marks and self.marks[0][0] <= now - settle_s:
            self.horizon = max(self.horizon, self.marks.pop(0)[1])
        return subtract([(1, self.horizon)], self.received, self.absent)


@dataclass(slots=True)
class EpochState:
    dial: str
    boot: int
    epoch_id: int
    dial_id: int
    daemon: str | None = None
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

    def mark(self, horizon: int, now: float) -> None:
        if horizon > max(self.settled, self.marks[-1][0] if self.marks else 0):
            self.marks.append((horizon, now))

    def settle(self, now: float, settle_s: float) -> None:
        while self.marks and self.marks[0][1] <= now - settle_s:
            self.settled = max(self.settled, self.marks.pop(0)[0])

    def known_end(self) -> int:
        return max(self.settled, self.received.end or 0, self.gaps.end or 0)

    def head(self) -> int | None:
        """Where holes start: the daemon's first index, or the head still to be asked for."""
        seen = [x for x in (self.received.first, self.gaps.first) if x is not None]
        if not seen:
            return None
        return min(self.head_from if self.floor is None else self.floor, *seen)

    def tail(self) -> Range:
        """After a reboot: everything the daemon may hold past what is known of this boot."""
        end = self.known_end()
        return (end, end + TAIL_SPAN)

    def holes(self, now: float | None = None, settle_s: float = 0.0) -> list[Range]:
        lo = self.head()
        if lo is None:
            return []
        out = subtract([(lo, self.settled)], self.received, self.gaps)
        if (now is not None and self.superseded_at is not None and not self.ended
                and now - self.superseded_at >= settle_s):
            out.append(self.tail())
        return out


@dataclass(slots=True)
class DialInfo:
    dial_id: int
    rater: str | None = None
    daemon: str | None = None
    rate_hz: float | None = None


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
    answers: int = 0
    timeouts: int = 0


def _int(x: Any) -> TypeGuard[int]:
    return isinstance(x, int) and not isinstance(x, bool)


def _ranges(x: Any) -> list[Range] | None:
    if not isinstance(x, list):
        return None
    out: list[Range] = []
    for r in x:
        if not (isinstance(r, list) and len(r) == 2 and _int(r[0]) and _int(r[1])):
            return None
        out.append((r[0], r[1]))
    return out


_COLUMNS = ("device_us", "host_ns", "wall_ns", "count", "rating", "flags", "media_s",
            "media_state")


class Collector:
    """The bookkeeping of a collected recording. Feed it messages; ask it for requests."""

    def __init__(self, prefix: str, store: Store, *, wall_offset_ns: int,
                 settle_s: float = 2.0, request_timeout_s: float = 10.0,
                 max_backoff_s: float = 30.0, resume: ResumeState | None = None) -> None:
        self.prefix = prefix
        self.store = store
        self.wall_offset_ns = wall_offset_ns
        self.settle_s = settle_s
        self.request_timeout_s = request_timeout_s
        self.max_backoff_s = max_backoff_s
        self.stats = Stats()
        self.dials: dict[str, DialInfo] = {}
        self.epochs: dict[tuple[str, int], EpochState] = {}
        self.media: dict[str, int] = {}
        self.events_seen: set[tuple[str, str, int]] = set()  # (daemon, run, id)
        self.runs: dict[tuple[str, str], RunState] = {}
        self.daemons: dict[str, dict[str, Any]] = {}
        self.current: dict[str, int] = {}  # each dial's current boot
        self._now: float | None = None  # time of the message being fed
        self._prefix_parts = prefix.split("/")
        if resume is not None:
            self.dials = {uid: DialInfo(dial_id=d) for uid, d in resume.dial_ids.items()}
            for (uid, boot), (epoch_id, daemon) in resume.epochs.items():
                ep = EpochState(uid, boot, epoch_id, resume.dial_ids[uid], daemon,
                                RangeSet(resume.received.get(epoch_id, ())),
                                RangeSet(resume.gaps.get(epoch_id, ())))
                ep.settled = ep.known_end()
                self.epochs[(uid, boot)] = ep
            self.media = dict(resume.media)
            self.events_seen = set(resume.events)
            for daemon, run, event_id in self.events_seen:
                if run:
                    self._run(daemon, run).received.add(event_id, event_id + 1)
            self.daemons = {d: {} for d in resume.daemons}

    # --- messages -------------------------------------------------------------------------

    def feed(self, topic: str, payload: bytes, now: float) -> None:
        """Account for one message from the broker (any of the subscribed topics)."""
        self._now = now
        parts = topic.split("/")
        n = len(self._prefix_parts)
        if parts[:n] != self._prefix_parts or len(parts) != n + 4 or parts[n] != "v1":
            return
        kind, ident, leaf = parts[n + 1], parts[n + 2], parts[n + 3]
        try:
            msg = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            self.stats.rejected += 1
            return
        if not isinstance(msg, dict) or msg.get("v") != 1:
            self.stats.rejected += 1
            return
        try:
            if kind == "dials" and leaf in ("samples", "backfill"):
                self._samples(ident, msg, now)
            elif kind == "dials" and leaf == "status":
                self._dial_status(ident, msg, now)
            elif kind in ("dials", "daemons") and leaf == "events":
                self._event(msg)
            elif kind == "daemons" and leaf == "status":
                self._daemon_status(ident, msg)
            elif kind == "daemons" and leaf == "replayed":
                self._replayed(ident, msg, now)
        except (KeyError, TypeError, ValueError, IndexError):
            self.stats.rejected += 1

    def _seen_daemon(self, daemon: Any) -> str | None:
        if not isinstance(daemon, str) or not daemon:
            return None
        if daemon not in self.daemons:
            self.daemons[daemon] = {}
            self.store.meta("collected", self.describe())
        return daemon

    def _dial(self, uid: str, *, rater: str | None = None, board: str = "",
              firmware: str = "") -> DialInfo:
        d = self.dials.get(uid)
        if d is None:
            d = DialInfo(self.store.add_dial(uid, rater, board, firmware), rater)
            self.dials[uid] = d
        return d

    def _epoch(self, uid: str, boot: int, daemon: str | None, host_ns: int | None,
               period_us: int = 0) -> EpochState:
        ep = self.epochs.get((uid, boot))
        if ep is None:
            d = self._dial(uid)
            rate = 1e6 / period_us if period_us > 0 else d.rate_hz
            hello = {"source": "mqtt", "daemon": daemon, "boot_id": boot,
                     "period_us": period_us or None, "rate_hz": rate}
            first = host_ns if host_ns is not None else time.time_ns() - self.wall_offset_ns
            ep = EpochState(uid, boot, self.store.add_epoch(d.dial_id, boot, first, hello),
                            d.dial_id, daemon)
            self.epochs[(uid, boot)] = ep
            if self.current.get(uid, boot) != boot:
                ep.superseded_at = time.monotonic() if self._now is None else self._now
        if daemon is not None:
            ep.daemon = daemon
        return ep

    def _host(self, wall_ns: Any) -> int | None:
        return wall_ns - self.wall_offset_ns if _int(wall_ns) else None

    def _samples(self, uid: str, msg: dict[str, Any], now: float) -> None:
        boot, first, n = msg["boot"], msg["first"], msg["n"]
        if msg.get("dial") != uid or not (_int(boot) and _int(first) and _int(n)) or n < 1:
            raise ValueError("bad samples header")
        cols = {c: msg[c] for c in _COLUMNS}
        if any(not isinstance(v, list) or len(v) != n for v in cols.values()):
            raise ValueError("bad samples columns")
        daemon = self._seen_daemon(msg.get("daemon"))
        d = self._dial(uid, rater=msg.get("rater"))
        if d.rater is None and isinstance(msg.get("rater"), str):
            d.rater = msg["rater"]
        if daemon:
            d.daemon = daemon
        period = msg.get("period_us")
        if not (_int(period) and period > 0) and n > 1:  # backfill: from the device times
            t0, t1 = cols["device_us"][0], cols["device_us"][-1]
            period = round((t1 - t0) / (n - 1)) if _int(t0) and _int(t1) else 0
        ep = self._epoch(uid, boot, daemon, self._host(cols["wall_ns"][0]),
                         period if _int(period) and period > 0 else 0)
        end = first + n
        new = ep.received.missing(first, end)
        fresh = subtract(new, ep.gaps)
        self.stats.duplicates += n - sum(b - a for a, b in new)
        self.stats.conflicts += sum(b - a for a, b in new) - sum(b - a for a, b in fresh)
        ep.mark(end, now)
        if not msg.get("replay"):
            self._current_boot(uid, boot, now)
        if not fresh:
            return
        media_id: int | None = None
        rows: list[tuple[Any, ...]] = []
        for a, b in fresh:
            for i in range(a, b):
                k = i - first
                media_s = cols["media_s"][k]
                state = cols["media_state"][k]
                if media_s is not None and media_id is None and daemon is not None:
                    media_id = self.media.get(daemon)
                    if media_id is None:
                        media_id = self.media[daemon] = self.store.add_media(daemon)
                rows.append((ep.epoch_id, i, ep.dial_id, int(cols["device_us"][k]),
                             self._host(cols["wall_ns"][k]), int(cols["count"][k]),
                             float(cols["rating"][k]), int(cols["flags"][k]),
                             None if media_s is None else media_id,
                             None if media_s is None else float(media_s),
                             int(state) if _int(state) else int(MediaState.UNKNOWN)))
            ep.received.add(a, b)
        self.store.samples(rows)
        self.stats.samples += len(rows)
        if msg.get("replay"):
            self.stats.backfilled += len(rows)

    def _dial_status(self, uid: str, msg: dict[str, Any], now: float) -> None:
        if msg.get("dial") != uid:
            raise ValueError("status of another dial")
        daemon = self._seen_daemon(msg.get("daemon"))
        rater = msg.get("rater") if isinstance(msg.get("rater"), str) else None
        d = self._dial(uid, rater=rater, board=str(msg.get("board") or ""),
                       firmware=str(msg.get("firmware") or ""))
        rate = msg.get("rate_hz")
        if isinstance(rate, int | float) and rate > 0:
            d.rate_hz = float(rate)
        if daemon:
            d.daemon = daemon
        boot, nxt = msg.get("boot"), msg.get("next_index")
        if _int(boot):
            self._current_boot(uid, boot, now)
        if _int(boot) and _int(nxt):
            ep = self.epochs.get((uid, boot))
            if ep is not None:
                if daemon:
                    ep.daemon = daemon
                ep.mark(nxt, now)

    def _current_boot(self, uid: str, boot: int, now: float) -> None:
        """The dial is now in ``boot``: its other boots will not grow any more."""
        if self.current.get(uid) == boot:
            return
        self.current[uid] = boot
        for (u, b), ep in self.epochs.items():
            if u == uid:
                ep.superseded_at = None if b == boot else (ep.superseded_at or now)

    def _event(self, msg: dict[str, Any]) -> None:
        daemon, event_id, kind = msg["daemon"], msg["id"], msg["kind"]
        data = msg["data"]
        if not (isinstance(daemon, str) and _int(event_id) and isinstance(kind, str)
                and isinstance(data, dict)):
            raise ValueError("bad event")
        self._seen_daemon(daemon)
        run = msg.get("run")
        if not isinstance(run, str):
            run = ""
        if (daemon, run, event_id) in self.events_seen:
            return
        self.events_seen.add((daemon, run, event_id))
        if run:
            self._run(daemon, run).received.add(event_id, event_id + 1)
        uid = msg.get("dial")
        host_ns = self._host(msg.get("wall_ns"))
        if host_ns is None:
            host_ns = time.time_ns() - self.wall_offset_ns
        dial_id = self._dial(uid).dial_id if isinstance(uid, str) and uid else None
        self.store.event(host_ns, dial_id, kind, {
            **data, "source": {"daemon": daemon, "run": run, "event_id": event_id}})
        self.stats.events += 1
        if kind == "gap" and isinstance(uid, str) and uid:
            boot, a, b = data.get("boot_id"), data.get("first_index"), data.get("end_index")
            reason = data.get("reason")
            if _int(boot) and _int(a) and _int(b) and isinstance(reason, str):
                ep = self._epoch(uid, boot, daemon, host_ns)
                self._relabel_absent(ep, a, b, reason)
                self._add_gap(ep, [(a, b)], reason)

    def _relabel_absent(self, ep: EpochState, a: int, b: int, reason: str) -> None:
        """The daemon's ``gap`` event came after a replay answer had declared those indices
        absent: the rows written then take the daemon's reason (the collected file does not
        depend on which of the two messages came first)."""
        keep = []
        for x, y in ep.absent_rows:
            if a <= x and y <= b:
                self.store.gap_reason(ep.epoch_id, x, y, reason)
            else:
                keep.append((x, y))
        ep.absent_rows = keep

    def _add_gap(self, ep: EpochState, ranges: list[Range], reason: str) -> int:
        added = 0
        for a, b in subtract(ranges, ep.received, ep.gaps):
            self.store.gap(ep.epoch_id, ep.dial_id, a, b, reason)
            if reason == ABSENT:
                ep.absent_rows.append((a, b))
            ep.gaps.add(a, b)
            self.stats.gaps += 1
            self.stats.gap_samples += b - a
            added += b - a
        return added

    def _run(self, daemon: str, run: str) -> RunState:
        st = self.runs.get((daemon, run))
        if st is None:
            st = self.runs[(daemon, run)] = RunState(daemon, run)
        return st

    def _daemon_status(self, daemon: str, msg: dict[str, Any]) -> None:
        if msg.get("daemon") != daemon:
            raise ValueError("status of another daemon")
        self._seen_daemon(daemon)
        self.daemons[daemon] = {k: msg.get(k) for k in ("state", "software")}
        run, next_event = msg.get("run"), msg.get("next_event")
        if isinstance(run, str) and run and _int(next_event) and self._now is not None:
            self._run(daemon, run).mark(next_event, self._now)

    def _events_replayed(self, daemon: str, msg: dict[str, Any], now: float) -> None:
        run, asked, absent = msg["run"], _ranges(msg.get("events")), _ranges(msg.get("absent"))
        if not isinstance(run, str) or asked is None or absent is None:
            raise ValueError("bad replay answer")
        st = self.runs.get((daemon, run))
        if st is None or st.outstanding is None or list(st.outstanding.ids) != asked:
            return  # an answer to an earlier request: ask again if still missing
        self.stats.answers += 1
        st.outstanding = None
        wanted = RangeSet(asked)
        for a, b in absent:
            for x, y in _within(wanted, a, b):
                st.absent.add(x, y)
        still = subtract(asked, st.received, st.absent)
        progress = sum(b - a for a, b in still) < sum(b - a for a, b in asked)
        st.attempts = 0 if progress else st.attempts + 1
        st.not_before = now + (0.0 if progress else self._backoff(st.attempts))

    def _replayed(self, daemon: str, msg: dict[str, Any], now: float) -> None:
        if "run" in msg:
            self._events_replayed(daemon, msg, now)
            return
        uid, boot = msg["dial"], msg["boot"]
        requested, absent = _ranges(msg.get("ranges")), _ranges(msg.get("absent"))
        if not (isinstance(uid, str) and _int(boot)) or requested is None or absent is None:
            raise ValueError("bad replay answer")
        ep = self.epochs.get((uid, boot))
        if ep is None:
            return
        self.stats.answers += 1
        out = ep.outstanding
        if out is None or out.daemon != daemon or list(out.ranges) != requested:
            return  # an answer to an earlier request (maybe of an earlier run): ask again
        ep.outstanding = None
        # Only what was asked for can be declared absent.
        asked = RangeSet(requested)
        absent = [p for a, b in absent for p in _within(asked, a, b)]
        head = requested[0] if ep.floor is None and requested[0][0] == ep.head_from else None
        tail = requested[-1] if requested[-1][1] - requested[-1][0] == TAIL_SPAN else None
        if head is not None:
            lead = next((b for a, b in absent if a == head[0]), None)
            seen = ep.head()
            if lead is None:
                ep.floor = head[0]  # the daemon holds the head
            elif lead == head[1] and seen is not None and lead < seen:
                ep.head_from = lead  # all of a truncated head absent: ask for the rest
            else:
                ep.floor = lead  # before the daemon's first index: not a gap
            absent = [(a, b) for a, b in absent if a != head[0]]
        if tail is not None:
            trail = next((a for a, b in absent if b == tail[1]), tail[1])
            ep.settled = max(ep.settled, trail)  # past the daemon's last index: not a gap
            ep.ended = True
            absent = [(a, b) for a, b in absent if b != tail[1]]
        n_absent = self._add_gap(ep, absent, ABSENT)
        self.stats.absent += n_absent
        still = subtract(out.ranges, ep.received, ep.gaps)
        progress = (head is not None or tail is not None
                    or sum(b - a for a, b in still) < sum(b - a for a, b in out.ranges))
        ep.attempts = 0 if progress else ep.attempts + 1
        ep.not_before = now + (0.0 if progress else self._backoff(ep.attempts))

    def _backoff(self, attempts: int) -> float:
        return float(min(self.max_backoff_s, self.settle_s * 2 ** max(0, attempts - 1)))

    # --- replay requests ------------------------------------------------------------------

    def due_requests(self, now: float) -> list[ReplayRequest | EventRequest]:
        """Replay requests to publish now (QoS 1), at most one outstanding per epoch and
        one per daemon run for events."""
        out: list[ReplayRequest | EventRequest] = []
        for st in self.runs.values():
            if st.outstanding is not None:
                if now - st.sent_at < self.request_timeout_s:
                    continue
                st.outstanding = None
                st.attempts += 1
                st.not_before = st.sent_at + self.request_timeout_s + self._backoff(st.attempts)
                self.stats.timeouts += 1
            if now < st.not_before:
                continue
            missing = st.holes(now, self.settle_s)
            if not missing:
                st.attempts = 0
                continue
            ereq = EventRequest(st.daemon, st.run, tuple(missing[:MAX_RANGES]))
            st.outstanding, st.sent_at = ereq, now
            self.stats.requests += 1
            self.stats.requested_events += sum(b - a for a, b in ereq.ids)
            out.append(ereq)
        for ep in self.epochs.values():
            ep.settle(now, self.settle_s)
            if ep.outstanding is not None:
                if now - ep.sent_at < self.request_timeout_s:
                    continue
                ep.outstanding = None  # no answer: the daemon may not be there (yet)
                ep.attempts += 1
                ep.not_before = ep.sent_at + self.request_timeout_s + self._backoff(ep.attempts)
                self.stats.timeouts += 1
            if ep.daemon is None or now < ep.not_before:
                continue
            holes = ep.holes(now, self.settle_s)
            if not holes:
                ep.attempts = 0
                continue
            req = ReplayRequest(ep.daemon, ep.dial, ep.boot, _bounded(holes))
            ep.outstanding, ep.sent_at = req, now
            self.stats.requests += 1
            self.stats.requested_samples += sum(b - a for a, b in req.ranges)
            out.append(req)
        return out

    def holes(self) -> dict[tuple[str, int], list[Range]]:
        """Current holes of every epoch (below its settled horizon)."""
        return {k: h for k, ep in self.epochs.items() if (h := ep.holes())}

    def open_tails(self) -> int:
        """Boots the dial has left whose end is not yet known."""
        return sum(1 for ep in self.epochs.values()
                   if ep.superseded_at is not None and not ep.ended)

    def describe(self) -> dict[str, Any]:
        return {"source": "mqtt", "prefix": self.prefix, "daemons": sorted(self.daemons)}

    def summary(self) -> dict[str, Any]:
        s = self.stats
        return {
            "daemons": sorted(self.daemons),
            "dials": len(self.dials),
            "epochs": len(self.epochs),
            "samples": s.samples, "backfilled": s.backfilled, "duplicates": s.duplicates,
            "conflicts": s.conflicts,
            "rejected": s.rejected, "events": s.events, "gaps": s.gaps,
            "gap_samples": s.gap_samples, "absent": s.absent,
            "replay_requests": s.requests, "requested_samples": s.requested_samples,
            "requested_events": s.requested_events,
            "missing_events": sum(b - a for st in self.runs.values()
                                  for a, b in st.holes(self._now or 0.0, 0.0)),
            "replay_answers": s.answers, "replay_timeouts": s.timeouts,
            "holes": sum(b - a for h in self.holes().values() for a, b in h),
            "open_tails": self.open_tails(),
        }


def _bounded(holes: list[Range]) -> tuple[Range, ...]:
    """The first holes, at most :data:`MAX_RANGES` ranges and :data:`MAX_SAMPLES` samples."""
    out: list[Range] = []
    left = MAX_SAMPLES
    for a, b in holes[:MAX_RANGES]:
        if left <= 0:
            break
        out.append((a, min(b, a + left)))
        left -= out[-1][1] - a
    return tuple(out)


def _within(asked: RangeSet, a: int, b: int) -> list[Range]:
    """The parts of ``[a, b)`` inside ``asked``."""
    outside = RangeSet(asked.missing(a, b))
    return outside.missing(a, b)


# --- resuming a collected recording -------------------------------------------------------


@dataclass(slots=True)
class ResumeState:
    """What an existing collected recording already holds."""

    dial_ids: dict[str, int] = field(default_factory=dict)
    epochs: dict[tuple[str, int], tuple[int, str | None]] = field(default_factory=dict)
    received: dict[int, list[Range]] = field(default_factory=dict)
    gaps: dict[int, list[Range]] = field(default_factory=dict)
    media: dict[str, int] = field(default_factory=dict)
    events: set[tuple[str, str, int]] = field(default_factory=set)
    daemons: set[str] = field(default_factory=set)
    next_ids: dict[str, int] = field(default_factory=dict)
    wall_offset_ns: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def read_resume_state(path: Path) -> ResumeState:
    """Read an existing collected recording; one-line error if it is not one."""
    try:
        con = sqlite3.connect(path)  # read-write: recovers the WAL of a killed collector
        try:
            meta = {k: json.loads(v) for k, v in con.execute("SELECT key, value FROM meta")}
        except sqlite3.Error:
            raise UsageError(f"{path} exists and is not a ratedial recording; choose another "
                             "--record path") from None
        if (meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION
                or not isinstance(meta.get("collected"), dict)):
            raise UsageError(f"{path} exists and is not a recording collected by ratedial "
                             "record --mqtt; choose another --record path")
        st = ResumeState(meta=meta)
        st.daemons = set(meta["collected"].get("daemons") or ())
        st.dial_ids = dict(con.execute("SELECT uid, dial_id FROM dials"))
        uid_of = {v: k for k, v in st.dial_ids.items()}
        for eid, did, boot, hello in con.execute(
                "SELECT epoch_id, dial_id, boot_id, hello FROM epochs"):
            h = json.loads(hello)
            st.epochs[(uid_of[did], boot)] = (eid, h.get("daemon") if isinstance(h, dict)
                                              else None)
        for eid, a, b in con.execute(
                "SELECT epoch_id, MIN(sample_index), MAX(sample_index) + 1 FROM ("
                " SELECT epoch_id, sample_index, sample_index - ROW_NUMBER() OVER ("
                "  PARTITION BY epoch_id ORDER BY sample_index) AS island FROM samples)"
                " GROUP BY epoch_id, island ORDER BY epoch_id, 2"):
            st.received.setdefault(eid, []).append((a, b))
        for eid, a, b in con.execute("SELECT epoch_id, first_index, end_index FROM gaps"):
            st.gaps.setdefault(eid, []).append((a, b))
        for mid, fp in con.execute("SELECT media_id, fingerprint FROM media"):
            if isinstance(fp, str) and fp.startswith("daemon:"):
                st.media[fp.removeprefix("daemon:")] = mid
        for (data,) in con.execute("SELECT data FROM events"):
            src = json.loads(data).get("source")
            if isinstance(src, dict) and isinstance(src.get("daemon"), str) and _int(
                    src.get("event_id")):
                run = src.get("run")
                st.events.add((src["daemon"], run if isinstance(run, str) else "",
                               src["event_id"]))
        for table, col in (("dials", "dial_id"), ("epochs", "epoch_id"), ("media", "media_id"),
                           ("events", "event_id")):
            st.next_ids[table] = int(con.execute(
                f"SELECT COALESCE(MAX({col}), 0) + 1 FROM {table}").fetchone()[0])
        row = con.execute("SELECT wall_ns - host_ns FROM wall_anchors ORDER BY rowid "
                          "LIMIT 1").fetchone()
        st.wall_offset_ns = None if row is None else int(row[0])
        return st
    except sqlite3.Error as exc:
        raise UsageError(f"cannot resume {path}: {exc}") from None
    finally:
        with contextlib.suppress(UnboundLocalError):
            con.close()


@dataclass(slots=True)
class RecorderStore:
    """:class:`Store` on a :class:`Recorder`."""

    recorder: Recorder

    def add_dial(self, uid: str, rater: str | None, board: str, firmware: str) -> int:
        return self.recorder.add_dial(uid, rater, board, firmware, "")

    def add_epoch(self, dial_id: int, boot: int, first_host_ns: int,
                  hello: dict[str, Any]) -> int:
        return self.recorder.add_epoch(dial_id, boot, first_host_ns, hello)

    def add_media(self, daemon: str) -> int:
        return self.recorder.add_media(None, None, None, f"daemon:{daemon}")

    def samples(self, rows: list[tuple[Any, ...]]) -> None:
        self.recorder.put_many("samples", rows)

    def gap(self, epoch_id: int, dial_id: int, first: int, end: int, reason: str) -> None:
        self.recorder.put("gaps", (epoch_id, dial_id, first, end, reason, None, None))

    def gap_reason(self, epoch_id: int, first: int, end: int, reason: str) -> None:
        self.recorder.put("gap_reasons", (reason, epoch_id, first, end))

    def event(self, host_ns: int, dial_id: int | None, kind: str,
              data: dict[str, Any]) -> None:
        self.recorder.event(host_ns, dial_id, kind, data)

    def meta(self, key: str, value: Any) -> None:
        self.recorder.set_meta(key, value)


# --- the shell ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CollectConfig:
    mqtt: MqttConfig
    record: Path
    client_id: str | None = None
    share: str | None = None  # shared subscription group (a broker that dispatches by sender)
    duration_s: float | None = None
    session_expiry_s: int = 3600
    settle_s: float = 2.0
    request_timeout_s: float = 10.0
    command_line: Sequence[str] = ()


def default_client_id(prefix: str, record: Path) -> str:
    """Stable across restarts of the same collection, so the broker keeps its session."""
    key = f"{socket.gethostname()}|{prefix}|{record.resolve()}"
    return "ratedial-record-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def subscriptions(prefix: str, share: str | None = None) -> list[str]:
    """Topic filters; with ``share``, as one member of the shared subscription group."""
    p = f"$share/{share}/{prefix}/v1" if share else f"{prefix}/v1"
    return [f"{p}/dials/+/samples", f"{p}/dials/+/backfill", f"{p}/dials/+/events",
            f"{p}/dials/+/status", f"{p}/daemons/+/status", f"{p}/daemons/+/events",
            f"{p}/daemons/+/replayed"]


def open_recording(cfg: CollectConfig, client_id: str,
                   on_error: Callable[[RecordingError], None]) -> tuple[
                       Recorder, ResumeState | None, int]:
    """Create the recording, or reopen a collected one to continue it."""
    from .. import __version__

    path = cfg.record
    if path.exists():
        lock(path)
        st = read_resume_state(path)
        rec = Recorder(path, meta={}, append=True, next_ids=st.next_ids, on_error=on_error)
        offset = st.wall_offset_ns
        if offset is None:
            offset = time.time_ns() - time.monotonic_ns()
            rec.put("wall_anchors", (time.monotonic_ns(), time.time_ns()))
        resumes = list(st.meta.get("resumed_wall_ns") or [])
        rec.set_meta("resumed_wall_ns", [*resumes, time.time_ns()])
        return rec, st, offset
    offset = time.time_ns() - time.monotonic_ns()
    rec = Recorder(path, on_error=on_error, meta={
        "software_version": __version__,
        "created_wall_ns": time.time_ns(),
        "host": socket.gethostname(),
        "command_line": list(cfg.command_line),
        "config": {"mqtt": {"broker": _public_url(cfg.mqtt.broker),
                            "topic_prefix": cfg.mqtt.topic_prefix, "client_id": client_id,
                            "session_expiry_s": cfg.session_expiry_s, "share": cfg.share,
                            "settle_s": cfg.settle_s}},
        "scale": {"minimum": 0.0, "maximum": 100.0, "start": 50.0, "counts_per_point": 1.0,
                  "anchors": {"0": "hindering", "50": "neutral", "100": "helpful"},
                  "note": "ratings as published by the daemons"},
        "session": {},
        "media": None,
        "collected": {"source": "mqtt", "prefix": cfg.mqtt.topic_prefix, "daemons": []},
    })
    rec.put("wall_anchors", (time.monotonic_ns(), time.monotonic_ns() + offset))
    lock(path)
    return rec, None, offset


_locks: dict[Path, int] = {}


def lock(path: Path) -> None:
    """Hold an exclusive lock on the recording while this process writes it (released
    by the OS when the process ends, also on SIGKILL): one collector per file."""
    try:
        fd = try_lock(path)
    except OSError as exc:
        raise UsageError(f"cannot open {path}: {exc.strerror}") from None
    if fd is None:
        raise UsageError(f"{path} is being written by another running collector")
    _locks[path] = fd


def unlock(path: Path) -> None:
    fd = _locks.pop(path, None)
    if fd is not None:
        os.close(fd)  # closing the descriptor releases the lock


def _public_url(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


class CollectorShell:
    """The broker connection: subscribe, feed the collector, publish its requests."""

    def __init__(self, cfg: CollectConfig, *,
                 on_message: Callable[[str], None] = lambda _m: None) -> None:
        from .publisher import parse_broker

        self.cfg = cfg
        self.address = parse_broker(cfg.mqtt.broker, tls=cfg.mqtt.tls)
        self.client_id = cfg.client_id or default_client_id(cfg.mqtt.topic_prefix, cfg.record)
        self.on_message = on_message
        self.connected = False
        self.connects = 0
        self._refusal_told = False  # the broker refused a replay request (said once)
        self.stop_event = asyncio.Event()
        self.failure: list[RecordingError] = []
        self.recorder: Recorder | None = None
        self.collector: Collector | None = None

    def _client(self, protocol: Any) -> Any:
        import aiomqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        tls_context = self.cfg.mqtt.tls_context() if self.address.tls else None
        v5 = protocol == aiomqtt.ProtocolVersion.V5
        props = None
        if v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = self.cfg.session_expiry_s
        return aiomqtt.Client(
            self.address.host, self.address.port, username=self.cfg.mqtt.username,
            password=self.cfg.mqtt.password(), identifier=self.client_id, protocol=protocol,
            clean_start=False if v5 else 3, clean_session=None if v5 else False,
            properties=props, tls_context=tls_context, keepalive=10, timeout=5,
            max_queued_incoming_messages=0)

    async def run(self) -> dict[str, Any]:
        import aiomqtt

        loop = asyncio.get_running_loop()

        def on_error(err: RecordingError) -> None:
            self.failure.append(err)
            loop.call_soon_threadsafe(self.stop_event.set)

        recorder, resume, offset = open_recording(self.cfg, self.client_id, on_error)
        self.recorder = recorder
        created = resume is None
        store = RecorderStore(recorder)
        collector = Collector(self.cfg.mqtt.topic_prefix, store, wall_offset_ns=offset,
                              settle_s=self.cfg.settle_s,
                              request_timeout_s=self.cfg.request_timeout_s, resume=resume)
        self.collector = collector
        undo_signals = stop_on_signals(loop, self.stop_event.set)
        t0 = time.monotonic()
        timer: asyncio.TimerHandle | None = None
        if self.cfg.duration_s is not None:
            timer = loop.call_later(self.cfg.duration_s, self.stop_event.set)
        protocol = aiomqtt.ProtocolVersion.V5
        backoff = 0.5
        last_error: str | None = None
        try:
            while not self.stop_event.is_set():
                try:
                    async with self._client(protocol) as client:
                        self.connected = True
                        self.connects += 1
                        backoff, last_error = 0.5, None
                        self.on_message(f"connected to {self.address.host}:"
                                        f"{self.address.port} as {self.client_id}")
                        for topic in subscriptions(self.cfg.mqtt.topic_prefix,
                                                   self.cfg.share):
                            await subscribe(client, topic)
                        await self._serve(client, collector)
                    break
                except aiomqtt.MqttError as exc:
                    text = str(exc)
                    if self.connects == 0:
                        if protocol == aiomqtt.ProtocolVersion.V5 and "protocol" in text.lower():
                            protocol = aiomqtt.ProtocolVersion.V311
                            continue
                        raise RatedialError(f"cannot connect to broker {self.address.host}:"
                                            f"{self.address.port}: {text}") from None
                    reason = text
                except ssl.SSLError as exc:
                    if self.connects == 0:
                        raise RatedialError(f"cannot connect to broker: TLS: {exc}") from None
                    reason = f"TLS: {exc.reason or exc}"
                except OSError as exc:
                    if self.connects == 0:
                        raise RatedialError(f"cannot connect to broker {self.address.host}:"
                                            f"{self.address.port}: "
                                            f"{exc.strerror or exc}") from None
                    reason = exc.strerror or str(exc)
                self.connected = False
                if reason != last_error:
                    self.on_message(f"broker unreachable, retrying: {reason}")
                    last_error = reason
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop_event.wait(),
                                           backoff * (0.5 + random.random()))
                backoff = min(5.0, backoff * 2)
        finally:
            if timer is not None:
                timer.cancel()
            undo_signals()
            if self.connects == 0 and created:
                # never connected: leave no empty recording behind
                with contextlib.suppress(RecordingError):
                    recorder.close()
                unlock(self.cfg.record)
                for suffix in ("", "-wal", "-shm"):
                    with contextlib.suppress(OSError):
                        os.unlink(f"{self.cfg.record}{suffix}")
            else:
                try:
                    self._close(collector, recorder)
                finally:
                    unlock(self.cfg.record)
        summary = collector.summary()
        summary["recording"] = str(self.cfg.record)
        summary["seconds"] = round(time.monotonic() - t0, 3)
        summary["client_id"] = self.client_id
        return summary

    def _close(self, collector: Collector, recorder: Recorder) -> None:
        if not self.failure:
            with contextlib.suppress(RecordingError):
                recorder.set_meta("collected", {**collector.describe(),
                                                "daemon_status": collector.daemons})
                recorder.set_meta("ended_wall_ns", time.time_ns())
        try:
            recorder.close()
        except RecordingError as exc:
            if not self.failure:
                self.failure.append(exc)
        if self.failure:
            raise self.failure[0]

    async def _serve(self, client: Any, collector: Collector) -> None:
        acks = AckRouter(client)  # a refused replay request is told, not taken as sent
        it = aiter(client.messages)
        nxt: asyncio.Future[Any] | None = None
        last_tick = 0.0
        try:
            while not self.stop_event.is_set():
                if nxt is None:
                    nxt = asyncio.ensure_future(anext(it))
                done, _ = await asyncio.wait({nxt}, timeout=0.1)
                if nxt in done:
                    m, nxt = nxt.result(), None
                    self._feed(collector, m)
                    while len(client.messages) > 0:  # drain without waiting
                        self._feed(collector, await anext(it))
                now = time.monotonic()
                if now - last_tick >= 0.25:
                    last_tick = now
                    for req in collector.due_requests(now):
                        try:
                            await acks.publish(req.topic(collector.prefix), req.payload(),
                                               timeout=REQUEST_TIMEOUT_S)
                        except PublishRefused as exc:
                            if not self._refusal_told:  # asked again later: said once
                                self._refusal_told = True
                                self.on_message(f"{exc}; replay requests cannot reach the "
                                                "daemons (check the broker's access rules "
                                                "for this client)")
        finally:
            if nxt is not None:
                if nxt.done() and not nxt.cancelled() and nxt.exception() is None:
                    self._feed(collector, nxt.result())
                else:
                    nxt.cancel()
                    with contextlib.suppress(BaseException):
                        await nxt

    def _feed(self, collector: Collector, m: Any) -> None:
        payload = m.payload
        if isinstance(payload, str):
            payload = payload.encode()
        elif not isinstance(payload, bytes | bytearray):
            return
        collector.feed(str(m.topic), bytes(payload), time.monotonic())


def collect(cfg: CollectConfig, *, on_message: Callable[[str], None] = lambda _m: None
            ) -> dict[str, Any]:
    """Run a collection until ``duration_s``, SIGINT or SIGTERM; return its summary."""
    shell = CollectorShell(cfg, on_message=on_message)
    with asyncio.Runner(loop_factory=selector_loop) as runner:  # aiomqtt needs add_reader
        return runner.run(shell.run())
