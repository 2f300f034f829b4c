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
from ..integrity import Gap
from ..outputs import GapOut, Out, SamplesOut
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
            # no PING can be answered before the boot's HELLO: the wait starts there (a
            # backlog read before it would otherwise use up the wait: a review, 2026-12-05)
            ep.unsettled_since_ns = max(item.arrived_ns, ep.anchor0_host_ns)
        ep.unsettled.append(item)
        return settle_if_due(uid, ep, item.arrived_ns, settle_ns)
    return [mapped(uid, ep, est, item)]


def settle_if_due(uid: str, ep: Epoch, now_ns: int, settle_ns: int) -> list[Out]:
    """The waiting samples out if they have waited ``settle_ns`` of host time by
    ``now_ns`` (a frame's arrival, or the daemon's tick between frames); else nothing."""
    since = ep.unsettled_since_ns
    if not ep.unsettled or since is None or (settle_ns and now_ns - since < settle_ns):
        return []
    return settle(uid, ep)


def gap_out(uid: str, ep: Epoch, est: ClockEstimate | None, gap: Gap, first_us: int | None,
            end_us: int) -> list[Out]:
    """A gap of the boot, with the host times of where it starts and ends (device µs):
    mapped now once the boot is settled, else when its samples are (a gap within a backlog
    would otherwise be put seconds off the samples around it: a review, 2026-12-05)."""
    if not ep.settled:
        ep.unsettled_gaps.append((gap, first_us, end_us))
        return []
    return [_gap(uid, ep, est, gap, first_us, end_us)]


def _gap(uid: str, ep: Epoch, est: ClockEstimate | None, gap: Gap, first_us: int | None,
         end_us: int) -> GapOut:
    if est is None:
        return GapOut(uid, ep.boot_id, gap, None, None)
    first_t = None if first_us is None else est.to_host_ns(first_us)
    return GapOut(uid, ep.boot_id, gap, first_t, est.to_host_ns(end_us))


def mapped(uid: str, ep: Epoch, est: ClockEstimate | None, item: Unmapped) -> SamplesOut:
    """One frame's samples with their host times (none: the boot's clock is implausible)."""
    host = (None,) * len(item.times_us) if ep.rate_implausible else ep.host_times(
        est, item.times_us, item.arrived_ns)
    return SamplesOut(uid, ep.boot_id, item.first, item.period_us, item.times_us, host,
                      item.counts, item.ratings, item.flags)


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


def settle(uid: str, ep: Epoch, *, pinned: bool = True) -> list[Out]:
    """The samples waiting for the boot's clock go out, mapped by a fit to every observation
    so far: a SYNC pinned it or the wait ran out (``pinned``: later frames go out as they
    come), or the boot ends for now (the dial is lost, another boot's HELLO, the run ends:
    a later return of the boot waits again, its clock not yet pinned)."""
    if pinned:
        ep.settled = True
    else:
        ep.unsettled_since_ns = None
    if not ep.unsettled and not ep.unsettled_gaps:
        return []
    est = ep.clock.estimate()
    items, ep.unsettled = ep.unsettled, []
    gaps, ep.unsettled_gaps = ep.unsettled_gaps, []
    return [*(_gap(uid, ep, est, *g) for g in gaps),
            *(mapped(uid, ep, est, item) for item in items)]
