import pytest
from hypothesis import given
from hypothesis import strategies as st

from ratedial.scale import RatingScale, RatingTracker


def test_counts_move_the_rating_from_the_start():
    t = RatingTracker(RatingScale(counts_per_point=2))
    assert t.update(100) == 50
    assert t.update(110) == 55
    assert t.update(90) == 45


def test_saturates_without_wind_up_and_turning_back_moves_at_once():
    t = RatingTracker(RatingScale())
    t.update(0)
    assert t.update(80) == 100  # 50 + 80 clamps at 100
    assert t.update(500) == 100  # far past the stop
    assert t.update(499) == 99  # one count back moves the rating immediately
    assert t.update(-1000) == 0
    assert t.update(-990) == 10


def test_rebase_and_reset_never_jump():
    t = RatingTracker(RatingScale(minimum=1, maximum=7, start=4, counts_per_point=4))
    t.update(1000)
    t.update(1008)
    assert t.rating == 6
    t.rebase(0)  # device rebooted: counts start again from 0
    assert t.update(4) == 7
    t.reset()
    assert t.rating == 4
    assert t.update(0) == 3


@pytest.mark.parametrize("kwargs", [{"minimum": 5, "maximum": 5}, {"start": 101},
                                    {"counts_per_point": 0}])
def test_bad_scales_are_refused(kwargs):
    with pytest.raises(ValueError):
        RatingScale(**kwargs)


def test_a_potentiometer_maps_its_position_absolutely():
    t = RatingTracker(RatingScale())
    t.set_absolute(655.35)
    assert t.update(0) == 0
    assert t.update(32768) == 32768 / 655.35
    assert t.update(65535) == 100
    t.reset()  # a pointer's position is its rating: reset does not move it
    assert t.rating == 100
    assert t.update(70000) == 100


@given(start=st.floats(0, 100), per=st.sampled_from([1, 2, 3, -4, 0.5, 7.25]),
       counts=st.lists(st.integers(-(2**31), 2**31), min_size=1, max_size=40),
       first=st.integers(-(2**31), 2**31), absolute=st.booleans())
def test_update_many_is_update_in_turn(start, per, counts, first, absolute):
    """The frame-at-once path gives the very floats the per-sample path gives, clamping
    included, and leaves the tracker in the same state."""
    scale = RatingScale(minimum=0, maximum=100, start=start, counts_per_point=per)
    one, many = RatingTracker(scale), RatingTracker(scale)
    for t in (one, many):
        if absolute:
            t.set_absolute(per * 4)
        t.rebase(first)
    assert many.update_many(counts) == [one.update(c) for c in counts]
    assert (many.rating, many._last_count) == (one.rating, one._last_count)
    assert many.update(first) == one.update(first)


def test_one_knob_position_is_one_exact_rating():
    """0.1-point steps on 1-7: three steps down from 4 is 3.7 exactly (summing -0.1 gave
    3.6999999999999993, below a neutral band ending at 3.7), and every return to a count
    gives the same double."""
    t = RatingTracker(RatingScale(minimum=1, maximum=7, start=4, counts_per_point=10))
    t.update(0)
    seen: dict[int, set[float]] = {}
    for c in [-1, -2, -3, -2, -1, 0, 1, 2, 3, 2, 1, 0, -1, -2, -3, 0, 3, -3] * 5:
        seen.setdefault(c, set()).add(t.update(c))
    assert seen[-3] == {3.7} and seen[3] == {4.3} and seen[0] == {4.0}
    assert all(len(v) == 1 for v in seen.values())
    assert t.update_many([1, 2, 3]) == [4.1, 4.2, 4.3]


def test_thirds_do_not_drift_and_clamping_still_rebases():
    t = RatingTracker(RatingScale(counts_per_point=3))
    t.update(0)
    for c in range(1, 3001):
        t.update(c)
    assert t.rating == 100  # 50 + 1000 points, clamped
    assert t.update(2999) == 100 - round(1 / 3, 9)
    for c in range(2998, -1, -1):
        t.update(c)
    assert t.rating == 0  # count 0
    assert t.update(150) == 50  # 150 counts back up from the stop: 50 points exactly


def test_a_still_knob_keeps_one_double_after_a_reset_to_a_long_value():
    """A code review (2026-12-05): after a reset to a value with more than 9 decimals, the
    next still sample rounded it: one knob position, two doubles."""
    t = RatingTracker(RatingScale(minimum=0.0, maximum=1.0, start=1 / 3, counts_per_point=100))
    t.rebase(0)
    first = t.rating
    assert t.update_many([0, 0, 0]) == [first] * 3
    t.reset(2 / 3)
    held = t.rating
    assert t.update_many([0, 0]) == [held, held] and t.update(0) == held

