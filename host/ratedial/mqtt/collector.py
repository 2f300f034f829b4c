"""``ratedial record --mqtt``: one recording of a whole session, collected from the broker.

The pure part (:class:`Collector`) turns MQTT messages into recording rows and decides which
missing samples to ask the daemons for; the asyncio/aiomqtt shell
(:func:`ratedial.mqtt.collect_shell.collect`) only moves bytes between the broker, the
collector and the :class:`Recorder`.

Invariants:

* Exactly once: a sample is written once per ``(dial, boot, index)``, whether it arrives
  live, again as backfill, or as the answer to a replay request; events once per
  ``(daemon, run, id)``.
* A missing sample is never a row in ``samples``; it lies in at most one gap. A gap comes
  either from a daemon's ``gap`` event (its reason kept) or from a replay answer that lists
  the index as ``absent`` (reason ``absent``; a daemon's ``gap`` event that comes later gives
  the rows it covers its reason). Samples that arrive inside a known gap are
  counted as ``conflicts`` and not written.
* A *hole* of an epoch ``(dial, boot)`` is an index between the boot's head (index 0, until
  a daemon's answer tells where its recording starts) and the settled horizon (what the
  daemon's retained status ``next_index`` or the received batches said at least ``settle_s``
  ago; a stopped daemon's ``offline`` status at once) that is neither received nor a known
  gap. A boot known only from a status has holes too: nothing is taken as collected that
  was not received. Holes are asked
  for with at most one outstanding request per epoch, at most 100 ranges per request, with
  back-off when a request brings nothing new.
* A dial's row keeps the first board, firmware and backend any message told (samples,
  status, events such as ``dial_connected``); what is learnt after the row was written goes
  to :meth:`Store.dial_info`. Empty means no message the collector received said it. Its
  rater is the one its live samples say (``rater``, null for an unlabelled dial), as soon
  as they arrive: a retained status or an event may be a past session's, where the dial had
  another rater or none, so those only fill a rater no live sample has told. A live rater
  that changes during the collection (the dial rated by another person in a later run) is
  recorded as a ``rater_changed`` event and the row takes the new label.
* Provenance: ``meta.collected`` names the one topic prefix of the whole file and every
  broker the collection was connected to.
* Times: ``host_ns`` in the collected file is the daemons' ``wall_ns`` minus one fixed
  offset (the collector's first wall anchor), so samples of all daemons share one time base.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..recording.schema import MediaState
from .collect_answers import ABSENT, BOUNDS_META, DaemonAnswers
from .collect_meta import scale_of
from .collect_ranges import (
    Range,
    RangeSet,
    is_int,
    is_number,
    subtract,
)
from .collect_requests import RequestPolicy, due_requests
from .collect_state import (
    DialInfo,
    EpochState,
    EventRequest,
    ReplayRequest,
    ResumeState,
    RunState,
    Stats,
    Store,
)
from .topics import loads


def _dial_fields(msg: dict[str, Any]) -> dict[str, Any]:
    """What a status or an event's data says of the dial itself (strings only)."""
    out: dict[str, Any] = {k: v for k in ("board", "firmware", "backend")
                           if isinstance(v := msg.get(k), str)}
    if isinstance(rater := msg.get("rater"), str):
        out["rater"] = rater
    return out


_COLUMNS = ("device_us", "host_ns", "wall_ns", "count", "rating", "flags", "media_s",
            "media_state")
_INT_COLUMNS = ("device_us", "count", "flags")


