"""What a dial's core does with the frames that neither carry samples nor set up a boot or
its clock: DROP, STATUS, BUTTON, ACK and ERROR (no I/O). Each is judged against the boot it
is of (:class:`~ratedial.daemon.core.DialCore`'s current epoch) and becomes an event, a
ledger entry or a counted rejection.

Invariants:

* A frame that cannot be the dial's (a DROP of indices already received or more than time
  allows, a BUTTON or ACK further ahead than time allows, an impossible field) is rejected
  with a reason, never recorded (docs/protocol.md, "Values that must fit what came before").
* A DROP or a nearly full transmit queue in a STATUS marks the boot's clock congested: its
  arrivals are not near the latency floor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..outputs import EventOut, Out
from ..wire import Ack, AckCommand, Button, Drop, Error, Status
from ..wire.checks import field_problem
from .placement import max_new_samples
from .rare import button_problem

if TYPE_CHECKING:
    from .core import DialCore

# A STATUS whose transmit queue is at least 1/CONGESTED_SHARE full: frames wait on the dial
# (at the default 10-sample frames and 64-frame queues, 160 ms of data), so arrivals are not
# near the latency floor (DeviceClock.mark_congested)
CONGESTED_SHARE = 4


def drop(core: DialCore, d: Drop, host_ns: int) -> list[Out]:
    ep = core.epoch
    if ep is None:
        return []
    nxt = ep.ledger.next_index
    if nxt is not None and d.n_samples and d.first_index < nxt:
        return core.reject(d, "drop", f"reports indices from {d.first_index}, already "
                           f"past {nxt}", host_ns)
    if d.n_samples > max_new_samples(ep, host_ns, core.slack_us) + (
            0 if nxt is None else nxt - d.first_index):
        return core.reject(d, "drop", f"{d.n_samples} samples is more than time allows",
                           host_ns)
    ep.ledger.note_drop(d)
    if ep.last_device_us is not None:  # the link is slower than the dial's data
        ep.clock.mark_congested(ep.last_device_us)
    return []


def status(core: DialCore, st: Status) -> list[Out]:
    ep = core.epoch
    if ep is not None:
        ep.status = st
        if st.queue_capacity and st.queue_depth * CONGESTED_SHARE >= st.queue_capacity:
            ep.clock.mark_congested(st.time_us)  # frames wait in the dial's queue
    return []


def button(core: DialCore, b: Button, host_ns: int) -> list[Out]:
    problem = field_problem(b)
    if problem is not None:
        return core.reject(b, "field", problem, host_ns)
    ep = core.epoch
    problem = None if ep is None else button_problem(ep, b, host_ns, core.slack_us)
    if problem is not None:
        return core.reject(b, "button", problem, host_ns)
    return [EventOut(core.uid, host_ns, "button", {
        "pressed": b.pressed == 1, "index": b.index, "device_us": b.t_us,
        "boot_id": None if ep is None else ep.boot_id})]


def ack(core: DialCore, a: Ack, host_ns: int) -> list[Out]:
    problem = field_problem(a)
    if problem is not None:
        return core.reject(a, "field", problem, host_ns)
    ep = core.epoch
    if ep is not None and ep.ledger.next_index is not None and a.index > \
            ep.ledger.next_index + max_new_samples(ep, host_ns, core.slack_us):
        return core.reject(a, "ack", f"index {a.index} further ahead than time allows",
                           host_ns)
    name = AckCommand(a.command).name
    if a.command == AckCommand.ZERO:
        # Counts restart from 0 at sample a.index (the ACK precedes that sample's frame).
        core.rating.zero_at(a.index)
    return [EventOut(core.uid, host_ns, "dial_ack", {"command": name, "index": a.index,
                                                      "value": a.value})]


def error(core: DialCore, e: Error, host_ns: int) -> list[Out]:
    problem = field_problem(e)
    if problem is not None:
        return core.reject(e, "field", problem, host_ns)
    core.errors.append(e)
    return [EventOut(core.uid, host_ns, "dial_error", {"code": e.code, "text": e.text})]
