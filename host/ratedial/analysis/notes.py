"""Writing to a finished recording: annotations (``meta.annotations``) and interview notes.

Invariants:

* Only the ``meta`` key ``annotations`` and the ``notes`` table are ever written; samples and
  everything the daemon recorded stay as they were.
* Each change is one transaction, and every annotation change is also appended to ``notes``
  (kind ``annotation``), so the history of a questionnaire score is kept.
* The file keeps its permissions (SQLite gives new ``-wal``/``-shm`` files the mode of the
  database).
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .errors import NotARecording, UsageError
from .read import connect, read_recording

KINDS = ("segment_note", "guess", "annotation")


_INT = re.compile(r"[+-]?(0|[1-9][0-9]*)")
_FLOAT = re.compile(r"[+-]?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][+-]?[0-9]+)?")


def parse_value(text: str) -> Any:
    """``"34"`` → 34, ``"4.5"`` → 4.5, ``"true"`` → True, ``"null"`` or nothing → None, else
    the text (``None`` too: an answer, not Python's null). A code with leading zeros
    (``007``, ``01234``) stays text, as it was typed; ``nan``, ``inf`` and ``1e999`` are
    refused (JSON has no such numbers)."""
    t = text.strip()
    low = t.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("null", ""):
        return None
    if low.lstrip("+-") in ("nan", "inf", "infinity"):
        raise UsageError(f"{text!r} is not a number a recording can hold (JSON has no NaN or "
                         "infinity): leave the value empty (KEY=) for none")
    if _INT.fullmatch(t):
        return int(t)
    if _FLOAT.fullmatch(t) and not re.match(r"[+-]?0[0-9]", t):
        value = float(t)
        if not math.isfinite(value):  # 1e999: a number too large for a recording
            raise UsageError(f"{text!r} is too large a number for a recording to hold")
        return value
    return text


def parse_assignments(items: Iterable[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{item!r}: expected KEY=VALUE, e.g. wai=52")
        if key.strip() in out:
            raise UsageError(f"{key.strip()} is given twice: give each key once")
        out[key.strip()] = parse_value(value)
    return out


def add_note(path: str | Path, kind: str, data: Mapping[str, Any]) -> int:
    """Append one row to the recording's ``notes``; returns its ``note_id``."""
    if kind not in KINDS:
        raise ValueError(f"unknown note kind {kind!r}")
    con = connect(path, write=True)
    try:
        with con:
            cur = con.execute("INSERT INTO notes (wall_ns, kind, data) VALUES (?,?,?)",
                              (time.time_ns(), kind, json.dumps(dict(data))))
        return int(cur.lastrowid or 0)
    except sqlite3.Error as exc:
        raise NotARecording(f"{path}: cannot save the note: {exc}") from None
    finally:
        con.close()


def check_writable(path: str | Path) -> None:
    """Raise :class:`NotARecording` (one line) unless notes can be saved to the recording:
    its write lock taken and given back, nothing written. For a caller that is about to ask
    for what it will save (the interview), so that nothing typed is lost at the first save."""
    con = connect(path, write=True)  # a read-only file or folder is refused here
    try:
        con.isolation_level = None
        con.execute("BEGIN IMMEDIATE")  # "attempt to write a readonly database" (a ro mount)
        con.execute("ROLLBACK")
    except sqlite3.Error as exc:
        raise NotARecording(f"{path} cannot be changed ({exc}): notes could not be saved "
                            "(copy it to a folder you can write)") from None
    finally:
        con.close()


def annotate(path: str | Path, values: Mapping[str, Any],
             remove: Iterable[str] = ()) -> dict[str, Any]:
    """Merge ``values`` into ``meta.annotations`` (and drop ``remove``); returns the result.
    A file that is not a readable recording is refused as readers refuse it
    (:class:`NotARecording`), before anything is written."""
    drop = list(remove)
    twice = next((k for k in drop if drop.count(k) > 1), None)
    if twice is not None:
        raise UsageError(f"--remove {twice} is given twice: give each key once")
    # a file every reader refuses (no samples table, damaged) is refused here too, and
    # nothing is written to it: it was annotated with exit 0 (an audit, 2026-12-05)
    read_recording(path)
    con = connect(path, write=True)
    try:
        con.isolation_level = None
        con.execute("BEGIN IMMEDIATE")
        row = con.execute("SELECT value FROM meta WHERE key = 'annotations'").fetchone()
        current = json.loads(row[0]) if row else {}
        if not isinstance(current, dict):
            current = {}
        both = sorted(set(drop) & set(values))
        if both:
            raise UsageError(f"annotation {both[0]!r} is both set and removed: do one or "
                             "the other")
        missing = [k for k in drop if k not in current]
        if missing:  # a typo would otherwise look like a removal that worked
            have = ", ".join(sorted(current)) or "none"
            raise UsageError(f"no annotation {missing[0]!r} to remove (the recording has: "
                             f"{have}); nothing was changed")
        current.update(values)
        for key in drop:
            current.pop(key, None)
        con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('annotations', ?)",
                    (json.dumps(current),))
        con.execute("INSERT INTO notes (wall_ns, kind, data) VALUES (?,?,?)",
                    (time.time_ns(), "annotation", json.dumps({"set": dict(values),
                                                               "removed": drop})))
        con.execute("COMMIT")
    except sqlite3.Error as exc:
        raise NotARecording(f"{path}: cannot write annotations: {exc}") from None
    finally:
        con.close()
    return current


def read_notes(path: str | Path, kind: str | None = None) -> list[dict[str, Any]]:
    """Notes in the order written: ``{"note_id", "wall_ns", "kind", "data"}``."""
    con = connect(path)
    try:
        sql = "SELECT note_id, wall_ns, kind, data FROM notes"
        rows = (con.execute(sql + " WHERE kind = ? ORDER BY note_id", (kind,)) if kind
                else con.execute(sql + " ORDER BY note_id")).fetchall()
    finally:
        con.close()
    return [{"note_id": r[0], "wall_ns": r[1], "kind": r[2], "data": json.loads(r[3])}
            for r in rows]
