"""The memory soak's verdict (bench/bench_capacity.py ``soak_verdict``): a leak is a line, an
allocator's high-water mark is a few steps with flat stretches between (issue 16)."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from bench_capacity import soak_verdict


def series(seconds: float = 600, *, base: float = 54.3, mb_per_h: float = 0.0,
           steps: tuple[tuple[float, float], ...] = (), noise: float = 0.03,
           every: float = 5.0) -> list[tuple[float, float]]:
    """RSS rows (s, MB) every ``every`` s: a line, plus steps (at s, of MB), plus noise."""
    rng = random.Random(16)
    rows = []
    for k in range(int(seconds / every) + 1):
        t = k * every
        m = base + mb_per_h * t / 3600 + sum(mb for at, mb in steps if t >= at)
        rows.append((t, round(m + rng.uniform(-noise, noise), 2)))
    return rows


def test_a_flat_series_is_flat() -> None:
    v = soak_verdict(series())
    assert v["verdict"] == "flat"
    assert abs(v["slope_mb_per_hour_second_half"]) < 2
    assert v["steps"] == []


def test_one_step_after_a_backlog_is_flat_between_steps() -> None:
    # decf5d2's soak: 54.3 MB from 2 min on, one rise of 1.3 MB at 385 s, then 55.6 MB. The
    # least-squares slope of the second half is 19 MB/h; with the step taken out it is flat.
    v = soak_verdict(series(steps=((385, 1.3),)))
    assert v["slope_mb_per_hour_second_half"] > 10
    assert v["verdict"] == "flat between steps"
    assert v["steps"] == [[380.0, pytest.approx(1.3, abs=0.07)]]
    assert abs(v["slope_between_steps_mb_per_hour"]) < 2


def test_a_step_spread_over_two_samples_is_one_step() -> None:
    v = soak_verdict(series(steps=((400, 2.2), (405, 3.3))))
    assert v["verdict"] == "flat between steps"
    assert v["steps"] == [[395.0, pytest.approx(5.5, abs=0.07)]]


def test_a_slow_line_is_growing() -> None:
    v = soak_verdict(series(mb_per_h=20))
    assert v["verdict"] == "growing"
    assert v["slope_mb_per_hour_second_half"] == pytest.approx(20, abs=2)
    assert v["steps"] == []


def test_a_line_between_steps_is_growing() -> None:
    v = soak_verdict(series(mb_per_h=15, steps=((385, 1.3),)))
    assert v["verdict"] == "growing"
    assert v["slope_between_steps_mb_per_hour"] == pytest.approx(15, abs=2)


def test_a_fast_line_is_not_one_long_step() -> None:
    # 0.6 MB every 5 s: every sample rises by more than a step's threshold
    v = soak_verdict(series(mb_per_h=432))
    assert v["verdict"] == "growing"


def test_many_steps_are_growing() -> None:
    v = soak_verdict(series(steps=((320, 1.0), (390, 1.0), (460, 1.0), (530, 1.0))))
    assert len(v["steps"]) == 4
    assert v["verdict"] == "growing"


def test_a_soak_whose_second_half_starts_in_the_warm_up_is_too_short() -> None:
    # RATEDIAL_BENCH_SOAK_S=60: the clock windows are still filling
    v = soak_verdict(series(60, mb_per_h=300))
    assert v["verdict"] == "too short"
    assert soak_verdict([])["verdict"] == "too short"
