"""What daemons say back to a collector: their retained status (its scale, its run) and
their answers to replay requests. Split from :mod:`ratedial.mqtt.collector`, whose
:class:`~ratedial.mqtt.collector.Collector` builds on this; the attributes are the
collector's (set in its ``__init__``) and the invariants its module docstring states.

A replay answer is taken only as the answer to the request outstanding for its epoch (or
daemon run): what it lists as ``absent`` becomes a gap of reason ``absent`` only within what
was asked; an absent head tells where the daemon's recording of the boot begins (``floor``:
no gap before it), an absent tail that the boot has ended there. Both are kept in the file
(``meta.collected_bounds``) for a continued collection.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .collect_meta import scale_of
from .collect_ranges import Range, RangeSet, is_int, parse_ranges, subtract, within
from .collect_requests import RequestPolicy
from .collect_state import TAIL_SPAN, EpochState, RunState, Stats, Store

BOUNDS_META = "collected_bounds"  # meta key: {"<dial>/<boot>": {"floor", "ended", "end"}}
ABSENT = "absent"  # gap reason for indices no daemon recording holds


def _span(scale: dict[str, Any]) -> str:
    return f"{scale['minimum']:g} to {scale['maximum']:g}"


class DaemonAnswers:
    """The collector's handling of daemon statuses and replay answers."""

    store: Store
    wall_offset_ns: int
    policy: RequestPolicy
    stats: Stats
    epochs: dict[tuple[str, int], EpochState]
    runs: dict[tuple[str, str], RunState]
    daemons: dict[str, dict[str, Any]]
    _scale: dict[str, Any] | None
    _scale_differs: set[str]
    _scale_from: str
    _notice: Callable[[str], None]
    _now: float | None
    _newest_run: dict[str, tuple[int, str]]  # daemon -> (wall_ns, run) of its newest status

    def _seen_daemon(self, daemon: Any) -> str | None:  # the collector's
        raise NotImplementedError

    def _add_gap(self, ep: EpochState, ranges: list[Range], reason: str,
                 host_ns: int | None = None) -> int:  # the collector's
        raise NotImplementedError

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
        self._take_scale(daemon, msg)
        run, next_event = msg.get("run"), msg.get("next_event")
        if not isinstance(run, str) or not run:
            return
        if is_int(next_event) and self._now is not None:
            st = self._run(daemon, run)
            st.mark(next_event, self._now)
            if msg.get("state") == "offline":  # its last word: nothing past next_event
                st.final = True
        wall = msg.get("wall_ns")
        newest = self._newest_run.get(daemon)
        if not is_int(wall) or (newest is not None and wall < newest[0]):
            return  # an older status (a late retained one): it says nothing of what ended
        self._newest_run[daemon] = (wall, run)
        for (d, r), st in self.runs.items():
            if d == daemon:  # the newest run of the daemon: every other one has ended
                st.ended = r != run

    def _take_scale(self, daemon: str, msg: dict[str, Any]) -> None:
        """The recording's scale is the first daemon's (the ratings as it published them);
        a daemon on another scale is recorded as a ``scale_differs`` event, once."""
        scale = scale_of(msg)
        if scale is None:
            return
        if self._scale is None:
            self._scale, self._scale_from = scale, daemon
            self.store.meta("scale", {**scale, "from_daemon": daemon})
        elif scale != self._scale and daemon not in self._scale_differs:
            self._scale_differs.add(daemon)
            host_ns = time.time_ns() - self.wall_offset_ns
            self.store.event(host_ns, None, "scale_differs", {"daemon": daemon, "scale": scale})
            self._notice(f"daemon {daemon} rates on another scale ({_span(scale)}) than this "
                         f"recording's ({_span(self._scale)}, from daemon "
                         f"{self._scale_from}): its ratings are kept on "
                         "their own scale (a scale_differs event); collect such sessions "
                         "with one [scale]")

    def _events_replayed(self, daemon: str, msg: dict[str, Any], now: float) -> None:
        run = msg["run"]
        asked, absent = parse_ranges(msg.get("events")), parse_ranges(msg.get("absent"))
        if not isinstance(run, str) or asked is None or absent is None:
            raise ValueError("bad replay answer")
        st = self.runs.get((daemon, run))
        if st is None or st.outstanding is None or list(st.outstanding.ids) != asked:
            return  # an answer to an earlier request: ask again if still missing
        self.stats.answers += 1
        st.outstanding = None
        wanted = RangeSet(asked)
        absent = [r for a, b in absent for r in within(wanted, a, b)]  # only what was asked
        probe, st.probe = st.probe, None
        if probe is not None and asked == [probe]:
            st.tail_answered(probe, absent)
            st.attempts, st.not_before = 0, now
            return
        for a, b in absent:
            st.absent.add(a, b)
        still = subtract(asked, st.received, st.absent)
        progress = sum(b - a for a, b in still) < sum(b - a for a, b in asked)
        st.attempts = 0 if progress else st.attempts + 1
        st.not_before = now + (0.0 if progress else self.policy.backoff(st.attempts))

    def _replayed(self, daemon: str, msg: dict[str, Any], now: float) -> None:
        if "run" in msg:
            self._events_replayed(daemon, msg, now)
            return
        uid, boot = msg["dial"], msg["boot"]
        requested, absent = parse_ranges(msg.get("ranges")), parse_ranges(msg.get("absent"))
        if not (isinstance(uid, str) and is_int(boot)) or requested is None or absent is None:
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
        absent = [p for a, b in absent for p in within(asked, a, b)]
        head = requested[0] if ep.floor is None and requested[0][0] == ep.head_from else None
        tail = requested[-1] if requested[-1][1] - requested[-1][0] == TAIL_SPAN else None
        if head is not None:
            lead = next((b for a, b in absent if a == head[0]), None)
            seen = ep.first_seen()
            if lead is None:
                ep.floor = head[0]  # the daemon holds the head
            elif lead == head[1] and (seen is None or lead < seen):
                ep.head_from = lead  # all of a truncated head absent: ask for the rest
            else:
                ep.floor = lead  # before the daemon's first index: not a gap
            absent = [(a, b) for a, b in absent if a != head[0]]
        if tail is not None:
            trail = next((a for a, b in absent if b == tail[1]), tail[1])
            ep.settled = max(ep.settled, trail)  # past the daemon's last index: not a gap
            ep.ended = True
            absent = [(a, b) for a, b in absent if b != tail[1]]
        if head is not None or tail is not None:
            self._save_bounds()
        n_absent = self._add_gap(ep, absent, ABSENT)
        self.stats.absent += n_absent
        still = subtract(out.ranges, ep.received, ep.gaps)
        progress = (head is not None or tail is not None
                    or sum(b - a for a, b in still) < sum(b - a for a, b in out.ranges))
        ep.attempts = 0 if progress else ep.attempts + 1
        ep.not_before = now + (0.0 if progress else self.policy.backoff(ep.attempts))

    def _save_bounds(self) -> None:
        """Keep in the file where each boot's daemon records begin and end, as the replay
        answers said: a collection continued after the daemons stopped must not count the
        indices before a daemon's first (or after its last) as missing again."""
        self.store.meta(BOUNDS_META, {
            f"{u}/{b}": {"floor": ep.floor, "ended": ep.ended,
                         "end": ep.settled if ep.ended else None}
            for (u, b), ep in self.epochs.items() if ep.floor is not None or ep.ended})
