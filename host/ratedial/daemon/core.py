"""Per-dial processing, pure: frames and host receive times in, outputs for the shells out.

One :class:`DialCore` exists per dial *identity* (unique id) for the whole run and survives
unplugging. It owns, per device epoch (boot), the sample ledger and the clock model, and
across epochs the rating tracker.

Invariants:

* Indices of different boots are never mixed: every output names its ``boot_id``; samples
  that cannot belong to the current boot (index or device time going backwards) are held
  back until a HELLO names their boot (:attr:`DialCore.needs_hello` asks the shell for one).
* Every index is accounted for by the epoch's :class:`~ratedial.integrity.IndexLedger`;
  gaps are emitted as :class:`GapOut`, never as values.
* Ratings only move by count differences within a boot, so reboots and ZERO never jump.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from ..clock import ClockEpochError
from ..integrity import Gap, IndexLedger
from ..scale import RatingScale, RatingTracker
from ..wire import FLAG_BUTTON, Ack, AckCommand, Button, Drop, Error, Hello, Samples, Status, Sync


class ClockEstimateLike(Protocol):
    uncertainty_ns: int
    skew_ppm: float

    def to_host_ns(self, device_us: int) -> int: ...


class ClockLike(Protocol):
    def add_sync(self, host_send_ns: int, device_rx_us: int, device_tx_us: int,
                 host_recv_ns: int) -> None: ...

    def add_arrival(self, device_us: int, host_recv_ns: int) -> None: ...

    def current(self) -> Any: ...


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
    last_device_us: int | None = None
    first_count_seen: bool = False
    status: Status | None = None


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
    ) -> None:
        self.uid = uid
        self.scale = scale
        self.tracker = RatingTracker(scale)
        self._adc_units_per_point = adc_units_per_point
        self._clock_factory = clock_factory
        self.long_press_us = None if long_press_s is None else int(long_press_s * 1e6)
        self._snapshot_ns = int(clock_snapshot_s * 1e9)
        self._next_snapshot_ns = 0
        self.epoch: Epoch | None = None
        self.needs_hello = True
        self._held: list[tuple[Samples, int]] = []
        self._press_start_us: int | None = None
        self._press_reset_done = False
        self.last_rating = scale.start
        self.last_count: int | None = None
        self.errors: list[Error] = []
        self._rebase_at: int | None = None

    # --- frames ---------------------------------------------------------------------------

    def hello(self, h: Hello, host_ns: int) -> list[Out]:
        out: list[Out] = []
        if self.epoch is None or self.epoch.boot_id != h.boot_id:
            previous = None if self.epoch is None else self.epoch.boot_id
            self.epoch = Epoch(boot_id=h.boot_id, hello=h, clock=self._clock_factory())
            self.tracker.set_absolute(self._adc_units_per_point if h.backend == "adc" else None)
            self._press_start_us = None
            self._rebase_at = None
            out.append(EpochOut(self.uid, h.boot_id, h, host_ns, previous))
            if previous is not None:
                out.append(EventOut(self.uid, host_ns, "dial_reboot",
                                    {"old_boot_id": previous, "new_boot_id": h.boot_id}))
        else:
            self.epoch.hello = h
        self.needs_hello = False
        held, self._held = self._held, []
        for s, t in held:
            out += self.samples(s, t)
        return out

    def samples(self, s: Samples, host_recv_ns: int) -> list[Out]:
        ep = self.epoch
        if ep is None or self.needs_hello or self._foreign(ep, s):
            self.needs_hello = True
            if len(self._held) < 1000:  # ~10 s at 1 kHz: a HELLO comes every 5 s
                self._held.append((s, host_recv_ns))
            return []
        out: list[Out] = []
        try:
            ep.clock.add_arrival(s.times_us[-1], host_recv_ns)
        except ClockEpochError:
            self.needs_hello = True
            self._held.append((s, host_recv_ns))
            return []
        out.append(ArrivalOut(self.uid, ep.boot_id, s.end_index - 1, s.times_us[-1],
                              host_recv_ns))
        est = ep.clock.current()  # cached: refitted at most every 100 ms or after a SYNC
        new, gaps = ep.ledger.accept(s)
        for gap in gaps:
            first_t = None if est is None or ep.last_device_us is None else est.to_host_ns(
                ep.last_device_us + s.period_us)
            end_t = None if est is None else est.to_host_ns(s.times_us[0])
            out.append(GapOut(self.uid, ep.boot_id, gap, first_t, end_t))
            out.append(EventOut(self.uid, host_recv_ns, "gap", {
                "boot_id": ep.boot_id, "first_index": gap.first_index,
                "end_index": gap.end_index, "reason": str(gap.reason)}))
        if not new:
            return out
        k0 = new.start - s.first_index
        times = s.times_us[k0:]
        counts = s.counts[k0:]
        flags = s.flags[k0:]
        if not ep.first_count_seen:
            self.tracker.rebase(counts[0])
            ep.first_count_seen = True
        ratings = []
        for k, (t, c, f) in enumerate(zip(times, counts, flags, strict=True)):
            if self._rebase_at is not None and new.start + k >= self._rebase_at:
                self.tracker.rebase(c)
                self._rebase_at = None
            rating = self.tracker.update(c)
            if self._long_press(t, f):
                self.tracker.reset()
                rating = self.tracker.rating
                out.append(EventOut(self.uid, host_recv_ns, "rating_reset", {
                    "rating": rating, "index": new.start + k, "boot_id": ep.boot_id,
                    "cause": "long_press"}))
            ratings.append(rating)
        host: tuple[int | None, ...] = (
            (None,) * len(times) if est is None else tuple(est.to_host_ns_many(times)))
        ep.last_device_us = times[-1]
        self.last_rating = ratings[-1]
        self.last_count = counts[-1]
        out.append(SamplesOut(self.uid, ep.boot_id, new.start, s.period_us, times, host, counts,
                              tuple(ratings), flags))
        if est is not None and host_recv_ns >= self._next_snapshot_ns:
            self._next_snapshot_ns = host_recv_ns + self._snapshot_ns
            out.append(ClockOut(self.uid, ep.boot_id, host_recv_ns, est))
        return out

    def sync(self, f: Sync, host_send_ns: int, host_recv_ns: int) -> list[Out]:
        ep = self.epoch
        if ep is None or self.needs_hello:
            return []
        if ep.last_device_us is not None and f.t_tx_us < ep.last_device_us - 10_000_000:
            return []  # a reply from an earlier boot
        try:
            ep.clock.add_sync(host_send_ns, f.t_rx_us, f.t_tx_us, host_recv_ns)
        except ClockEpochError:
            return []
        return [SyncOut(self.uid, ep.boot_id, f.token, host_send_ns, f.t_rx_us, f.t_tx_us,
                        host_recv_ns)]

    def drop(self, d: Drop) -> None:
        if self.epoch is not None:
            self.epoch.ledger.note_drop(d)

    def status(self, st: Status) -> None:
        if self.epoch is not None:
            self.epoch.status = st

    def button(self, b: Button, host_ns: int) -> list[Out]:
        return [EventOut(self.uid, host_ns, "button", {
            "pressed": b.pressed, "index": b.index, "device_us": b.t_us,
            "boot_id": None if self.epoch is None else self.epoch.boot_id})]

    def ack(self, a: Ack, host_ns: int) -> list[Out]:
        name = AckCommand(a.command).name if a.command in AckCommand._value2member_map_ else "?"
        if a.command == AckCommand.ZERO:
            # Counts restart from 0 at sample a.index (the ACK precedes that sample's frame).
            self._rebase_at = a.index
        return [EventOut(self.uid, host_ns, "dial_ack", {"command": name, "index": a.index,
                                                          "value": a.value})]

    def error(self, e: Error, host_ns: int) -> list[Out]:
        self.errors.append(e)
        return [EventOut(self.uid, host_ns, "dial_error", {"code": e.code, "text": e.text})]

    # --- link events ----------------------------------------------------------------------

    def rejects(self) -> None:
        if self.epoch is not None:
            self.epoch.ledger.note_rejects()

    def unplugged(self, host_ns: int, port: str) -> list[Out]:
        self.needs_hello = True
        last = None
        if self.epoch is not None:
            self.epoch.ledger.note_unplugged()
            last = self.epoch.ledger.next_index
        return [EventOut(self.uid, host_ns, "dial_lost", {"port": port, "next_index": last})]

    def start_rating(self, rating: float | None = None) -> None:
        """Set the rating to the scale's start (beginning of a recording)."""
        self.tracker.reset(rating)
        self.last_rating = self.tracker.rating

    # --- helpers --------------------------------------------------------------------------

    @staticmethod
    def _foreign(ep: Epoch, s: Samples) -> bool:
        """True if ``s`` cannot be a later frame of epoch ``ep`` (its HELLO was missed)."""
        if ep.last_device_us is None:
            return False
        return s.times_us[0] < ep.last_device_us - 1_000_000 or (
            ep.ledger.next_index is not None and s.end_index < ep.ledger.next_index - 100_000)

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
