"""What a dial's core keeps per boot, and for frames that no boot has taken yet.

One :class:`Epoch` per device boot of a dial: its index ledger, its clock model and the
anchors that bound what its next frame can hold, and its :class:`Pending` frames (one that
skips indices or leaps ahead waits for the next frame to go on from it).
:class:`Held` keeps the SAMPLES frames that wait for a HELLO to say which boot they belong
to. Pure data and bookkeeping; the rules that
use them are in :mod:`ratedial.daemon.core` and :mod:`ratedial.daemon.placement`.

Invariants:

* Everything an :class:`Epoch` holds (ledger, clock model, anchors, recent frames) is of its
  ``boot_id`` alone: indices of different boots are never mixed.
* Held frames are kept in order of arrival. :meth:`Held.expire` takes out those that waited
  longer than ``hold_ns`` of host time, and the oldest beyond ``MAX_HELD``; what expired is
  remembered as ``lost`` (the newest ``MAX_HELD``), so that a later HELLO of its boot can
  account for its indices as a gap.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from heapq import merge as merge_sorted
from typing import NamedTuple, Protocol

from ..clock import ClockEstimate, SlewedMap
from ..integrity import Gap, GapReason, GapWhy, IndexLedger
from ..wire import Hello, Samples, Status

RECENT_FRAMES = 4096  # frames whose device times a duplicate is checked against exactly
MAX_HELD = 20_000  # frames waiting for a HELLO (6 s of 1-sample frames at 2 kHz: 12,000)
MAX_PENDING = 8  # frames of a boot waiting for the next frame to go on from one of them




class ClockLike(Protocol):
    def add_sync(self, host_send_ns: int, device_rx_us: int, device_tx_us: int,
                 host_recv_ns: int) -> None: ...

    def add_arrival(self, device_us: int, host_recv_ns: int) -> None: ...

    def mark_congested(self, device_us: int) -> None: ...

    def current(self) -> ClockEstimate | None: ...

    def estimate(self) -> ClockEstimate | None: ...

    def peek(self) -> ClockEstimate | None: ...


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
    seed_index: int | None = None  # where this boot's accounting starts, if before its first frame
    seed_reason: GapReason = GapReason.NO_HELLO  # ... and why those indices never came
    # the boot began during the run (a reboot seen by this run): its counts start from 0 at
    # index 0, and every index from 0 is accounted for
    booted_in_run: bool = False
    rate_ref: tuple[int, int] | None = None  # (device_us, host_ns) of the first accepted frame
    rate_implausible: bool = False  # its clock runs far from 1 µs per µs: host times unknown
    anchor0_host_ns: int = 0  # when the boot's HELLO came
    next_snapshot_ns: int = 0
    stored_est: ClockEstimate | None = None  # the newest fit put out as a ClockOut
    fitted: int = 0  # SAMPLES frames taken in; the first is unconfirmed until another fits it
    # SAMPLES frames that skip indices or leap ahead, waiting for the next frame to go on
    # from one of them (oldest first); none while frames go on from the last one taken in
    pending: list[Pending] = field(default_factory=list)
    # Samples taken in before a SYNC has pinned the boot's clock, waiting to be mapped
    # (docs/timing.md, "The first frames of a boot"), oldest first; since when they wait
    unsettled: list[Unmapped] = field(default_factory=list)
    # gaps found meanwhile, with the device times they start and end at (mapped with them)
    unsettled_gaps: list[tuple[Gap, int | None, int]] = field(default_factory=list)
    unsettled_since_ns: int | None = None
    settled: bool = False

    def host_times(self, est: ClockEstimate | None, times: tuple[int, ...],
                   arrived_ns: int | None = None) -> tuple[int | None, ...]:
        """``times`` (device µs) mapped to host ns by ``est`` through this boot's slewed map,
        none later than ``arrived_ns`` (their frame's arrival)."""
        return (None,) * len(times) if est is None else tuple(
            self.mapper.map(est, times, arrived_ns))


@dataclass(slots=True)
class Pending:
    """A SAMPLES frame that fits its boot but skips indices or leaps ahead in device time: it
    is taken in once the next frame goes on from it (docs/protocol.md), so that one
    impossible frame ahead of the dial cannot turn the dial's own frames away as replays."""

    samples: Samples
    host_ns: int
    why: GapWhy  # what was noted for the gap before it when it came


class Unmapped(NamedTuple):
    """One frame's samples taken into their boot but not yet mapped to host time."""

    first: int  # first index
    period_us: int
    times_us: tuple[int, ...]
    counts: tuple[int, ...]
    ratings: tuple[float, ...]
    flags: tuple[int, ...]
    arrived_ns: int  # the frame's arrival: no sample of it is mapped later


class HeldFrame(NamedTuple):
    """A SAMPLES frame waiting for a HELLO, and what it did not fit."""

    samples: Samples
    host_ns: int  # its arrival
    why: str  # the reason it did not fit (its rejection's, if it is rejected)
    boot_id: int | None = None  # the boot it did not fit (None: it came before any HELLO)
    token: int = -1  # that boot's ledger note (IndexLedger.note_held)


class Lost(NamedTuple):
    """A held frame that waited too long (:meth:`Held.expire`)."""

    first_index: int
    end_index: int
    last_us: int  # its last device time
    arrival_ns: int
    period_us: int
    boot_id: int | None  # the boot it did not fit


@dataclass(slots=True)
class Held:
    """SAMPLES frames waiting for a HELLO that says which boot they belong to."""

    hold_ns: int
    frames: list[HeldFrame] = field(default_factory=list)  # in order of arrival
    # What expired, for a later HELLO's gap (and to see a new boot's frames go on).
    lost: list[Lost] = field(default_factory=list)

    def add(self, s: Samples, host_ns: int, why: str, boot_id: int | None = None,
            token: int = -1) -> None:
        self.frames.append(HeldFrame(s, host_ns, why, boot_id, token))

    def expire(self, now_ns: int) -> list[HeldFrame]:
        """Take out the frames that have waited longer than ``hold_ns`` (or beyond the cap)."""
        n = 0
        while n < len(self.frames) and (self.frames[n].host_ns < now_ns - self.hold_ns
                                        or len(self.frames) - n > MAX_HELD):
            n += 1
        out, self.frames = self.frames[:n], self.frames[n:]
        self.lost += [Lost(h.samples.first_index, h.samples.end_index, h.samples.times_us[-1],
                           h.host_ns, h.samples.period_us, h.boot_id) for h in out]
        del self.lost[:-MAX_HELD]
        return out

    def merge(self, other: Held) -> None:
        """Take over ``other``'s frames and losses (a port's, when its dial is known), in
        order of arrival (a replugged dial may still hold frames from before the unplug;
        :meth:`expire` and the HELLO that places them go by arrival)."""
        self.frames = list(merge_sorted(other.frames, self.frames, key=lambda f: f.host_ns))
        self.lost = list(merge_sorted(other.lost, self.lost, key=lambda x: x.arrival_ns))
        del self.lost[:-MAX_HELD]

    def take(self) -> list[HeldFrame]:
        out, self.frames = self.frames, []
        return out


# Why a frame is held when no epoch has judged it yet: it came before any HELLO (of the dial,
# or on its port); the HELLO that comes places it whichever boot it names.
NO_HELLO = "no_hello"


def stalls(first: int, prev_us: int | None, times: Sequence[int],
           min_us: int) -> list[tuple[int, int]]:
    """``(index, interval_us)`` for each interval of at least ``min_us`` between consecutive
    samples (indices from ``first``; ``prev_us``: the device time of the sample before
    ``first``, when it is the one before it): the dial took no sample then."""
    out: list[tuple[int, int]] = []
    before = prev_us
    for k, t in enumerate(times):
        if before is not None and t - before >= min_us:
            out.append((first + k, t - before))
        before = t
    return out
