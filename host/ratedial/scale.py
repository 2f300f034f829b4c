"""Rating scale: raw quarter-step counts in, a rating out (pure).

Invariants:

* The rating always lies within ``[minimum, maximum]``.
* No wind-up: turning past a stop does not accumulate. The rating moves by the counts turned
  since the previous sample divided by ``counts_per_point``, then is clamped; so turning back
  from a stop moves the rating away from it at once.
* Only count *differences* matter, so a device reboot or ``ZERO`` never moves the rating;
  the caller calls :meth:`RatingTracker.rebase` with the first count of a new epoch.
* A rating is computed, not accumulated: ``base + turned / counts_per_point`` with ``base``
  the last value the rating was set or clamped to and ``turned`` the whole counts turned
  since, rounded to :data:`RESOLUTION_DECIMALS` decimals. So one knob position is always the
  same double, and a whole number of 0.1-point steps from 4 is exactly ``3.7`` (summing
  ``-0.1`` three times gives ``3.6999999999999993``, which is below a band ending at 3.7).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

RESOLUTION_DECIMALS = 9  # far below any scale's step: rounding never moves a rating a step


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
        # the value last set or clamped to (rounded as every computed rating is, so a still
        # knob keeps this very double), and the counts turned since
        self.rating = self._base = round(scale.start, RESOLUTION_DECIMALS)
        self._turned = 0
        self._last_count: int | None = None
        self.absolute_units_per_point: float | None = None

    def set_absolute(self, units_per_point: float | None) -> None:
        """Switch to (or, with None, away from) the absolute mapping of a potentiometer."""
        self.absolute_units_per_point = units_per_point

    def _set(self, rating: float) -> None:
        self.rating = self._base = rating
        self._turned = 0

    def reset(self, rating: float | None = None) -> None:
        """Set the rating to ``rating`` (the scale's start by default) at the current count."""
        if self.absolute_units_per_point is not None:
            return  # a pointer's position is its rating
        # rounded as every computed rating is: a still knob keeps this very double
        self._set(round(self.scale.clamp(self.scale.start if rating is None else rating),
                        RESOLUTION_DECIMALS))

    def rebase(self, count: int) -> None:
        """Take ``count`` as the reference without moving the rating (new epoch, ZERO)."""
        self._last_count = count

    def _step(self, lo: float, hi: float, per: float, turned: int) -> float:
        """The rating ``turned`` counts from the base; a clamp becomes the new base."""
        value = self._base + turned / per
        if value >= hi or value <= lo:
            self._set(hi if value >= hi else lo)
            return self.rating
        self._turned = turned
        self.rating = min(hi, max(lo, round(value, RESOLUTION_DECIMALS)))
        return self.rating

    def update(self, count: int) -> float:
        """The rating for a sample with raw ``count``."""
        if self.absolute_units_per_point is not None:
            self._set(self.scale.clamp(
                self.scale.minimum + count / self.absolute_units_per_point))
            self._last_count = count
            return self.rating
        if self._last_count is not None:
            self._step(self.scale.minimum, self.scale.maximum, self.scale.counts_per_point,
                       self._turned + count - self._last_count)
        self._last_count = count
        return self.rating

    def update_many(self, counts: Sequence[int]) -> list[float]:
        """:meth:`update` for each of ``counts`` in turn (the same arithmetic, so the same
        floats), in one loop: a frame's samples without a method call each."""
        last = self._last_count
        if self.absolute_units_per_point is not None or last is None:
            return [self.update(c) for c in counts]
        lo, hi, per = self.scale.minimum, self.scale.maximum, self.scale.counts_per_point
        step = self._step
        out: list[float] = []
        for c in counts:
            if c == last and out:  # a still knob (most samples): the rating just computed
                out.append(out[-1])
                continue
            out.append(step(lo, hi, per, self._turned + c - last))
            last = c
        self._last_count = last
        return out
