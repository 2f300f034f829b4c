"""A dial's rating from its counts, across its boots (pure): the scale's tracker, a ZERO's
rebase and the long press that resets the rating, each at its own sample.

Invariants:

* Ratings move only by count differences within a boot (:class:`~ratedial.scale.
  RatingTracker`): a reboot or a ZERO never makes the rating jump.
* A ZERO takes effect at the sample its ACK names; a long press resets the rating once per
  press, at the sample where it has been held ``long_press_s``.
"""

from __future__ import annotations

from ..scale import RatingScale, RatingTracker
from ..wire import FLAG_BUTTON


class DialRating:
    """The rating of one dial: counts in, ratings out, frame by frame."""

    def __init__(self, scale: RatingScale, *, long_press_s: float | None,
                 adc_units_per_point: float) -> None:
        self.tracker = RatingTracker(scale)
        self.long_press_us = None if long_press_s is None else int(long_press_s * 1e6)
        self._adc_units_per_point = adc_units_per_point
        self._press_start_us: int | None = None
        self._press_reset_done = False
        self._rebase_at: int | None = None
        self.last = scale.start

    def new_boot(self, backend: str) -> None:
        """A boot begins (or resumes): ADC dials are absolute; no press or ZERO carries over."""
        self.tracker.set_absolute(self._adc_units_per_point if backend == "adc" else None)
        self._press_start_us = None
        self._rebase_at = None

    def zero_at(self, index: int) -> None:
        """Counts restart from 0 at sample ``index`` (a ZERO's ACK precedes that frame)."""
        self._rebase_at = index

    def rebase(self, count: int) -> None:
        """``count`` is the boot's first: ratings go on from the rating so far."""
        self.tracker.rebase(count)

    def reset(self, rating: float | None = None) -> None:
        """Set the rating to ``rating`` or the scale's start (beginning of a recording)."""
        self.tracker.reset(rating)
        self.last = self.tracker.rating

    def frame(self, start: int, times: tuple[int, ...], counts: tuple[int, ...],
              flags: tuple[int, ...]) -> tuple[list[float], list[tuple[int, float]]]:
        """The ratings of samples ``start``, ``start + 1``, ...; and the (index, rating) of
        each long-press reset among them."""
        resets: list[tuple[int, float]] = []
        if self._rebase_at is None and self._press_start_us is None and (
                self.long_press_us is None or not any(f & FLAG_BUTTON for f in flags)):
            # The common frame: no ZERO to apply, no button held. What the loop below does
            # per sample reduces to the tracker's update (and a released button's state).
            ratings = self.tracker.update_many(counts)
            self._press_reset_done = False
        else:
            ratings = []
            for k, (t, c, f) in enumerate(zip(times, counts, flags, strict=True)):
                if self._rebase_at is not None and start + k >= self._rebase_at:
                    self.tracker.rebase(c)
                    self._rebase_at = None
                rating = self.tracker.update(c)
                if self._long_press(t, f):
                    self.tracker.reset()
                    rating = self.tracker.rating
                    resets.append((start + k, rating))
                ratings.append(rating)
        self.last = ratings[-1]
        return ratings, resets

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
