"""The highest and lowest rated segments of a series (pure). Rules: docs/analysis.md.

Invariants:

* A segment is a window of ``window_s`` seconds on the grid, ``[start_s, end_s)``; its mean
  is the mean of the window's bins that have a value, and a window is a candidate only when
  at least ``min_coverage`` of its bins have one (gaps never count as ratings).
* ``windows`` mode: segments of one kind never overlap. Candidates are ranked by mean (means
  equal to 6 decimals are ties), then by coverage (more is better), then by start (earlier
  wins), and taken greedily in that order, skipping any that overlaps one already taken.
* ``peaks`` mode: candidates are the local extremes of the windowed mean (scipy
  ``find_peaks``; the ends of the video count), at least ``min_separation_s`` apart.
* Top segments are chosen first; a bottom segment never overlaps a top one. So only the
  bottom kind can be missing while the other is there (:func:`missing_kind_note`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

Kind = Literal["top", "bottom"]
Mode = Literal["windows", "peaks"]


@dataclass(frozen=True, kw_only=True)
class SegmentOptions:
    k: int = 3
    window_s: float = 30.0
    min_coverage: float = 0.9
    mode: Mode = "windows"
    min_separation_s: float | None = None  # peaks mode; default: the window length

    def __post_init__(self) -> None:
        if self.k < 0 or not self.window_s > 0 or not 0 < self.min_coverage <= 1:
            raise ValueError("segments need k >= 0, a positive window and a coverage in (0, 1]")
        if self.mode not in ("windows", "peaks"):
            raise ValueError("segment mode must be windows or peaks")


@dataclass(frozen=True, kw_only=True)
class Segment:
    kind: Kind
    rank: int  # 1 = the highest (top) or the lowest (bottom)
    start_s: float
    end_s: float
    mean: float
    coverage: float  # share of the window's bins with a value

    @property
    def label(self) -> str:
        return f"{'T' if self.kind == 'top' else 'B'}{self.rank}"

    def overlap_s(self, other: Segment) -> float:
        return max(0.0, min(self.end_s, other.end_s) - max(self.start_s, other.start_s))


def length_bins(window_s: float, rate_hz: float) -> int:
    """Grid bins a window of ``window_s`` takes: rounded up (a window of 1.05 s on a 10 Hz
    grid is 11 bins: a segment is never shorter than its window)."""
    return max(1, math.ceil(window_s * rate_hz - 1e-9))


def window_bins(window_s: float, rate_hz: float, n: int) -> int:
    return int(min(n, length_bins(window_s, rate_hz)))


def window_means(values: FloatArray, w: int) -> tuple[FloatArray, FloatArray]:
    """Mean of the valid bins and share of valid bins of every window ``[s, s + w)``."""
    ok = ~np.isnan(values)
    cs = np.concatenate([[0.0], np.cumsum(np.where(ok, values, 0.0))])
    cn = np.concatenate([[0], np.cumsum(ok)])
    total = cs[w:] - cs[:-w]
    count = cn[w:] - cn[:-w]
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return means, count / w


def mean_over(values: FloatArray, rate_hz: float, start_s: float, end_s: float,
              ) -> tuple[float, float]:
    """(mean of the valid bins, share of valid bins) of ``values`` in ``[start_s, end_s)``."""
    lo = max(0, round(start_s * rate_hz))
    hi = min(len(values), round(end_s * rate_hz))
    if hi <= lo:
        return float("nan"), 0.0
    v = values[lo:hi]
    ok = ~np.isnan(v)
    return (float(v[ok].mean()) if ok.any() else float("nan")), float(ok.mean())


def _order(key: FloatArray, coverage: FloatArray, starts: IntArray) -> IntArray:
    """Indices sorted by key (ascending), then coverage (descending), then start."""
    return np.lexsort((starts, -coverage, key))


def _greedy(order: IntArray, w: int, k: int, taken: list[int], blocked: list[int]) -> list[int]:
    chosen: list[int] = []
    for s in order.tolist():
        if len(chosen) == k:
            break
        if all(abs(s - t) >= w for t in (*taken, *chosen, *blocked)):
            chosen.append(s)
    return chosen


def _peaks(score: FloatArray, distance: int) -> IntArray:
    """Local maxima of ``score`` (NaN never a peak) at least ``distance`` apart; the first
    and last windows can be peaks."""
    floor = np.nanmin(score) - 1 if np.isfinite(score).any() else 0.0
    padded = np.concatenate([[floor - 1], np.where(np.isnan(score), floor, score), [floor - 1]])
    from scipy.signal import find_peaks  # peaks mode only: scipy.signal takes 0.7 s to load

    idx, _ = find_peaks(padded, distance=max(1, distance))
    idx = idx - 1
    return np.asarray(idx[~np.isnan(score[idx])], dtype=np.int64)


def find_segments(values: FloatArray, rate_hz: float,
                  options: SegmentOptions | None = None) -> tuple[Segment, ...]:
    """The ``k`` top then the ``k`` bottom segments of ``values`` (a grid series)."""
    opt = options or SegmentOptions()
    n = len(values)
    if n == 0 or opt.k == 0 or length_bins(opt.window_s, rate_hz) > n:
        return ()  # no window fits: a segment is never shorter than its window
    w = window_bins(opt.window_s, rate_hz, n)
    means, cov = window_means(values, w)
    starts = np.arange(len(means), dtype=np.int64)
    eligible = (cov >= opt.min_coverage - 1e-12) & ~np.isnan(means)
    key = np.round(means, 6)
    result: list[Segment] = []
    top: list[int] = []
    kinds: tuple[Kind, Kind] = ("top", "bottom")
    for kind in kinds:
        sign = -1.0 if kind == "top" else 1.0
        if opt.mode == "windows":
            cand = starts[eligible]
            order = cand[_order(sign * key[cand], cov[cand], cand)]
            chosen = _greedy(order, w, opt.k, [], top)
        else:
            sep = window_bins(opt.min_separation_s or opt.window_s, rate_hz, n)
            score = np.where(eligible, -sign * key, np.nan)
            cand = _peaks(score, sep)
            order = cand[_order(sign * key[cand], cov[cand], cand)]
            chosen = [s for s in order.tolist() if all(abs(s - t) >= w for t in top)][: opt.k]
        if kind == "top":
            top = chosen
        for rank, s in enumerate(chosen, start=1):
            result.append(Segment(kind=kind, rank=rank, start_s=s / rate_hz,
                                  end_s=(s + w) / rate_hz, mean=float(means[s]),
                                  coverage=float(cov[s])))
    return tuple(result)


def missing_kind_note(segments: tuple[Segment, ...] | list[Segment],
                      opt: SegmentOptions) -> str | None:
    """One line when there are top segments but no bottom one (a short video or long
    windows: every candidate overlaps a top segment, which is chosen first), with why; else
    None. Said by the report, ``analyze --json`` and the guess test, which would otherwise
    score helpful answers only."""
    kinds = {s.kind for s in segments}
    if opt.k == 0 or kinds != {"top"}:
        return None
    what = (f"{opt.window_s:g} s window" if opt.mode == "windows" else
            f"minimum of the {opt.window_s:g} s means")
    return (f"no bottom (hindering) segments: every {what} rated ≥ {opt.min_coverage:.0%} "
            "overlaps a top segment (a shorter --window leaves room for both)")
