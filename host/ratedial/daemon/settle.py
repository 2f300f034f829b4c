"""When a boot's samples are mapped to host time (pure, no I/O).

A boot's SAMPLES are taken in as they come (ledger, rating, gaps: :mod:`~ratedial.daemon.core`)
but mapped to host time only once a SYNC has pinned the boot's clock to within
:data:`SETTLE_BOUND_NS`, or ``settle_s`` after its first samples came, or when the dial is
lost or the boot or the run ends; until then they wait in ``Epoch.unsettled``. Frames that
waited on the dial (a host that kept the port open and stopped reading) come first, in a
burst, seconds old, and nothing in the first of them says so: mapped by their arrivals alone
they were put seconds late (docs/timing.md, "The first frames of a boot").

Invariants:

* Every sample taken in goes out exactly once, in index order within its boot, mapped by
  the boot's :class:`~ratedial.clock.SlewedMap` (never later than its frame's arrival).
* Once a boot is settled, its frames go out as they come.
"""

from __future__ import annotations

from ..clock import ClockEstimate
from ..outputs import Out, SamplesOut
from .epoch import Epoch, Unmapped

# A boot's samples are mapped once a SYNC pins its clock this tightly (ClockEstimate
# uncertainty_ns; 1-6 ms after the first SYNC on a USB link, 0.05-0.5 s while a SYNC reply
# waits behind a backlog draining through a 115200-baud UART)
SETTLE_BOUND_NS = 20_000_000


def map_out(uid: str, ep: Epoch, est: ClockEstimate | None, item: Unmapped,
            settle_ns: int) -> list[Out]:
    """The samples of one frame out, mapped to host time, once the boot is settled; until
    then they wait, at most ``settle_ns`` of host time from the boot's first."""
    if not ep.settled:
        if ep.unsettled_since_ns is None:
            ep.unsettled_since_ns = item[-1]
        ep.unsettled.append(item)
        if item[-1] - ep.unsettled_since_ns < settle_ns:
            return []
        return settle(uid, ep)
    return [mapped(uid, ep, est, item)]


def mapped(uid: str, ep: Epoch, est: ClockEstimate | None, item: Unmapped) -> SamplesOut:
    """One frame's samples with their host times (none: the boot's clock is implausible)."""
    first, period, times, counts, ratings, flags, arrived = item
    host = (None,) * len(times) if ep.rate_implausible else ep.host_times(est, times, arrived)
    return SamplesOut(uid, ep.boot_id, first, period, times, host, counts, ratings, flags)


def settle_after_sync(uid: str, ep: Epoch) -> list[Out]:
    """After a SYNC: the boot's samples go out once its clock is pinned (a SYNC whose reply
    waited behind a backlog on a slow link bounds it loosely: the next ones, after the
    backlog has drained, pin it)."""
    if ep.settled:
        return []
    est = ep.clock.estimate()
    if est is None or est.uncertainty_ns > SETTLE_BOUND_NS:
        return []
    return settle(uid, ep)


def settle(uid: str, ep: Epoch) -> list[Out]:
    """The samples waiting for the boot's clock go out, mapped by a fit to every observation
    so far (a SYNC pinned it, the wait ran out, the boot ends for now)."""
    ep.settled = True
    if not ep.unsettled:
        return []
    est = ep.clock.estimate()
    items, ep.unsettled = ep.unsettled, []
    return [mapped(uid, ep, est, item) for item in items]
