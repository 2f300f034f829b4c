"""What a dial's core does with SAMPLES frames held for a HELLO, when one comes or when they
have waited too long (no I/O).

A SAMPLES frame that does not fit the current boot (or comes before any HELLO) is *held*
(docs/protocol.md): it waits, at most ``hold_s`` of host time, for a HELLO to say which
boot it is of. :class:`~ratedial.daemon.epoch.Held` keeps them; the core holds them
(:meth:`~ratedial.daemon.core.DialCore.samples`); this module places or rejects them.

Invariants:

* A held frame counted for the next gap of the boot it did not fit when it came
  (:meth:`~ratedial.integrity.IndexLedger.note_held`), never when it is placed or expires:
  what a gap's reason is depends on the order of the stream, not on when a HELLO comes or
  on host time. A HELLO that places such a frame before anything used its note takes the
  note back, and notes it again only if it rejects the frame.
* A frame rejected when its HELLO places it names that HELLO's boot; one rejected because
  no HELLO came in time names none (its ``detail`` says which boot it did not fit).
* A boot's first frame that fits takes in before it the frames held against the boot as
  ending too long before its HELLO that it goes on from without a gap (:func:`backlog`):
  a dial's frames in order, never a gap or a hostile frame's indices.
"""

from __future__ import annotations

from ..outputs import Out
from ..wire import Hello, Samples
from .epoch import Epoch, HeldFrame
from .pending import Core
from .placement import DUPLICATE, NEW, on_grid, place, since_start


def place_held(core: Core, ep: Epoch, h: Hello, held: list[HeldFrame], host_ns: int,
               slack_us: int) -> list[Out]:
    """The ``held`` frames (oldest first), placed in ``ep``, the boot of HELLO ``h``, if they
    fit it now: held unjudged (``no_hello``: they came before any HELLO on their port, e.g. a
    reopened port after an unplug), against another boot, or against this very boot as it
    was before this HELLO (a RATE command's HELLO, lost and asked for again, brings the
    period its frames have: found by a review). Frames created before this HELLO have
    smaller seq numbers (mod 2^16), and the HELLO a dial sends at start (seq 0) has none
    before it."""
    out: list[Out] = []
    renote = [x.boot_id is None or (x.boot_id == ep.boot_id and ep.ledger.unnote_held(
        x.token)) for x in held]
    for x, note in zip(held, renote, strict=True):
        s, t = x.samples, x.host_ns
        if not 0 < (h.seq - s.seq) % 65536 < 32768:
            detail = (f"its seq {s.seq} is not before that of the HELLO of boot "
                      f"{h.boot_id} that came after it ({h.seq})")
        else:
            kind, why = place(ep, s, t, slack_us, before_hello=True)
            if kind == NEW or (kind == DUPLICATE and x.boot_id != ep.boot_id):
                out += core.samples(s, t, before_hello=True)
                continue
            if kind == DUPLICATE:  # it did not fit when it came, and its indices came since:
                # rejected, as it is when this HELLO comes before them
                why = "its indices were received since"
            detail = f"does not fit boot {h.boot_id}, whose HELLO came after it ({why})"
        out += core.reject(s, x.why, detail, host_ns, note=note)
    return out


def backlog(ep: Epoch, s: Samples, held: list[HeldFrame]) -> list[HeldFrame]:
    """The frames held against boot ``ep`` while it had no frame, as ending more than
    PACKING_US before its HELLO although they came after it (``time_backwards``), that
    ``s``, the first frame of the boot that fits, goes on from: each frame the one before
    the next, its last index right before the next one's first, on their grid (a period
    apart, within a period), numbered after the HELLO and before the next; oldest first.
    The dial's sampler ran while its frames were not made (the virtual dial's process
    starved on a loaded machine for 0.5 s as the port opened: its first 45 frames, then
    rejected at the next HELLO). The oldest must fit the device time since the boot began.
    Empty if ``s`` goes on from none (found by the bench: 370 samples of each of 24 dials
    rejected)."""
    h = ep.hello
    chain: list[HeldFrame] = []
    head = s
    for x in reversed(held):  # newest first: the dial sent them in order
        p = x.samples
        if x.boot_id == ep.boot_id and x.why == "time_backwards" and \
                p.end_index == head.first_index and \
                0 < (head.seq - p.seq) % 65536 < 32768 and \
                0 < (p.seq - h.seq) % 65536 < 32768 and \
                on_grid(p.end_index - 1, p.times_us[-1], min(p.period_us, head.period_us),
                        head):
            chain.append(x)
            head = p
    while chain and not since_start(chain[-1].samples):
        chain.pop()
    return chain[::-1]


def reject_expired(core: Core, expired: list[HeldFrame], hold_ns: int, now_ns: int
                   ) -> list[Out]:
    """Reject the frames that waited for a HELLO longer than ``hold_ns``: no HELLO said whose
    they are. Counted for their boot's next gap when they came, not now (when this runs
    depends on host time, not on the stream)."""
    out: list[Out] = []
    for x in expired:
        judged = "" if x.boot_id is None else f"it did not fit boot {x.boot_id}, and "
        out += core.reject(x.samples, x.why, f"{judged}no HELLO named its boot within "
                           f"{hold_ns / 1e9:g} s", now_ns, note=False, boot_known=False)
    return out
