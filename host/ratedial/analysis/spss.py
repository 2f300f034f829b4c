"""SPSS ``.sav`` files (pyreadstat): the long grid table and the dyad table.

Invariants:

* Every variable has a label (the column's meaning); ratings carry the scale's anchors as
  value labels (0 "hindering", 50 "neutral", 100 "helpful" by default), ``status`` is coded
  0 missing / 1 rated / 2 filled with value labels.
* A missing value is SPSS's system-missing, never a number.
* Variable names are valid SPSS names (letters, digits, ``_``; at most 64 bytes; starting
  with a letter; not a reserved keyword such as ``TO`` or ``WITH``); a column whose name is
  valid keeps it, a renamed column keeps its original name in its label
  (:func:`spss_names`).
* Files are created with mode 0600, like every export.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..outfile import staged, write_failed
from .align import STATUS_NAMES
from .groups import Group
from .read import DEFAULT_ANCHORS, RUN_TIMELINE

LONG_LABELS = {
    "dyad": "Dyad label", "media": "Video (fingerprint, or file:<name>)", "rater": "Rater label",
    "recording": "Recording file", "dial": "Dial uid",
    "t_s": "Media time of the bin start (s); bin is [t_s, t_s + 1/rate)",
    "rating": "Mean rating in the bin (missing: not rated)",
    "status": "Bin status", "n_samples": "Samples behind the value",
    "n_passes": "Passes over the bin (2+: re-rated)",
}


VALID_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
#: SPSS's reserved keywords: never a variable name, in any case (``to``, ``With``).
RESERVED = frozenset({"all", "and", "by", "eq", "ge", "gt", "le", "lt", "ne", "not", "or",
                      "to", "with"})


def valid_spss(name: str) -> bool:
    """Letters, digits and ``_``, starting with a letter, at most 64 bytes, and not a
    reserved keyword (:data:`RESERVED`, any case)."""
    return (VALID_NAME.fullmatch(name) is not None and len(name) <= 64
            and name.lower() not in RESERVED)


def spss_name(name: str, taken: set[str]) -> str:
    """A valid, unique SPSS variable name for ``name`` (``taken``: lower-cased names in use;
    SPSS names ignore case)."""
    out = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if not out or not out[0].isalpha() or out.lower() in RESERVED:
        out = "v_" + out
    out = out[:64]
    base, i = out, 2
    while out.lower() in taken:
        suffix = f"_{i}"
        out = base[:64 - len(suffix)] + suffix
        i += 1
    taken.add(out.lower())
    return out


def spss_names(columns: Sequence[str]) -> dict[str, str]:
    """Each column's SPSS variable name: a column whose name is already valid keeps it (the
    first of several that differ only in case); the others are made valid (other characters
    become ``_``, ``v_`` before a name that does not start with a letter or is a reserved
    keyword, cut at 64) and get
    ``_2``, ``_3``, ... when that name is taken, in column order. So ``wai_sr`` is always
    ``wai_sr``, whatever ``wai-sr`` or ``wai sr`` beside it become."""
    taken: set[str] = set()
    out: dict[str, str] = {}
    for c in columns:  # valid names first: they are not renamed for an invalid one
        if valid_spss(c) and c.lower() not in taken:
            taken.add(c.lower())
            out[c] = c
    return {c: out[c] if c in out else spss_name(c, taken) for c in columns}


def write_long_sav(groups: Sequence[Group], path: Path,
                   anchors: Mapping[float, str] | None = None) -> Path:
    import pandas as pd

    from .export import long_records

    frames = []
    for rec in long_records(groups):
        n = len(rec["t_s"])
        frames.append(pd.DataFrame({
            "dyad": [rec["dyad"]] * n, "media": [rec["media"]] * n,
            "rater": [rec["rater"]] * n, "recording": [rec["recording"]] * n,
            "dial": [rec["dial"]] * n, "t_s": rec["t_s"].astype(np.float64),
            "rating": rec["rating"].astype(np.float64),
            "status": rec["status"].astype(np.float64),
            "n_samples": rec["n_samples"].astype(np.float64),
            "n_passes": rec["n_passes"].astype(np.float64)}))
    df = pd.concat(frames, ignore_index=True)
    scale = dict(DEFAULT_ANCHORS if anchors is None else anchors)
    # recordings without a video are on run time: the file says so, as every output does
    run_time = {g.media.timeline == RUN_TIMELINE for g in groups}
    labels = dict(LONG_LABELS)
    grid = "media-time grid"
    if run_time == {True}:
        labels["t_s"] = ("Run time of the bin start (s since the recording's first sample; "
                         "no video); bin is [t_s, t_s + 1/rate)")
        grid = "run-time grid (no video)"
    elif run_time == {True, False}:
        labels["t_s"] = ("Media time of the bin start (s), or run time where media is "
                         "run-time (no video); bin is [t_s, t_s + 1/rate)")
        grid = "media-time grid (run time for recordings without a video)"
    _write_sav(
        df, path, file_label=f"ratedial export: ratings on a uniform {grid}",
        column_labels=[labels.get(str(c)) for c in df.columns],
        variable_value_labels={"rating": {float(k): v for k, v in scale.items()},
                               "status": {float(k): s for k, s in STATUS_NAMES.items()}},
        variable_measure={"rating": "scale", "t_s": "scale", "status": "nominal",
                          "dyad": "nominal", "rater": "nominal"})
    return path


def write_table_sav(rows: Sequence[Mapping[str, Any]], path: Path,
                    labels: Mapping[str, str] | None = None) -> Path:
    """The one-row-per-dyad table as ``.sav`` (columns as in the CSV, names made valid)."""
    import pandas as pd

    from .results import table_columns

    cols = table_columns(rows)
    names = spss_names(cols)
    data: dict[str, Any] = {}
    for c in cols:
        values = [r.get(c) for r in rows]
        if all(v is None or (isinstance(v, int | float) and not isinstance(v, bool))
               for v in values):
            data[names[c]] = pd.array([np.nan if v is None else float(v) for v in values],
                                      dtype="float64")
        else:
            data[names[c]] = ["" if v is None else str(v) for v in values]
    df = pd.DataFrame(data)
    given = dict(labels or {})
    col_labels: list[str | None] = [given.get(c, c) for c in cols]
    _write_sav(df, path, file_label="ratedial dyad table", column_labels=col_labels)
    return path


def _write_sav(df: Any, path: Path, **options: Any) -> None:
    """``df`` as ``path``, written in full or not at all (:func:`ratedial.outfile.staged`),
    and its last row read back: pyreadstat does not always say that a write failed (on a
    full disk it left a 0-byte file and returned). Only the last row: reading every row back
    cost 16 % on top of writing 1M rows; a file cut short is refused either way (readstat
    checks the row count in the header against the data)."""
    import pyreadstat

    with staged(path, overwrite=True) as part:
        try:
            pyreadstat.write_sav(df, str(part), **options)
            n = len(df)
            if n:
                first = [str(df.columns[0])] if len(df.columns) else None
                back, _ = pyreadstat.read_sav(str(part), usecols=first, row_offset=n - 1,
                                              row_limit=1)
                whole = len(back) == 1
            else:
                _, meta = pyreadstat.read_sav(str(part), metadataonly=True)
                whole = not meta.number_rows
        except pyreadstat.ReadstatError:
            whole = False
        if not whole:
            raise write_failed(part, "the SPSS writer could not write it whole")
