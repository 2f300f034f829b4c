"""Which replay requests a collection sends, and when (pure): ``ratedial record --mqtt``.

Invariants:

* At most one request is outstanding per epoch ``(dial, boot)`` and per daemon run (for
  events); an unanswered one is dropped after ``request_timeout_s`` and asked again after a
  back-off.
* A request asks only for holes (below the settled horizon, neither received nor a known
  gap), at most :data:`~.collect_ranges.MAX_RANGES` ranges; a tail that would have to be
  cut is asked for whole, later (a cut would make the indices past the cut look absent).
* Back-off doubles from ``settle_s`` with each request that brought nothing new, up to
  ``max_backoff_s``; a request that brought something resets it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .collect_ranges import MAX_RANGES, bounded
from .collect_state import EpochState, EventRequest, ReplayRequest, RunState, Stats


@dataclass(frozen=True, slots=True)
class RequestPolicy:
    settle_s: float = 2.0  # a horizon counts once known this long
    request_timeout_s: float = 10.0  # an unanswered request is dropped after this
    max_backoff_s: float = 30.0

    def backoff(self, attempts: int) -> float:
        """The wait before asking again after ``attempts`` requests that brought nothing."""
        return float(min(self.max_backoff_s, self.settle_s * 2 ** max(0, attempts - 1)))


def due_requests(policy: RequestPolicy, runs: Iterable[RunState],
                 epochs: Iterable[EpochState], stats: Stats,
                 now: float) -> list[ReplayRequest | EventRequest]:
    """Replay requests to publish now (QoS 1); marks them outstanding and counts them."""
    timeout = policy.request_timeout_s
    out: list[ReplayRequest | EventRequest] = []
    for st in runs:
        if st.outstanding is not None:
            if now - st.sent_at < timeout:
                continue
            st.outstanding = None
            st.attempts += 1
            st.not_before = st.sent_at + timeout + policy.backoff(st.attempts)
            stats.timeouts += 1
        if now < st.not_before:
            continue
        missing = st.holes(now, policy.settle_s)
        st.probe = None
        if not missing:
            st.probe = st.tail()  # a run that ended unseen: where do its events end?
            if st.probe is None:
                st.attempts = 0
                continue
            missing = [st.probe]
        ereq = EventRequest(st.daemon, st.run, tuple(missing[:MAX_RANGES]))
        st.outstanding, st.sent_at = ereq, now
        stats.requests += 1
        if st.probe is None:
            stats.requested_events += sum(b - a for a, b in ereq.ids)
        else:  # ids that may not exist: not "requested" as missing
            stats.event_probes += 1
        out.append(ereq)
    for ep in epochs:
        ep.settle(now, policy.settle_s)
        if ep.outstanding is not None:
            if now - ep.sent_at < timeout:
                continue
            ep.outstanding = None  # no answer: the daemon may not be there (yet)
            ep.attempts += 1
            ep.not_before = ep.sent_at + timeout + policy.backoff(ep.attempts)
            stats.timeouts += 1
        if ep.daemon is None or now < ep.not_before:
            continue
        holes = ep.holes(now, policy.settle_s)
        if not holes:
            ep.attempts = 0
            continue
        ranges = bounded(holes)
        k = len(ranges) - 1
        if k > 0 and ranges[k] != holes[k] and holes[k] == ep.tail():
            ranges = ranges[:k]  # a cut tail is asked for whole, in a later request
        req = ReplayRequest(ep.daemon, ep.dial, ep.boot, ranges)
        ep.outstanding, ep.sent_at = req, now
        stats.requests += 1
        stats.requested_samples += sum(b - a for a, b in req.ranges)
        out.append(req)
    return out
