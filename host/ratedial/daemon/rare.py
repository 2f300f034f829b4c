"""Whether a BUTTON, SYNC or HELLO fits the boot it is of, by what that boot already sent (pure).

A SAMPLES frame is judged by :func:`~ratedial.daemon.placement.place`; the rarer frames that
carry a device time (and BUTTON's sample index) are judged here, against the boot's newest
sample taken in (index ``L`` at device time ``T``) and the bound host time puts on its clock
(:func:`~ratedial.daemon.placement.ahead_limit`). Each function returns why the frame does
not fit (one line), or None. docs/protocol.md ("Values that must fit what came before")
states the rules.

Invariants:

* Only causal facts of an honest dial are required: a frame received after a SAMPLES frame
  was written after it, so its device time is not before that frame's last sample (less
  the packing delay for a HELLO, which can be built before the frame it follows is queued);
  a sample's index and device time lie on the sampler's grid (each index at least a period
  after the one before, less a period of jitter; a stall only moves later samples later).
* Nothing here looks at a frame's arrival order beyond what was taken in before it, so the
  answer never depends on how the bytes were split into reads.
"""

from __future__ import annotations

from ..wire import Button, Hello, Sync
from .epoch import Epoch
from .placement import DRIFT, PACKING_US, ahead_limit, boot_period_us, recorded_time


def button_problem(ep: Epoch, b: Button, host_ns: int, slack_us: int) -> str | None:
    """BUTTON ``b`` against its boot ``ep``: its device time within the bound host time
    allows; its sample's device time the one recorded for that index (within one period:
    the sampler's jitter), or, for an index not among the recent frames, on the boot's grid
    from its newest sample (an index ``d`` after it at least ``d - 1`` periods later, one
    ``d`` before it at least ``d - 1`` periods earlier)."""
    if b.t_us > ahead_limit(ep, host_ns, slack_us):
        return "device time further ahead than time allows"
    nxt, last_t = ep.ledger.next_index, ep.last_device_us
    if nxt is None or last_t is None:
        return None  # nothing of the boot taken in yet: the field check only
    period = boot_period_us(ep)
    known = recorded_time(ep, b.index)
    if known is not None:
        if abs(b.t_us - known) < period:
            return None
        return f"sample {b.index} was recorded with device time {known}, not {b.t_us}"
    d, dt = b.index - (nxt - 1), b.t_us - last_t
    if d > 0 and dt > 0 and (d - 1) * period <= dt:
        return None
    if d < 0 and dt < 0 and (-d - 1) * period <= -dt:
        return None
    if d == 0 and abs(dt) < period:
        return None
    return (f"index {b.index} at device time {b.t_us} is off the boot's samples (index "
            f"{nxt - 1} at {last_t}, a period of {period} µs)")


def sync_problem(ep: Epoch, f: Sync, host_send_ns: int, host_recv_ns: int,
                 slack_us: int) -> str | None:
    """SYNC ``f`` answering a PING sent at ``host_send_ns``: the dial's time between reading
    the PING and answering it no longer than the round trip; ``t_tx_us`` within the bound
    host time allows, and not before the newest sample taken in (that frame was written
    before this reply)."""
    if (f.t_tx_us - f.t_rx_us) * 1000 > (host_recv_ns - host_send_ns) * DRIFT + 1_000_000:
        return "longer on the dial than the round trip"
    if f.t_tx_us > ahead_limit(ep, host_recv_ns, slack_us):
        return "device time further ahead than time allows"
    if ep.last_device_us is not None and f.t_tx_us < ep.last_device_us:
        return (f"t_tx_us {f.t_tx_us} before device time {ep.last_device_us} of a frame "
                "received before it")
    return None


def hello_problem(ep: Epoch, h: Hello, host_ns: int, slack_us: int) -> str | None:
    """HELLO ``h`` of boot ``ep`` (the current boot, or an earlier one of this run): its
    ``time_us`` within the bound host time allows, and not before the newest sample taken in
    less the packing delay (that frame was queued before the HELLO)."""
    if h.time_us > ahead_limit(ep, host_ns, slack_us):
        return f"time_us {h.time_us} further ahead than time allows"
    if ep.last_device_us is not None and h.time_us < ep.last_device_us - PACKING_US:
        return (f"time_us {h.time_us} before device time {ep.last_device_us} of a frame "
                "received before it")
    return None
