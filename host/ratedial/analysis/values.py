"""Values SQLite accepts in a recording but recording.md rules out (pure checks of an open
connection): a ``meta.scale`` that is not a scale, a ``meta.session`` that is not labels,
an ``epochs.hello`` that is not a JSON object, and samples whose ``rating`` or
``media_s`` is not a finite number (text, a blob, Inf). Each is one line naming the file,
never a wrong number: SQLite's SUM counts text as 0 and a rating of Inf would average to
Inf or NaN."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any

from .errors import NotARecording

_MAX = "1.7976931348623157e308"
_BAD_SAMPLE = (f"(typeof(rating) NOT IN ('integer', 'real') OR abs(rating) > {_MAX} OR "
               f"typeof(media_s) IN ('text', 'blob') OR abs(media_s) > {_MAX})")


def check_session(p: Path, raw: str | None) -> None:
    """Refuse a ``meta.session`` (its stored text, None when absent) that is not a JSON
    object: its labels (the dyad that pairs recordings) cannot be read, and pairing the
    recording by its video's name instead would be a silent guess (an audit, 2026-12-06).
    Absent (or JSON null): no labels."""
    _json_object(p, "session", raw, 'a recording\'s session is a JSON object of labels, e.g. '
                 '{"dyad": "D07"}: its dyad cannot be read, and the recording is not paired '
                 'by a guess (docs/recording.md)')


def _json_object(p: Path, key: str, raw: str | None, rule: str) -> dict[str, Any] | None:
    """``meta.KEY`` (stored text ``raw``) as a JSON object, None when absent or null; one
    line naming the file and the ``rule`` otherwise."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except (TypeError, ValueError, RecursionError):
        raise NotARecording(f"{p}: meta.{key} is not JSON ({str(raw)[:40]!r}): {rule}") \
            from None
    if value is None:
        return None
    if not isinstance(value, dict):
        raise NotARecording(f"{p}: meta.{key} is not a JSON object ({str(raw)[:40]}): {rule}")
    return value


def check_scale(p: Path, raw: str | None) -> None:
    """Refuse a ``meta.scale`` (its stored text, None when absent) that is not a JSON
    object whose ``minimum`` and ``maximum`` (0 and 100 when left out) are finite numbers,
    the minimum below the maximum. Absent (or JSON null) is the assumed 0-100 scale."""
    scale = _json_object(p, "scale", raw,
                         "a recording's scale is a JSON object (docs/recording.md)")
    if scale is None:
        return
    ends = [scale.get("minimum", 0.0), scale.get("maximum", 100.0)]
    if not all(_number(v) for v in ends) or not ends[0] < ends[1]:
        lo, hi = (_brief(v) for v in ends)
        raise NotARecording(f"{p}: meta.scale has minimum {lo} and maximum {hi}: they must "
                            "be finite numbers, the minimum below the maximum "
                            "(docs/recording.md)")


def _brief(v: Any) -> str:
    """``repr(v)``, cut to 40 characters (an integer of 400 digits stays one line)."""
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def check_hello(p: Path, epoch_id: int, raw: Any) -> dict[str, Any]:
    """An epoch's ``hello`` (its stored value) as the JSON object the recorder writes; one
    line naming the file and the epoch otherwise, as for ``meta.session`` and ``meta.scale``
    (a hello of ``[1,2`` was read without a word, its sample rate unknown: an audit,
    2026-12-05). An object without a usable ``rate_hz`` is still read (docs/recording.md)."""
    rule = ("an epoch's hello is the JSON object of the dial's HELLO, e.g. {\"rate_hz\": 100, "
            "...} (docs/recording.md)")
    try:
        value = json.loads(raw)
    except (TypeError, ValueError, RecursionError):
        raise NotARecording(f"{p}: epochs.hello of epoch {epoch_id} is not JSON "
                            f"({str(raw)[:40]!r}): {rule}") from None
    if not isinstance(value, dict):
        raise NotARecording(f"{p}: epochs.hello of epoch {epoch_id} is not a JSON object "
                            f"({str(raw)[:40]}): {rule}")
    return value


def hello_rate(hello: dict[str, Any]) -> float | None:
    """An epoch's sample rate from its ``hello``: ``rate_hz`` when it is a finite number
    above 0 (not a bool), None (unknown, as when it is absent) otherwise. A review
    (2026-12-05): Infinity and 1e999 crashed analyze and export (OverflowError), and
    ``true`` was read as 1.0 Hz."""
    rate = hello.get("rate_hz")
    if isinstance(rate, bool) or not isinstance(rate, int | float):
        return None
    try:
        value = float(rate)
    except OverflowError:  # an integer of hundreds of digits
        return None
    return value if math.isfinite(value) and value > 0 else None


def _number(v: Any) -> bool:
    """A finite JSON number (not a bool; an integer of hundreds of digits is none: it
    raised OverflowError in ``math.isfinite``)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def bad_sample(con: sqlite3.Connection, p: Path | str, epoch_id: int) -> NotARecording:
    """The error for an epoch found to hold a sample that is not a number: how many, and
    the first (its index and values)."""
    rows = con.execute(f"SELECT sample_index, rating, media_s FROM samples WHERE epoch_id = ? "
                       f"AND {_BAD_SAMPLE} ORDER BY sample_index", (epoch_id,)).fetchall()
    if not rows:
        return NotARecording(f"{p}: samples of epoch {epoch_id} could not be read as numbers")
    index, rating, media_s = rows[0]
    return NotARecording(
        f"{p}: {len(rows)} sample{'' if len(rows) == 1 else 's'} of epoch {epoch_id} "
        f"{'has' if len(rows) == 1 else 'have'} a rating or media_s that is not a finite "
        f"number (first: sample {index}, rating {rating!r}, media_s {media_s!r}); "
        "docs/recording.md: both are REAL")
