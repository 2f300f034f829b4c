"""The figures for one group (a dyad): per rater and per pair.

Everything here is computed from the grid series of :mod:`ratedial.analysis.load`; the
numbers are explained in docs/analysis.md. Results are frozen dataclasses;
:mod:`ratedial.analysis.results` gives their two published forms (``ratedial analyze
--json`` and the one-row-per-dyad CSV table).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .align import FILLED, MISSING, RATED, FloatArray, padded
from .groups import Group
from .lag import Lag, reaction_lag, shift
from .load import Series
from .segments import (
    Segment,
    SegmentOptions,
    find_segments,
    length_bins,
    mean_over,
    window_bins,
    window_means,
)
from .stats import (
    CATEGORY_NAMES,
    Agreement,
    Band,
    Describe,
    IntArray,
    agreement,
    best_lag,
    categories,
    cross_correlation,
    describe,
)


@dataclass(frozen=True, kw_only=True)
class AnalysisOptions:
    band: Band = field(default_factory=Band)
    # raters on another scale than the first (no --band given): each one's own band
    rater_bands: Mapping[str, Band] = field(default_factory=dict)
    segments: SegmentOptions = field(default_factory=SegmentOptions)
    max_lag_s: float = 10.0
    block_s: float = 30.0
    replicates: int = 2000
    seed: int = 0
    divergent_k: int = 3  # most divergent windows (of the segment window length)
    align_lag: bool = False  # shift b back by its reaction lag before the agreement figures

    def band_for(self, rater: str) -> Band:
        """The neutral band ``rater``'s ratings are judged by (their own scale's)."""
        return self.rater_bands.get(rater, self.band)


@dataclass(frozen=True, kw_only=True)
class RaterResult:
    series: Series
    describe: Describe
    duration_s: float  # of the video (the grid)
    rated_s: float  # bins rated
    filled_s: float  # short holes filled by interpolation (included in the statistics)
    missing_s: float
    rerated_s: float  # bins covered by two or more passes
    gaps: int  # gap rows of this dial
    missing_samples: int  # samples in those gaps
    segments: tuple[Segment, ...]

    @property
    def rater(self) -> str:
        return self.series.rater

    @property
    def coverage(self) -> float:
        """Share of the video with a value (rated or filled)."""
        return (self.rated_s + self.filled_s) / self.duration_s if self.duration_s else 0.0


@dataclass(frozen=True, kw_only=True)
class SegmentCheck:
    """One rater's segment, seen through the other rater's ratings of the same window."""

    owner: str
    other: str
    segment: Segment
    other_mean: float
    other_coverage: float
    other_category: str | None  # category of other_mean
    other_below: float  # share of the other's rated time in the window below the band
    other_within: float
    other_above: float
    agrees: bool | None  # top: the other's mean is above the band; bottom: below it
    overlap_same_s: float  # overlap with the other's segments of the same kind
    overlap_opposite_s: float  # ... and of the opposite kind


@dataclass(frozen=True, kw_only=True)
class Divergence:
    rank: int
    start_s: float
    end_s: float
    mean_abs_diff: float  # mean of |b - a| over bins where both have a value
    mean_a: float
    mean_b: float
    coverage: float  # share of the window where both have a value


@dataclass(frozen=True, kw_only=True)
class PairResult:
    a: str
    b: str
    paired_by: str
    common_s: float
    agreement: Agreement | None
    lags_s: FloatArray
    xcorr: FloatArray
    best_lag_s: float  # > 0: b follows a
    best_lag_r: float
    # the best lag is the outermost lag searched (±--max-lag): the strongest r may lie
    # beyond it, so the lag is a bound, not a peak. (A lag whose r is null for too little
    # overlap is no edge of the search: no --max-lag gives it an r.)
    best_lag_at_edge: bool
    lag: Lag | None  # the same lag with its block-bootstrap interval (None: too short)
    aligned_lag_s: float | None  # b was moved back by this before the agreement figures
    checks: tuple[SegmentCheck, ...]
    divergent: tuple[Divergence, ...]


@dataclass(frozen=True, kw_only=True)
class GroupResult:
    group: Group
    options: AnalysisOptions
    raters: tuple[RaterResult, ...]
    pair: PairResult | None

    @property
    def label(self) -> str:
        return self.group.label


def _values(s: Series, n: int) -> FloatArray:
    return padded(s.values, n)


def bin_seconds(s: Series, n: int) -> FloatArray:
    """Seconds of video each of ``n`` grid bins covers: ``1/rate`` each, but the last only
    what is left of the video (a 100.05 s video on a 10 Hz grid: 1001 bins, the last 0.05 s),
    so rated + filled + missing time is the video's duration."""
    dt = 1 / s.rate_hz
    w = np.full(n, dt)
    if n and s.media.duration_s and (n - 1) * dt < s.media.duration_s < n * dt:
        w[-1] = s.media.duration_s - (n - 1) * dt
    return w


def rater_result(s: Series, n: int, options: AnalysisOptions) -> RaterResult:
    v = _values(s, n)
    status = np.concatenate([s.status[:n], np.full(max(0, n - len(s.status)), MISSING)])
    w = bin_seconds(s, n)
    passes = np.concatenate([s.binned.n_passes[:n],
                             np.zeros(max(0, n - len(s.binned.n_passes)), dtype=np.int64)])
    return RaterResult(
        series=s, describe=describe(v, options.band_for(s.rater), w * s.rate_hz),
        duration_s=float(w.sum()),
        rated_s=float(w[status == RATED].sum()), filled_s=float(w[status == FILLED].sum()),
        missing_s=float(w[status == MISSING].sum()),
        rerated_s=float(w[passes >= 2].sum()),
        gaps=len(s.gaps), missing_samples=sum(g.n_missing for g in s.gaps),
        segments=find_segments(v, s.rate_hz, options.segments))


