"""What the analysis commands share: their options, the checks of option values, and the
steps from options to loaded, paired and analysed recordings.

Only click and the standard library are imported here, so ``ratedial --help`` stays fast;
numpy, scipy, pandas and matplotlib (the ``analysis`` extra) load inside the helpers, which
run only when a command does. A command wrapped in :func:`friendly` checks for the extra
first and turns a ``ValueError`` (options that do not fit together) into a one-line usage
error.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .._paths import install_hint
from .._platform import shell_quote
from .._platform.privacy import make_private_dirs
from ..cli_types import A_DAY_S, FiniteRange, HomePath
from ..errors import RatedialError, UsageError

if TYPE_CHECKING:
    from .analyse import AnalysisOptions, GroupResult
    from .groups import Group, PairingOptions
    from .load import Series
    from .segments import SegmentOptions
    from .stats import Band

F = TypeVar("F", bound=Callable[..., Any])

class RecordingPath(HomePath):
    """A recording argument: a folder is refused with where its recordings go (its files by
    name, or ``ratedial study`` for a folder of dyads), not click's bare "is a directory"."""

    def __init__(self) -> None:
        super().__init__(dir_okay=False)

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        if isinstance(value, str | os.PathLike) and os.path.isdir(os.path.expanduser(value)):
            folder = os.fspath(value)
            study = (f", or analyse a folder of dyads with: ratedial study {shell_quote(folder)}"
                     if ctx is not None and ctx.info_name == "analyze" else "")
            self.fail(f"{folder} is a folder: name its recordings "
                      f"({os.path.join(folder, '*.ratedial')}){study}", param, ctx)
        return super().convert(value, param, ctx)


RECORDINGS = click.argument("recordings", nargs=-1, required=True, type=RecordingPath())


def _needs_extra() -> None:
    for name in ("numpy", "scipy", "pandas", "pyarrow", "matplotlib"):
        if importlib.util.find_spec(name) is None:
            raise RatedialError(f"the analysis commands need the analysis extra ({name} is "
                                f"missing): {install_hint('analysis')}")


def needs_research(module: str, what: str) -> None:
    """One line (before anything is written) when ``what`` needs a module of the research
    extra that is not installed."""
    if importlib.util.find_spec(module) is None:
        raise RatedialError(f"{what} needs the research extra ({module} is missing): "
                            + install_hint("research"))


# a rating grid finer than the dial's 1 kHz sampling means nothing (and may not fit in memory)
MAX_RATE_HZ = 1000.0


def alignment_options(f: F) -> F:
    opts = [
        click.option("--rate", "rate_hz", type=FiniteRange(min=0, max=MAX_RATE_HZ, min_open=True),
                     default=10.0, show_default=True,
                     help="Grid rate in values per second of video."),
        click.option("--rerate", type=click.Choice(["last", "first", "mean"]), default="last",
                     show_default=True,
                     help="Stretches rated more than once (rewound): which pass counts."),
        click.option("--max-fill", "max_fill_s", type=FiniteRange(min=0, max=A_DAY_S), default=0.5,
                     show_default=True,
                     help="Fill holes up to this many seconds by interpolation; longer gaps "
                          "stay missing (0: never fill)."),
        click.option("--rewind-tolerance", "rewind_s", type=FiniteRange(min=0, max=A_DAY_S),
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
        click.option("--window", "window_s", type=FiniteRange(min=0, max=A_DAY_S, min_open=True),
                     default=30.0, show_default=True, help="Segment length in seconds."),
        click.option("--min-coverage", type=FiniteRange(min=0, max=1, min_open=True),
                     default=0.9, show_default=True,
                     help="Share of a segment that must be rated to count."),
        click.option("--peaks", is_flag=True,
                     help="Segments at peaks of the windowed mean, --min-separation apart, "
                          "instead of non-overlapping windows."),
        click.option("--min-separation", "min_sep_s", type=FiniteRange(min=0, max=A_DAY_S),
                     default=None, help="Peaks mode: seconds between segment starts "
                                        "(default: the window)."),
    ])