class Collector(DaemonAnswers):
    """The bookkeeping of a collected recording. Feed it messages; ask it for requests."""

    def __init__(self, prefix: str, store: Store, *, wall_offset_ns: int,
                 settle_s: float = 2.0, request_timeout_s: float = 10.0,
                 max_backoff_s: float = 30.0, resume: ResumeState | None = None,
                 on_notice: Callable[[str], None] | None = None) -> None:
        self.prefix = prefix
        self._notice = on_notice or (lambda _m: None)  # one line for the user
        self.store = store
        self.wall_offset_ns = wall_offset_ns
        self.policy = RequestPolicy(settle_s, request_timeout_s, max_backoff_s)
        self.stats = Stats()
        self.dials: dict[str, DialInfo] = {}
        self.epochs: dict[tuple[str, int], EpochState] = {}
        self.media: dict[str, int] = {}
        self.events_seen: set[tuple[str, str, int]] = set()  # (daemon, run, id)
        self.runs: dict[tuple[str, str], RunState] = {}
        self.daemons: dict[str, dict[str, Any]] = {}
        self._scale: dict[str, Any] | None = None  # meta.scale, from the first daemon's status
        self._scale_differs: set[str] = set()  # daemons whose scale is another (said once)
        self._scale_from = "?"  # the daemon meta.scale came from
        self._newest_run: dict[str, tuple[int, str]] = {}  # daemon -> (wall_ns, run)
        self.current: dict[str, int] = {}  # each dial's current boot
        self.brokers: list[str] = []  # every broker connected to, in order of first use
        self._now: float | None = None  # time of the message being fed
        self._prefix_parts = prefix.split("/")
        if resume is not None:
            kept = resume.meta.get("scale")  # a continuation keeps the scale it was given
            if isinstance(kept, dict) and "from_daemon" in kept:
                self._scale = scale_of({"scale": kept})
                self._scale_from = str(kept["from_daemon"])
            bounds = resume.meta.get(BOUNDS_META)
            if not isinstance(bounds, dict):
                bounds = {}
            for uid, dial_id in resume.dial_ids.items():
                rater, board, firmware, backend = resume.dial_rows.get(uid, (None, "", "", ""))
                self.dials[uid] = DialInfo(dial_id, rater, board, firmware, backend)
            for uid, info in resume.dial_events.items():  # e.g. a killed run's dial_connected
                self._dial(uid, **info)
            for (uid, boot), (epoch_id, daemon) in resume.epochs.items():
                ep = EpochState(uid, boot, epoch_id, resume.dial_ids[uid], daemon,
                                resume.hellos.get(epoch_id),
                                RangeSet(resume.received.get(epoch_id, ())),
                                RangeSet(resume.gaps.get(epoch_id, ())))
                # an earlier run's uncollected rows: holes again, below the settled horizon
                ep.settled = max([ep.known_end(), *(b for _, b in
                                                    resume.uncollected.get(epoch_id, ()))])
                bound = bounds.get(f"{uid}/{boot}")
                if isinstance(bound, dict):  # what earlier runs' replay answers taught
                    if is_int(bound.get("floor")):
                        ep.floor = bound["floor"]
                    if bound.get("ended") is True and is_int(bound.get("end")):
                        ep.ended = True
                        ep.settled = max(ep.settled, bound["end"])
                self.epochs[(uid, boot)] = ep
            self.media = dict(resume.media)
            self.events_seen = set(resume.events)
            for daemon, run, event_id in self.events_seen:
                if run:
                    self._run(daemon, run).received.add(event_id, event_id + 1)
            self.daemons = {d: {} for d in resume.daemons}
            self.brokers = list(resume.brokers)

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
            msg = loads(payload)
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

    def connected_to(self, broker: str) -> None:
        """The collection is connected to ``broker`` (a URL without credentials)."""
        if broker not in self.brokers:
            self.brokers.append(broker)
            self.store.meta("collected", self.describe())

    def _seen_daemon(self, daemon: Any) -> str | None:
        if not isinstance(daemon, str) or not daemon:
            return None
        if daemon not in self.daemons:
            self.daemons[daemon] = {}
            self.store.meta("collected", self.describe())
        return daemon

    def _dial(self, uid: str, *, rater: str | None = None, board: str = "",
              firmware: str = "", backend: str = "") -> DialInfo:
        """The dial's row, made at first sight; fields it lacks are filled when told."""
        d = self.dials.get(uid)
        if d is None:
            d = DialInfo(self.store.add_dial(uid, rater, board, firmware, backend), rater,
                         board, firmware, backend)
            self.dials[uid] = d
        elif d.fill(rater=None if d.rater_live else rater, board=board, firmware=firmware,
                    backend=backend):
            self.store.dial_info(d.dial_id, *d.row())
        return d

    def _live_rater(self, d: DialInfo, rater: str | None, host_ns: int | None) -> None:
        """A live samples message tells who rates the dial now: it overrides what a retained
        status or an event said (possibly of a past session); a change between two live
        raters is recorded."""
        if d.rater_live and d.rater == rater:
            return
        if d.rater_live:
            when = host_ns if host_ns is not None else time.time_ns() - self.wall_offset_ns
            self.store.event(when, d.dial_id, "rater_changed", {"from": d.rater, "to": rater})
        changed = d.rater != rater
        d.rater, d.rater_live = rater, True
        if changed:
            self.store.dial_info(d.dial_id, *d.row())

    def _epoch(self, uid: str, boot: int, daemon: str | None) -> EpochState:
        """The epoch's state; its row is made by :meth:`_epoch_id` when needed."""
        ep = self.epochs.get((uid, boot))
        if ep is None:
            ep = EpochState(uid, boot, None, self._dial(uid).dial_id, daemon)
            self.epochs[(uid, boot)] = ep
            if self.current.get(uid, boot) != boot:
                ep.superseded_at = time.monotonic() if self._now is None else self._now
        if daemon is not None:
            ep.daemon = daemon
        return ep

    def _epoch_id(self, ep: EpochState, host_ns: int | None, period_us: int = 0) -> int:
        """The epoch's row, made with its first sample or gap (``host_ns``: when it was
        first heard of; ``period_us``: from the samples, else the status's measured rate)."""
        if ep.epoch_id is None:
            rate = 1e6 / period_us if period_us > 0 else self.dials[ep.dial].rate_hz
            ep.hello = {"source": "mqtt", "daemon": ep.daemon, "boot_id": ep.boot,
                        "period_us": period_us or None, "rate_hz": rate}
            first = host_ns if host_ns is not None else time.time_ns() - self.wall_offset_ns
            ep.epoch_id = self.store.add_epoch(ep.dial_id, ep.boot, first, ep.hello)
        return ep.epoch_id

    def _period(self, ep: EpochState, period_us: int, *, told: bool) -> None:
        """A batch's period (``told``: the payload's nominal ``period_us``; else derived
        from a backfill's device times): the epoch's row takes it if its hello had none
        (made from a gap or a status's measured rate) or, when told, another."""
        if ep.epoch_id is None or ep.hello is None or period_us <= 0:
            return
        have = ep.hello.get("period_us")
        if have == period_us or (is_int(have) and have > 0 and not told):
            return
        ep.hello = {**ep.hello, "period_us": period_us, "rate_hz": 1e6 / period_us}
        self.store.epoch_hello(ep.epoch_id, ep.hello)

    def _host(self, wall_ns: Any) -> int | None:
        return wall_ns - self.wall_offset_ns if is_int(wall_ns) else None

    def _samples(self, uid: str, msg: dict[str, Any], now: float) -> None:
        boot, first, n = msg["boot"], msg["first"], msg["n"]
        if msg.get("dial") != uid or not (is_int(boot) and is_int(first) and is_int(n)) or n < 1:
            raise ValueError("bad samples header")
        cols = {c: msg[c] for c in _COLUMNS}
        if any(not isinstance(v, list) or len(v) != n for v in cols.values()):
            raise ValueError("bad samples columns")
        # every value checked before anything is taken in: a bad one rejects the message whole
        if not (all(is_int(x) for c in _INT_COLUMNS for x in cols[c])
                and all(x is None or is_int(x) for x in cols["wall_ns"])  # None: no host time
                and all(is_number(x) for x in cols["rating"])
                and all(x is None or is_number(x) for x in cols["media_s"])):
            raise ValueError("bad samples values")
        daemon = self._seen_daemon(msg.get("daemon"))
        rater = msg.get("rater")
        rater = rater if isinstance(rater, str) and rater else None
        d = self._dial(uid, rater=rater)
        if not msg.get("replay"):
            self._live_rater(d, rater, self._host(cols["wall_ns"][0]))
        if daemon:
            d.daemon = daemon
        period = msg.get("period_us")
        told = is_int(period) and period > 0
        if not told and n > 1:  # backfill: from the device times
            t0, t1 = cols["device_us"][0], cols["device_us"][-1]
            period = round((t1 - t0) / (n - 1)) if is_int(t0) and is_int(t1) else 0
        ep = self._epoch(uid, boot, daemon)
        self._period(ep, period if is_int(period) else 0, told=told)
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
        epoch_id = self._epoch_id(ep, self._host(cols["wall_ns"][0]),
                                  period if is_int(period) and period > 0 else 0)
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
                rows.append((epoch_id, i, ep.dial_id, int(cols["device_us"][k]),
                             self._host(cols["wall_ns"][k]), int(cols["count"][k]),
                             float(cols["rating"][k]), int(cols["flags"][k]),
                             None if media_s is None else media_id,
                             None if media_s is None else float(media_s),
                             int(state) if is_int(state) else int(MediaState.UNKNOWN)))
            ep.received.add(a, b)
        self.store.samples(rows)
        self.stats.samples += len(rows)
        if msg.get("replay"):
            self.stats.backfilled += len(rows)

    def _dial_status(self, uid: str, msg: dict[str, Any], now: float) -> None:
        if msg.get("dial") != uid:
            raise ValueError("status of another dial")
        daemon = self._seen_daemon(msg.get("daemon"))
        d = self._dial(uid, **_dial_fields(msg))
        rate = msg.get("rate_hz")  # a finite number above 0, not a bool (true was 1.0 Hz)
        if isinstance(rate, int | float) and not isinstance(rate, bool) and 0 < rate < 1e9:
            d.rate_hz = float(rate)
        if daemon:
            d.daemon = daemon
        boot, nxt = msg.get("boot"), msg.get("next_index")
        if is_int(boot):
            self._current_boot(uid, boot, now)
        if is_int(boot) and is_int(nxt) and (nxt > 0 or (uid, boot) in self.epochs):
            # A boot known only from its status is collected too (from index 0): a collector
            # that started after the daemons stopped still asks for all of it. The status a
            # stopped daemon leaves ("offline") is final: nothing of it is on the way.
            self._epoch(uid, boot, daemon).mark(nxt, now, final=msg.get("state") == "offline")

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
        if not (isinstance(daemon, str) and is_int(event_id) and isinstance(kind, str)
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
        dial_id = (self._dial(uid, **_dial_fields(data)).dial_id
                   if isinstance(uid, str) and uid else None)
        self.store.event(host_ns, dial_id, kind, {
            **data, "source": {"daemon": daemon, "run": run, "event_id": event_id}})
        self.stats.events += 1
        if kind == "dial_reboot" and isinstance(uid, str) and uid:
            old = data.get("old_boot_id")
            if is_int(old) and (uid, old) not in self.epochs:
                # A boot this collector has no sample, gap or status of (it started after
                # the dial left it): the dial has left it, so all of it is asked for, head
                # and tail in one request (absent at either end is no gap).
                ep = self._epoch(uid, old, daemon)
                if ep.superseded_at is None:
                    ep.superseded_at = time.monotonic() if self._now is None else self._now
        if kind == "gap" and isinstance(uid, str) and uid:
            boot, a, b = data.get("boot_id"), data.get("first_index"), data.get("end_index")
            reason = data.get("reason")
            if is_int(boot) and is_int(a) and is_int(b) and isinstance(reason, str):
                ep = self._epoch(uid, boot, daemon)
                self._relabel_absent(ep, a, b, reason)
                self._add_gap(ep, [(a, b)], reason, host_ns)

    def _relabel_absent(self, ep: EpochState, a: int, b: int, reason: str) -> None:
        """The daemon's ``gap`` event came after a replay answer had declared those indices
        absent: the rows written then take the daemon's reason (the collected file does not
        depend on which of the two messages came first)."""
        keep = []
        for x, y in ep.absent_rows:  # rows written, so the epoch's row exists
            if a <= x and y <= b and ep.epoch_id is not None:
                self.store.gap_reason(ep.epoch_id, x, y, reason)
            else:
                keep.append((x, y))
        ep.absent_rows = keep

    def _add_gap(self, ep: EpochState, ranges: list[Range], reason: str,
                 host_ns: int | None = None) -> int:
        added = 0
        for a, b in subtract(ranges, ep.received, ep.gaps):
            self.store.gap(self._epoch_id(ep, host_ns), ep.dial_id, a, b, reason)
            if reason == ABSENT:
                ep.absent_rows.append((a, b))
            ep.gaps.add(a, b)
            self.stats.gaps += 1
            self.stats.gap_samples += b - a
            added += b - a
        return added

    # --- replay requests ------------------------------------------------------------------

    def due_requests(self, now: float) -> list[ReplayRequest | EventRequest]:
        """Replay requests to publish now (QoS 1), at most one outstanding per epoch and
        one per daemon run for events."""
        return due_requests(self.policy, self.runs.values(), self.epochs.values(), self.stats,
                            now)

    def holes(self) -> dict[tuple[str, int], list[Range]]:
        """Current holes of every epoch (below its settled horizon)."""
        return {k: h for k, ep in self.epochs.items() if (h := ep.holes())}

    def record_holes(self) -> int:
        """At the end of a collection, each hole still open becomes a gap row (reason
        ``uncollected``), so the file says where it lacks samples, as a daemon's recording
        does; they replace the rows an earlier run left, which this run took up again as
        holes (:func:`~ratedial.mqtt.collect_store.read_resume_state`). Returns the
        samples."""
        rows = [(self._epoch_id(self.epochs[key], None), self.epochs[key].dial_id, a, b)
                for key, ranges in self.holes().items() for a, b in ranges]
        self.store.uncollected(rows)
        return sum(b - a for _, _, a, b in rows)

    def open_tails(self) -> int:
        """Boots the dial has left whose end is not yet known."""
        return sum(1 for ep in self.epochs.values()
                   if ep.superseded_at is not None and not ep.ended)

    def describe(self) -> dict[str, Any]:
        return {"source": "mqtt", "prefix": self.prefix, "daemons": sorted(self.daemons),
                "brokers": list(self.brokers)}

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
            "requested_events": s.requested_events, "event_probes": s.event_probes,
            "missing_events": sum(b - a for st in self.runs.values()
                                  for a, b in st.holes(self._now or 0.0, 0.0)),
            "replay_answers": s.answers, "replay_timeouts": s.timeouts,
            "holes": sum(b - a for h in self.holes().values() for a, b in h),
            "open_tails": self.open_tails(),
            "open_event_tails": sum(st.tail() is not None for st in self.runs.values()),
        }
