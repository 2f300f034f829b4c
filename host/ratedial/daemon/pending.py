"""What a dial's core does with SAMPLES frames that wait for a later frame (no I/O).

After a boot's first frame, a frame that skips indices or leaps ahead in device time
(:func:`~ratedial.daemon.placement.leaps`) is *pending* (docs/protocol.md): taken in only
when a later frame goes on from it. A dial sends its frames in order, so at most one pending
frame is its own, its newest; the next frame confirms it.

Invariants:

* A frame that goes on from the last frame taken in discards every pending frame
  (``unconfirmed``): one impossible frame ahead of the dial never turns its frames away.
* A frame that goes on from a pending frame confirms the nearest one
  (:func:`~ratedial.daemon.placement.confirmed_by`) and discards the others, unless one of
  them is ahead of it in index, before it in device time and within the index bound: then
  that one was the boot's last frame before a soft reboot whose HELLO was lost, and the
  others wait for the new boot's HELLO.
* A gap is explained by what was noted before the frame after it
  (:class:`~ratedial.integrity.GapWhy`), also when that frame is taken in later.
* At most :data:`~ratedial.daemon.epoch.MAX_PENDING` frames wait; when a boot's frames end
  for now (another boot's HELLO, the end of the run) they are taken in as far as they fit,
  the newest as it fitted when it came.
"""

from __future__ import annotations

from typing import Protocol

from ..integrity import GapReason, GapWhy
from ..outputs import Out
from ..wire import Frame, Samples
from .epoch import MAX_PENDING, Epoch, Pending
from .placement import DUPLICATE, NEW, confirmed_by, place, within_bound


class Core(Protocol):
    """What of :class:`~ratedial.daemon.core.DialCore` the pending and held frames use."""

    def take_in(self, ep: Epoch, s: Samples, host_recv_ns: int,
                why: GapWhy | None = None) -> list[Out]: ...

    def samples(self, s: Samples, host_recv_ns: int, *, before_hello: bool = False,
                checked: bool = False) -> list[Out]: ...

    def reject(self, f: Frame, reason: str, detail: str, host_ns: int, *,
               note: bool = True, boot_known: bool = True) -> list[Out]: ...


def wait_or_confirm(core: Core, ep: Epoch, s: Samples, host_ns: int) -> list[Out]:
    """``s`` skips indices or leaps ahead in device time: taken in only once a later frame
    goes on from it. If ``s`` goes on from a pending frame, that one is taken in (its gap
    is explained by what came before it) and the others are discarded; then ``s`` is
    placed against the boot as it now stands."""
    k = confirmed_by([p.samples for p in ep.pending], s)
    if k is None:
        ep.pending.append(Pending(s, host_ns, ep.ledger.hold()))
        if len(ep.pending) <= MAX_PENDING:
            return []
        oldest = ep.pending.pop(0)
        ep.pending[0].why = ep.pending[0].why.merge(oldest.why)
        return discard(core, [oldest], host_ns, note=False)
    c = ep.pending[k]
    ended = [p for p in ep.pending if p.samples.first_index >= c.samples.end_index
             and p.samples.times_us[-1] < c.samples.times_us[0]
             and within_bound(ep, p.samples)]
    if ended:
        return _new_boot_after(core, ep, ended[-1], s, host_ns)
    earlier, later = ep.pending[:k], ep.pending[k + 1:]
    ep.pending = []
    why = c.why
    for p in earlier:  # came before c: what was noted before them explains c's gap
        why = why.merge(p.why).merge(GapWhy(rejects=GapReason.REJECTED))
    for p in later:  # came after c: what was noted before them is for the next gap
        ep.ledger.restore(p.why)
    out = discard(core, earlier, host_ns, note=False)
    out += discard(core, later, host_ns)
    out += core.take_in(ep, c.samples, c.host_ns, why)
    return out + core.samples(s, host_ns, checked=True)


def _new_boot_after(core: Core, ep: Epoch, last: Pending, s: Samples, host_ns: int
                    ) -> list[Out]:
    """Frames go back in index and on in device time from ``last``, a pending frame that
    came before them: ``last`` was this boot's last frame and they are of a new boot whose
    HELLO was lost (a soft reboot: device time goes on, indices start again). No impostor
    within the index bound can be ahead of the dial's frames in index and before them in
    device time. ``last`` is taken in; the others are placed again, against the boot as it
    now stands, and wait for the new boot's HELLO."""
    rest = [p for p in ep.pending if p is not last]
    ep.pending = []
    why = last.why
    for p in rest:
        if p.host_ns <= last.host_ns:
            why = why.merge(p.why)
        else:
            ep.ledger.restore(p.why)
    out = core.take_in(ep, last.samples, last.host_ns, why)
    for p in rest:
        out += core.samples(p.samples, p.host_ns, checked=True)
    return out + core.samples(s, host_ns, checked=True)


def discard(core: Core, frames: list[Pending], host_ns: int, *, note: bool = True
            ) -> list[Out]:
    """Reject pending ``frames`` that the dial's own frames did not go on from."""
    out: list[Out] = []
    for p in frames:
        out += core.reject(p.samples, "unconfirmed", "no later frame went on from it",
                           host_ns, note=note)
    return out


def flush(core: Core, ep: Epoch, host_ns: int, slack_us: int) -> list[Out]:
    """No more frames of this boot are coming for now (another boot's HELLO, the end of the
    run): its pending frames are taken in as far as they fit, newest first (at most one is
    the dial's: its newest frame, which nothing could confirm). Nothing was taken in since
    they came, so the newest still fits as it did then (a HELLO of the same boot since, with
    a later device time, does not make it a frame from before)."""
    if not ep.pending:
        return []
    pending, ep.pending = ep.pending, []
    why = pending[0].why
    for p in pending[1:]:  # all came before what is noted now: for the newest's gap
        why = why.merge(p.why)
    newest = pending.pop()
    out = core.take_in(ep, newest.samples, newest.host_ns, why)
    for p in reversed(pending):
        kind, reason = place(ep, p.samples, p.host_ns, slack_us)
        if kind == NEW:
            out += core.take_in(ep, p.samples, p.host_ns)
        elif kind == DUPLICATE:
            ep.ledger.duplicates += len(p.samples)
        else:
            out += core.reject(p.samples, "unconfirmed", f"did not fit ({reason})", host_ns)
    return out