def analysis_options(f: F) -> F:
    return _apply(segment_options(f), [
        click.option("--band", default=None, metavar="LOW:HIGH",
                     help="The neutral band; below is hindering, above helpful (default: the "
                          "middle tenth of the recordings' scale, 45:55 on 0-100)."),
        click.option("--max-lag", "max_lag_s", type=FiniteRange(min=0, max=A_DAY_S), default=10.0,
                     show_default=True, help="Cross-correlation searched over ± seconds."),
        click.option("--block", "block_s", type=FiniteRange(min=0, max=A_DAY_S, min_open=True),
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


def _pairing(kw: dict[str, Any]) -> PairingOptions:
    from .groups import PairingOptions
    from .labels import label_key
    from .load import parse_rater_overrides

    roles = tuple(r.strip() for r in kw["roles"].split(","))
    if len(roles) != 2 or not all(roles):
        raise UsageError("--roles needs two labels, e.g. client,therapist")
    if label_key(roles[0]) == label_key(roles[1]):  # as raters are matched to roles
        got = f"{roles[0]!r} twice" if roles[0] == roles[1] else f"{roles[0]!r} and {roles[1]!r}"
        raise UsageError(f"--roles needs two different labels (got {got}): a "
                         "rater is never compared with itself")
    return PairingOptions(dyad_key=kw["dyad_key"], roles=(roles[0], roles[1]),
                          match=kw["match"], dyads=parse_rater_overrides(kw["dyads"]))


def unique_recordings(recordings: Sequence[str]) -> list[str]:
    """Each recording once, in the order first named: a file named twice (overlapping shell
    patterns, a folder and a file in it, two spellings of one path) is one recording."""
    unique: dict[Path, str] = {}
    for f in recordings:
        unique.setdefault(Path(f).resolve(), f)
    return list(unique.values())


def _load(recordings: Sequence[str], kw: dict[str, Any]) -> tuple[list[Series], list[Group]]:
    from .align import AlignOptions
    from .groups import group_series
    from .load import load, parse_rater_overrides

    opt = AlignOptions(rate_hz=kw["rate_hz"], rerate=kw["rerate"], max_fill_s=kw["max_fill_s"],
                       rewind_tolerance_s=kw["rewind_s"])
    files = unique_recordings(recordings)
    series = load(files, opt, raters=parse_rater_overrides(kw["raters"]),
                  dyads=parse_rater_overrides(kw["dyads"]))
    used = {s.recording.path.resolve() for s in series}
    for f in files:  # among others: said, not silently left out
        if Path(f).resolve() not in used:
            click.echo(f"ratedial: note: {f} holds no samples to analyse (no dial, or no "
                       "sample with a time): left out", err=True)
    say_unclean(s.recording.path for s in series if "ended_wall_ns" not in s.recording.meta)
    groups = group_series(series, _pairing(kw))
    say_spellings(groups)
    return series, groups


def say_spellings(groups: Iterable[Group]) -> None:
    """A note for each dyad whose label was written in several ways that differ only in
    surrounding whitespace, Unicode normal form or case (paired as one dyad)."""
    from .groups import spelling

    for g in groups:
        if g.spellings:
            also = ", ".join(spelling(x) for x in g.spellings)
            click.echo(f"ratedial: note: dyad {g.label}: also written {also} (labels that "
                       "differ only in case, Unicode form or surrounding spaces are one "
                       "dyad)", err=True)


def say_unclean(paths: Iterable[str | Path]) -> None:
    """A note for each recording (read, and found without ``ended_wall_ns``) that is still
    being recorded, or did not end cleanly: killed, crashed, copied while running, or its
    final save failed."""
    for path in sorted({str(p) for p in paths}):
        if being_recorded(path):
            click.echo(f"ratedial: note: {path} is still being recorded: this is what it "
                       "holds so far", err=True)
            continue
        click.echo(f"ratedial: note: {path} did not end cleanly (no end time): its last "
                   "seconds may be missing, and a copy made after a crash needs its -wal file "
                   "beside it", err=True)


def being_recorded(path: str) -> bool:
    """A run (``ratedial run`` or ``record --mqtt``) holds the recording's writer lock."""
    from .._platform.lock import try_lock

    try:
        fd = try_lock(Path(path))
    except OSError:
        return False
    if fd is None:
        return True
    os.close(fd)
    return False


def _band(text: str) -> tuple[float, float]:
    lo, _, hi = text.partition(":")
    try:
        band = float(lo), float(hi)
    except ValueError:
        raise UsageError(f"--band {text!r}: expected LOW:HIGH, e.g. 45:55") from None
    if not all(math.isfinite(v) for v in band):
        raise UsageError(f"--band {text!r}: expected two finite numbers LOW:HIGH, e.g. 45:55")
    return band


def _segment_opts(kw: dict[str, Any]) -> SegmentOptions:
    from .segments import SegmentOptions

    return SegmentOptions(k=kw["k"], window_s=kw["window_s"], min_coverage=kw["min_coverage"],
                          mode="peaks" if kw["peaks"] else "windows",
                          min_separation_s=kw["min_sep_s"])


def _middle_tenth(lo: float, hi: float) -> Band:
    from .stats import Band

    return Band(low=round(lo + 0.45 * (hi - lo), 9), high=round(lo + 0.55 * (hi - lo), 9))


def rater_bands(group: Group, given: tuple[float, float] | None) -> dict[str, Band]:
    """Each rater's own band (the middle tenth of their recording's scale) when the raters'
    scales differ and no ``--band`` was given; empty otherwise (one band for all)."""
    if given is not None or len({s.recording.scale_range for s in group.series}) < 2:
        return {}
    return {s.rater: _middle_tenth(*s.recording.scale_range) for s in group.series}


def band_of(group: Group, given: tuple[float, float] | None) -> Band:
    """The neutral band of ``group``: ``given`` (``--band``, parsed by :func:`_band`), else
    the middle tenth of the recordings' rating scale (``meta.scale``, 0-100 when absent:
    45-55). Raters on different scales in one group are named in a note (their agreement
    compares different units)."""
    from .load import differing_scales
    from .stats import Band

    mixed = sorted({s.recording.path.name for s in group.series if s.recording.scale_differs})
    if mixed:  # a collected file: some daemon's ratings are on another scale than meta.scale
        click.echo(f"ratedial: note: {group.label}: {', '.join(mixed)} holds ratings on more "
                   "than one scale (scale_differs events: docs/mqtt.md): every rater is "
                   "judged by its meta.scale, and figures across raters may compare "
                   "different units", err=True)
    if given is not None:
        return Band(low=given[0], high=given[1])
    shown = differing_scales(group.series)
    if shown is not None:
        click.echo(f"ratedial: note: {group.label}: the raters' scales differ ({shown}): each "
                   "rater's shares, categories and segment checks use the middle tenth of "
                   "their own scale; ICC and the divergent windows compare different units",
                   err=True)
    lo, hi = group.series[0].recording.scale_range if group.series else (0.0, 100.0)
    return _middle_tenth(lo, hi)


def _analysis_opts(kw: dict[str, Any], group: Group,
                   band: tuple[float, float] | None) -> AnalysisOptions:
    from .analyse import AnalysisOptions

    return AnalysisOptions(band=band_of(group, band), rater_bands=rater_bands(group, band),
                           segments=_segment_opts(kw),
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
        make_private_dirs(base)
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

    band = None if kw["band"] is None else _band(kw["band"])  # one line before any work
    return [analyse_group(g, _analysis_opts(kw, g, band)) for g in groups]
