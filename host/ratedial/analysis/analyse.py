"""The figures for one group (a dyad): per rater, per pair, and as one table row.

Everything here is computed from the grid series of :mod:`ratedial.analysis.load`; the
numbers are explained in docs/analysis.md. Results are frozen dataclasses; :func:`to_json`
and :func:`table_row` give the two published forms (``ratedial analyze --json`` and the
one-row-per-dyad CSV table).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .align import FILLED, MISSING, RATED, FloatArray, padded
from .errors import UsageError
from .groups import Group
from .lag import Lag, reaction_lag, shift
from .load import Series
from .read import RUN_TIME_NOTE, RUN_TIMELINE
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
    Estimate,
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
        series=s, describe=describe(v, options.band_for(s.rater)),
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
                      best_lag_r=r_best,
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


def _num(x: float | None, digits: int = 6) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), digits)


def _p(x: float | None) -> float | None:
    """A p value to 6 significant digits: a tiny one stays a number (6.4e-16), never 0."""
    if x is None or not math.isfinite(x):
        return None
    return float(f"{float(x):.6g}")


def _est(e: Estimate) -> dict[str, Any]:
    return {"value": _num(e.value), "ci_low": _num(e.ci_low), "ci_high": _num(e.ci_high),
            "undefined_resamples": e.undefined, "note": e.note}


def _segment(s: Segment) -> dict[str, Any]:
    return {"label": s.label, "kind": s.kind, "rank": s.rank, "start_s": _num(s.start_s, 3),
            "end_s": _num(s.end_s, 3), "mean": _num(s.mean), "coverage": _num(s.coverage, 4)}


def options_json(opt: AnalysisOptions, rate_hz: float, rerate: str, max_fill_s: float,
                 rewind_tolerance_s: float) -> dict[str, Any]:
    return {"rate_hz": rate_hz, "rerate": rerate, "max_fill_s": max_fill_s,
            "rewind_tolerance_s": rewind_tolerance_s,
            "neutral_band": [opt.band.low, opt.band.high],
            "segments": {"k": opt.segments.k, "window_s": opt.segments.window_s,
                         "min_coverage": opt.segments.min_coverage, "mode": opt.segments.mode,
                         "min_separation_s": opt.segments.min_separation_s},
            "max_lag_s": opt.max_lag_s, "align_lag": opt.align_lag,
            "bootstrap": {"block_s": opt.block_s, "replicates": opt.replicates,
                          "seed": opt.seed}}


def segment_params(s: Series, opt: AnalysisOptions) -> dict[str, Any]:
    """What a rater's segments depend on (as ``ratedial review`` saves with its notes)."""
    seg = opt.segments
    return {"rate_hz": s.rate_hz, "rerate": s.options.rerate,
            "max_fill_s": s.options.max_fill_s,
            "rewind_tolerance_s": s.options.rewind_tolerance_s, "window_s": seg.window_s,
            "k": seg.k, "min_coverage": seg.min_coverage, "mode": seg.mode,
            "min_separation_s": seg.min_separation_s}


def rater_json(r: RaterResult, opt: AnalysisOptions) -> dict[str, Any]:
    d, s = r.describe, r.series
    return {
        "rater": r.rater, "recording": str(s.recording.path), "dial": s.dial.uid,
        "firmware": s.dial.firmware, "n_bins": d.n, "mean": _num(d.mean), "sd": _num(d.sd),
        "median": _num(d.median), "min": _num(d.minimum), "max": _num(d.maximum),
        "range": _num(d.range), "share_below": _num(d.below), "share_within": _num(d.within),
        "share_above": _num(d.above), "duration_s": _num(r.duration_s, 3),
        "rated_s": _num(r.rated_s, 3), "filled_s": _num(r.filled_s, 3),
        "missing_s": _num(r.missing_s, 3), "coverage": _num(r.coverage),
        "rerated_s": _num(r.rerated_s, 3), "passes": s.passes, "samples_used": s.samples_used,
        "samples_excluded": dict(s.excluded), "gaps": r.gaps,
        "missing_samples": r.missing_samples, "annotations": s.recording.annotations,
        "segments": [_segment(x) for x in r.segments],
        "guess": _guess(s.recording.guess_of(r.rater), segment_params(s, opt)),
    }


GUESS_KEYS = ("answered_by", "score", "n", "helpful_correct", "hindering_correct", "seed")


def _guess(g: Mapping[str, Any] | None, here: Mapping[str, Any]) -> dict[str, Any] | None:
    """The newest guess test of a rater's segments (``ratedial review --guess``), or None;
    a value of the wrong type (a note edited by hand) is None. ``params``: the options its
    segments were found with; ``same_segments``: whether they are this analysis's (``here``;
    null when the note does not say), so a score is never read against other segments."""
    if g is None:
        return None
    out: dict[str, Any] = {}
    for k in GUESS_KEYS:
        v = g.get(k)
        ok = isinstance(v, str) if k == "answered_by" else (
            isinstance(v, int) and not isinstance(v, bool))
        out[k] = v if ok else None
    params = g.get("params")
    params = {k: v for k, v in params.items() if k != "timeline"} \
        if isinstance(params, dict) else None
    out["params"] = params
    out["same_segments"] = None if not params else all(
        params.get(k) == v for k, v in here.items() if k in params)
    return out


