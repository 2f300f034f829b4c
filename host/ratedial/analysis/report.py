"""The human-readable report of ``ratedial analyze`` (plain text, fits 100 columns)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from .analyse import GroupResult, PairResult, RaterResult, SegmentCheck
from .fmt import fmt_num as _f
from .fmt import fmt_p as _p
from .fmt import fmt_p_cell as _p_cell
from .mediatime import fmt_span, fmt_time
from .read import RUN_TIME_NOTE, RUN_TIMELINE
from .results import rater_guess, segment_params, segments_note
from .stats import CATEGORY_NAMES, Estimate, off_side


def _pct(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{100 * x:.0f}%"


def _est(e: Estimate, digits: int = 2) -> str:
    if e.note is not None:  # show enough digits to see where the estimate lies
        digits = max(digits, 4)
    return f"{_f(e.value, digits)}  95% CI [{_f(e.ci_low, digits)}, {_f(e.ci_high, digits)}]"


def _notes(*named: tuple[str, Estimate]) -> list[str]:
    """Why an interval does not contain its estimate, and resamples left out."""
    out = []
    for name, e in named:
        if e.note is not None:
            out.append(f"  note: {name}: {e.note}")
        if e.undefined:
            out.append(f"  note: {name}: {e.undefined} bootstrap resamples undefined, "
                       "left out of the interval")
    return out


def _passes(n: int) -> str:
    return "1 pass" if n == 1 else f"{n} passes"


def _range(r: RaterResult) -> str:
    """Whole points on a wide scale (0-100), tenths on a short one (1-7: 4.3, not 4)."""
    lo, hi = r.series.recording.scale_range
    d = 0 if hi - lo > 20 else 1
    return (f"{_f(r.describe.minimum, d)} to {_f(r.describe.maximum, d)} "
            f"({_f(r.describe.range, d)})")


def _rater_lines(rs: Sequence[RaterResult]) -> list[str]:
    rows: list[tuple[str, list[str]]] = [
        ("", [r.rater for r in rs]),
        ("recording", [r.series.recording.path.name for r in rs]),
        ("mean (SD)", [f"{_f(r.describe.mean)} ({_f(r.describe.sd)})" for r in rs]),
        ("median", [_f(r.describe.median) for r in rs]),
        ("range", [_range(r) for r in rs]),
        ("below band", [_pct(r.describe.below) for r in rs]),
        ("within band", [_pct(r.describe.within) for r in rs]),
        ("above band", [_pct(r.describe.above) for r in rs]),
        ("rated", [f"{fmt_time(r.rated_s + r.filled_s)} ({_pct(r.coverage)})" for r in rs]),
        ("missing", [fmt_time(r.missing_s, tenths=True) for r in rs]),
        ("filled (≤ limit)", [f"{r.filled_s:.1f} s" for r in rs]),
        ("re-rated", [f"{fmt_time(r.rerated_s, tenths=True)} ({_passes(r.series.passes)})"
                      for r in rs]),
        ("gaps", [f"{r.gaps} ({r.missing_samples} samples)" for r in rs]),
    ]
    if any(r.series.stalls[0] for r in rs):  # no sample taken: missing time, not a gap
        rows.append(("dial stalled", [
            f"{r.series.stalls[0]}x, {r.series.stalls[1]:.1f} s" if r.series.stalls[0] else "-"
            for r in rs]))
    if any(r.series.losses for r in rs):  # a dial lost for good leaves no gap: say why
        rows.append(("dial lost", [", ".join(
            f"{fmt_time(x.at_s, tenths=True)}{'' if x.back else ' (not back)'}"
            for x in r.series.losses) or "-" for r in rs]))
    excluded = [", ".join(f"{k} {v}" for k, v in sorted(r.series.excluded.items())) or "none"
                for r in rs]
    rows.append(("samples left out", excluded))
    w = max(len(c) for _, cells in rows for c in cells) + 3
    lines = []
    for name, cells in rows:
        lines.append(f"  {name:<18}" + "".join(f"{c:<{w}}" for c in cells).rstrip())
    return lines


def _segment_lines(result: GroupResult) -> list[str]:
    opt = result.options.segments
    how = (f"{opt.window_s:g} s windows" if opt.mode == "windows" else
           f"peaks of {opt.window_s:g} s means, ≥ {opt.min_separation_s or opt.window_s:g} s "
           "apart")
    lines = [f"Top and bottom segments ({how}, ≥ {opt.min_coverage:.0%} rated)"]
    checks = {} if result.pair is None else {(c.owner, c.segment.label): c
                                             for c in result.pair.checks}
    for r in result.raters:
        note = segments_note(r, result.options)
        if not r.segments and note is not None:
            lines.append(f"  {r.rater}: {note}")
        for s in r.segments:
            line = (f"  {r.rater:<10} {s.label}  {fmt_span(s.start_s, s.end_s):<17} "
                    f"mean {_f(s.mean):>5}")
            side = off_side(s.kind, s.mean, result.options.band_for(r.rater))
            if side is not None:  # the lowest of a rater who never went below neutral
                line += f" ({side})"
            c = checks.get((r.rater, s.label))
            if c is not None:
                line += f"   {c.other} there: {_f(c.other_mean):>5} {c.other_category or ''}"
                if c.other_category is not None and c.agrees is None:  # too little rated
                    line += f" (rated {_pct(c.other_coverage)} of it: not judged)"
                if c.overlap_same_s > 0:
                    line += f", overlaps {c.other}'s {s.kind} segment"
            lines.append(line.rstrip())
        if r.segments and note is not None:  # one kind missing: said, with why
            lines.append(f"  {r.rater}: {note}")
        guess = _guess_line(r, result)
        if guess:
            lines.append(guess)
    return lines


def _guess_line(r: RaterResult, result: GroupResult) -> str:
    """The guess test of these segments, or a warning that it was of other segments."""
    g = rater_guess(r, result.options)
    if g is None or g["score"] is None:
        return ""
    line = (f"  {r.rater:<10} guess test: {g['answered_by'] or '?'} {g['score']} of {g['n']} "
            "right")
    if g["same_segments"] is False:
        here = segment_params(r.series, result.options)
        diff = ", ".join(f"{k} {g['params'][k]} (here {here[k]})" for k in here
                         if k in g["params"] and g["params"][k] != here[k])
        if not diff:  # the same options, other windows: the recording grew since
            diff = ("on the recording while it was still being recorded" if g["partial"]
                    else "other windows")
        line += f": made on other segments ({diff}), not the ones above"
    return line


def _constant(result: GroupResult) -> list[str]:
    """A note for each rater of the pair whose rating never changed: a correlation with a
    constant is undefined (no variance), and its ICCs are 0 (the rating explains none of the
    other's variance)."""
    pair = result.pair
    if pair is None:
        return []
    return [f"  note: {r.rater}'s rating is constant ({_f(r.describe.minimum, 1)} throughout): "
            "Pearson r and Spearman rho are undefined, the ICCs are 0"
            for r in result.raters if r.rater in (pair.a, pair.b)
            and r.describe.n and r.describe.range == 0]


def _pair_lines(p: PairResult, result: GroupResult) -> list[str]:
    lines = [f"Agreement, {p.a} vs {p.b} (over {fmt_time(p.common_s)} rated by both"
             + (", paired by label order" if p.paired_by == "label order" else "") + ")"]
    ag = p.agreement
    if ag is None:
        lines.append("  too little time rated by both")
        return lines
    lines += [
        f"  Pearson r       {_est(ag.pearson)}  p {_p(ag.pearson_p)} "
        f"(effective n {_f(ag.n_eff_pearson, 0)} of {ag.n} bins)",
        f"  Spearman rho    {_est(ag.spearman)}  p {_p(ag.spearman_p)} "
        f"(effective n {_f(ag.n_eff_spearman, 0)})",
        f"  ICC(2,1)        {_est(ag.icc2_1)}  (absolute agreement)",
        f"  ICC(3,1)        {_est(ag.icc3_1)}  (consistency)",
        f"  Cohen's kappa   {_est(ag.kappa)}  (hindering / neutral / helpful)",
        *_constant(result),
        *_notes(("Pearson r", ag.pearson), ("Spearman rho", ag.spearman),
                ("ICC(2,1)", ag.icc2_1), ("ICC(3,1)", ag.icc3_1), ("kappa", ag.kappa)),
    ]
    if math.isfinite(p.best_lag_r):
        if p.best_lag_s == 0:
            who = "no lag"
        elif p.best_lag_s > 0:
            who = f"{p.b} follows {p.a} by {p.best_lag_s:g} s"
        else:
            who = f"{p.a} follows {p.b} by {-p.best_lag_s:g} s"
        # the interval is the block bootstrap's, around its own estimate (pairs within
        # blocks only): named when that differs from the whole series' best lag
        own = "" if p.lag is None or p.lag.lag_s == p.best_lag_s else \
            f"in blocks {p.lag.lag_s:g} s, "
        # blocks are --block long, at least four times --max-lag (analysis/lag.py)
        block = max(result.options.block_s, 4 * result.options.max_lag_s)
        ci = (f"; no 95% CI: fewer than two {block:g} s blocks rated by both (--block, at "
              "least 4 x --max-lag)") if p.lag is None else (
            f"; {own}95% CI [{round(p.lag.ci_low_s, 2):g}, {round(p.lag.ci_high_s, 2):g}] s")
        lines.append(f"  best lag        {who} (r {_f(p.best_lag_r, 2)}; searched "
                     f"±{result.options.max_lag_s:g} s{ci})")
        if p.best_lag_at_edge:
            lines.append("                  at the edge of the search: the strongest r may lie "
                         "beyond it (a wider --max-lag finds out)")
    if p.aligned_lag_s is not None:
        lines.append(f"  aligned         {p.b} moved {'back' if p.aligned_lag_s > 0 else 'on'} "
                     f"by {abs(p.aligned_lag_s):g} s before the figures above (--align-lag)")
    lines.append(f"  share of common time (rows {p.a}, columns {p.b}):")
    lines.append("  " + " " * 14 + "".join(f"{c:>11}" for c in CATEGORY_NAMES))
    for i, ca in enumerate(CATEGORY_NAMES):
        lines.append(f"  {ca:>14}" + "".join(f"{_pct(x):>11}" for x in ag.confusion[i]))
    for owner, other in ((p.a, p.b), (p.b, p.a)):
        tops = [c for c in p.checks if c.owner == owner and c.segment.kind == "top"]
        bots = [c for c in p.checks if c.owner == owner and c.segment.kind == "bottom"]
        if tops or bots:
            lines.append(f"  {owner}'s top segments rated helpful by {other}: "
                         f"{_judged(tops, other)}; bottom rated hindering: "
                         f"{_judged(bots, other)}")
    if p.divergent:
        lines.append("  Most divergent windows (mean |difference|):")
        for d in p.divergent:
            span = fmt_span(d.start_s, d.end_s)
            lines.append(f"    {d.rank}  {span:<17} {_f(d.mean_abs_diff):>5}"
                         f"   {p.a} {_f(d.mean_a)}, {p.b} {_f(d.mean_b)}")
    return lines


def _judged(checks: Sequence[SegmentCheck], other: str) -> str:
    """"2 of 3": agreements of the segments the other rated enough of to judge."""
    judged = [c for c in checks if c.agrees is not None]
    left = len(checks) - len(judged)
    return (f"{sum(bool(c.agrees) for c in judged)} of {len(judged)}"
            + (f" ({left} not judged: {other} rated too little of it)" if left else ""))


def format_group(result: GroupResult) -> str:
    g = result.group
    s0 = g.series[0]
    band = result.options.band
    head = (f"{g.label} · {g.media.name} · {fmt_time(g.duration_s)} · grid {s0.rate_hz:g} Hz, "
            f"re-rated: {_RULE[s0.options.rerate]}, fill ≤ {s0.options.max_fill_s:g} s, "
            f"neutral band {band.low:g} to {band.high:g}")
    lines = [head]
    if g.media.timeline == RUN_TIMELINE:
        lines.append(f"  timeline: RUN TIME. {RUN_TIME_NOTE[0].upper()}{RUN_TIME_NOTE[1:]}.")
    lines += [*_rater_lines(result.raters), "", *_segment_lines(result)]
    if result.pair is not None:
        lines += ["", *_pair_lines(result.pair, result)]
    return "\n".join(lines)


_RULE = {"last": "last pass wins", "first": "first pass", "mean": "mean of passes"}


RUN_TIME_MARK = "(run time)"


def format_overview(results: Sequence[GroupResult]) -> str:
    """One line per dyad; the dyad and pair columns as wide as their longest entry (a name
    such as "D07 session07.mp4" ran into the next column). A dyad analysed on run time (no
    video followed) ends its line with :data:`RUN_TIME_MARK`."""
    pairs = {id(r): ("(no pair)" if r.pair is None else f"{r.pair.a}/{r.pair.b}")
             for r in results}
    dw = max([len("dyad"), *(len(r.label) for r in results)]) + 2
    pw = max([len("pair"), *(len(v) for v in pairs.values())]) + 2
    lines = [f"{'dyad':<{dw}}{'pair':<{pw}}{'r':>6}{'95% CI':>16}{'p':>9}{'ICC(2,1)':>10}"
             f"{'kappa':>7}{'lag s':>7}"]
    for r in results:
        p = r.pair
        # times are not positions in a video: said on the line, as everywhere (section 1)
        mark = f"  {RUN_TIME_MARK}" if r.group.media.timeline == RUN_TIMELINE else ""
        if p is None or p.agreement is None:  # a pair with no time rated by both: said
            line = (f"{r.label:<{dw}}{pairs[id(r)]:<{pw}}".rstrip() if p is None else
                    f"{r.label:<{dw}}{pairs[id(r)]:<{pw}}(no time rated by both)")
            lines.append(line + mark)
            continue
        ag = p.agreement
        ci = f"[{_f(ag.pearson.ci_low, 2)}, {_f(ag.pearson.ci_high, 2)}]"
        lines.append(f"{r.label:<{dw}}{pairs[id(r)]:<{pw}}{_f(ag.pearson.value, 2):>6}{ci:>16}"
                     f"{_p_cell(ag.pearson_p):>9}{_f(ag.icc2_1.value, 2):>10}"
                     f"{_f(ag.kappa.value, 2):>7}{_f(p.best_lag_s, 1):>7}{mark}")
    return "\n".join(lines)
