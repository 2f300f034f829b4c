"""``ratedial analyze | study | export | plot``: tables, files and figures from recordings.

Only click and the standard library are imported here, so ``ratedial --help`` stays fast;
numpy, scipy, pandas and matplotlib (the ``analysis`` extra) load inside the commands.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .._paths import install_hint
from ..cli_types import A_DAY_S, FiniteRange, HomePath
from ..errors import UsageError
from .cli_options import (
    RECORDINGS,
    _analyse_all,
    _formats,
    _load,
    _output_prefix,
    _segment_opts,
    alignment_options,
    analysis_options,
    friendly,
    needs_research,
    segment_options,
    unique_recordings,
)
from .guard import refuse_inputs

if TYPE_CHECKING:
    from .analyse import GroupResult
    from .groups import Group


@click.command()
@RECORDINGS
@alignment_options
@analysis_options
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
@click.option("--table", "table", type=HomePath(dir_okay=False), default=None,
              help="Write the one-row-per-dyad table to this CSV file (SPSS .sav when it "
                   "ends in .sav).")
@click.option("--annotations", "annotations", type=HomePath(exists=True, dir_okay=False),
              default=None,
              help="CSV of questionnaire scores with a 'dyad' column, added to the table.")
@click.option("--plots", "plots", type=HomePath(file_okay=False), default=None,
              help="Also write the figures of every dyad into this folder.")
@click.option("--brief", is_flag=True, help="One line per dyad instead of the full report.")
@click.option("--truth-bias/--no-truth-bias", "truth_bias", default=True, show_default=True,
              help="Fit West and Kenny's Truth-and-Bias model over all dyads (the first "
                   "role as truth, the second as judge; needs the research extra).")
@click.option("--tb-step", "tb_step_s", type=FiniteRange(min=0, max=A_DAY_S, min_open=True),
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
    from .export import read_annotation_table, scores_for, write_table
    from .report import format_group, format_overview
    from .results import table_row, to_json

    if table is not None:
        refuse_inputs([Path(table)], recordings=[Path(r) for r in recordings],
                      others=[Path(annotations)] if annotations else [], option="--table")
        if Path(table).suffix.lower() == ".sav":
            needs_research("pyreadstat", f"--table {table} (SPSS)")
    _, groups = _load(recordings, kw)
    results = _analyse_all(groups, kw)
    extra = {} if annotations is None else read_annotation_table(Path(annotations))
    _tell_unmatched(extra, results)
    tb = _truth_bias(groups, kw, tb_step_s) if truth_bias else None
    if table is not None:
        write_table([{**table_row(r, scores_for(extra, r.label)), **_tb_columns(tb, r.label)}
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
@click.argument("paths", nargs=-1, required=True, type=HomePath(exists=True))
@alignment_options
@analysis_options
@click.option("-o", "--output", "prefix", required=True, metavar="PREFIX",
              help="Writes PREFIX.csv and PREFIX.sav (one row per dyad); a folder "
                   "(existing, or ending in /) means FOLDER/study.csv and FOLDER/study.sav.")
@click.option("--annotations", "annotations", type=HomePath(exists=True, dir_okay=False),
              default=None,
              help="CSV of questionnaire scores with a 'dyad' column, added to the table.")
@click.option("--tb-step", "tb_step_s", type=FiniteRange(min=0, max=A_DAY_S, min_open=True),
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
    with 'ratedial annotate' (or --annotations). Written as CSV and as SPSS .sav (the
    .sav needs the research extra; without it, the CSV and a note).
    """
    from .export import read_annotation_table, scores_for, write_table
    from .report import format_overview
    from .results import table_row

    files: list[str] = []
    for p in map(Path, paths):
        files += sorted(str(f) for f in p.rglob("*.ratedial")) if p.is_dir() else [str(p)]
    files = unique_recordings(files)
    if not files:
        raise UsageError(f"no .ratedial recordings in {', '.join(paths)}")
    _, groups = _load(files, kw)
    results = _analyse_all(groups, kw)
    extra = {} if annotations is None else read_annotation_table(Path(annotations))
    _tell_unmatched(extra, results)
    tb = _truth_bias(groups, kw, tb_step_s)
    rows = [{**table_row(r, scores_for(extra, r.label)), **_tb_columns(tb, r.label)}
            for r in results]
    base = _output_prefix(prefix, "study")
    out = [base.with_name(base.name + ".csv"), base.with_name(base.name + ".sav")]
    refuse_inputs(out, recordings=[Path(f) for f in files],
                  others=[Path(annotations)] if annotations else [], option="study")
    if importlib.util.find_spec("pyreadstat") is None:  # the analysis extra alone: CSV only
        click.echo(f"ratedial: note: {out.pop()} not written: SPSS files need the research "
                   f"extra ({install_hint('research')})", err=True)
    for path in out:
        write_table(rows, path)
    click.echo(f"{len(files)} recording{'' if len(files) == 1 else 's'}, {len(results)} "
               f"dyad{'' if len(results) == 1 else 's'} "
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
    from .truthbias import fit, one_scale, tb_data

    groups, left_out = one_scale(groups)
    if left_out:
        click.echo("ratedial: note: Truth-and-Bias leaves out " + "; ".join(left_out)
                   + ": a bias or truth force across scales compares different units",
                   err=True)
    data = tb_data(groups, step_s=step_s)
    if data is None or len(data.truth) < 10:
        return None
    truth, judge = (r.strip() for r in kw["roles"].split(","))
    pairs = [g for g in groups if g.pair is not None]
    if any(g.paired_by != "roles" for g in pairs):  # paired by label order: name the labels
        named = {(g.pair[0].rater, g.pair[1].rater) for g in pairs if g.pair is not None}
        truth, judge = next(iter(named)) if len(named) == 1 else ("rater a", "rater b")
    try:
        tb = fit(data, truth=truth, judge=judge)
        return tb if not left_out else replace(
            tb, notes=(*tb.notes, "left out: " + "; ".join(left_out)))
    except ValueError as exc:  # no optimizer could fit it: the rest of the report stands
        click.echo(f"ratedial: Truth-and-Bias not fitted: {exc}", err=True)
        return None


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
                   "LabRecorder format) (repeat or comma-separate; sav and eaf need "
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
    for fmt, module in (("sav", "pyreadstat"), ("eaf", "pympi")):
        if fmt in fmts:
            needs_research(module, f"--format {fmt}")
    _, groups = _load(recordings, kw)
    stem = Path(recordings[0]).stem if len(recordings) == 1 else "export"
    for p in write_export(groups, _output_prefix(prefix, stem), fmts, _segment_opts(kw),
                          inputs=[Path(r) for r in recordings]):
        click.echo(str(p))


@click.command()
@RECORDINGS
@alignment_options
@analysis_options
@click.option("-o", "--output", "directory", required=True, type=HomePath(file_okay=False),
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
