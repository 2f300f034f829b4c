"""``ratedial analyze | export | plot | review | annotate``: one handler per command.

Only click and the standard library are imported here, so ``ratedial --help`` stays fast;
numpy, scipy, pandas and matplotlib (the ``analysis`` extra) load inside the commands.
"""



from __future__ import annotations

import functools
import importlib.util
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..errors import RatedialError, UsageError

if TYPE_CHECKING:
    from .analyse import AnalysisOptions, GroupResult
    from .groups import Group, PairingOptions
    from .load import Series
    from .segments import SegmentOptions

F = TypeVar("F", bound=Callable[..., Any])

RECORDINGS = click.argument("recordings", nargs=-1, required=True,
                            type=click.Path(dir_okay=False))


def _needs_extra() -> None:
    for name in ("numpy", "scipy", "pandas", "pyarrow", "matplotlib"):
        if importlib.util.find_spec(name) is None:
            raise RatedialError(f"the analysis commands need the analysis extra ({name} is "
                                "missing): pip install 'ratedial[analysis]'")


def alignment_options(f: F) -> F:
    opts = [
        click.option("--rate", "rate_hz", type=FiniteRange(min=0, min_open=True),
                     default=10.0, show_default=True,
                     help="Grid rate in values per second of video."),
        click.option("--rerate", type=click.Choice(["last", "first", "mean"]), default="last",
                     show_default=True,
                     help="Stretches rated more than once (rewound): which pass counts."),
        click.option("--max-fill", "max_fill_s", type=FiniteRange(min=0), default=0.5,
                     show_default=True,
                     help="Fill holes up to this many seconds by interpolation; longer gaps "
                          "stay missing (0: never fill)."),
        click.option("--rewind-tolerance", "rewind_s", type=FiniteRange(min=0),
                     default=0.5, show_default=True,
                     help="Media time going back by more than this starts a new pass."),
        click.option("--rater", "raters", multiple=True, metavar="REC[:DIAL]=LABEL",
                     help="Rater label for a recording (or one dial of it), overriding the "
                          "recorded one (repeatable)."),
        click.option("--dyad", "dyads", multiple=True, metavar="REC=LABEL",
                     help="Dyad label for a recording, overriding its session label "
                          "(repeatable)."),
        click.option("--dyad-key", default="dyad", show_default=True,
                     help="Session label that names the dyad (ratedial run --session "
                          "dyad=D07)."),
        click.option("--roles", default="client,therapist", show_default=True,
                     metavar="A,B", help="The two rater labels to pair (a, then b)."),
        click.option("--match", type=click.Choice(["fingerprint", "path", "any"]),
                     default="fingerprint", show_default=True,
                     help="How recordings of the same video are recognised."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _apply(f: F, opts: Sequence[Callable[[F], F]]) -> F:
    for opt in reversed(opts):
        f = opt(f)
    return f


def segment_options(f: F) -> F:
    return _apply(f, [
        click.option("--segments", "k", type=click.IntRange(min=0), default=3,
                     show_default=True, help="How many top and how many bottom segments."),
        click.option("--window", "window_s", type=FiniteRange(min=0, min_open=True),
                     default=30.0, show_default=True, help="Segment length in seconds."),
        click.option("--min-coverage", type=FiniteRange(min=0, max=1, min_open=True),
                     default=0.9, show_default=True,
                     help="Share of a segment that must be rated to count."),
        click.option("--peaks", is_flag=True,
                     help="Segments at peaks of the windowed mean, --min-separation apart, "
                          "instead of non-overlapping windows."),
        click.option("--min-separation", "min_sep_s", type=FiniteRange(min=0),
                     default=None, help="Peaks mode: seconds between segment starts "
                                        "(default: the window)."),
    ])


def analysis_options(f: F) -> F:
    return _apply(segment_options(f), [
        click.option("--band", default="45:55", show_default=True, metavar="LOW:HIGH",
                     help="The neutral band; below is hindering, above helpful."),
        click.option("--max-lag", "max_lag_s", type=FiniteRange(min=0), default=10.0,
                     show_default=True, help="Cross-correlation searched over ± seconds."),
        click.option("--block", "block_s", type=FiniteRange(min=0, min_open=True),
                     default=30.0, show_default=True,
                     help="Bootstrap block length in seconds."),
        click.option("--bootstrap", "replicates", type=click.IntRange(min=100), default=2000,
                     show_default=True, help="Bootstrap resamples."),
        click.option("--seed", type=int, default=0, show_default=True,
                     help="Bootstrap seed (results are reproducible)."),
        click.option("--align-lag", is_flag=True,
                     help="Move the second rater back by the estimated reaction lag before "
                          "the agreement figures (correlations, ICC, kappa, shares, "
                          "divergent windows)."),
    ])


def friendly(f: F) -> F:
    """Options that do not fit together become one-line usage errors."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _needs_extra()
        try:
            return f(*args, **kwargs)
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    return wrapper  # type: ignore[return-value]


class FiniteRange(click.FloatRange):
    """A number in a range, and a number: ``inf`` and ``nan`` are refused like any other
    value outside it."""

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value} is not a finite number.", param, ctx)
        return rv


def _pairing(kw: dict[str, Any]) -> PairingOptions:
    from .groups import PairingOptions
    from .load import parse_rater_overrides

    roles = tuple(r.strip() for r in kw["roles"].split(","))
    if len(roles) != 2 or not all(roles):
        raise UsageError("--roles needs two labels, e.g. client,therapist")
    if roles[0] == roles[1]:
        raise UsageError(f"--roles needs two different labels (got {roles[0]!r} twice): a "
                         "rater is never compared with itself")
    return PairingOptions(dyad_key=kw["dyad_key"], roles=(roles[0], roles[1]),
                          match=kw["match"], dyads=parse_rater_overrides(kw["dyads"]))


def _load(recordings: Sequence[str], kw: dict[str, Any]) -> tuple[list[Series], list[Group]]:
    from .align import AlignOptions
    from .groups import group_series
    from .load import load, parse_rater_overrides

    opt = AlignOptions(rate_hz=kw["rate_hz"], rerate=kw["rerate"], max_fill_s=kw["max_fill_s"],
                       rewind_tolerance_s=kw["rewind_s"])
    series = load(recordings, opt, raters=parse_rater_overrides(kw["raters"]),
                  dyads=parse_rater_overrides(kw["dyads"]))
    return series, group_series(series, _pairing(kw))


def _band(text: str) -> tuple[float, float]:
    lo, _, hi = text.partition(":")
    try:
        return float(lo), float(hi)
    except ValueError:
        raise UsageError(f"--band {text!r}: expected LOW:HIGH, e.g. 45:55") from None


def _segment_opts(kw: dict[str, Any]) -> SegmentOptions:
    from .segments import SegmentOptions

    return SegmentOptions(k=kw["k"], window_s=kw["window_s"], min_coverage=kw["min_coverage"],
                          mode="peaks" if kw["peaks"] else "windows",
                          min_separation_s=kw["min_sep_s"])


def _analysis_opts(kw: dict[str, Any]) -> AnalysisOptions:
    from .analyse import AnalysisOptions
    from .stats import Band

    lo, hi = _band(kw["band"])
    return AnalysisOptions(band=Band(low=lo, high=hi), segments=_segment_opts(kw),
                           max_lag_s=kw["max_lag_s"], block_s=kw["block_s"],
                           replicates=kw["replicates"], seed=kw["seed"],
                           align_lag=kw["align_lag"])


def _output_prefix(prefix: str, stem: str) -> Path:
    """``-o PREFIX``: a folder (one that exists, or a name ending in a path separator) means
    files named ``stem`` inside it (a new folder is made, private), never files beside it
    named after the folder."""
    seps = ("/", os.sep) if os.altsep is None else ("/", os.sep, os.altsep)
    base = Path(prefix)
    if prefix.endswith(seps) or base.is_dir():
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        return base / stem
    return base


def _formats(values: Sequence[str], allowed: Sequence[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        for raw in v.split(","):
            part = raw.strip()
            if part not in allowed:
                raise UsageError(f"format {part!r}: choose from {', '.join(allowed)}")
            if part not in out:
                out.append(part)
    return out


def _analyse_all(groups: Sequence[Group], kw: dict[str, Any]) -> list[GroupResult]:
    from .analyse import analyse_group

    opt = _analysis_opts(kw)
    return [analyse_group(g, opt) for g in groups]


@click.command()
@RECORDINGS
@alignment_options
@analysis_options
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
@click.option("--table", "table", type=click.Path(dir_okay=False), default=None,
              help="Write the one-row-per-dyad table to this CSV file (SPSS .sav when it "
                   "ends in .sav).")
@click.option("--annotations", "annotations", type=click.Path(exists=True, dir_okay=False),
              default=None,
              help="CSV of questionnaire scores with a 'dyad' column, added to the table.")
@click.option("--plots", "plots", type=click.Path(file_okay=False), default=None,
              help="Also write the figures of every dyad into this folder.")
@click.option("--brief", is_flag=True, help="One line per dyad instead of the full report.")
@click.option("--truth-bias/--no-truth-bias", "truth_bias", default=True, show_default=True,
              help="Fit West and Kenny's Truth-and-Bias model over all dyads (the first "
                   "role as truth, the second as judge; needs the research extra).")
@click.option("--tb-step", "tb_step_s", type=FiniteRange(min=0, min_open=True),
              default=1.0, show_default=True,
              help="Truth-and-Bias: one moment per this many seconds of video.")
@friendly
def analyze(*, recordings: tuple[str, ...], as_json: bool, table: str | None,
            annotations: str | None, plots: str | None, brief: bool, truth_bias: bool,
            tb_step_s: float, **kw: Any) -> None:
    """Figures for a paper from one or many recordings.

    Per rater: mean, SD, range, time below / within / above the neutral band, coverage,
    top and bottom segments. Between client and therapist of the same video: Pearson and
    Spearman correlation (p with an effective sample size, block-bootstrap CI), best lag,
    ICC(2,1) and ICC(3,1), Cohen's kappa, segment agreement and the most divergent windows.
    Recordings are paired into dyads by the video's fingerprint and the session label
    'dyad' (see docs/analysis.md).
    """
    from .analyse import table_row, to_json
    from .export import read_annotation_table, write_table
    from .report import format_group, format_overview

    _, groups = _load(recordings, kw)
    results = _analyse_all(groups, kw)
    extra = {} if annotations is None else read_annotation_table(Path(annotations))
    _tell_unmatched(extra, results)
    tb = _truth_bias(groups, kw, tb_step_s) if truth_bias else None
    if table is not None:
        write_table([{**table_row(r, extra.get(r.label)), **_tb_columns(tb, r.label)}
                     for r in results], Path(table))
    if plots is not None:
        from .plots import write_plots

        write_plots(results, Path(plots))
    if as_json:
        from .truthbias import to_json as tb_json

        click.echo(json.dumps({"dyads": [to_json(r) for r in results],
                               "truth_and_bias": tb_json(tb)}, indent=1))
        return
    if brief:
        click.echo(format_overview(results))
    else:
        click.echo("\n\n".join(format_group(r) for r in results))
        if len(results) > 1:
            click.echo("\n" + format_overview(results))
    if tb is not None:
        from .truthbias import format_tb

        click.echo("\n" + format_tb(tb))
    if table is not None:
        click.echo(f"\ntable: {table} ({len(results)} rows)")


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@alignment_options
@analysis_options
@click.option("-o", "--output", "prefix", required=True, metavar="PREFIX",
              help="Writes PREFIX.csv and PREFIX.sav (one row per dyad); a folder "
                   "(existing, or ending in /) means FOLDER/study.csv and FOLDER/study.sav.")
@click.option("--annotations", "annotations", type=click.Path(exists=True, dir_okay=False),
              default=None,
              help="CSV of questionnaire scores with a 'dyad' column, added to the table.")
@click.option("--tb-step", "tb_step_s", type=FiniteRange(min=0, min_open=True),
              default=1.0, show_default=True,
              help="Truth-and-Bias: one moment per this many seconds of video.")
@friendly
def study(*, paths: tuple[str, ...], prefix: str, annotations: str | None, tb_step_s: float,
          **kw: Any) -> None:
    """The study table in one command: every recording in the folders (or files) given.

    Recordings are paired into dyads by their session labels (ratedial run --session
    dyad=D07) and raters (client, therapist); the table has one row per dyad: each rater's
    mean, SD and time below / within / above the neutral band, top and bottom segments,
    agreement (r with its interval, ICC, kappa, lag), the Truth-and-Bias model over all
    dyads and each dyad's own truth force and bias, and the questionnaire scores stored
    with 'ratedial annotate' (or --annotations). Written as CSV and as SPSS .sav.
    """
    from .analyse import table_row
    from .export import read_annotation_table, write_table
    from .report import format_overview

    files: list[str] = []
    for p in map(Path, paths):
        files += sorted(str(f) for f in p.rglob("*.ratedial")) if p.is_dir() else [str(p)]
    # a file named on its own and inside a folder given too is one recording, read once
    unique: dict[Path, str] = {}
    for f in files:
        unique.setdefault(Path(f).resolve(), f)
    files = list(unique.values())
    if not files:
        raise UsageError(f"no .ratedial recordings in {', '.join(paths)}")
    _, groups = _load(files, kw)
    results = _analyse_all(groups, kw)
    extra = {} if annotations is None else read_annotation_table(Path(annotations))
    _tell_unmatched(extra, results)
    tb = _truth_bias(groups, kw, tb_step_s)
    rows = [{**table_row(r, extra.get(r.label)), **_tb_columns(tb, r.label)} for r in results]
    base = _output_prefix(prefix, "study")
    out = [base.with_name(base.name + ".csv"), base.with_name(base.name + ".sav")]
    for path in out:
        write_table(rows, path)
    click.echo(f"{len(files)} recordings, {len(results)} dyads "
               f"({sum(r.pair is not None for r in results)} with both raters)\n")
    click.echo(format_overview(results))
    if tb is not None:
        from .truthbias import format_tb

        click.echo("\n" + format_tb(tb))
    click.echo("")
    for path in out:
        click.echo(f"table: {path} ({len(rows)} rows)")


def _tell_unmatched(extra: dict[str, dict[str, str]], results: Sequence[GroupResult]) -> None:
    from .export import unmatched_annotations

    line = unmatched_annotations(extra, (r.label for r in results))
    if line is not None:
        click.echo(line, err=True)


def _truth_bias(groups: Sequence[Group], kw: dict[str, Any], step_s: float) -> Any:
    """The Truth-and-Bias fit over the paired groups, or None (no pair, or no statsmodels)."""
    if importlib.util.find_spec("statsmodels") is None:
        return None
    from .truthbias import fit, tb_data

    data = tb_data(groups, step_s=step_s)
    if data is None or len(data.truth) < 10:
        return None
    truth, judge = (r.strip() for r in kw["roles"].split(","))
    return fit(data, truth=truth, judge=judge)


def _tb_columns(tb: Any, dyad: str) -> dict[str, Any]:
    if tb is None:
        return {}
    mine = tb.by_dyad.get(dyad)
    return {"tb_truth_force": round(tb.truth_force, 6),
            "tb_directional_bias": round(tb.directional_bias, 6),
            "tb_dyad_truth_force": None if mine is None else round(mine[0], 6),
            "tb_dyad_directional_bias": None if mine is None else round(mine[1], 6)}


@click.command()
@RECORDINGS
@alignment_options
@segment_options
@click.option("-o", "--output", "prefix", required=True, metavar="PREFIX",
              help="Files are PREFIX.long.csv, PREFIX.wide.csv, PREFIX.parquet, PREFIX.sav, "
                   "PREFIX.xdf, PREFIX.<dyad>.eaf (with PREFIX.<dyad>.ratings.csv and "
                   "PREFIX.<dyad>_tsconf.xml) and PREFIX.json. A folder (existing, or ending "
                   "in /) means files inside it named after the recording (export.* for "
                   "several).")
@click.option("--format", "formats", multiple=True, default=("csv-long", "csv-wide", "parquet"),
              show_default=True,
              help="csv-long, csv-wide, parquet, sav (SPSS), eaf (ELAN), xdf (LSL's "
                   "LabRecorder format) (repeat or comma-separate; sav, eaf and xdf need "
                   "the research extra).")
@friendly
def export(*, recordings: tuple[str, ...], prefix: str, formats: tuple[str, ...],
           **kw: Any) -> None:
    """Ratings on a uniform media-time grid for R, SPSS or pandas.

    Long CSV (one row per rater and time), wide CSV (one column per rater), Parquet,
    SPSS .sav (labelled), ELAN .eaf (segments, events, the curves as a time series) and
    XDF (every sample on the recording's clock, and the events), with a JSON sidecar:
    scale anchors, raters, dials and firmware, media, clock uncertainty, gaps and the rules
    used. Missing values are empty, never a number.
    """
    from .export import FORMATS, write_export

    fmts = _formats(formats, FORMATS)
    _, groups = _load(recordings, kw)
    stem = Path(recordings[0]).stem if len(recordings) == 1 else "export"
    for p in write_export(groups, _output_prefix(prefix, stem), fmts, _segment_opts(kw)):
        click.echo(str(p))


@click.command()
@RECORDINGS
@alignment_options
@analysis_options
@click.option("-o", "--output", "directory", required=True, type=click.Path(file_okay=False),
              help="Folder for the figures.")
@click.option("--format", "formats", multiple=True, default=("png", "svg"),
              show_default=True, help="png, svg (repeat or comma-separate).")
@friendly
def plot(*, recordings: tuple[str, ...], directory: str, formats: tuple[str, ...],
         **kw: Any) -> None:
    """Figures per dyad: both raters over media time (segments shaded, gaps left blank)
    and a one-page overview."""
    from .plots import write_plots

    fmts = _formats(formats, ("png", "svg"))
    _, groups = _load(recordings, kw)
    for p in write_plots(_analyse_all(groups, kw), Path(directory), fmts):
        click.echo(str(p))


def _pick(series: Sequence[Series], rater: str | None, what: str) -> Series:
    labels = [s.rater for s in series]
    if rater is None:
        if len(series) == 1:
            return series[0]
        raise UsageError(f"the recording holds raters {', '.join(labels)}: choose one with "
                         f"--of LABEL ({what})")
    for s in series:
        if s.rater == rater:
            return s
    raise UsageError(f"no rater {rater!r} in the recording (raters: {', '.join(labels)})")


def _check_video(s: Series, path: Path) -> None:
    """Warn when the video's content fingerprint differs from the recorded one (both made
    by ``ratedial.players.identity``; looked up at run time, as that module is optional)."""
    import importlib

    recorded = s.media.fingerprint
    try:
        identity = importlib.import_module("ratedial.players.identity")
    except ImportError:
        return
    prefix = getattr(identity, "PREFIX", None)
    if not recorded or not isinstance(prefix, str) or not recorded.startswith(prefix):
        return
    actual = identity.fingerprint(str(path))
    if actual is not None and actual != recorded:
        click.echo(f"warning: {path} is not the video of this recording (its fingerprint "
                   "differs): the segments may show the wrong moments", err=True)


def _video(s: Series, video: str | None) -> Path:
    if video is not None:
        return Path(video)
    if not s.media.path:
        raise UsageError("the recording names no video file: pass --video FILE")
    p = Path(s.media.path)
    for cand in (p, s.recording.path.parent / p, s.recording.path.parent / p.name):
        if cand.is_file():
            return cand
    raise UsageError(f"video {s.media.path} not found: pass --video FILE")


@click.command()
@click.argument("recording", type=click.Path(exists=True, dir_okay=False))
@alignment_options
@segment_options
@click.option("--of", "who", default=None, metavar="LABEL",
              help="Whose segments (default: the only rater; with --guess: client).")
@click.option("--guess", is_flag=True,
              help="The guess test: show the rater's segments in random order without "
                   "saying which is which, and ask helpful or hindering for each.")
@click.option("--answerer", default="therapist", show_default=True,
              help="Guess test: who answers (recorded with the answers).")
@click.option("--order", type=click.Choice(["rank", "chronological", "random"]),
              default="rank", show_default=True, help="Review: order of the segments.")
@click.option("--order-seed", type=int, default=None,
              help="Seed of the random order (guess test and --order random); default: "
                   "drawn at random and recorded.")
@click.option("--lead-in", "lead_in_s", type=FiniteRange(min=0), default=5.0,
              show_default=True, help="Seconds of video shown before each segment.")
@click.option("--video", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The video file (default: the path recorded in the recording).")
@click.option("--no-video", is_flag=True, help="Do not play the video; prompts only.")
@click.option("--headless/--display", default=None,
              help="mpv without a window and sound (default: headless when no display).")
@click.option("--speed", type=FiniteRange(min=0.1, max=10), default=1.0,
              show_default=True, help="Playback speed.")
@click.option("--mpv", "mpv_exe", default="mpv", show_default=True, help="The mpv program.")
@friendly
def review(*, recording: str, who: str | None, guess: bool, answerer: str, order: str,
           order_seed: int | None, lead_in_s: float, video: str | None, no_video: bool,
           headless: bool | None, speed: float, mpv_exe: str, **kw: Any) -> None:
    """Replay a rater's top and bottom segments in mpv and save the interviewer's notes.

    With --guess: the client's segments are shown to the therapist in random order (seeded;
    the seed and order are saved) and each is answered helpful or hindering; the answers
    and the score are saved with the recording. Prompts read plain lines from the terminal
    (or a pipe).
    """
    from .mpvctl import MpvPlayer
    from .review import NoVideo, Player, Prompter, run_guess, run_review
    from .segments import find_segments

    series, _ = _load([recording], kw)
    if who is None and guess and any(x.rater == "client" for x in series):
        who = "client"
    s = _pick(series, who, "whose segments to show")
    opt = _segment_opts(kw)
    segments = find_segments(s.values, s.rate_hz, opt)
    if not segments:
        raise UsageError(f"{s.rater} has no segment with {opt.min_coverage:.0%} of "
                         f"{opt.window_s:g} s rated")
    params = {"rate_hz": s.rate_hz, "rerate": s.options.rerate, "window_s": opt.window_s,
              "k": opt.k, "min_coverage": opt.min_coverage, "mode": opt.mode,
              "min_separation_s": opt.min_separation_s}
    player: Player
    mpv = None
    if no_video:
        player = NoVideo()
    else:
        path = _video(s, video)
        _check_video(s, path)
        mpv = MpvPlayer(path, mpv=mpv_exe, headless=headless, speed=speed)
        player = mpv
    prompter = Prompter(sys.stdin, sys.stdout)
    try:
        if guess:
            run_guess(Path(recording), s.rater, segments, player=player, prompter=prompter,
                      answerer=answerer, seed=order_seed, lead_in_s=lead_in_s, params=params)
        else:
            run_review(Path(recording), s.rater, segments, player=player, prompter=prompter,
                       order=order,  # type: ignore[arg-type]  # click.Choice checked it
                       lead_in_s=lead_in_s, seed=order_seed, params=params)
    finally:
        if mpv is not None:
            mpv.close()


@click.command()
@RECORDINGS
@alignment_options
@segment_options
@click.option("--band", default="45:55", show_default=True, metavar="LOW:HIGH",
              help="The neutral band, drawn as a grey stripe.")
@click.option("--video", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The video file (default: the path recorded in the recording).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="The MP4 file to write.")
@click.option("--preset", default="veryfast", show_default=True,
              type=click.Choice(["ultrafast", "superfast", "veryfast", "faster", "fast",
                                 "medium"]),
              help="x264 speed preset: faster presets make larger files.")
@friendly
def render(*, recordings: tuple[str, ...], video: str | None, output: str, preset: str,
           band: str, **kw: Any) -> None:
    """The video with the rating traces drawn over it, as MP4 (for a recall interview or a talk).

    A panel across the lower third shows each rater's trace over the whole video (gaps
    blank), the neutral band, each rater's top (green) and bottom (orange) segments as a
    strip, and a white cursor moving with the video. Needs ffmpeg; about one decode and one
    encode of the video (docs/analysis.md gives the speed).
    """
    import time

    from .render import render as do_render
    from .render import traces_of
    from .segments import find_segments

    _, groups = _load(recordings, kw)
    if len(groups) != 1:
        raise UsageError(f"the recordings hold {len(groups)} dyads or videos "
                         f"({', '.join(g.label for g in groups)}); render one at a time")
    (g,) = groups
    s0 = g.series[0]
    if s0.media.timeline != "media":
        raise UsageError("the recording has no video timeline (no player was followed): "
                         "there is no video to draw the ratings on")
    path = _video(s0, video)
    _check_video(s0, path)
    opt = _segment_opts(kw)
    lo, hi = _band(band)
    scale = s0.recording.scale
    ends = (float(scale.get("minimum", 0.0)), float(scale.get("maximum", 100.0)))
    traces = traces_of([(s.rater, s.values, s.rate_hz, find_segments(s.values, s.rate_hz, opt))
                        for s in g.series], g.n_bins)
    t0 = time.monotonic()
    layout = do_render(path, traces, Path(output), band=(lo, hi), scale=ends, preset=preset)
    took = time.monotonic() - t0
    click.echo(f"{output}: {layout.width}x{layout.height}, {layout.duration_s:.1f} s of video "
               f"rendered in {took:.1f} s ({layout.duration_s / max(took, 1e-9):.0f}x real "
               "time)")


@click.command()
@click.argument("recording", type=click.Path(exists=True, dir_okay=False))
@click.argument("values", nargs=-1, metavar="KEY=VALUE...")
@click.option("--remove", multiple=True, metavar="KEY", help="Remove an annotation.")
def annotate(*, recording: str, values: tuple[str, ...], remove: tuple[str, ...]) -> None:
    """Attach questionnaire scores and other metadata to a recording.

    Example: ratedial annotate D07-client.ratedial wai=52 srs=34 session_rating=7.
    Numbers are stored as numbers. The values appear in the dyad table of
    'ratedial analyze --table' as <rater>_ann_<key>. Without KEY=VALUE, shows them.
    """
    from .notes import annotate as do_annotate
    from .notes import parse_assignments
    from .read import read_recording

    if not values and not remove:
        current = read_recording(recording).annotations
        click.echo(json.dumps(current, indent=1, sort_keys=True))
        return
    result = do_annotate(recording, parse_assignments(values), remove)
    click.echo(json.dumps(result, indent=1, sort_keys=True))


COMMANDS = (analyze, export, plot, review, annotate, render, study)