def pair_json(p: PairResult) -> dict[str, Any]:
    ag = p.agreement
    out: dict[str, Any] = {"a": p.a, "b": p.b, "paired_by": p.paired_by,
                           "common_s": _num(p.common_s, 3)}
    if ag is not None:
        out.update({
            "n_bins": ag.n, "n_eff_pearson": _num(ag.n_eff_pearson, 2),
            "n_eff_spearman": _num(ag.n_eff_spearman, 2), "pearson": _est(ag.pearson),
            "pearson_p": _p(ag.pearson_p), "pearson_p_naive": _p(ag.pearson_p_naive),
            "spearman": _est(ag.spearman), "spearman_p": _p(ag.spearman_p),
            "icc2_1": _est(ag.icc2_1), "icc3_1": _est(ag.icc3_1), "kappa": _est(ag.kappa),
            "confusion": {f"{p.a}_{ca}": {f"{p.b}_{cb}": _num(ag.confusion[i][j])
                                          for j, cb in enumerate(CATEGORY_NAMES)}
                          for i, ca in enumerate(CATEGORY_NAMES)},
            "bootstrap_block_bins": ag.block_bins,
        })
    out["best_lag_s"] = _num(p.best_lag_s, 3)
    out["best_lag_r"] = _num(p.best_lag_r)
    out["lag"] = None if p.lag is None else {
        "lag_s": _num(p.lag.lag_s, 3), "r": _num(p.lag.r), "ci_low_s": _num(p.lag.ci_low_s, 3),
        "ci_high_s": _num(p.lag.ci_high_s, 3), "replicates": p.lag.replicates,
        "blocks": p.lag.blocks}
    out["aligned_lag_s"] = _num(p.aligned_lag_s, 3) if p.aligned_lag_s is not None else None
    out["xcorr"] = {"lag_s": [_num(x, 3) for x in p.lags_s.tolist()],
                    "r": [_num(x) for x in p.xcorr.tolist()]}
    out["segment_checks"] = [
        {"owner": c.owner, "segment": _segment(c.segment), "other": c.other,
         "other_mean": _num(c.other_mean), "other_coverage": _num(c.other_coverage, 4),
         "other_category": c.other_category, "other_share_below": _num(c.other_below),
         "other_share_within": _num(c.other_within), "other_share_above": _num(c.other_above),
         "agrees": c.agrees, "overlap_same_s": _num(c.overlap_same_s, 3),
         "overlap_opposite_s": _num(c.overlap_opposite_s, 3)} for c in p.checks]
    out["divergent"] = [{"rank": d.rank, "start_s": _num(d.start_s, 3), "end_s": _num(d.end_s, 3),
                         "mean_abs_diff": _num(d.mean_abs_diff), "mean_a": _num(d.mean_a),
                         "mean_b": _num(d.mean_b), "coverage": _num(d.coverage, 4)}
                        for d in p.divergent]
    return out


def timeline_json(timeline: str) -> dict[str, Any]:
    """Which clock the times are on: the video's (``media``) or the recording's own (``run``,
    no player; :data:`~.read.RUN_TIME_NOTE`)."""
    return {"kind": timeline, "note": RUN_TIME_NOTE if timeline == RUN_TIMELINE else None}


def to_json(result: GroupResult) -> dict[str, Any]:
    g = result.group
    s0 = g.series[0]
    return {
        "dyad": g.label, "media": {"key": g.media_key, "path": g.media.path,
                                   "duration_s": g.media.duration_s,
                                   "fingerprint": g.media.fingerprint},
        "timeline": timeline_json(g.media.timeline),
        "options": options_json(result.options, s0.rate_hz, s0.options.rerate,
                                s0.options.max_fill_s, s0.options.rewind_tolerance_s),
        "raters": [rater_json(r, result.options) for r in result.raters],
        "pair": None if result.pair is None else pair_json(result.pair),
    }


def _scalar(v: Any) -> Any:
    return v if v is None or isinstance(v, str | int | float | bool) else str(v)


