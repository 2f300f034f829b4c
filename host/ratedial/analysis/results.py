"""Analysis results in their two published forms: ``ratedial analyze --json`` (schema:
docs/schemas/analyze.schema.json) and the one-row-per-dyad table (docs/analysis.md, section
6).

Invariants:

* A number that does not exist is ``None`` (JSON null), never NaN; p values keep 6
  significant digits (never 0), other figures 6 decimals.
* The table's columns are the JSON's, flattened with the rater's label as prefix.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .analyse import AnalysisOptions, GroupResult, PairResult, RaterResult
from .errors import UsageError
from .load import Series
from .read import RUN_TIME_NOTE, RUN_TIMELINE
from .segments import Segment, missing_kind_note
from .stats import CATEGORY_NAMES, Agreement, Estimate


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
    return {"timeline": s.media.timeline, "rate_hz": s.rate_hz, "rerate": s.options.rerate,
            "max_fill_s": s.options.max_fill_s,
            "rewind_tolerance_s": s.options.rewind_tolerance_s, "window_s": seg.window_s,
            "k": seg.k, "min_coverage": seg.min_coverage, "mode": seg.mode,
            "min_separation_s": seg.min_separation_s}


def segments_note(r: RaterResult, opt: AnalysisOptions) -> str | None:
    """Why a rater has no segments, or none of one kind (``raters[].segments_note``); None
    when both kinds are there (or none was asked for)."""
    seg = opt.segments
    if seg.k == 0:
        return None
    if not r.segments:
        why = (f"the video is shorter than one {seg.window_s:g} s window"
               if seg.window_s > r.duration_s else "too little rated time")
        return f"none ({why})"
    return missing_kind_note(r.segments, seg)


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
        "lost": [{"at_s": _num(x.at_s, 3), "back": x.back, "cause": x.cause}
                 for x in s.losses],
        "stalled": {"n": s.stalls[0], "seconds": _num(s.stalls[1], 3)},
        "missing_samples": r.missing_samples, "annotations": s.recording.annotations,
        "segments": [_segment(x) for x in r.segments],
        "segments_note": segments_note(r, opt),
        "guess": rater_guess(r, opt),
    }


GUESS_KEYS = ("answered_by", "score", "n", "helpful_n", "helpful_correct", "hindering_n",
              "hindering_correct", "seed")


def rater_guess(r: RaterResult, opt: AnalysisOptions) -> dict[str, Any] | None:
    """The newest guess test of ``r``'s segments, as ``raters[].guess`` (below)."""
    return _guess(r.series.recording.guess_of(r.rater), segment_params(r.series, opt),
                  r.segments)


def _spans(segments: Any) -> list[tuple[str, str, float, float]] | None:
    """(label, kind, start_s, end_s) of segments, as a guess note saves them (3 decimals);
    None when they are not in that form (a note edited by hand)."""
    try:
        return sorted((str(x["label"]), str(x["kind"]), round(float(x["start_s"]), 3),
                       round(float(x["end_s"]), 3)) for x in segments)
    except (TypeError, KeyError, ValueError):
        return None


def _guess(g: Mapping[str, Any] | None, here: Mapping[str, Any],
           segments: Sequence[Segment] = ()) -> dict[str, Any] | None:
    """The newest guess test of a rater's segments (``ratedial review --guess``), or None;
    a value of the wrong type (a note edited by hand) is None. ``params``: the options its
    segments were found with; ``same_segments``: whether they are this analysis's (``here``
    and ``segments``: the same options and, where the note lists them, the same windows;
    null when the note does not say), so a score is never read against other segments, also
    when it was made on a recording still being recorded (``partial``) that grew since."""
    if g is None:
        return None
    out: dict[str, Any] = {}
    for k in GUESS_KEYS:
        v = g.get(k)
        ok = isinstance(v, str) if k == "answered_by" else (
            isinstance(v, int) and not isinstance(v, bool))
        out[k] = v if ok else None
    for kind in ("helpful", "hindering"):  # a note saved before they were: from its answers
        if out[f"{kind}_n"] is None and isinstance(g.get("answers"), list):
            truths = [a.get("truth") for a in g["answers"] if isinstance(a, dict)]
            if len(truths) == len(g["answers"]):
                out[f"{kind}_n"] = truths.count(kind)
    params = g.get("params")
    params = dict(params) if isinstance(params, dict) else None
    out["params"] = params
    same = None if not params else all(
        params.get(k) == v for k, v in here.items() if k in params)
    saved = _spans(g.get("segments"))
    if same and saved is not None:  # same options, but on what the recording held then?
        same = saved == _spans([{"label": x.label, "kind": x.kind, "start_s": x.start_s,
                                 "end_s": x.end_s} for x in segments])
    out["same_segments"] = same
    out["partial"] = g.get("partial") is True
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
    out["best_lag_at_edge"] = p.best_lag_at_edge
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
        for key in ("answered_by", "score", "n", "helpful_n", "helpful_correct", "hindering_n",
                    "hindering_correct", "same_segments"):
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


def _pair_columns(pr: PairResult, divergent_k: int) -> dict[str, Any]:
    row: dict[str, Any] = {"rater_a": pr.a, "rater_b": pr.b, "paired_by": pr.paired_by,
                           "common_s": _num(pr.common_s, 3)}
    if pr.agreement is not None:
        row.update(_agreement_columns(pr, pr.agreement))
    row["best_lag_s"] = _num(pr.best_lag_s, 3)
    row["best_lag_r"] = _num(pr.best_lag_r)
    row["best_lag_at_edge"] = pr.best_lag_at_edge
    row["best_lag_blocks_s"] = None if pr.lag is None else _num(pr.lag.lag_s, 3)
    row["best_lag_ci_low_s"] = None if pr.lag is None else _num(pr.lag.ci_low_s, 3)
    row["best_lag_ci_high_s"] = None if pr.lag is None else _num(pr.lag.ci_high_s, 3)
    row["aligned_lag_s"] = None if pr.aligned_lag_s is None else _num(pr.aligned_lag_s, 3)
    for owner, other in ((pr.a, pr.b), (pr.b, pr.a)):
        for kind, want in (("top", "helpful"), ("bottom", "hindering")):
            cs = [c for c in pr.checks if c.owner == owner and c.segment.kind == kind]
            # empty, not 0, when none could be judged (the other rated too little of each)
            judged = [c.agrees for c in cs if c.agrees is not None]
            row[f"{owner}_{kind}_rated_{want}_by_{other}"] = sum(judged) if judged else None
            row[f"{owner}_{kind}_overlapping_{other}_{kind}"] = sum(
                c.overlap_same_s > 0 for c in cs)
    # every rank's columns, empty where there is no such window: the same columns in the
    # same order for every dyad (a short session has fewer windows)
    ranked = {d.rank: d for d in pr.divergent}
    for rank in range(1, max(divergent_k, *ranked, 0) + 1):
        d = ranked.get(rank)
        row[f"divergent{rank}_start_s"] = None if d is None else _num(d.start_s, 3)
        row[f"divergent{rank}_end_s"] = None if d is None else _num(d.end_s, 3)
        row[f"divergent{rank}_mean_abs_diff"] = None if d is None else _num(d.mean_abs_diff)
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
        row.update(_pair_columns(result.pair, result.options.divergent_k))
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
