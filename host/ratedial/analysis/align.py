"""From a rater's samples to one value per grid bin of media time (pure, numpy only).

The grid has ``rate_hz`` bins per second of media time; bin ``k`` is the interval
``[k / rate_hz, (k + 1) / rate_hz)`` and is labelled by its start. A sample belongs to the bin
holding its ``media_s``. Rules (docs/analysis.md, "Alignment"):

* Only samples taken while the video played count; samples while paused, seeking, after the
  end, or with an unknown media time are excluded (and counted).
* A *pass* is a stretch of the rater's samples in recording order during which media time
  does not go back by more than ``rewind_tolerance_s``. A new pass starts at every such
  rewind and at every reboot of the dial. A bin covered by more than one pass was re-rated;
  its value is chosen by the rule: ``last`` pass wins (default), ``first`` pass, or the
  ``mean`` of the passes (each pass weighs the same, whatever its number of samples).
  Within one pass a bin's value is the mean of its samples.
* A bin that no pass covered is missing (NaN). A run of missing bins no longer than
  ``max_fill_s`` between two rated bins is filled by linear interpolation and marked
  ``FILLED``; longer runs, and runs at either end, stay missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
StatusArray = npt.NDArray[np.int8]

Rerate = Literal["last", "first", "mean"]
RERATE_RULES: tuple[Rerate, ...] = ("last", "first", "mean")

MISSING, RATED, FILLED = 0, 1, 2
STATUS_NAMES = {MISSING: "missing", RATED: "rated", FILLED: "filled"}


@dataclass(frozen=True, kw_only=True)
class AlignOptions:
    rate_hz: float = 10.0
    rerate: Rerate = "last"
    max_fill_s: float = 0.5
    rewind_tolerance_s: float = 0.5

    def __post_init__(self) -> None:
        if not self.rate_hz > 0:
            raise ValueError("the grid rate must be positive")
        if self.rerate not in RERATE_RULES:
            raise ValueError(f"re-rating rule must be one of {', '.join(RERATE_RULES)}")
        if self.max_fill_s < 0 or self.rewind_tolerance_s < 0:
            raise ValueError("fill limit and rewind tolerance must not be negative")


@dataclass(frozen=True, kw_only=True)
class Binned:
    """One rater's series on the grid."""

    values: FloatArray  # NaN where missing
    status: StatusArray  # MISSING, RATED or FILLED
    n_samples: IntArray  # samples behind each value (the chosen pass, or all passes for mean)
    n_passes: IntArray  # passes that covered each bin (2 or more: re-rated)

    def __len__(self) -> int:
        return len(self.values)


def pass_ids(media_min: FloatArray, media_max: FloatArray, *, tolerance_s: float,
             start: int = 0) -> IntArray:
    """Pass number of each group of samples (in recording order), counting from ``start``.

    A new pass starts where a group begins more than ``tolerance_s`` before the latest media
    time of the group before it.
    """
    if len(media_min) == 0:
        return np.zeros(0, dtype=np.int64)
    rewind = np.zeros(len(media_min), dtype=np.int64)
    rewind[1:] = media_min[1:] < media_max[:-1] - tolerance_s
    return start + np.cumsum(rewind)


def resolve(pass_id: IntArray, bins: IntArray, rating_sum: FloatArray, count: IntArray, *,
            n_bins: int, rule: Rerate) -> Binned:
    """Combine per-pass bin sums into one value per bin by the re-rating ``rule``."""
    values = np.full(n_bins, np.nan)
    n_samples = np.zeros(n_bins, dtype=np.int64)
    n_passes = np.zeros(n_bins, dtype=np.int64)
    keep = (bins >= 0) & (bins < n_bins) & (count > 0)
    if keep.any():
        b, p, s, c = bins[keep], pass_id[keep], rating_sum[keep], count[keep]
        order = np.lexsort((p, b))
        b, p, s, c = b[order], p[order], s[order], c[order]
        # merge the groups of one (bin, pass)
        new = np.ones(len(b), dtype=np.bool_)
        new[1:] = (b[1:] != b[:-1]) | (p[1:] != p[:-1])
        starts = np.flatnonzero(new)
        b, s_, c_ = b[starts], np.add.reduceat(s, starts), np.add.reduceat(c, starts)
        pass_mean = s_ / c_
        # then the passes of one bin
        first = np.flatnonzero(np.concatenate([[True], b[1:] != b[:-1]]))
        npass = np.diff(np.append(first, len(b)))
        where = b[first]
        n_passes[where] = npass
        if rule == "first":
            values[where], n_samples[where] = pass_mean[first], c_[first]
        elif rule == "last":
            last = first + npass - 1
            values[where], n_samples[where] = pass_mean[last], c_[last]
        else:
            values[where] = np.add.reduceat(pass_mean, first) / npass
            n_samples[where] = np.add.reduceat(c_, first)
    status = np.where(np.isnan(values), MISSING, RATED).astype(np.int8)
    return Binned(values=values, status=status, n_samples=n_samples, n_passes=n_passes)


def missing_runs(valid: BoolArray) -> tuple[IntArray, IntArray]:
    """``(starts, ends)`` of the runs of ``False`` in ``valid`` (end exclusive)."""
    d = np.diff(np.concatenate([[0], (~valid).astype(np.int8), [0]]))
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


def fill_short(binned: Binned, *, max_fill_bins: int) -> Binned:
    """Linearly interpolate runs of at most ``max_fill_bins`` missing bins between two rated
    bins; mark them ``FILLED``. Nothing else changes."""
    valid = ~np.isnan(binned.values)
    if max_fill_bins <= 0 or valid.sum() < 2:
        return binned
    starts, ends = missing_runs(valid)
    inner = (starts > 0) & (ends < len(valid)) & (ends - starts <= max_fill_bins)
    if not inner.any():
        return binned
    edges = np.zeros(len(valid) + 1, dtype=np.int64)
    np.add.at(edges, starts[inner], 1)
    np.add.at(edges, ends[inner], -1)
    fill = np.cumsum(edges[:-1]) > 0
    idx = np.flatnonzero(valid)
    values = binned.values.copy()
    values[fill] = np.interp(np.flatnonzero(fill), idx, binned.values[idx])
    status = binned.status.copy()
    status[fill] = FILLED
    return Binned(values=values, status=status, n_samples=binned.n_samples,
                  n_passes=binned.n_passes)


def padded(a: FloatArray, n: int) -> FloatArray:
    """``a`` cut or extended with NaN to length ``n``."""
    if len(a) >= n:
        return a[:n]
    return np.concatenate([a, np.full(n - len(a), np.nan)])
