"""``ratedial review | render``: the rated video again, replayed segment by segment in mpv
for an interview (or the guess test), or rendered to MP4 with the rating traces over it.

Only click and the standard library are imported here, so ``ratedial --help`` stays fast;
numpy, scipy, pandas and matplotlib (the ``analysis`` extra) load inside the commands.
"""

from __future__ import annotations

import io
import ntpath
import posixpath
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..cli_types import A_DAY_S, FiniteRange, HomePath
from ..errors import UsageError
from .cli_options import (
    RECORDINGS,
    _band,
    _load,
    _middle_tenth,
    _segment_opts,
    alignment_options,
    band_of,
    being_recorded,
    friendly,
    segment_options,
)
from .labels import same_label

if TYPE_CHECKING:
    from .load import Series
    from .segments import Segment


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
    for s in series:  # "Client" or "client " for "client": one rater, however typed
        if same_label(s.rater, rater):
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


def _check_window(s: Series, window_s: float) -> None:
    """Refuse a window longer than the video (its grid): a segment cannot be longer, and
    ``find_segments`` would return the whole video as a segment of the asked length."""
    n = len(s.values)
    from .segments import length_bins

    if length_bins(window_s, s.rate_hz) > n:
        raise UsageError(f"--window {window_s:g} s is longer than the video ({n / s.rate_hz:g} s; "
                         f"{s.rater} in {s.recording.path.name}): choose a window of at most "
                         f"{n / s.rate_hz:g} s")


def _check_length(duration_s: float | None, segments: Sequence[Segment], video: str) -> None:
    """Refuse, before the first prompt, a video that ends before the last segment does (the
    wrong file, or a cut one): mpv could not show those moments."""
    last = max(segments, key=lambda x: x.end_s)
    if duration_s is not None and last.end_s > duration_s + 0.5:
        from .mediatime import fmt_time

        raise UsageError(f"{video} is {fmt_time(duration_s, tenths=True)} long, but segment "
                         f"{last.label} ends at {fmt_time(last.end_s, tenths=True)}: is it "
                         "this recording's video? (--video FILE)")


def recorded_name(path: str) -> str:
    """The file name in a recorded video path, by the rules of the system that wrote it, on
    every system: a path with a backslash or a drive letter (``C:\\Videos\\a.mp4``,
    ``\\\\nas\\a.mp4``) is a Windows one, where POSIX would take it whole as the name."""
    if "\\" in path or re.match(r"[A-Za-z]:", path):
        return ntpath.basename(path)
    return posixpath.basename(path)


def _video(s: Series, video: str | None) -> Path:
    if video is not None:
        return Path(video)
    if not s.media.path:
        raise UsageError("the recording names no video file: pass --video FILE")
    p = Path(s.media.path)
    beside = s.recording.path.parent / recorded_name(s.media.path)
    for cand in (p, s.recording.path.parent / p, beside):
        if cand.is_file():
            return cand
    raise UsageError(f"video {s.media.path} not found: pass --video FILE")


@click.command()
@click.argument("recording", type=HomePath(exists=True, dir_okay=False))
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
@click.option("--lead-in", "lead_in_s", type=FiniteRange(min=0, max=A_DAY_S), default=5.0,
              show_default=True, help="Seconds of video shown before each segment.")
@click.option("--video", type=HomePath(exists=True, dir_okay=False), default=None,
              help="The video file (default: the path recorded in the recording).")
@click.option("--no-video", is_flag=True, help="Do not play the video; prompts only.")
@click.option("--skip-noted", is_flag=True,
              help="Review: skip the segments that already have a finished note of this "
                   "rater with the same segment options (to go on after an interruption).")
@click.option("--headless/--display", default=None,
              help="mpv without a window and sound (default: headless when no display).")
@click.option("--speed", type=FiniteRange(min=0.1, max=10), default=1.0,
              show_default=True, help="Playback speed.")
@click.option("--mpv", "mpv_exe", default="mpv", show_default=True, help="The mpv program.")
@click.option("--live", is_flag=True,
              help="Allow a recording that is still being recorded: its segments are those "
                   "of what it holds so far, and the notes are marked partial (default: "
                   "refused).")
