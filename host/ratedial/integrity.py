"""Exact sample accounting for one device epoch (pure).

Invariants:

* Every sample index from the first one seen onwards is, exactly once, either *received* or
  part of exactly one :class:`Gap`. Gaps are never filled with values.
* A gap's reason is ``device_drop`` for indices inside a DROP range the device reported,
  ``crc`` when frames were rejected by the decoder since the last good SAMPLES frame,
  ``unplugged`` when the link was down, and ``link`` otherwise (lost without trace).
* Samples that arrive twice or out of order are counted and ignored, never recorded twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from .wire import Drop, Samples


class GapReason(StrEnum):
    DEVICE_DROP = "device_drop"  # the device discarded them: the host was not reading
    CRC = "crc"  # frames arrived damaged and were rejected
    LINK = "link"  # lost between device and host without trace
    UNPLUGGED = "unplugged"  # the dial was disconnected


@dataclass(frozen=True, slots=True)
class Gap:
    first_index: int
    end_index: int  # one past the last missing index
    reason: GapReason

    @property
    def n_samples(self) -> int:
        return self.end_index - self.first_index


@dataclass(slots=True)
class IndexLedger:
    """Accounts for the sample indices of one ``(uid, boot_id)`` epoch."""

    next_index: int | None = None
    received: int = 0
    duplicates: int = 0
    missing: dict[GapReason, int] = field(default_factory=lambda: dict.fromkeys(GapReason, 0))
    _drops: list[tuple[int, int]] = field(default_factory=list)
    _rejects_pending: bool = False
    _unplugged: bool = False

    def note_drop(self, drop: Drop) -> None:
        """A DROP frame arrived: it precedes the samples that follow the dropped range."""
        if drop.n_samples:
            self._drops.append((drop.first_index, drop.end_index))

    def note_rejects(self) -> None:
        """The decoder rejected one or more chunks since the last SAMPLES frame."""
        self._rejects_pending = True

    def note_unplugged(self) -> None:
        """The link went down; indices missing when it returns are attributed to that."""
        self._unplugged = True

    @property
    def total_missing(self) -> int:
        return sum(self.missing.values())

    def accept(self, samples: Samples) -> tuple[range, list[Gap]]:
        """Account for ``samples``: return the index range that is new and the gaps before it."""
        first, end = samples.first_index, samples.end_index
        gaps: list[Gap] = []
        if self.next_index is None:
            self.next_index = first
        if end <= self.next_index:
            self.duplicates += end - first
            return range(0), gaps
        if first < self.next_index:
            self.duplicates += self.next_index - first
            first = self.next_index
        if first > self.next_index:
            gaps = self._explain(self.next_index, first)
            for gap in gaps:
                self.missing[gap.reason] += gap.n_samples
        self._rejects_pending = False
        self._unplugged = False
        self.next_index = end
        self.received += end - first
        return range(first, end), gaps

    def _explain(self, first: int, end: int) -> list[Gap]:
        """Split the missing range [first, end) by reason."""
        other = (
            GapReason.UNPLUGGED
            if self._unplugged
            else GapReason.CRC
            if self._rejects_pending
            else GapReason.LINK
        )
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