def _rater_columns(r: RaterResult, opt: AnalysisOptions) -> dict[str, Any]:
    k = opt.segments.k
    j = rater_json(r, opt)
    p = r.rater
    row: dict[str, Any] = {f"{p}_recording": r.series.recording.path.name}
    for key in ("mean", "sd", "median", "min", "max", "range", "share_below", "share_within",
                "share_above", "coverage", "rated_s", "filled_s", "missing_s", "rerated_s",
                "gaps", "missing_samples"):
        row[f"{p}_{key}"] = j[key]
    for kind in ("top", "bottom"):
        segs = [s for s in r.segments if s.kind == kind]
        for i in range(k):
            s = segs[i] if i < len(segs) else None
            row[f"{p}_{kind}{i + 1}_start_s"] = None if s is None else _num(s.start_s, 3)
            row[f"{p}_{kind}{i + 1}_end_s"] = None if s is None else _num(s.end_s, 3)
            row[f"{p}_{kind}{i + 1}_mean"] = None if s is None else _num(s.mean)
    guess = j["guess"]
    if guess is not None:  # how well the other guessed this rater's segments
        for key in ("answered_by", "score", "n", "helpful_correct", "hindering_correct",
                    "same_segments"):
            row[f"{p}_guess_{key}"] = _scalar(guess[key])
    for key, value in sorted(r.series.recording.annotations.items()):
        row[f"{p}_ann_{key}"] = _scalar(value)
    return row


def _agreement_columns(pr: PairResult, ag: Agreement) -> dict[str, Any]:
    row: dict[str, Any] = {"n_bins": ag.n, "n_eff_pearson": _num(ag.n_eff_pearson, 2)}
    for name, e in (("pearson_r", ag.pearson), ("spearman_rho", ag.spearman),
                    ("icc2_1", ag.icc2_1), ("icc3_1", ag.icc3_1), ("kappa", ag.kappa)):
        row[name] = _num(e.value)
        row[f"{name}_ci_low"] = _num(e.ci_low)
        row[f"{name}_ci_high"] = _num(e.ci_high)
        if name == "pearson_r":
            row["pearson_p"] = _p(ag.pearson_p)
            row["pearson_p_naive"] = _p(ag.pearson_p_naive)
        if name == "spearman_rho":
            row["n_eff_spearman"] = _num(ag.n_eff_spearman, 2)
            row["spearman_p"] = _p(ag.spearman_p)
    for i, ca in enumerate(CATEGORY_NAMES):
        for m, cb in enumerate(CATEGORY_NAMES):
            row[f"share_{pr.a}_{ca}_{pr.b}_{cb}"] = _num(ag.confusion[i][m])
    return row


def _pair_columns(pr: PairResult) -> dict[str, Any]:
    row: dict[str, Any] = {"rater_a": pr.a, "rater_b": pr.b, "paired_by": pr.paired_by,
                           "common_s": _num(pr.common_s, 3)}
    if pr.agreement is not None:
        row.update(_agreement_columns(pr, pr.agreement))
    row["best_lag_s"] = _num(pr.best_lag_s, 3)
    row["best_lag_r"] = _num(pr.best_lag_r)
    row["best_lag_blocks_s"] = None if pr.lag is None else _num(pr.lag.lag_s, 3)
    row["best_lag_ci_low_s"] = None if pr.lag is None else _num(pr.lag.ci_low_s, 3)
    row["best_lag_ci_high_s"] = None if pr.lag is None else _num(pr.lag.ci_high_s, 3)
    row["aligned_lag_s"] = None if pr.aligned_lag_s is None else _num(pr.aligned_lag_s, 3)
    for owner, other in ((pr.a, pr.b), (pr.b, pr.a)):
        for kind, want in (("top", "helpful"), ("bottom", "hindering")):
            cs = [c for c in pr.checks if c.owner == owner and c.segment.kind == kind]
            row[f"{owner}_{kind}_rated_{want}_by_{other}"] = sum(bool(c.agrees) for c in cs)
            row[f"{owner}_{kind}_overlapping_{other}_{kind}"] = sum(
                c.overlap_same_s > 0 for c in cs)
    for d in pr.divergent:
        row[f"divergent{d.rank}_start_s"] = _num(d.start_s, 3)
        row[f"divergent{d.rank}_end_s"] = _num(d.end_s, 3)
        row[f"divergent{d.rank}_mean_abs_diff"] = _num(d.mean_abs_diff)
    return row


def table_row(result: GroupResult, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One row of the dyad table (column meanings: docs/analysis.md, "The dyad table")."""
    g = result.group
    row: dict[str, Any] = {"dyad": g.label, "media": g.media.name,
                           "media_fingerprint": g.media.fingerprint,
                           "timeline": g.media.timeline,
                           "duration_s": _num(result.raters[0].duration_s, 3)}
    for r in result.raters:
        row.update(_rater_columns(r, result.options))
    if result.pair is not None:
        row.update(_pair_columns(result.pair))
    for key, value in (extra or {}).items():
        if key in row:
            raise UsageError(f"--annotations: column {key!r} is one ratedial computes; rename "
                             f"it in the CSV (e.g. 'score_{key}')")
        row[key] = _scalar(value)
    return row


def table_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    cols: dict[str, None] = {}
    for r in rows:
        cols.update(dict.fromkeys(r))
    return list(cols)