def _check(owner: RaterResult, other: RaterResult, other_v: FloatArray, rate_hz: float,
           band: Band, min_coverage: float) -> list[SegmentCheck]:
    out = []
    for seg in owner.segments:
        m, cov = mean_over(other_v, rate_hz, seg.start_s, seg.end_s)
        lo, hi = round(seg.start_s * rate_hz), round(seg.end_s * rate_hz)
        cats = categories(other_v[lo:hi], band)
        rated = cats[cats >= 0]
        share = [float(np.mean(rated == c)) if len(rated) else math.nan for c in range(3)]
        cat = None if math.isnan(m) else CATEGORY_NAMES[int(categories(np.array([m]), band)[0])]
        # judged only where the other rated as much of the window as a segment needs
        judged = cat is not None and cov >= min_coverage - 1e-12
        agrees = None if not judged else (cat == "helpful" if seg.kind == "top"
                                          else cat == "hindering")
        same = sum(seg.overlap_s(o) for o in other.segments if o.kind == seg.kind)
        opposite = sum(seg.overlap_s(o) for o in other.segments if o.kind != seg.kind)
        out.append(SegmentCheck(owner=owner.rater, other=other.rater, segment=seg, other_mean=m,
                                other_coverage=cov, other_category=cat, other_below=share[0],
                                other_within=share[1], other_above=share[2], agrees=agrees,
                                overlap_same_s=same, overlap_opposite_s=opposite))
    return out


def _divergent(a: FloatArray, b: FloatArray, rate_hz: float, options: AnalysisOptions,
               ) -> tuple[Divergence, ...]:
    d = np.abs(b - a)  # NaN where either is missing
    if length_bins(options.segments.window_s, rate_hz) > len(d):
        return ()  # no window fits: a stretch is never shorter than its window
    w = window_bins(options.segments.window_s, rate_hz, len(d))
    means, cov = window_means(d, w)
    ok = (cov >= options.segments.min_coverage - 1e-12) & ~np.isnan(means)
    cand = np.flatnonzero(ok)
    order = cand[np.lexsort((cand, -cov[cand], -np.round(means[cand], 6)))]
    chosen: list[int] = []
    for s in order.tolist():
        if len(chosen) == options.divergent_k:
            break
        if all(abs(s - t) >= w for t in chosen):
            chosen.append(s)
    out = []
    for rank, s in enumerate(chosen, start=1):
        both = ~np.isnan(a[s:s + w]) & ~np.isnan(b[s:s + w])
        out.append(Divergence(rank=rank, start_s=s / rate_hz, end_s=(s + w) / rate_hz,
                              mean_abs_diff=float(means[s]),
                              mean_a=float(a[s:s + w][both].mean()),
                              mean_b=float(b[s:s + w][both].mean()), coverage=float(cov[s])))
    return tuple(out)


def _at_edge(lags: IntArray, r: FloatArray, lag: int) -> bool:
    """Whether ``lag`` (not 0, with an r) is ``-max_lag`` or ``max_lag``, an end of ``lags``."""
    return lag != 0 and bool(np.isfinite(r[lags == lag]).all()) and \
        abs(lag) == int(np.abs(lags).max())


def pair_result(group: Group, ra: RaterResult, rb: RaterResult,
                options: AnalysisOptions) -> PairResult:
    n, rate = group.n_bins, group.rate_hz
    a, b = _values(ra.series, n), _values(rb.series, n)
    lags, r = cross_correlation(a, b, round(options.max_lag_s * rate))
    lag, r_best = best_lag(lags, r)
    with_ci = reaction_lag(a, b, rate_hz=rate, max_lag_s=options.max_lag_s,
                           block_s=options.block_s, replicates=min(options.replicates, 1000),
                           seed=options.seed)
    b_unaligned = b
    aligned = None
    if options.align_lag and lag != 0:
        b = shift(b, lag)
        aligned = lag / rate
    both = ~np.isnan(a) & ~np.isnan(b)
    ag = agreement(a, b, options.band_for(ra.rater), band_y=options.band_for(rb.rater),
                   block_bins=round(options.block_s * rate),
                   replicates=options.replicates, seed=options.seed)
    # segments are checked where each rater rated them, unaligned, by the other's own band
    cover = options.segments.min_coverage
    checks = (*_check(ra, rb, b_unaligned, rate, options.band_for(rb.rater), cover),
              *_check(rb, ra, a, rate, options.band_for(ra.rater), cover))
    return PairResult(a=ra.rater, b=rb.rater, paired_by=group.paired_by,
                      common_s=float(both.sum() / rate), agreement=ag, lags_s=lags / rate,
                      xcorr=r, lag=with_ci,
                      # no r at any lag (nothing rated by both): no lag either, not 0
                      best_lag_s=lag / rate if math.isfinite(r_best) else math.nan,
                      best_lag_r=r_best, best_lag_at_edge=_at_edge(lags, r, lag),
                      aligned_lag_s=aligned, checks=checks,
                      divergent=_divergent(a, b, rate, options))


def analyse_group(group: Group, options: AnalysisOptions | None = None) -> GroupResult:
    opt = options or AnalysisOptions()
    n = group.n_bins
    raters = tuple(rater_result(s, n, opt) for s in group.series)
    pair = None
    if group.pair is not None:
        ra = next(r for r in raters if r.series is group.pair[0])
        rb = next(r for r in raters if r.series is group.pair[1])
        pair = pair_result(group, ra, rb, opt)
    return GroupResult(group=group, options=opt, raters=raters, pair=pair)


# --- published forms ---------------------------------------------------------------------
