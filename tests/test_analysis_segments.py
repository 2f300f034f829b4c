"""Top and bottom segments with known answers: ties, the edges of the video, gaps."""

from __future__ import annotations

import numpy as np
import pytest

from ratedial.analysis.segments import SegmentOptions, find_segments, mean_over

RATE = 10.0


def series(duration_s=600.0, base=50.0, spans=(), gaps=()):
    v = np.full(int(duration_s * RATE), base)
    for start, end, value in spans:
        v[int(start * RATE):int(end * RATE)] = value
    for start, end in gaps:
        v[int(start * RATE):int(end * RATE)] = np.nan
    return v


def spans(segs, kind):
    return [(s.start_s, s.end_s, round(s.mean, 6)) for s in segs if s.kind == kind]


def test_known_tops_and_bottoms_at_edges_and_touching_a_gap():
    v = series(spans=[(100, 130, 90), (300, 330, 80), (0, 30, 70),  # top 3 at the start
                      (570, 600, 10), (200, 230, 20), (400, 430, 25)],  # bottom 1 at the end
               gaps=[(430, 460)])  # bottom 3 ends where a gap begins
    segs = find_segments(v, RATE)
    assert spans(segs, "top") == [(100, 130, 90), (300, 330, 80), (0, 30, 70)]
    assert spans(segs, "bottom") == [(570, 600, 10), (200, 230, 20), (400, 430, 25)]
    assert [s.label for s in segs] == ["T1", "T2", "T3", "B1", "B2", "B3"]
    assert all(s.coverage == 1 for s in segs)


def test_ties_go_to_the_earlier_window_and_never_overlap():
    v = series(spans=[(100, 160, 90), (400, 430, 90)])
    top = [s for s in find_segments(v, RATE) if s.kind == "top"]
    assert [(s.start_s, s.end_s, s.mean) for s in top] == [(100, 130, 90), (130, 160, 90),
                                                           (400, 430, 90)]


def test_gaps_never_count_and_thin_windows_are_not_candidates():
    # a deep low of 10 s between two long gaps: the window holding it is 1/3 rated
    v = series(spans=[(300, 310, 0), (500, 530, 30)], gaps=[(270, 300), (310, 340)])
    bottoms = [s for s in find_segments(v, RATE) if s.kind == "bottom"]
    assert (bottoms[0].start_s, bottoms[0].mean) == (500, 30)
    loose = find_segments(v, RATE, SegmentOptions(min_coverage=0.3))
    b1 = next(s for s in loose if s.label == "B1")
    assert b1.mean == 0 and b1.coverage == pytest.approx(1 / 3)
    assert 280 <= b1.start_s <= 300 and b1.end_s >= 310


def test_mean_is_over_rated_bins_only():
    v = series(spans=[(100, 130, 80)], gaps=[(100, 102)])
    t1 = find_segments(v, RATE, SegmentOptions(k=1))[0]
    # the window with the gap has the higher mean over its rated bins (80 against a later
    # window that takes in 50s) and 93% >= 90% coverage: it wins
    assert (t1.start_s, t1.end_s, t1.mean) == (100, 130, 80)
    assert t1.coverage == pytest.approx(28 / 30)
    m, cov = mean_over(v, RATE, 100, 130)
    assert m == 80 and cov == pytest.approx(28 / 30)


def test_bottom_never_overlaps_top_on_a_flat_series():
    segs = find_segments(series(duration_s=120), RATE)
    tops = [s for s in segs if s.kind == "top"]
    bottoms = [s for s in segs if s.kind == "bottom"]
    assert len(tops) == 3 and len(bottoms) == 1  # 120 s holds four 30 s windows
    assert all(b.overlap_s(t) == 0 for b in bottoms for t in tops)


def test_window_and_k_are_configurable():
    v = series(spans=[(100, 110, 95), (200, 210, 85)])
    segs = find_segments(v, RATE, SegmentOptions(k=2, window_s=10))
    assert spans(segs, "top") == [(100, 110, 95), (200, 210, 85)]
    assert find_segments(v, RATE, SegmentOptions(k=0)) == ()


def test_peaks_mode_keeps_a_minimum_separation():
    t = np.arange(6000) / RATE
    v = 50 + 30 * np.exp(-((t - 100) / 20) ** 2) + 25 * np.exp(-((t - 160) / 20) ** 2) \
        + 20 * np.exp(-((t - 400) / 20) ** 2)
    win = find_segments(v, RATE, SegmentOptions(k=2, window_s=30))
    peaks = find_segments(v, RATE, SegmentOptions(k=2, window_s=30, mode="peaks",
                                                  min_separation_s=120))
    wtop = [s for s in win if s.kind == "top"]
    ptop = [s for s in peaks if s.kind == "top"]
    # non-overlapping windows take the flank of the first bump next; peaks move on
    assert abs((wtop[0].start_s + 15) - 100) < 5
    assert abs((ptop[0].start_s + 15) - 100) < 5
    assert abs((ptop[1].start_s + 15) - 400) < 5
    assert abs(ptop[1].start_s - ptop[0].start_s) >= 120


def test_peaks_at_the_very_start_count():
    v = series(spans=[(0, 30, 90)])
    p = find_segments(v, RATE, SegmentOptions(k=1, mode="peaks"))
    assert p[0].kind == "top" and p[0].start_s == 0 and p[0].mean == 90
