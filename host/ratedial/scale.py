"""Rating scale: raw quarter-step counts in, a rating out (pure).

Invariants:

* The rating always lies within ``[minimum, maximum]``.
* No wind-up: turning past a stop does not accumulate. The rating moves by the counts turned
  since the previous sample divided by ``counts_per_point``, then is clamped; so turning back
  from a stop moves the rating away from it at once.
* Only count *differences* matter, so a device reboot or ``ZERO`` never moves the rating;
  the caller calls :meth:`RatingTracker.rebase` with the first count of a new epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class RatingScale:
    minimum: float = 0.0
    maximum: float = 100.0
    start: float = 50.0
    counts_per_point: float = 1.0

    def __post_init__(self) -> None:
        if not self.minimum < self.maximum:
            raise ValueError("minimum must be below its maximum")
        if not self.minimum <= self.start <= self.maximum:
            raise ValueError("start must lie between minimum and maximum")
        if self.counts_per_point == 0:
            raise ValueError("counts_per_point must not be zero (negative reverses the dial)")

    def clamp(self, value: float) -> float:
        return min(self.maximum, max(self.minimum, value))


class RatingTracker:
    """Follows one dial's counts and turns them into ratings on ``scale``.

    An *absolute* dial (a potentiometer read by the ADC) has a position, not a count of
    turns: its rating is ``minimum + count / units_per_point`` (clamped), and ``reset`` and
    ``rebase`` do not apply to it.
    """

    def __init__(self, scale: RatingScale) -> None:
        self.scale = scale
        self.rating = scale.start
        self._last_count: int | None = None
        self.absolute_units_per_point: float | None = None

    def set_absolute(self, units_per_point: float | None) -> None:
        """Switch to (or, with None, away from) the absolute mapping of a potentiometer."""
        self.absolute_units_per_point = units_per_point

    def reset(self, rating: float | None = None) -> None:
        """Set the rating to ``rating`` (the scale's start by default) at the current count."""
        if self.absolute_units_per_point is not None:
            return  # a pointer's position is its rating
        self.rating = self.scale.clamp(self.scale.start if rating is None else rating)

    def rebase(self, count: int) -> None:
        """Take ``count`` as the reference without moving the rating (new epoch, ZERO)."""
        self._last_count = count

    def update(self, count: int) -> float:
        """The rating for a sample with raw ``count``."""
        if self.absolute_units_per_point is not None:
            self.rating = self.scale.clamp(
                self.scale.minimum + count / self.absolute_units_per_point)
            self._last_count = count
            return self.rating
        if self._last_count is not None:
            delta = (count - self._last_count) / self.scale.counts_per_point
            self.rating = self.scale.clamp(self.rating + delta)
        self._last_count = count
        return self.rating

    def update_many(self, counts: Sequence[int]) -> list[float]:
        """:meth:`update` for each of ``counts`` in turn (the same arithmetic, so the same
        floats), in one loop: a frame's samples without a method call each."""
        last = self._last_count
        if self.absolute_units_per_point is not None or last is None:
            return [self.update(c) for c in counts]
        lo, hi, per = self.scale.minimum, self.scale.maximum, self.scale.counts_per_point
        rating = self.rating
        out = []
        for c in counts:
            rating = min(hi, max(lo, rating + (c - last) / per))
            last = c
            out.append(rating)
        self.rating, self._last_count = rating, last
        return out
