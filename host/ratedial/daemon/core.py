"""Per-dial processing, pure: frames and host receive times in, outputs for the shells out.

One :class:`DialCore` exists per dial *identity* (unique id) for the whole run and survives
unplugging. It owns, per device epoch (boot), the sample ledger and the clock model, and
across epochs the rating tracker. docs/protocol.md ("What a host does with ...") is the
contract this module implements.

Invariants:

* No frame raises and no frame blocks what follows it. A frame with an impossible field
  (:func:`~ratedial.wire.checks.field_problem`) is rejected whole, counted by reason and
  reported as a ``frame_rejected`` event; none of its values reach the recording or the
  clock model.
* Indices of different boots are never mixed: every output names its ``boot_id``. SAMPLES
  that do not fit the current boot (an index or device time this boot cannot have produced)
  wait, at most ``hold_s`` of host time, for a HELLO that names their boot; meanwhile
  frames that do fit go on being recorded. A HELLO of the same boot rejects them; one of a
  new boot takes them in. SAMPLES that came before any HELLO (of the dial, or on a port
  opened again after an unplug) were judged against no boot: whichever boot the HELLO
  names, it takes them in if they fit it. What waited too long is rejected, and if its
  boot's HELLO comes later, its indices become a ``no_hello`` gap of that boot.
* A SAMPLES frame extends its epoch only within what the host time since the last accepted
  frame allows (clocks within 1000 ppm, plus ``slack_s`` of buffering): a frame from the
  far future is rejected, never a gap of billions.
* Every index is accounted for by the epoch's :class:`~ratedial.integrity.IndexLedger`;
  gaps are emitted as :class:`GapOut`, never as values. Duplicates are counted and ignored.
* Mapped host times never decrease within an epoch: when a refit moves the line, the
  difference is slewed out (:class:`~ratedial.clock.SlewedMap`), never stepped.
* Ratings only move by count differences within a boot, so reboots and ZERO never jump.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from heapq import merge as merge_sorted
from typing import Any, Protocol

from ..clock import ClockEpochError, ClockEstimate, SlewedMap
from ..integrity import Gap, GapReason, IndexLedger
from ..scale import RatingScale, RatingTracker
from ..wire import (
    FLAG_BUTTON,
    Ack,
    AckCommand,
    Button,
    Drop,
    Error,
    Frame,
    Hello,
    Samples,
    Status,
    Sync,
)
from ..wire.checks import MAX_PERIOD_US, MIN_PERIOD_US, field_problem

DRIFT = 1.001  # device and host clocks agree within 1000 ppm
RATE_CHECK_NS = 10_000_000_000  # host time in a boot before its clock rate is judged
EARLY_FITS_NS = 5_000_000_000  # every fit of a boot's first 5 s is stored (clock_models)
PACKING_US = 50_000  # a frame is queued within this of its last sample (GC pauses included)
RECENT_FRAMES = 4096  # frames whose device times a duplicate is checked against exactly
MAX_EPOCHS = 16  # boots of one dial kept resumable; older ones are retired
ANCHOR_TOL_US = 1_000_000  # a new anchor may tighten the bound on the dial's time by this
MAX_HELD = 20_000  # frames waiting for a HELLO (6 s of 1-sample frames at 2 kHz: 12,000)
EVENTS_PER_REASON = 100  # frame_rejected events per dial and reason; then every 1000th


class ClockLike(Protocol):
    def add_sync(self, host_send_ns: int, device_rx_us: int, device_tx_us: int,
                 host_recv_ns: int) -> None: ...

    def add_arrival(self, device_us: int, host_recv_ns: int) -> None: ...

    def current(self) -> ClockEstimate | None: ...

    def peek(self) -> ClockEstimate | None: ...


@dataclass(frozen=True, slots=True)
class EpochOut:
    uid: str
    boot_id: int
    hello: Hello
    host_ns: int
    previous_boot_id: int | None


@dataclass(frozen=True, slots=True)
class SamplesOut:
    uid: str
    boot_id: int
    first_index: int
    period_us: int
    device_us: tuple[int, ...]
    host_ns: tuple[int | None, ...]
    counts: tuple[int, ...]
    ratings: tuple[float, ...]
    flags: tuple[int, ...]
    # Filled in by the daemon from the media clock (empty: no player).
    media_ids: tuple[int | None, ...] = ()
    media_s: tuple[float | None, ...] = ()
    media_states: tuple[int, ...] = ()

    def __len__(self) -> int:
        return len(self.counts)


@dataclass(frozen=True, slots=True)
class GapOut:
    uid: str
    boot_id: int
    gap: Gap
    first_host_ns: int | None
    end_host_ns: int | None


@dataclass(frozen=True, slots=True)
class EventOut:
    uid: str  # "" for events not about one dial
    host_ns: int
    kind: str
    data: dict[str, Any]
    event_id: int = 0  # assigned by the daemon before the sinks see it


@dataclass(frozen=True, slots=True)
class SyncOut:
    uid: str
    boot_id: int
    token: int
    host_send_ns: int
    device_rx_us: int
    device_tx_us: int
    host_recv_ns: int


@dataclass(frozen=True, slots=True)
class ArrivalOut:
    uid: str
    boot_id: int
    last_index: int
    device_us: int
    host_recv_ns: int


@dataclass(frozen=True, slots=True)
class ClockOut:
    uid: str
    boot_id: int
    host_ns: int
    estimate: Any


Out = EpochOut | SamplesOut | GapOut | EventOut | SyncOut | ArrivalOut | ClockOut


@dataclass(slots=True)
class Epoch:
    boot_id: int
    hello: Hello
    clock: ClockLike
    ledger: IndexLedger = field(default_factory=IndexLedger)
    # The newest accepted SAMPLES frame's last device time and arrival (before the first
    # one: the HELLO's time and arrival; frames held for the HELLO do not move it back),
    # which bound what the next frame can hold.
    anchor_device_us: int = 0
    anchor_host_ns: int = 0
    first_device_us: int | None = None
    last_device_us: int | None = None
    last_period_us: int = 0
    # (first index, device times) of the recent accepted frames: what a duplicate must match
    recent: deque[tuple[int, tuple[int, ...]]] = field(
        default_factory=lambda: deque(maxlen=RECENT_FRAMES))
    first_count_seen: bool = False
    status: Status | None = None
    mapper: SlewedMap = field(default_factory=SlewedMap)
    n_syncs: int = 0  # SYNC answers the clock model took
    seed_index: int | None = None  # first index of this boot's frames that expired unheard
    rate_ref: tuple[int, int] | None = None  # (device_us, host_ns) of the first accepted frame
    rate_implausible: bool = False  # its clock runs far from 1 µs per µs: host times unknown
    anchor0_host_ns: int = 0  # when the boot's HELLO came
    next_snapshot_ns: int = 0
    stored_est: ClockEstimate | None = None  # the newest fit put out as a ClockOut
    fitted: int = 0  # SAMPLES frames taken in; the first is unconfirmed until another fits it


@dataclass(slots=True)
class Held:
    """SAMPLES frames waiting for a HELLO that says which boot they belong to."""

    hold_ns: int
    frames: list[tuple[Samples, int, str]] = field(default_factory=list)  # frame, host, why
    # What expired: (first index, last device time, arrival), for a later HELLO's gap.
    lost: list[tuple[int, int, int]] = field(default_factory=list)

    def add(self, s: Samples, host_ns: int, why: str) -> None:
        self.frames.append((s, host_ns, why))

    def expire(self, now_ns: int) -> list[tuple[Samples, int, str]]:
        """Take out the frames that have waited longer than ``hold_ns`` (or beyond the cap)."""
        n = 0
        while n < len(self.frames) and (self.frames[n][1] < now_ns - self.hold_ns
                                        or len(self.frames) - n > MAX_HELD):
            n += 1
        out, self.frames = self.frames[:n], self.frames[n:]
        self.lost += [(s.first_index, s.times_us[-1], t) for s, t, _ in out]
        del self.lost[:-MAX_HELD]
        return out

    def merge(self, other: Held) -> None:
        """Take over ``other``'s frames and losses (a port's, when its dial is known), in
        order of arrival (a replugged dial may still hold frames from before the unplug;
        :meth:`expire` and the HELLO that places them go by arrival)."""
        self.frames = list(merge_sorted(other.frames, self.frames, key=lambda f: f[1]))
        self.lost = list(merge_sorted(other.lost, self.lost, key=lambda x: x[2]))
        del self.lost[:-MAX_HELD]

    def take(self) -> list[tuple[Samples, int, str]]:
        out, self.frames = self.frames, []
        return out


# What a SAMPLES frame is to an epoch.
NEW, DUPLICATE, FOREIGN = "new", "duplicate", "foreign"
# Why a frame is held when no epoch has judged it yet: it came before any HELLO (of the dial,
# or on its port); the HELLO that comes places it whichever boot it names.
NO_HELLO = "no_hello"


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
    ) -> None:
        self.uid = uid
        self.scale = scale
        self.tracker = RatingTracker(scale)
        self._adc_units_per_point = adc_units_per_point
        self._clock_factory = clock_factory
        self.long_press_us = None if long_press_s is None else int(long_press_s * 1e6)
        self._snapshot_ns = int(clock_snapshot_s * 1e9)
        self._slack_us = int(slack_s * 1e6)
        self.epoch: Epoch | None = None
        self.epochs: dict[int, Epoch] = {}  # every boot seen, newest last (MAX_EPOCHS)
        self._retired: set[int] = set()
        self.needs_hello = True
        self.held = Held(int(hold_s * 1e9))
        self._press_start_us: int | None = None
        self._press_reset_done = False
        self.last_rating = scale.start
        self.last_count: int | None = None
        self.errors: list[Error] = []
        self.rejected: dict[str, int] = {}  # impossible frames by reason
        self._rebase_at: int | None = None

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
                return [] if ping_sent_ns is None else self.sync(f, ping_sent_ns, host_ns)
            case Drop():
                return self.drop(f, host_ns)
            case Status():
                return self.status(f, host_ns)
            case Button():
                return self.button(f, host_ns)
            case Ack():
                return self.ack(f, host_ns)
            case Error():
                return self.error(f, host_ns)
        return []  # pragma: no cover - every frame type is matched above

    def hello(self, h: Hello, host_ns: int) -> list[Out]:
        problem = field_problem(h)
        if problem is not None:
            return self.reject(h, "field", problem, host_ns)
        out: list[Out] = []
        ep = self.epoch
        same_boot = ep is not None and ep.boot_id == h.boot_id
        if ep is not None and same_boot:
            ep.hello = h
        elif h.boot_id in self._retired:
            return self.reject(h, "retired_boot", f"boot {h.boot_id} ended long ago", host_ns)
        else:
            previous = None if ep is None else ep.boot_id
            resumed = self.epochs.get(h.boot_id)
            if resumed is None:
                ep = Epoch(boot_id=h.boot_id, hello=h, clock=self._clock_factory(),
                           anchor_device_us=h.time_us, anchor_host_ns=host_ns,
                           anchor0_host_ns=host_ns)
                self._add_epoch(ep)
                out.append(EpochOut(self.uid, h.boot_id, h, host_ns, previous))
                self._seed(ep, h, host_ns)
            else:
                ep = resumed
                ep.hello = h
            self.epoch = ep
            self.tracker.set_absolute(self._adc_units_per_point if h.backend == "adc" else None)
            self._press_start_us = None
            self._rebase_at = None
            if previous is not None:
                out.append(EventOut(self.uid, host_ns, "dial_reboot", {
                    "old_boot_id": previous, "new_boot_id": h.boot_id,
                    "resumed": resumed is not None}))
        self.needs_hello = False
        self.held.lost.clear()
        for s, t, why in self.held.take():
            # Held against this very boot (they did not fit it): the HELLO confirms they are
            # not of it. Held unjudged (``no_hello``: they came before any HELLO on their
            # port, e.g. a reopened port after an unplug, whatever boot it then names) or
            # against another boot: placed in this one if they fit it. Frames created before
            # this HELLO have smaller seq numbers (mod 2^16), and the HELLO a dial sends at
            # start (seq 0) has none before it.
            if (same_boot and why != NO_HELLO) or not 0 < (h.seq - s.seq) % 65536 < 32768 or \
                    self._place(ep, s, t, before_hello=True)[0] == FOREIGN:
                out += self.reject(s, why, "not of the boot its HELLO named", host_ns)
            else:
                out += self.samples(s, t, before_hello=True)
        return out

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
        kind, why = self._place(ep, s, host_recv_ns, before_hello=before_hello)
        if kind == DUPLICATE:
            ep.ledger.duplicates += len(s)
            return out
        if kind == FOREIGN:
            self.needs_hello = True
            self.held.add(s, host_recv_ns, why)
            return out
        try:
            ep.clock.add_arrival(s.times_us[-1], host_recv_ns)
        except ClockEpochError:  # pragma: no cover - _place keeps device time in bounds
            return out + self.reject(s, "time_backwards", "the clock model refused it",
                                     host_recv_ns)
        out.append(ArrivalOut(self.uid, ep.boot_id, s.end_index - 1, s.times_us[-1],
                              host_recv_ns))
        est = ep.clock.current()  # cached: refitted at most every 100 ms or after a SYNC
        if ep.seed_index is not None:
            if ep.ledger.next_index is None and ep.seed_index < s.first_index:
                ep.ledger.seed(ep.seed_index, GapReason.NO_HELLO)
            ep.seed_index = None
        new, gaps = ep.ledger.accept(s)
        ep.fitted += 1
        for gap in gaps:
            first_t = None if est is None or ep.last_device_us is None else est.to_host_ns(
                ep.last_device_us + s.period_us)
            end_t = None if est is None else est.to_host_ns(s.times_us[0])
            out.append(GapOut(self.uid, ep.boot_id, gap, first_t, end_t))
            out.append(EventOut(self.uid, host_recv_ns, "gap", {
                "boot_id": ep.boot_id, "first_index": gap.first_index,
                "end_index": gap.end_index, "reason": str(gap.reason)}))
        if s.times_us[-1] >= self._projected(ep, host_recv_ns) - ANCHOR_TOL_US:
            # The frame becomes the anchor unless it would bound the dial's clock much more
            # tightly than the anchor it replaces: then it arrived long after it was made (a
            # replay, or a frame that waited for its HELLO) and would reject the next honest
            # frame as a time jump (found by test_core_stateful twice: a boot's first frame
            # replayed 5-7 s late was taken in and its samples, then the boot's next frame,
            # went unrecorded). Honest frames differ from the old bound by milliseconds;
            # after a stall they catch up within seconds, and the old anchor stays valid.
            ep.anchor_device_us, ep.anchor_host_ns = s.times_us[-1], host_recv_ns
        ep.last_period_us = s.period_us
        out += self._check_rate(ep, s.times_us[-1], host_recv_ns)
        ep.recent.append((new.start, s.times_us[new.start - s.first_index:]))
        if ep.first_device_us is None:
            ep.first_device_us = s.times_us[0]
        k0 = new.start - s.first_index
        times = s.times_us[k0:]
        counts = s.counts[k0:]
        flags = s.flags[k0:]
        if not ep.first_count_seen:
            self.tracker.rebase(counts[0])
            ep.first_count_seen = True
        ratings: list[float]
        if self._rebase_at is None and self._press_start_us is None and (
                self.long_press_us is None or not any(f & FLAG_BUTTON for f in flags)):
            # The common frame: no ZERO to apply, no button held. What the loop below does
            # per sample reduces to the tracker's update (and a released button's state).
            ratings = self.tracker.update_many(counts)
            self._press_reset_done = False
        else:
            ratings = self._ratings(ep, new.start, times, counts, flags, host_recv_ns, out)
        host = (None,) * len(times) if ep.rate_implausible else self._map(ep, est, times)
        ep.last_device_us = times[-1]
        self.last_rating = ratings[-1]
        self.last_count = counts[-1]
        out.append(SamplesOut(self.uid, ep.boot_id, new.start, s.period_us, times, host, counts,
                              tuple(ratings), flags))
        # Every fit of the boot's first EARLY_FITS_S (they move a lot), then one a second.
        if est is not None and est is not ep.stored_est and (
                host_recv_ns >= ep.next_snapshot_ns
                or host_recv_ns - ep.anchor0_host_ns < EARLY_FITS_NS):
            ep.next_snapshot_ns = host_recv_ns + self._snapshot_ns
            ep.stored_est = est
            out.append(ClockOut(self.uid, ep.boot_id, host_recv_ns, est))
        return out

    def _ratings(self, ep: Epoch, start: int, times: tuple[int, ...], counts: tuple[int, ...],
                 flags: tuple[int, ...], host_recv_ns: int, out: list[Out]) -> list[float]:
        """Ratings sample by sample: a ZERO's rebase and long presses take effect at their
        sample."""
        ratings = []
        for k, (t, c, f) in enumerate(zip(times, counts, flags, strict=True)):
            if self._rebase_at is not None and start + k >= self._rebase_at:
                self.tracker.rebase(c)
                self._rebase_at = None
            rating = self.tracker.update(c)
            if self._long_press(t, f):
                self.tracker.reset()
                rating = self.tracker.rating
                out.append(EventOut(self.uid, host_recv_ns, "rating_reset", {
                    "rating": rating, "index": start + k, "boot_id": ep.boot_id,
                    "cause": "long_press"}))
            ratings.append(rating)
        return ratings

    def sync(self, f: Sync, host_send_ns: int, host_recv_ns: int) -> list[Out]:
        problem = field_problem(f)
        if problem is not None:
            return self.reject(f, "field", problem, host_recv_ns)
        ep = self.epoch
        if ep is None or self.needs_hello:
            return []
        if ep.last_device_us is not None and f.t_tx_us < ep.last_device_us - 10_000_000:
            return []  # a reply from an earlier boot
        # The dial cannot spend longer between reading the PING and answering it than the
        # host waited for the answer, nor answer from further ahead than time allows.
        if (f.t_tx_us - f.t_rx_us) * 1000 > (host_recv_ns - host_send_ns) * DRIFT + 1_000_000:
            return self.reject(f, "sync", "longer on the dial than the round trip", host_recv_ns)
        if f.t_tx_us > self._ahead_limit(ep, host_recv_ns):
            return self.reject(f, "sync", "device time further ahead than time allows",
                               host_recv_ns)
        try:
            ep.clock.add_sync(host_send_ns, f.t_rx_us, f.t_tx_us, host_recv_ns)
        except ClockEpochError:
            return []
        ep.n_syncs += 1
        return [SyncOut(self.uid, ep.boot_id, f.token, host_send_ns, f.t_rx_us, f.t_tx_us,
                        host_recv_ns)]

    def drop(self, d: Drop, host_ns: int) -> list[Out]:
        ep = self.epoch
        if ep is None:
            return []
        nxt = ep.ledger.next_index
        if nxt is not None and d.n_samples and d.first_index < nxt:
            return self.reject(d, "drop", f"reports indices from {d.first_index}, already "
                               f"past {nxt}", host_ns)
        if d.n_samples > self._max_new_samples(ep, host_ns) + (
                0 if nxt is None else nxt - d.first_index):
            return self.reject(d, "drop", f"{d.n_samples} samples is more than time allows",
                               host_ns)
        ep.ledger.note_drop(d)
        return []

    def status(self, st: Status, host_ns: int) -> list[Out]:
        if self.epoch is not None:
            self.epoch.status = st
        return []

    def button(self, b: Button, host_ns: int) -> list[Out]:
        problem = field_problem(b)
        if problem is not None:
            return self.reject(b, "field", problem, host_ns)
        ep = self.epoch
        if ep is not None and b.t_us > self._ahead_limit(ep, host_ns):
            return self.reject(b, "button", "device time further ahead than time allows",
                               host_ns)
        return [EventOut(self.uid, host_ns, "button", {
            "pressed": b.pressed, "index": b.index, "device_us": b.t_us,
            "boot_id": None if ep is None else ep.boot_id})]

    def ack(self, a: Ack, host_ns: int) -> list[Out]:
        problem = field_problem(a)
        if problem is not None:
            return self.reject(a, "field", problem, host_ns)
        ep = self.epoch
        if ep is not None and ep.ledger.next_index is not None and a.index > \
                ep.ledger.next_index + self._max_new_samples(ep, host_ns):
            return self.reject(a, "ack", f"index {a.index} further ahead than time allows",
                               host_ns)
        name = AckCommand(a.command).name
        if a.command == AckCommand.ZERO:
            # Counts restart from 0 at sample a.index (the ACK precedes that sample's frame).
            self._rebase_at = a.index
        return [EventOut(self.uid, host_ns, "dial_ack", {"command": name, "index": a.index,
                                                          "value": a.value})]

    def error(self, e: Error, host_ns: int) -> list[Out]:
        problem = field_problem(e)
        if problem is not None:
            return self.reject(e, "field", problem, host_ns)
        self.errors.append(e)
        return [EventOut(self.uid, host_ns, "dial_error", {"code": e.code, "text": e.text})]

    def reject(self, f: Frame, reason: str, detail: str, host_ns: int) -> list[Out]:
        """Count ``f`` as impossible; report it (every one up to EVENTS_PER_REASON, then
        every 1000th); a rejected SAMPLES frame makes the next gap's reason ``rejected``."""
        n = self.rejected[reason] = self.rejected.get(reason, 0) + 1
        ep = self.epoch
        if isinstance(f, Samples) and ep is not None:
            ep.ledger.note_rejects(GapReason.REJECTED)
        if n > EVENTS_PER_REASON and n % 1000:
            return []
        data: dict[str, Any] = {"reason": reason, "detail": detail,
                                "frame": type(f).__name__.upper(), "seq": f.seq,
                                "boot_id": None if ep is None else ep.boot_id, "n": n}
        if isinstance(f, Samples):
            data.update(first_index=f.first_index, end_index=f.end_index)
        elif isinstance(f, Hello):
            data.update(hello_boot_id=f.boot_id)
        return [EventOut(self.uid, host_ns, "frame_rejected", data)]

    def expire(self, now_ns: int) -> list[Out]:
        """Reject the frames that waited for a HELLO longer than ``hold_s``."""
        if not self.held.frames:  # the usual case, checked on every SAMPLES frame
            return []
        out: list[Out] = []
        for s, _, why in self.held.expire(now_ns):
            out += self.reject(s, why, "its boot's HELLO did not come in time", now_ns)
        if out and not self.held.frames and self.epoch is not None:
            self.needs_hello = False
        return out

    # --- link events ----------------------------------------------------------------------

    def rejects(self) -> None:
        if self.epoch is not None:
            self.epoch.ledger.note_rejects()

    def unplugged(self, host_ns: int, port: str, *, cause: str = "unplugged") -> list[Out]:
        self.needs_hello = True
        last = None
        if self.epoch is not None:
            self.epoch.ledger.note_unplugged()
            last = self.epoch.ledger.next_index
        return [EventOut(self.uid, host_ns, "dial_lost", {"port": port, "next_index": last,
                                                          "cause": cause})]

    def start_rating(self, rating: float | None = None) -> None:
        """Set the rating to the scale's start (beginning of a recording)."""
        self.tracker.reset(rating)
        self.last_rating = self.tracker.rating

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

    def _seed(self, ep: Epoch, h: Hello, host_ns: int) -> None:
        """Frames of this new boot that expired waiting for this HELLO: their indices are a
        ``no_hello`` gap of the boot (only those whose device time this boot can have had)."""
        def could_be_ours(t_us: int, arrival_ns: int) -> bool:
            # taken before this HELLO was built, and not before that frame's arrival allows
            before = int(max(0, host_ns - arrival_ns) // 1000 * DRIFT) + self._slack_us
            return h.time_us - before <= t_us <= h.time_us + self._slack_us

        firsts = [first for first, t, arrival in self.held.lost if could_be_ours(t, arrival)]
        if firsts:
            ep.seed_index = min(firsts)  # a gap if the boot's first frame comes after it

    @staticmethod
    def _projected(ep: Epoch, host_ns: int) -> int:
        """The anchor's device time plus the host time since it arrived (clocks within
        1000 ppm): where the anchor's clock can have got to by ``host_ns``."""
        elapsed_us = max(0, host_ns - ep.anchor_host_ns) // 1000
        return ep.anchor_device_us + int(elapsed_us * DRIFT)

    def _ahead_limit(self, ep: Epoch, host_ns: int) -> int:
        """The latest device time the dial can have reached by ``host_ns``: the projected
        anchor plus ``slack_s`` for the anchor's own latency (a frame that waited in the
        dial's queue)."""
        return self._projected(ep, host_ns) + self._slack_us

    def _max_new_samples(self, ep: Epoch, host_ns: int) -> int:
        """How many samples past the anchor the dial can have taken by ``host_ns``."""
        return (self._ahead_limit(ep, host_ns) - ep.anchor_device_us) // MIN_PERIOD_US + 2

    def _place(self, ep: Epoch, s: Samples, host_ns: int, *, before_hello: bool = False
               ) -> tuple[str, str]:
        """NEW, DUPLICATE or FOREIGN (with why) for SAMPLES ``s`` against epoch ``ep``;
        ``before_hello``: ``s`` arrived before the HELLO that made ``ep`` current."""
        if s.times_us[-1] > self._ahead_limit(ep, host_ns):
            return FOREIGN, "time_jump"
        nxt = ep.ledger.next_index
        last_t = ep.last_device_us
        if nxt is None or last_t is None:
            # The first frame of the boot. The dial queues HELLO and SAMPLES in one FIFO and
            # builds a frame when its last sample is taken: a frame that came before the
            # HELLO ended before it was built, one that came after ended after.
            t_hello = ep.hello.time_us
            if before_hello and s.times_us[-1] > t_hello + PACKING_US:
                return FOREIGN, "not_this_boot"
            if not before_hello and s.times_us[-1] < t_hello - PACKING_US:
                return FOREIGN, "time_backwards"
            if not self._since_start(s):
                return FOREIGN, "index_jump"
            return NEW, ""
        if s.end_index <= nxt:
            # A duplicate carries the device times this boot gave those indices: exactly
            # those recorded, for the recent frames; for older ones not after the newest, not
            # before the first, one period or more apart per index.
            known = self._recorded_time(ep, s.first_index)
            if known is not None:
                return (DUPLICATE, "") if known == s.times_us[0] else (FOREIGN, "replay")
            assert ep.first_device_us is not None
            behind = (nxt - s.end_index) * min(ep.last_period_us, s.period_us)
            if ep.first_device_us <= s.times_us[0] and s.times_us[-1] <= last_t - behind:
                return DUPLICATE, ""
            return FOREIGN, "replay"
        i0 = max(s.first_index, nxt)
        t0 = s.times_us[i0 - s.first_index]
        if t0 <= last_t:
            return FOREIGN, "time_backwards"
        # Each index takes at least a period (the smaller of the two, if the rate changed)
        # of device time, less one period of jitter.
        if (i0 - nxt) * min(ep.last_period_us, s.period_us) > t0 - last_t:
            if ep.fitted == 1 and self._since_start(s):
                # Only the boot's first frame stands against it, and nothing has confirmed
                # that one: it may be the impostor (e.g. an old index with a current time),
                # and trusting it would hold every honest frame after it. Going forward in
                # both index and device time, this frame re-anchors the boot; the indices
                # between are a gap.
                return NEW, ""
            return FOREIGN, "index_jump"
        return NEW, ""

    @staticmethod
    def _since_start(s: Samples) -> bool:
        """Whether ``s``'s first index fits its device time since the boot began: index 0
        was taken at a device time of 0 or later and each index since took at least
        MIN_PERIOD_US (less a period of jitter at either end). A frame taken as a boot's
        anchor must fit it: a later frame can only replace an unconfirmed anchor that lies
        behind it in index, never one ahead of it, whose samples are already recorded
        (found by test_core_stateful: a first frame at index 19997 and 0.997 s, then every
        honest frame from index 0 was judged a replay)."""
        return s.first_index * MIN_PERIOD_US <= s.times_us[0] + 2 * MAX_PERIOD_US

    def _check_rate(self, ep: Epoch, device_us: int, host_ns: int) -> list[Out]:
        """Once RATE_CHECK_NS of host time has passed in a boot, its device clock must run
        within a factor of two of the host's (a crystal is within 0.1 %; a stall or burst
        moves arrivals by seconds at most). Otherwise the boot's host times are not
        computed (NULL) from then on, and one event says why."""
        if ep.rate_ref is None:
            ep.rate_ref = (device_us, host_ns)
            return []
        d0, h0 = ep.rate_ref
        if ep.rate_implausible or host_ns - h0 < RATE_CHECK_NS:
            return []
        ratio = (device_us - d0) * 1000 / (host_ns - h0)
        if 0.5 <= ratio <= 2.0:
            return []
        ep.rate_implausible = True
        return [EventOut(self.uid, host_ns, "clock_rate_implausible", {
            "boot_id": ep.boot_id, "ratio": round(ratio, 4),
            "device_s": round((device_us - d0) / 1e6, 3),
            "host_s": round((host_ns - h0) / 1e9, 3)})]

    @staticmethod
    def _recorded_time(ep: Epoch, index: int) -> int | None:
        """The device time recorded for ``index`` if it is among the recent frames."""
        recent = ep.recent
        if not recent or index < recent[0][0]:
            return None
        k = bisect_right(recent, index, key=lambda r: r[0]) - 1
        first, times = recent[k]
        return times[index - first] if index - first < len(times) else None

    @staticmethod
    def _map(ep: Epoch, est: ClockEstimate | None,
             times: tuple[int, ...]) -> tuple[int | None, ...]:
        return (None,) * len(times) if est is None else tuple(ep.mapper.map(est, times))

    def _long_press(self, t_us: int, flags: int) -> bool:
        if self.long_press_us is None:
            return False
        if not flags & FLAG_BUTTON:
            self._press_start_us = None
            self._press_reset_done = False
            return False
        if self._press_start_us is None:
            self._press_start_us = t_us
        if not self._press_reset_done and t_us - self._press_start_us >= self.long_press_us:
            self._press_reset_done = True
            return True
        return False


def hello_dict(h: Hello) -> dict[str, Any]:
    d = asdict(h)
    d["uid"] = h.uid.hex()
    return d
