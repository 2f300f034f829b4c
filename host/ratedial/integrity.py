"""Exact sample accounting for one device epoch (pure).

Invariants:

* Every sample index from the first one seen onwards is, exactly once, either *received* or
  part of exactly one :class:`Gap`. Gaps are never filled with values.
* A gap's reason is ``device_drop`` for indices inside a DROP range the device reported,
  ``unplugged`` when the link was down, ``crc`` when the decoder rejected a chunk of any kind
  since the last good SAMPLES frame (damaged bytes, or a frame it cannot read: another
  protocol version, a payload too short), ``rejected`` when well-formed SAMPLES frames were
  rejected as impossible, or held for a HELLO as not fitting this boot, since then,
  ``no_hello`` for indices whose frames came from a boot the host had not been told of in
  time (:meth:`IndexLedger.seed`), and ``link`` otherwise (lost without trace). The reason
  depends only on the order of what arrived, never on read boundaries or on when a held
  frame's HELLO comes (:meth:`IndexLedger.note_held`).
* Samples that arrive twice or out of order are counted and ignored, never recorded twice.
* What was noted for the next gap (damage, rejections, an unplug) belongs to the first gap
  after it, also when the frame after it is accepted only later (:meth:`IndexLedger.hold`,
  :meth:`IndexLedger.accept` with ``why``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

from .wire import Drop, Samples


class GapReason(StrEnum):
    DEVICE_DROP = "device_drop"  # the device discarded them: the host was not reading
    CRC = "crc"  # the decoder rejected chunks: damaged, or frames it cannot read
    LINK = "link"  # lost between device and host without trace
    UNPLUGGED = "unplugged"  # the dial was disconnected
    REJECTED = "rejected"  # well-formed frames with impossible contents were rejected
    NO_HELLO = "no_hello"  # frames of this boot arrived before its HELLO and waited too long


@dataclass(frozen=True, slots=True)
class Gap:
    first_index: int
    end_index: int  # one past the last missing index
    reason: GapReason

    @property
    def n_samples(self) -> int:
        return self.end_index - self.first_index


class GapWhy(NamedTuple):
    """What was noted for a gap before a frame came: the link went down, chunks or frames
    were rejected (``crc`` or ``rejected``)."""

    unplugged: bool = False
    rejects: GapReason | None = None

    def merge(self, other: GapWhy) -> GapWhy:
        """Both, as if noted one after the other (``crc`` wins over ``rejected``)."""
        rejects = GapReason.CRC if GapReason.CRC in (self.rejects, other.rejects) else (
            self.rejects or other.rejects)
        return GapWhy(self.unplugged or other.unplugged, rejects)


@dataclass(slots=True)
class IndexLedger:
    """Accounts for the sample indices of one ``(uid, boot_id)`` epoch."""

    next_index: int | None = None
    received: int = 0
    duplicates: int = 0
    missing: dict[GapReason, int] = field(default_factory=lambda: dict.fromkeys(GapReason, 0))
    _drops: list[tuple[int, int]] = field(default_factory=list)
    _rejects_pending: GapReason | None = None
    _unplugged: bool = False
    _seed_reason: GapReason | None = None
    _held: int = 0  # frames held for a HELLO (not fitting this boot) since the notes were taken
    _generation: int = 0  # how many times the notes were taken (note_held's tokens)

    def note_drop(self, drop: Drop) -> None:
        """A DROP frame arrived: it precedes the samples that follow the dropped range."""
        if drop.n_samples:
            self._drops.append((drop.first_index, drop.end_index))

    def note_rejects(self, reason: GapReason = GapReason.CRC) -> None:
        """Chunks were rejected since the last SAMPLES frame: by the decoder (``crc``, which
        wins) or as impossible frames (``rejected``)."""
        if self._rejects_pending is not GapReason.CRC:
            self._rejects_pending = reason

    def note_held(self) -> int:
        """A SAMPLES frame that does not fit this boot came and waits for a HELLO: for the
        next gap it counts as rejected whatever the HELLO later makes of it, so that the
        gap's reason does not depend on whether that HELLO comes before the frame after the
        gap or after it. Returns a token for :meth:`unnote_held`."""
        self._held += 1
        return self._generation

    def unnote_held(self, token: int) -> bool:
        """Take back the note of a held frame (``token`` from :meth:`note_held`) that its
        HELLO places again, if nothing has taken the notes since it came (no frame was
        accepted or held back since). True if it was taken back."""
        if token == self._generation and self._held:
            self._held -= 1
            return True
        return False

    def _noted(self) -> GapWhy:
        rejects = self._rejects_pending
        if rejects is None and self._held:
            rejects = GapReason.REJECTED
        return GapWhy(self._unplugged, rejects)

    def _clear(self) -> None:
        self._unplugged, self._rejects_pending, self._held = False, None, 0
        self._generation += 1

    def hold(self) -> GapWhy:
        """Take what has been noted for the next gap, for a frame that is held back before it
        is accepted (its gap, if any, is explained by what came before it, not after)."""
        why = self._noted()
        self._clear()
        return why

    def restore(self, why: GapWhy) -> None:
        """Note again what :meth:`hold` took, for a held frame that was not accepted."""
        self._unplugged |= why.unplugged
        if why.rejects is not None:
            self.note_rejects(why.rejects)

    def seed(self, first_index: int, reason: GapReason) -> None:
        """Start the accounting at ``first_index`` (before any sample was received): indices
        from there to the first one received form a gap with ``reason``."""
        if self.next_index is None or (first_index < self.next_index and not self.received):
            self.next_index = first_index
            self._seed_reason = reason

    @property
    def unplugged_noted(self) -> bool:
        """The link went down since the last accepted frame."""
        return self._unplugged

    def note_unplugged(self) -> None:
        """The link went down; indices missing when it returns are attributed to that."""
        self._unplugged = True

    @property
    def total_missing(self) -> int:
        return sum(self.missing.values())

    def accept(self, samples: Samples, why: GapWhy | None = None) -> tuple[range, list[Gap]]:
        """Account for ``samples``: return the index range that is new and the gaps before it.
        ``why``: what :meth:`hold` took when ``samples`` arrived explains its gap; what was
        noted since stays for the next gap."""
        first, end = samples.first_index, samples.end_index
        gaps: list[Gap] = []
        if self.next_index is None:
            self.next_index = self._dropped_just_before(first)
        if end <= self.next_index:
            self.duplicates += end - first
            return range(0), gaps
        if first < self.next_index:
            self.duplicates += self.next_index - first
            first = self.next_index
        if first > self.next_index:
            gaps = self._explain(self.next_index, first, self._noted() if why is None else why)
            for gap in gaps:
                self.missing[gap.reason] += gap.n_samples
        if why is None:  # what was noted explained this gap (else it stays for the next)
            self._clear()
        self._seed_reason = None
        self.next_index = end
        self.received += end - first
        if self._drops:  # a DROP of indices that came after all says nothing any more
            self._drops = [d for d in self._drops if d[1] > end]
        return range(first, end), gaps

    def _dropped_just_before(self, first: int) -> int:
        """Where the accounting of a boot starts, at its first SAMPLES frame: at ``first``,
        or earlier when DROPs name the indices right before it (the dial discarded the
        boot's first frames and said so): those become a ``device_drop`` gap. Only a range
        that ends exactly at ``first`` counts (then one that ends where it starts, ...), so
        a DROP of other indices cannot open a gap the samples do not border."""
        start = first
        for d_first, d_end in sorted(self._drops, reverse=True):
            if d_end == start and d_first < start:
                start = d_first
        return start

    def _explain(self, first: int, end: int, why: GapWhy) -> list[Gap]:
        """Split the missing range [first, end) by reason (``why``: what was noted before
        the frame after it)."""
        other = self._seed_reason or (
            GapReason.UNPLUGGED if why.unplugged else why.rejects or GapReason.LINK)
        gaps: list[Gap] = []
        pos = first
        for d_first, d_end in sorted(self._drops):
            lo, hi = max(d_first, pos), min(d_end, end)
            if lo >= hi:
                continue
            if lo > pos:
                gaps.append(Gap(pos, lo, other))
            gaps.append(Gap(lo, hi, GapReason.DEVICE_DROP))
            pos = hi
        if pos < end:
            gaps.append(Gap(pos, end, other))
        self._drops = [(a, b) for a, b in self._drops if b > end]
        return gaps
