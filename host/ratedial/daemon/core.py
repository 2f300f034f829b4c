"""Per-dial processing, pure: frames and host receive times in, outputs for the shells out.

One :class:`DialCore` exists per dial *identity* (unique id) for the whole run and survives
unplugging. It owns, per device epoch (boot), the sample ledger and the clock model, and
across epochs the rating tracker. docs/protocol.md ("What a host does with ...") is the
contract this module implements. What a boot keeps is in :mod:`~ratedial.daemon.epoch`; where
a frame fits in a boot, judged by host time, in :mod:`~ratedial.daemon.placement` (SAMPLES)
and :mod:`~ratedial.daemon.rare` (BUTTON, SYNC, HELLO); what becomes of frames held for a
HELLO in :mod:`~ratedial.daemon.held`.

Invariants:

* No frame raises and no frame blocks what follows it. A frame with an impossible field
  (:func:`~ratedial.wire.checks.field_problem`) is rejected whole, counted by reason and
  reported as a ``frame_rejected`` event; none of its values reach the recording or the
  clock model.
* Indices of different boots are never mixed: every output names its ``boot_id``. SAMPLES
  that do not fit the current boot (an index or device time this boot cannot have produced)
  wait, at most ``hold_s`` of host time, for a HELLO that names their boot; meanwhile
  frames that do fit go on being recorded. A HELLO of the same boot places them again
  against the boot as it now is (rejecting what still does not fit); one of a
  new boot takes them in. SAMPLES that came before any HELLO (of the dial, or on a port
  opened again after an unplug) were judged against no boot: whichever boot the HELLO
  names, it takes them in if they fit it. What waited too long is rejected, and if its
  boot's HELLO comes later, its indices become a ``no_hello`` gap of that boot. A frame that
  would be a stall of the boot (or replace its unconfirmed first frame) but goes on, on
  their grid, from frames held as not of it is held with them: a reboot whose HELLO is late
  never becomes the old boot's once its indices pass the old boot's
  (:func:`~ratedial.daemon.placement.of_held_boot`). A held frame counts for the boot's next
  gap when it comes, whenever its HELLO comes (:mod:`~ratedial.daemon.held`). A boot's
  first frame that fits takes in before it the frames held as ending too long before its
  HELLO that it goes on from without a gap: the dial's, made late
  (:func:`~ratedial.daemon.held.backlog`).
* A SAMPLES frame extends its epoch only within what host time allows: one from the far
  future is rejected, never a gap of billions (:mod:`~ratedial.daemon.placement`).
* After a boot's first frame, a frame that skips indices or leaps ahead in device time is
  pending until a later frame goes on from it; one the dial's frames do not go on from is
  rejected (``unconfirmed``). A dial sends in order, so one impossible frame ahead of the
  dial never turns its frames away; pending frames are taken in as far as they fit when
  the boot's frames end for now (another boot's HELLO, :meth:`DialCore.finish`). A boot's
  first frame is taken in at once: a soft reboot whose HELLO was lost, right after it,
  would otherwise look like a frame ahead of the dial, and the new boot's frames confirm
  themselves in its place.
* Every index is accounted for by the epoch's :class:`~ratedial.integrity.IndexLedger`;
  gaps are emitted as :class:`GapOut`, never as values. Duplicates are counted and ignored.
* Mapped host times never decrease within an epoch: when a refit moves the line, the
  difference is slewed out (:class:`~ratedial.clock.SlewedMap`), never stepped.
* Ratings only move by count differences within a boot, so reboots and ZERO never jump;
  a boot the run saw begin counts from 0 at index 0 (an encoder's count at boot), so turns
  made before its first frame arrived move the rating too.
* A boot is accounted from its first received index when the dial was found running; from
  index 0 when this run saw the boot before and the new HELLO's device time fits its having
  begun since (then what never came from index 0 is a gap: ``unplugged`` or ``link``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..clock import ClockEpochError
from ..integrity import GapReason, GapWhy
from ..outputs import ArrivalOut, ClockOut, EpochOut, EventOut, Out, SyncOut
from ..scale import RatingScale
from ..wire import (
    Ack,
    Button,
    Drop,
    Error,
    Frame,
    Hello,
    Samples,
    Status,
    Sync,
)
from ..wire.checks import field_problem
from . import notices
from .epoch import NO_HELLO, ClockLike, Epoch, Held, Unmapped, stalls
from .held import backlog, place_held, reject_expired
from .pending import discard, flush, wait_or_confirm
from .placement import (
    DRIFT,
    DUPLICATE,
    FOREIGN,
    NOT_THIS_BOOT,
    REANCHOR,
    check_rate,
    first_unheard,
    leaps,
    of_held_boot,
    place,
    projected,
)
from .rare import hello_problem, sync_problem
from .rating import DialRating
from .settle import gap_out, map_out, settle, settle_after_sync, settle_if_due

EARLY_FITS_NS = 5_000_000_000  # every fit of a boot's first 5 s is stored (clock_models)
MAX_EPOCHS = 16  # boots of one dial kept resumable; older ones are retired
ANCHOR_TOL_US = 1_000_000  # a new anchor may tighten the bound on the dial's time by this
# The dial took no sample for this long (a sample's interval since the one before it, indices
# consecutive: its sampler stopped, e.g. a firmware hang): an overrun, never a gap, but said
STALL_US = 100_000
EVENTS_PER_REASON = 100  # frame_rejected events per dial and reason; then every 1000th


class DialCore:
    """Everything the daemon knows about one dial, independent of which port it is on."""

    def __init__(
        self,
        uid: str,
        *,
        scale: RatingScale,
        clock_factory: Callable[[], ClockLike],
        long_press_s: float | None = 2.0,
        clock_snapshot_s: float = 1.0,
        adc_units_per_point: float = 655.35,
        hold_s: float = 6.0,
        slack_s: float = 5.0,
        settle_s: float = 0.0,
    ) -> None:
        self.uid = uid
        self.scale = scale
        self.rating = DialRating(scale, long_press_s=long_press_s,
                                 adc_units_per_point=adc_units_per_point)
        self._clock_factory = clock_factory
        self._snapshot_ns = int(clock_snapshot_s * 1e9)
        self.slack_us = int(slack_s * 1e6)
        # a boot's samples wait at most this long for a SYNC that pins its clock before they
        # are mapped (0: mapped as they come, by arrivals alone at first)
        self._settle_ns = int(settle_s * 1e9)
        self.epoch: Epoch | None = None
        self.epochs: dict[int, Epoch] = {}  # every boot seen, newest last (MAX_EPOCHS)
        self._retired: set[int] = set()
        self.needs_hello = True
        self.held = Held(int(hold_s * 1e9))
        self.errors: list[Error] = []
        self.rejected: dict[str, int] = {}  # impossible frames by reason
        self.stalls = 0  # times the dial took no sample for at least STALL_US
        self.stalled_us = 0  # device time those stalls lasted

    # --- frames ---------------------------------------------------------------------------

    def receive(self, f: Frame, host_ns: int, *, ping_sent_ns: int | None = None) -> list[Out]:
        """Any frame from the dial: checked, then handled by its type's method."""
        problem = field_problem(f)
        if problem is not None:
            return self.reject(f, "field", problem, host_ns)
        match f:
            case Samples():
                return self.samples(f, host_ns, checked=True)
            case Hello():
                return self.hello(f, host_ns)
            case Sync():
                if ping_sent_ns is None:  # no PING of ours waits for this token
                    return self.reject(f, "sync", "answers no outstanding PING", host_ns)
                return self.sync(f, ping_sent_ns, host_ns)
            case Drop():
                return notices.drop(self, f, host_ns)
            case Status():
                return notices.status(self, f)
            case Button():
                return notices.button(self, f, host_ns)
            case Ack():
                return notices.ack(self, f, host_ns)
            case Error():
                return notices.error(self, f, host_ns)
        return []  # pragma: no cover - every frame type is matched above

    def hello_problem(self, h: Hello, host_ns: int) -> tuple[str, str] | None:
        """Why HELLO ``h`` is impossible for this dial (reason, detail), or None: a field
        beyond what a HELLO can carry, or the device time of a boot this run knows (the
        current one or an earlier one) off what that boot already sent."""
        problem = field_problem(h)
        if problem is not None:
            return "field", problem
        known = self.epochs.get(h.boot_id)
        problem = None if known is None else hello_problem(known, h, host_ns, self.slack_us)
        return None if problem is None else ("hello", problem)

    def hello(self, h: Hello, host_ns: int) -> list[Out]:
        problem = self.hello_problem(h, host_ns)
        if problem is not None:
            return self.reject(h, *problem, host_ns)
        out: list[Out] = []
        ep = self.epoch
        same_boot = ep is not None and ep.boot_id == h.boot_id
        if ep is not None and same_boot:
            ep.hello = h
        elif h.boot_id in self._retired:
            return self.reject(h, "retired_boot", f"boot {h.boot_id} ended long ago", host_ns)
        else:
            if ep is not None:  # the boot before ends here for now
                out += flush(self, ep, host_ns, self.slack_us)
                out += settle(self.uid, ep, pinned=False)
            previous = None if ep is None else ep.boot_id
            resumed = self.epochs.get(h.boot_id)
            if resumed is None:
                ep = Epoch(boot_id=h.boot_id, hello=h, clock=self._clock_factory(),
                           anchor_device_us=h.time_us, anchor_host_ns=host_ns,
                           anchor0_host_ns=host_ns)
                self._add_epoch(ep)
                out.append(EpochOut(self.uid, h.boot_id, h, host_ns, previous))
                ep.seed_index = first_unheard(h, host_ns, self.held.lost, self.slack_us)
                old_ep = self.epochs.get(previous) if previous is not None else None
                if old_ep is not None and h.time_us <= int(
                        max(0, host_ns - old_ep.anchor_host_ns) // 1000 * DRIFT) \
                        + self.slack_us:
                    # This run saw the boot before, and this one's device time fits its
                    # having begun since: its indices from 0 were all produced during the
                    # run, and what never came is a gap (a Pico's port is gone while it
                    # reboots: its first ~1.4 s, unsent). A HELLO claiming an older boot is
                    # accounted from its first frame, as a dial found running.
                    ep.booted_in_run = True
                    if ep.seed_index is None:  # (frames that expired unheard: no_hello
                        # from the first of them, as for any boot)
                        ep.seed_reason = GapReason.UNPLUGGED \
                            if old_ep.ledger.unplugged_noted else GapReason.LINK
                        ep.seed_index = 0
            else:
                ep = resumed
                ep.hello = h
            self.epoch = ep
            self.rating.new_boot(h.backend)
            if previous is not None:
                out.append(EventOut(self.uid, host_ns, "dial_reboot", {
                    "old_boot_id": previous, "new_boot_id": h.boot_id,
                    "resumed": resumed is not None}))
        self.needs_hello = False
        self.held.lost.clear()
        return out + place_held(self, ep, h, self.held.take(), host_ns, self.slack_us)

    def samples(self, s: Samples, host_recv_ns: int, *, before_hello: bool = False,
                checked: bool = False) -> list[Out]:
        """``checked``: :func:`field_problem` already passed ``s`` (:meth:`receive`)."""
        if not checked:
            problem = field_problem(s)
            if problem is not None:
                return self.reject(s, "field", problem, host_recv_ns)
        out = self.expire(host_recv_ns)
        ep = self.epoch
        if ep is None:
            self.needs_hello = True
            self.held.add(s, host_recv_ns, NO_HELLO)
            return out
        kind, why = place(ep, s, host_recv_ns, self.slack_us, before_hello=before_hello)
        if kind == DUPLICATE:
            ep.ledger.duplicates += len(s)
            return out
        if kind == FOREIGN:
            self._hold(ep, s, host_recv_ns, why)
            return out
        nxt, last_t = ep.ledger.next_index, ep.last_device_us
        if nxt is not None and last_t is not None:
            leap = leaps(ep, s)
            # Not a stall: the dial took samples meanwhile, of another boot. Nor a frame that
            # shows the boot's first frame was an impostor: it goes on from frames that did
            # not fit that one.
            if (leap or why == REANCHOR) and not before_hello and of_held_boot(
                    ep, s, self.held.frames, self.held.lost,
                    after_us=last_t if leap else -1):
                self._hold(ep, s, host_recv_ns, NOT_THIS_BOOT)
                return out
            if leap or s.first_index > nxt:
                return out + wait_or_confirm(self, ep, s, host_recv_ns)
        if ep.pending:  # the dial's frames go on without them: not the dial's
            pending, ep.pending = ep.pending, []
            out += discard(self, pending, host_recv_ns)
        if nxt is None and self.held.frames and not before_hello:
            chain = backlog(ep, s, self.held.frames)  # the dial's frames, made late
            for x in reversed(chain):  # notes are taken back newest first
                self.held.frames.remove(x)
                ep.ledger.unnote_held(x.token)
            for x in chain:
                out += self.take_in(ep, x.samples, x.host_ns)
        return out + self.take_in(ep, s, host_recv_ns)

    def _hold(self, ep: Epoch, s: Samples, host_ns: int, why: str) -> None:
        """``s`` does not fit boot ``ep``: it waits for a HELLO, and counts as a rejection
        for the boot's next gap (:meth:`~ratedial.integrity.IndexLedger.note_held`)."""
        self.needs_hello = True
        self.held.add(s, host_ns, why, ep.boot_id, ep.ledger.note_held())

    def finish(self, host_ns: int) -> list[Out]:
        """The run ends: the current boot's pending frames are taken in as far as they fit."""
        if self.epoch is None:
            return []
        return flush(self, self.epoch, host_ns, self.slack_us) + settle(
            self.uid, self.epoch, pinned=False)

    def take_in(self, ep: Epoch, s: Samples, host_recv_ns: int,
                why: GapWhy | None = None) -> list[Out]:
        """Take ``s`` into its boot: the clock model, the ledger (``why``: what explains its
        gap, if it was pending), the rating, and the outputs."""
        out: list[Out] = []
        try:
            ep.clock.add_arrival(s.times_us[-1], host_recv_ns)
        except ClockEpochError:  # pragma: no cover - place keeps device time in bounds
            return out + self.reject(s, "time_backwards", "the clock model refused it",
                                     host_recv_ns)
        out.append(ArrivalOut(self.uid, ep.boot_id, s.end_index - 1, s.times_us[-1],
                              host_recv_ns))
        est = ep.clock.current()  # cached: refitted at most every 100 ms or after a SYNC
        if ep.seed_index is not None:
            # from 0 only as far as the boot's period allows (an index far ahead of its own
            # device time opens no gap of billions: the frame is accounted from itself)
            fits = ep.seed_reason is GapReason.NO_HELLO or \
                s.first_index * ep.hello.period_us <= s.times_us[0] + 2 * ep.hello.period_us
            if ep.ledger.next_index is None and ep.seed_index < s.first_index and fits:
                ep.ledger.seed(ep.seed_index, ep.seed_reason)
            ep.booted_in_run = ep.booted_in_run and fits and ep.seed_index == 0
            ep.seed_index = None
        expected = ep.ledger.next_index  # the index after the last one taken in
        new, gaps = ep.ledger.accept(s, why)
        ep.fitted += 1
        for gap in gaps:
            first_us = None if ep.last_device_us is None else ep.last_device_us + s.period_us
            out += gap_out(self.uid, ep, est, gap, first_us, s.times_us[0])
            out.append(EventOut(self.uid, host_recv_ns, "gap", {
                "boot_id": ep.boot_id, "first_index": gap.first_index,
                "end_index": gap.end_index, "reason": str(gap.reason)}))
        if s.times_us[-1] >= projected(ep, host_recv_ns) - ANCHOR_TOL_US:
            # The frame becomes the anchor unless it would bound the dial's clock much more
            # tightly than the anchor it replaces: then it arrived long after it was made (a
            # replay, or a frame that waited for its HELLO) and would reject the next honest
            # frame as a time jump (found by test_core_stateful twice: a boot's first frame
            # replayed 5-7 s late was taken in and its samples, then the boot's next frame,
            # went unrecorded). Honest frames differ from the old bound by milliseconds;
            # after a stall they catch up within seconds, and the old anchor stays valid.
            ep.anchor_device_us, ep.anchor_host_ns = s.times_us[-1], host_recv_ns
        ep.last_period_us = s.period_us
        rate = check_rate(ep, s.times_us[-1], host_recv_ns)
        if rate is not None:
            out.append(EventOut(self.uid, host_recv_ns, "clock_rate_implausible", rate))
        ep.recent.append((new.start, s.times_us[new.start - s.first_index:]))
        if ep.first_device_us is None:
            ep.first_device_us = s.times_us[0]
        k0 = new.start - s.first_index
        times = s.times_us[k0:]
        counts = s.counts[k0:]
        flags = s.flags[k0:]
        if not ep.first_count_seen:
            # A boot that began during the run counted from 0 at its start (an encoder's
            # count starts there, before index 0): turns made before its first frame came,
            # and before its first sample, move the rating too.
            from_zero = ep.booted_in_run and ep.hello.backend != "adc"
            self.rating.rebase(0 if from_zero else counts[0])
            ep.first_count_seen = True
        prev = ep.last_device_us if expected == new.start else None
        out += self._stalls(ep, new.start, prev, times, host_recv_ns)
        ratings, resets = self.rating.frame(new.start, times, counts, flags)
        for index, rating in resets:
            out.append(EventOut(self.uid, host_recv_ns, "rating_reset", {
                "rating": rating, "index": index, "boot_id": ep.boot_id,
                "cause": "long_press"}))
        ep.last_device_us = times[-1]
        item = Unmapped(new.start, s.period_us, times, counts, tuple(ratings), flags,
                        host_recv_ns)
        out += map_out(self.uid, ep, est, item, self._settle_ns)
        # Every fit of the boot's first EARLY_FITS_S (they move a lot), then one a second.
        if est is not None and est is not ep.stored_est and (
                host_recv_ns >= ep.next_snapshot_ns
                or host_recv_ns - ep.anchor0_host_ns < EARLY_FITS_NS):
            ep.next_snapshot_ns = host_recv_ns + self._snapshot_ns
            ep.stored_est = est
            out.append(ClockOut(self.uid, ep.boot_id, host_recv_ns, est))
        return out

    def _stalls(self, ep: Epoch, first: int, prev_us: int | None, times: Sequence[int],
                host_ns: int) -> list[Out]:
        """A ``dial_stalled`` event for each stall (:func:`stalls`)."""
        out: list[Out] = []
        for index, dt in stalls(first, prev_us, times, STALL_US):
            self.stalls += 1
            self.stalled_us += dt
            out.append(EventOut(self.uid, host_ns, "dial_stalled", {
                "boot_id": ep.boot_id, "index": index, "seconds": round(dt / 1e6, 6)}))
        return out

    def sync(self, f: Sync, host_send_ns: int, host_recv_ns: int) -> list[Out]:
        problem = field_problem(f)
        if problem is not None:
            return self.reject(f, "field", problem, host_recv_ns)
        ep = self.epoch
        if ep is None or self.needs_hello:
            return []
        if host_send_ns < ep.anchor0_host_ns:
            # A PING written to the boot before, read by this one after it began: a lower
            # bound looser by the whole reboot (135 ms seen) put the first model far early.
            return []
        problem = sync_problem(ep, f, host_send_ns, host_recv_ns, self.slack_us)
        if problem is not None:
            return self.reject(f, "sync", problem, host_recv_ns)
        try:
            ep.clock.add_sync(host_send_ns, f.t_rx_us, f.t_tx_us, host_recv_ns)
        except ClockEpochError:
            return []
        ep.n_syncs += 1
        return [SyncOut(self.uid, ep.boot_id, f.token, host_send_ns, f.t_rx_us, f.t_tx_us,
                        host_recv_ns), *settle_after_sync(self.uid, ep)]

    def reject(self, f: Frame, reason: str, detail: str, host_ns: int, *,
               note: bool = True, boot_known: bool = True) -> list[Out]:
        """Count ``f`` as impossible; report it (every one up to EVENTS_PER_REASON, then
        every 1000th); a rejected SAMPLES frame makes the next gap's reason ``rejected``
        (``note``; a pending frame's rejection may explain an earlier gap instead, and a
        held frame noted itself when it came). The event names the current boot, the one
        ``f`` was judged against, unless ``boot_known`` is False (a frame whose boot no
        HELLO named in time)."""
        n = self.rejected[reason] = self.rejected.get(reason, 0) + 1
        ep = self.epoch
        if isinstance(f, Samples) and ep is not None and note:
            ep.ledger.note_rejects(GapReason.REJECTED)
        if n > EVENTS_PER_REASON and n % 1000:
            return []
        data: dict[str, Any] = {"reason": reason, "detail": detail,
                                "frame": type(f).__name__.upper(), "seq": f.seq,
                                "boot_id": None if ep is None or not boot_known
                                else ep.boot_id, "n": n}
        if isinstance(f, Samples):
            data.update(first_index=f.first_index, end_index=f.end_index)
        elif isinstance(f, Hello):
            data.update(hello_boot_id=f.boot_id)
        return [EventOut(self.uid, host_ns, "frame_rejected", data)]

    def expire(self, now_ns: int) -> list[Out]:
        """Reject the frames that waited for a HELLO longer than ``hold_s``; map the
        samples that waited ``settle_s`` for their boot's first SYNC."""
        out = [] if self.epoch is None else settle_if_due(self.uid, self.epoch, now_ns,
                                                          self._settle_ns)
        if not self.held.frames:  # the usual case, checked on every SAMPLES frame
            return out
        expired = reject_expired(self, self.held.expire(now_ns), self.held.hold_ns, now_ns)
        out += expired
        if expired and not self.held.frames and self.epoch is not None:
            self.needs_hello = False
        return out

    # --- link events ----------------------------------------------------------------------

    def rejects(self) -> None:
        if self.epoch is not None:
            self.epoch.ledger.note_rejects()

    def unplugged(self, host_ns: int, port: str, *, cause: str = "unplugged") -> list[Out]:
        self.needs_hello = True
        last = None
        out: list[Out] = []
        if self.epoch is not None:
            # what waited for a SYNC: mapped as it stands
            out += settle(self.uid, self.epoch, pinned=False)
            self.epoch.ledger.note_unplugged()
            last = self.epoch.ledger.next_index
        return [*out, EventOut(self.uid, host_ns, "dial_lost", {
            "port": port, "next_index": last, "cause": cause})]

    def start_rating(self, rating: float | None = None) -> None:
        """Set the rating to the scale's start (beginning of a recording)."""
        self.rating.reset(rating)

    @property
    def last_rating(self) -> float:
        return self.rating.last

    @property
    def duplicates(self) -> int:
        """Samples that came again, in every boot kept (counted and ignored)."""
        return sum(ep.ledger.duplicates for ep in self.epochs.values())

    @property
    def total_missing(self) -> int:
        return sum(ep.ledger.total_missing for ep in self.epochs.values())

    def missing_by_reason(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for ep in self.epochs.values():
            for reason, n in ep.ledger.missing.items():
                out[str(reason)] = out.get(str(reason), 0) + n
        return out

    # --- helpers --------------------------------------------------------------------------

    def _add_epoch(self, ep: Epoch) -> None:
        self.epochs[ep.boot_id] = ep
        while len(self.epochs) > MAX_EPOCHS:
            oldest = next(iter(self.epochs))
            self._retired.add(oldest)
            del self.epochs[oldest]
