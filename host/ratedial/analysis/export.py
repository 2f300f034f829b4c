"""Open files for R, SPSS and pandas: the grid series as CSV (long, wide) and Parquet, a JSON
sidecar describing them, and the one-row-per-dyad table. Columns: docs/recording.md,
"Exported files".

Invariants:

* A missing value is an empty CSV field and a null in Parquet, never a number.
* Media times are written rounded to microseconds, ratings to 6 decimals.
* Files are created with mode 0600, like recordings: they hold clinical data.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..outfile import staged
from .align import STATUS_NAMES, padded
from .errors import UsageError
from .groups import Group
from .labels import label_key
from .load import Series, differing_scales
from .read import DEFAULT_ANCHORS
from .results import table_columns, timeline_json
from .segments import SegmentOptions

FORMATS = ("csv-long", "csv-wide", "parquet", "sav", "eaf", "xdf")

LONG_COLUMNS = {
    "dyad": "dyad label (meta.session, --dyad) or the video's name",
    "media": "the video's fingerprint (media.fingerprint), or file:<name> without one, "
             "unknown:<media_id> with neither (a manual player), run-time on run time",
    "rater": "rater label (dials.rater or --rater)",
    "recording": "recording file name",
    "dial": "dial uid",
    "t_s": "media time of the bin's start in seconds; the bin is [t_s, t_s + 1/rate_hz) (run "
           "time, seconds since the recording's first sample, where the sidecar's "
           "dyads[].timeline.kind is run: no player was followed)",
    "rating": "mean rating in the bin (re-rated bins: by the rule); empty when missing",
    "status": "rated | filled (short hole interpolated) | missing",
    "n_samples": "samples behind the value",
    "n_passes": "passes over the bin (2 or more: re-rated)",
}
WIDE_COLUMNS = {
    "dyad": LONG_COLUMNS["dyad"], "media": LONG_COLUMNS["media"], "t_s": LONG_COLUMNS["t_s"],
    "<rater>": "that rater's rating in the bin (as rating above); empty when missing",
}


def _t(group: Group) -> Any:
    return np.round(np.arange(group.n_bins) / group.rate_hz, 6)


def long_records(groups: Sequence[Group]) -> Iterable[dict[str, Any]]:
    """Column arrays of the long table, one dict per series (memory: one series at a time)."""
    for g in groups:
        n = g.n_bins
        t = _t(g)
        for s in g.series:
            v = padded(s.values, n)
            status = np.full(n, 0, dtype=np.int8)
            status[: len(s.status)] = s.status[:n]
            ns = np.zeros(n, dtype=np.int64)
            ns[: len(s.binned.n_samples)] = s.binned.n_samples[:n]
            npass = np.zeros(n, dtype=np.int64)
            npass[: len(s.binned.n_passes)] = s.binned.n_passes[:n]
            yield {"dyad": g.label, "media": g.media_key, "rater": s.rater,
                   "recording": s.recording.path.name, "dial": s.dial.uid, "t_s": t,
                   "rating": np.round(v, 6), "status": status, "n_samples": ns,
                   "n_passes": npass}


def _cell(x: float) -> str:
    return "" if np.isnan(x) else repr(float(x))


def write_long_csv(groups: Sequence[Group], path: Path) -> None:
    with staged(path, overwrite=True) as part, \
            part.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(list(LONG_COLUMNS))
        for rec in long_records(groups):
            fixed = [rec[k] for k in ("dyad", "media", "rater", "recording", "dial")]
            names = [STATUS_NAMES[int(x)] for x in rec["status"]]
            w.writerows([*fixed, repr(float(t)), _cell(v), st, int(k), int(p)]
                        for t, v, st, k, p in zip(rec["t_s"], rec["rating"], names,
                                                  rec["n_samples"], rec["n_passes"],
                                                  strict=True))


def rater_columns(groups: Sequence[Group]) -> list[str]:
    cols: dict[str, None] = {}
    for g in groups:
        cols.update(dict.fromkeys(s.rater for s in g.series))
    return list(cols)


def write_wide_csv(groups: Sequence[Group], path: Path) -> None:
    raters = rater_columns(groups)
    with staged(path, overwrite=True) as part, \
            part.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["dyad", "media", "t_s", *raters])
        for g in groups:
            n = g.n_bins
            by = {s.rater: padded(s.values, n) for s in g.series}
            cols = [np.round(by[r], 6) if r in by else np.full(n, np.nan) for r in raters]
            t = _t(g)
            for i in range(n):
                w.writerow([g.label, g.media_key, repr(float(t[i])),
                            *(_cell(c[i]) for c in cols)])


def write_parquet(groups: Sequence[Group], path: Path) -> None:
    import pandas as pd

    frames = []
    for rec in long_records(groups):
        n = len(rec["t_s"])
        frames.append(pd.DataFrame({
            "dyad": [rec["dyad"]] * n, "media": [rec["media"]] * n,
            "rater": [rec["rater"]] * n, "recording": [rec["recording"]] * n,
            "dial": [rec["dial"]] * n, "t_s": rec["t_s"],
            "rating": pd.array(rec["rating"], dtype="Float64"),
            "status": [STATUS_NAMES[int(x)] for x in rec["status"]],
            "n_samples": rec["n_samples"].astype(np.int32),
            "n_passes": rec["n_passes"].astype(np.int16)}))
    df = pd.concat(frames, ignore_index=True)
    for col in ("dyad", "media", "rater", "recording", "dial", "status"):
        df[col] = df[col].astype("category")
    with staged(path, overwrite=True) as part:
        df.to_parquet(part, engine="pyarrow", index=False)


DEFAULT_SCALE_JSON: dict[str, Any] = {
    "minimum": 0.0, "maximum": 100.0, "start": 50.0, "counts_per_point": 1.0,
    "anchors": {"0": "hindering", "50": "neutral", "100": "helpful"}}


def scale_json(s: Series) -> dict[str, Any]:
    """The scale ``s`` was rated on: its recording's ``meta.scale``, or the 0-100 scale
    readers assume when the recording has none (never ``{}``)."""
    return s.recording.scale or dict(DEFAULT_SCALE_JSON)


def mixed_scales_note(groups: Sequence[Group]) -> str | None:
    """One line when the raters exported are on different scales (None otherwise)."""
    shown = differing_scales(s for g in groups for s in g.series)
    if shown is None:
        return None
    return (f"ratedial: note: the raters' scales differ ({shown}): ratings are exported as "
            "recorded, in different units side by side; each series' scale is in the "
            "sidecar (dyads[].series[].scale)")


def _series_json(s: Series) -> dict[str, Any]:
    rec = s.recording
    epochs = rec.epochs_of(s.dial.dial_id)
    clocks = [c for c in rec.clocks if c.epoch_id in {e.epoch_id for e in epochs}]
    return {
        "rater": s.rater, "recording": rec.path.name,  # as in the CSV
        "dial": {"uid": s.dial.uid, "board": s.dial.board, "firmware": s.dial.firmware,
                 "backend": s.dial.backend},
        "epochs": [{"epoch_id": e.epoch_id, "boot_id": e.boot_id, "sample_rate_hz": e.rate_hz}
                   for e in epochs],
        "clock": [{"epoch_id": c.epoch_id, "models": c.models,
                   "uncertainty_us_median": c.uncertainty_us_median,
                   "uncertainty_us_max": c.uncertainty_us_max, "skew_ppm": c.skew_ppm}
                  for c in clocks],
        # the file name alone: the folders on the recording computer often name a client
        "media": {"media_id": s.media.media_id, "path": s.media.file_name,
                  "duration_s": s.media.duration_s, "fps": s.media.fps,
                  "fingerprint": s.media.fingerprint},
        "session": rec.session, "annotations": rec.annotations, "scale": scale_json(s),
        "software_version": rec.meta.get("software_version"),
        "created_wall_ns": rec.meta.get("created_wall_ns"),
        "samples_used": s.samples_used, "samples_excluded": dict(s.excluded),
        "passes": s.passes,
        "gaps": [{"epoch_id": g.epoch_id, "first_index": g.first_index,
                  "end_index": g.end_index, "n_missing": g.n_missing, "reason": g.reason,
                  "seconds": g.seconds, "media_from_s": g.media_from_s,
                  "media_to_s": g.media_to_s} for g in s.gaps],
        "lost": [{"at_s": None if x.at_s is None else round(x.at_s, 6), "back": x.back,
                  "cause": x.cause} for x in s.losses],
    }


def common_anchors(groups: Sequence[Group]) -> dict[float, str]:
    """The value labels of ``rating``: the recordings' scale anchors when they all have the
    same (0-100's when none says), none when they differ (one scale's words on another's
    numbers would mislabel them), said in one line."""
    default = DEFAULT_ANCHORS
    found = {tuple(sorted((s.recording.anchors() or default).items()))
             for g in groups for s in g.series}
    if len(found) > 1:
        print("ratedial: note: the recordings' scales have different anchors: the SPSS file's "
              "rating has no value labels (each recording's meta.scale has its own)",
              file=sys.stderr)
        return {}
    return dict(found.pop()) if found else dict(default)


def sidecar(groups: Sequence[Group], files: Mapping[str, str]) -> dict[str, Any]:
    first = groups[0].series[0]
    opt = first.options
    return {
        "format": "ratedial-export", "format_version": 1, "software_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": dict(files),
        "grid": {"rate_hz": opt.rate_hz,
                 "bin": "t_s is the start of the bin [t_s, t_s + 1/rate_hz) in media time "
                        "(in run time where a dyad's timeline.kind is run)"},
        "rules": {"rerate": opt.rerate, "max_fill_s": opt.max_fill_s,
                  "rewind_tolerance_s": opt.rewind_tolerance_s,
                  "included": "samples taken while the video played (media_state 1) with a "
                              "media time; paused, seeking, ended and unknown are left out"},
        "scale": scale_json(first),
        "columns": {"long": LONG_COLUMNS, "wide": WIDE_COLUMNS},
        "dyads": [{"dyad": g.label, "media_key": g.media_key, "paired_by": g.paired_by,
                   "timeline": timeline_json(g.media.timeline),
                   "pair": None if g.pair is None else [g.pair[0].rater, g.pair[1].rater],
                   "n_bins": g.n_bins, "series": [_series_json(s) for s in g.series]}
                  for g in groups],
    }


def write_export(groups: Sequence[Group], prefix: str | Path, formats: Sequence[str],
                 segments: SegmentOptions | None = None, *,
                 inputs: Sequence[Path] = ()) -> list[Path]:
    """Write ``PREFIX.long.csv``, ``PREFIX.wide.csv``, ``PREFIX.parquet`` (as asked) and
    always ``PREFIX.json``; returns the paths written. Refuses (one line, before writing
    anything) a name that is one of the recordings read or ``inputs``
    (:mod:`~ratedial.analysis.guard`)."""
    from .guard import refuse_inputs
    from .plots import safe_names

    base = Path(prefix)
    names = {"csv-long": base.with_name(base.name + ".long.csv"),
             "csv-wide": base.with_name(base.name + ".wide.csv"),
             "parquet": base.with_name(base.name + ".parquet"),
             "sav": base.with_name(base.name + ".sav"),
             "xdf": base.with_name(base.name + ".xdf")}
    planned = [names[f] for f in formats if f in names] + [base.with_name(base.name + ".json")]
    if "eaf" in formats:
        from .elan import eaf_files

        for name in safe_names([g.label for g in groups]):
            planned += eaf_files(base.with_name(f"{base.name}.{name}"))
    read = {s.recording.path for g in groups for s in g.series}
    refuse_inputs(planned, recordings=[*read, *inputs], option="export")
    clash = [r for r in rater_columns(groups) if r in ("dyad", "media", "t_s")]
    if "csv-wide" in formats and clash:  # a column of each would be two columns of one name
        raise UsageError(f"rater label {clash[0]!r} is a column of the wide table: relabel "
                         "it (--rater RECORDING[:DIAL]=LABEL) or leave csv-wide out")
    note = mixed_scales_note(groups)
    if note is not None:
        print(note, file=sys.stderr)
    written = []
    for fmt in formats:
        if fmt == "eaf":
            from .elan import write_eaf

            files = [write_eaf(g, base.with_name(f"{base.name}.{name}"), segments)
                     for g, name in zip(groups, safe_names([g.label for g in groups]),
                                        strict=True)]
            written += [p for f in files for p in f]
            names["eaf"] = files[0][0] if len(files) == 1 else base.with_name(
                base.name + ".*.eaf")
            continue
        path = names[fmt]
        if fmt == "sav":
            from .spss import write_long_sav

            write_long_sav(groups, path, common_anchors(groups))
        elif fmt == "xdf":
            from .xdf import write_xdf

            recs = list({id(s.recording): s.recording for g in groups
                         for s in g.series}.values())
            labels = {(s.recording.path, s.dial.dial_id): s.rater for g in groups
                      for s in g.series}
            write_xdf(recs, path, labels)
        else:
            {"csv-long": write_long_csv, "csv-wide": write_wide_csv,
             "parquet": write_parquet}[fmt](groups, path)
        written.append(path)
    meta = base.with_name(base.name + ".json")
    side = sidecar(groups, {f: names[f].name for f in formats})
    side["files"] = {**_earlier_files(meta, side), **side["files"]}
    with staged(meta, overwrite=True) as part:  # last: a complete export has its sidecar
        part.write_text(json.dumps(side, indent=1, default=str) + "\n", encoding="utf-8")
    written.append(meta)
    return written


def _earlier_files(meta: Path, now: dict[str, Any]) -> dict[str, str]:
    """The files an earlier export to the same prefix listed, when it exported the same
    recordings with the same rules (README's two export lines, one after the other) and the
    files are still there: the sidecar keeps describing them, not only the newest."""
    try:
        old = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(old, dict) or old.get("format") != "ratedial-export":
        return {}
    same = json.loads(json.dumps({k: now[k] for k in ("grid", "rules", "scale", "dyads")},
                                 default=str))
    if any(old.get(k) != v for k, v in same.items()) or not isinstance(old.get("files"), dict):
        return {}
    return {str(f): str(n) for f, n in old["files"].items()
            if isinstance(n, str) and "*" not in n and (meta.parent / n).is_file()}


def write_table(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    """The dyad table as CSV (empty field for a missing value), or as SPSS ``.sav`` when
    ``path`` ends in ``.sav``."""
    if path.suffix.lower() == ".sav":
        from .spss import write_table_sav

        write_table_sav(rows, path)
        return
    cols = table_columns(rows)
    with staged(path, overwrite=True) as part, \
            part.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, restval="")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})


def read_annotation_table(path: Path, key: str = "dyad") -> dict[str, dict[str, str]]:
    """A CSV sidecar of questionnaire scores, one row per dyad (column ``key``); the other
    columns are added to that dyad's row of the table, as typed. A header with ``;`` and no
    ``,`` (Excel's CSV where the decimal mark is a comma) is read with ``;`` between
    columns."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            text = fh.read()
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text (save the sheet as CSV UTF-8)") from None
    head = text.splitlines()[0] if text else ""
    delimiter = ";" if ";" in head and "," not in head else ","
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
        if reader.fieldnames is None or key not in reader.fieldnames:
            how = " (its columns read as separated by ';')" if delimiter == ";" else ""
            raise UsageError(f"{path}: needs a {key!r} column{how}")
        dupes = sorted({c for c in reader.fieldnames if reader.fieldnames.count(c) > 1})
        if dupes:
            raise UsageError(f"{path}: column {dupes[0]!r} appears twice")
        if any(not c.strip() for c in reader.fieldnames):
            raise UsageError(f"{path}: a column has no name (an empty header cell)")
        out: dict[str, dict[str, str]] = {}
        seen: dict[str, str] = {}  # label_key -> the label as typed
        for row in reader:
            first = seen.setdefault(label_key(row[key] or ""), row[key])
            if first != row[key] or row[key] in out:
                also = "" if first == row[key] else f" (also written {first!r})"
                raise UsageError(f"{path}: dyad {row[key]!r} has two rows{also}; keep one")
            out[row[key]] = {k: v for k, v in row.items() if k != key}
        return out
    except csv.Error as exc:
        raise UsageError(f"{path}: not a CSV table ({exc})") from None


def scores_for(table: Mapping[str, dict[str, str]], label: str) -> dict[str, str] | None:
    """The ``--annotations`` row of the dyad ``label``: its ``dyad`` cell compared as dyad
    labels are (:func:`~ratedial.analysis.groups.label_key`: ``d01 `` is ``D01``)."""
    want = label_key(label)
    return next((row for k, row in table.items() if label_key(k) == want), None)


def unmatched_annotations(table: Mapping[str, object], labels: Iterable[str]) -> str | None:
    """One line naming the rows of an ``--annotations`` CSV that no dyad of the study has
    (a typo in a dyad label), or None."""
    have = {label_key(label) for label in labels}
    missing = sorted(k for k in table if label_key(k) not in have)
    if not missing:
        return None
    return (f"ratedial: note: --annotations has rows for {len(missing)} dyad(s) not in these "
            f"recordings: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
