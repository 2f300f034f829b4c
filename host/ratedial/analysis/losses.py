"""Dials lost during a run, and dials that took no samples for a while, as the analysis reads
them from a recording's events (pure reads of an open connection): where each was lost on the
timeline and whether it came back; how often and how long each stalled."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Loss:
    """A dial lost during the run (a ``dial_lost`` event): where on the timeline its last
    sample before it was (media time, or run time on a run timeline; None: no sample), and
    whether it came back later in the run. A dial lost for good leaves no gap (no index
    after its last one is known): this is what says why the rest is missing."""

    dial_id: int
    cause: str | None
    at_s: float | None
    media_id: int | None
    back: bool


def read_losses(con: sqlite3.Connection, run_t0: int | None) -> tuple[Loss, ...]:
    """The recording's ``dial_lost`` events, each placed by its dial's last sample before it
    (the event's ``next_index`` in the boot then current) and told whether a
    ``dial_connected`` of that dial followed. ``run_t0``: place on run time instead."""
    rows = con.execute("SELECT dial_id, host_ns, kind, data FROM events WHERE dial_id IS NOT "
                       "NULL AND kind IN ('dial_lost', 'dial_connected') "
                       "ORDER BY event_id").fetchall()
    out = []
    for k, (dial, host_ns, kind, data) in enumerate(rows):
        if kind != "dial_lost":
            continue
        try:
            d = json.loads(data)
        except (TypeError, ValueError, RecursionError):
            d = None
        d = d if isinstance(d, dict) else {}
        nxt, at_s, media_id = d.get("next_index"), None, None
        epoch = con.execute("SELECT epoch_id FROM epochs WHERE dial_id = ? AND first_host_ns "
                            "<= ? ORDER BY first_host_ns DESC LIMIT 1",
                            (dial, host_ns)).fetchone()
        if epoch is not None and isinstance(nxt, int) and not isinstance(nxt, bool) and nxt > 0:
            last = con.execute("SELECT media_s, media_id, host_ns FROM samples WHERE "
                               "epoch_id = ? AND sample_index = ?", (epoch[0], nxt - 1)
                               ).fetchone()
            if last is not None:
                media_id = last[1]
                if run_t0 is not None:
                    at_s = None if last[2] is None else (last[2] - run_t0) / 1e9
                else:
                    at_s = last[0]
        cause = d.get("cause")
        out.append(Loss(dial_id=dial, cause=cause if isinstance(cause, str) else None,
                        at_s=at_s, media_id=media_id,
                        back=any(r[0] == dial and r[2] == "dial_connected" for r in rows[k:])))
    return tuple(out)


def run_end_s(con: sqlite3.Connection, run_t0: int | None) -> float | None:
    """The run's end on run time (its ``run_end`` event), or None (no run time, or a run
    that never ended: a crash copy)."""
    if run_t0 is None:
        return None
    row = con.execute("SELECT MAX(host_ns) FROM events WHERE kind = 'run_end'").fetchone()
    return None if row is None or row[0] is None else (row[0] - run_t0) / 1e9


def read_stalls(con: sqlite3.Connection) -> dict[int, tuple[int, float]]:
    """Per dial id: how many ``dial_stalled`` events, and their seconds in all."""
    out: dict[int, tuple[int, float]] = {}
    for dial, data in con.execute("SELECT dial_id, data FROM events WHERE kind = "
                                  "'dial_stalled' AND dial_id IS NOT NULL"):
        try:
            d = json.loads(data)
        except (TypeError, ValueError, RecursionError):
            continue
        seconds = d.get("seconds") if isinstance(d, dict) else None
        if isinstance(seconds, int | float) and not isinstance(seconds, bool):
            n, total = out.get(dial, (0, 0.0))
            out[dial] = (n + 1, total + float(seconds))
    return out