@friendly
def review(*, recording: str, who: str | None, guess: bool, answerer: str, order: str,
           order_seed: int | None, lead_in_s: float, video: str | None, no_video: bool,
           skip_noted: bool, headless: bool | None, speed: float, mpv_exe: str, live: bool,
           **kw: Any) -> None:
    """Replay a rater's top and bottom segments in mpv and save the interviewer's notes.

    With --guess: the client's segments are shown to the therapist in random order (seeded;
    the seed and order are saved) and each is answered helpful or hindering; the answers
    and the score are saved with the recording. Prompts read plain lines from the terminal
    (or a pipe).
    """
    from .mpvctl import MpvPlayer
    from .notes import check_writable
    from .review import NoVideo, Player, Prompter, noted, run_guess, run_review
    from .segments import find_segments

    partial = being_recorded(recording)  # its segments can still change as it grows
    if partial and not live:
        raise UsageError(f"{recording} is still being recorded: its segments can change until "
                         "the run ends; stop the run first (or give --live to "
                         f"{'test' if guess else 'review'} what it holds so far, the notes "
                         "marked partial)")
    series, _ = _load([recording], kw)
    if who is None and guess:  # the client's segments, never silently the answerer's own
        who = "client"
    s = _pick(series, who, "whose segments to show")
    if guess and same_label(s.rater, answerer):
        raise UsageError(f"--guess: {answerer} would guess their own segments; give the "
                         "recording of the rater being guessed (or --of LABEL)")
    opt = _segment_opts(kw)
    if opt.k == 0:
        raise UsageError("--segments 0: there is nothing to review; give at least 1")
    _check_window(s, opt.window_s)
    segments = find_segments(s.values, s.rate_hz, opt)
    if not segments:
        raise UsageError(f"{s.rater} has no segment with {opt.min_coverage:.0%} of "
                         f"{opt.window_s:g} s rated")
    # everything the segments depend on, so a note can be matched to analyze's segments
    params = {"timeline": s.media.timeline, "rate_hz": s.rate_hz, "rerate": s.options.rerate,
              "max_fill_s": s.options.max_fill_s,
              "rewind_tolerance_s": s.options.rewind_tolerance_s, "window_s": opt.window_s,
              "k": opt.k, "min_coverage": opt.min_coverage, "mode": opt.mode,
              "min_separation_s": opt.min_separation_s}
    band = _middle_tenth(*s.recording.scale_range)  # the neutral band analyze judges the rater by
    check_writable(recording)  # before anything is played or asked, not at the first save
    if skip_noted and guess:
        raise UsageError("--skip-noted is for a review: a guess test is answered whole")
    skip = noted(Path(recording), s.rater, segments, params) if skip_noted else frozenset()
    player: Player
    mpv = None
    if no_video:
        player = NoVideo()
    else:
        path = _video(s, video)
        _check_video(s, path)
        mpv = MpvPlayer(path, mpv=mpv_exe, headless=headless, speed=speed)
        player = mpv
    if isinstance(sys.stdin, io.TextIOWrapper):  # bytes a strict UTF-8 decoder would refuse
        sys.stdin.reconfigure(errors="surrogateescape")  # are read by the prompter instead
    prompter = Prompter(sys.stdin, sys.stdout)
    try:
        if mpv is not None:
            _check_length(mpv.duration_s, segments, mpv.video)
        if guess:
            run_guess(Path(recording), s.rater, segments, player=player, prompter=prompter,
                      answerer=answerer, seed=order_seed, lead_in_s=lead_in_s, params=params,
                      band=band, partial=partial)
        else:
            run_review(Path(recording), s.rater, segments, player=player, prompter=prompter,
                       order=order,  # type: ignore[arg-type]  # click.Choice checked it
                       lead_in_s=lead_in_s, seed=order_seed, params=params, skip=skip,
                       band=band, partial=partial)
    finally:
        if mpv is not None:
            mpv.close()


@click.command()
@RECORDINGS
@alignment_options
@segment_options
@click.option("--band", default=None, metavar="LOW:HIGH",
              help="The neutral band, drawn as a grey stripe (default: the middle tenth of "
                   "the recordings' scale, 45:55 on 0-100).")
@click.option("--video", type=HomePath(exists=True, dir_okay=False), default=None,
              help="The video file (default: the path recorded in the recording).")
@click.option("-o", "--output", required=True, type=HomePath(dir_okay=False),
              help="The MP4 file to write (written in full or not at all; never a "
                   "recording or the video).")
@click.option("--overwrite", is_flag=True,
              help="Replace the output file if it exists (default: refuse).")
@click.option("--preset", default="veryfast", show_default=True,
              type=click.Choice(["ultrafast", "superfast", "veryfast", "faster", "fast",
                                 "medium"]),
              help="x264 speed preset: faster presets make larger files.")
@friendly
def render(*, recordings: tuple[str, ...], video: str | None, output: str, preset: str,
           band: str | None, overwrite: bool, **kw: Any) -> None:
    """The video with the rating traces drawn over it, as MP4 (for a recall interview or a talk).

    A panel across the lower third shows each rater's trace over the whole video (gaps
    blank), the neutral band, each rater's top (green) and bottom (orange) segments as a
    strip, and a white cursor moving with the video. Needs ffmpeg; about one decode and one
    encode of the video (docs/analysis.md gives the speed).
    """
    import time

    from .render import check_output, probe, traces_of
    from .render import render as do_render
    from .segments import find_segments

    given = None if band is None else _band(band)  # checked as analyze checks it, first
    opt = _segment_opts(kw)
    _, groups = _load(recordings, kw)
    if len(groups) != 1:
        raise UsageError(f"the recordings hold {len(groups)} dyads or videos "
                         f"({', '.join(g.label for g in groups)}); render one at a time")
    (g,) = groups
    neutral = band_of(g, given)
    s0 = g.series[0]
    if s0.media.timeline != "media":
        raise UsageError("the recording has no video timeline (no player was followed): "
                         "there is no video to draw the ratings on")
    path = _video(s0, video)
    check_output(Path(output), recordings=[s.recording.path for s in g.series], video=path,
                 overwrite=overwrite)
    for s in g.series:
        _check_window(s, opt.window_s)
    _check_video(s0, path)
    scale = s0.recording.scale
    ends = (float(scale.get("minimum", 0.0)), float(scale.get("maximum", 100.0)))
    found = [(s.rater, s.values, s.rate_hz, find_segments(s.values, s.rate_hz, opt))
             for s in g.series]
    segments = [seg for *_, segs in found for seg in segs]
    if segments:  # as review: a video that ends before a segment does is refused
        _check_length(probe(path).duration_s, segments, str(path))
    traces = traces_of(found, g.n_bins)
    t0 = time.monotonic()
    layout = do_render(path, traces, Path(output), band=(neutral.low, neutral.high),
                       scale=ends, preset=preset, overwrite=overwrite)
    took = time.monotonic() - t0
    click.echo(f"{output}: {layout.width}x{layout.height}, {layout.duration_s:.1f} s of video "
               f"rendered in {took:.1f} s ({layout.duration_s / max(took, 1e-9):.0f}x real "
               "time)")
