"""Recordings the publisher republishes from, and the earlier runs it must finish publishing.

The MQTT publisher never republishes from memory: backfill and answers to replay requests are
read from recordings. This module reads them (read-only, by dial uid and boot id) and finds,
at start-up, the earlier recordings of the same daemon whose MQTT publishing did not finish,
for example because that daemon was killed.

Invariants:

* A recording's ``mqtt_progress`` meta row says what its daemon had not yet seen confirmed by
  the broker: ``pending`` index ranges per epoch, everything at or after ``sent_below``, and
  the event ids in ``events_pending`` or above ``events_handed_max``. Republishing those is
  enough for nothing to be lost; at worst a few samples arrive twice (subscribers dedupe).
* A recording another live process holds (its daemon keeps an exclusive ``flock`` on it) is
  never resumed. ``complete: true`` is written only when nothing of it is pending.
* The recording being written is read with ``must_read``: a failed read raises
  :class:`ArchiveUnreadable` instead of returning no rows, so the publisher never takes
  "could not read" for "does not hold" and drops backlog it could not republish.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._platform.lock import held
from ..recording.readonly import closed, connect_ro
from .outbox import Key, _add

SAMPLE_COLUMNS = ("sample_index, device_us, host_ns, count, rating, flags, media_s, "
                  "media_state")
MAX_RESUME_FILES = 50  # newest recordings in the directory that are looked at


def _connect_ro(path: Path, *, unused: bool = False) -> sqlite3.Connection:
    """Read-only; a recording no process has open (``unused``: the caller holds the writers'
    lock) is opened immutable, so that reading it leaves no ``-wal`` and ``-shm`` files
    beside it (a finished recording would look crashed)."""
    return connect_ro(path, immutable=closed(path, lock_held=unused))


def _wall_offset(con: sqlite3.Connection) -> int | None:
    """The recording's first wall anchor as an offset (wall minus host ns): the one its run
    published with, so a sample republished later has the ``wall_ns`` it had live."""
    row = con.execute("SELECT wall_ns - host_ns FROM wall_anchors ORDER BY rowid "
                      "LIMIT 1").fetchone()
    return None if row is None else int(row[0])


def _epochs_of(con: sqlite3.Connection, key: Key) -> list[int]:
    return [e for (e,) in con.execute(
        "SELECT epoch_id FROM epochs JOIN dials USING (dial_id) WHERE uid = ? AND boot_id = ?",
        key)]


class ArchiveUnreadable(Exception):
    """A recording could not be read just now (it was not found to lack the rows)."""


@dataclass(slots=True)
class Archive:
    """One recording, read on demand. ``run_id`` names its run in event payloads."""

    path: Path
    run_id: str | None = None

    def samples(self, key: Key, first: int, end: int, *,
                must_read: bool = False) -> list[tuple[Any, ...]]:
        """Rows ``(index, device_us, host_ns, count, rating, flags, media_s, media_state,
        wall_ns)`` (``wall_ns`` from this recording's run, None without a wall anchor).

        An unreadable file holds nothing, unless ``must_read``: then ArchiveUnreadable."""
        try:
            con = _connect_ro(self.path)
        except sqlite3.Error as exc:
            if must_read:
                raise ArchiveUnreadable(f"{self.path}: {exc}") from None
            return []
        try:
            rows: list[tuple[Any, ...]] = []
            offset = _wall_offset(con)
            for epoch in _epochs_of(con, key):
                rows += con.execute(
                    f"SELECT {SAMPLE_COLUMNS}, host_ns + ? FROM samples WHERE epoch_id = ? AND "
                    "sample_index >= ? AND sample_index < ? ORDER BY sample_index",
                    (offset, epoch, first, end)).fetchall()
            return rows
        except sqlite3.Error as exc:
            if must_read:
                raise ArchiveUnreadable(f"{self.path}: {exc}") from None
            return []
        finally:
            con.close()

    def events(self, ids: Iterable[int], *, must_read: bool = False) -> list[tuple[Any, ...]]:
        """Rows ``(event_id, host_ns, dial uid or None, kind, data JSON, wall_ns)``
        (``wall_ns`` as for :meth:`samples`)."""
        wanted = sorted(set(ids))
        if not wanted:
            return []
        try:
            con = _connect_ro(self.path)
        except sqlite3.Error as exc:
            if must_read:
                raise ArchiveUnreadable(f"{self.path}: {exc}") from None
            return []
        try:
            out: list[tuple[Any, ...]] = []
            offset = _wall_offset(con)
            for k in range(0, len(wanted), 500):
                part = wanted[k:k + 500]
                out += con.execute(
                    "SELECT e.event_id, e.host_ns, d.uid, e.kind, e.data, e.host_ns + ? FROM "
                    f"events e LEFT JOIN dials d USING (dial_id) WHERE e.event_id IN "
                    f"({','.join('?' * len(part))}) ORDER BY e.event_id",
                    [offset, *part]).fetchall()
            return out
        except sqlite3.Error as exc:
            if must_read:
                raise ArchiveUnreadable(f"{self.path}: {exc}") from None
            return []
        finally:
            con.close()


def read_samples(archives: Iterable[Archive], key: Key, first: int,
                 end: int) -> list[tuple[Any, ...]]:
    """The union of what the archives hold for ``[first, end)``, one row per index. The first
    archive is the recording being written: it must be read (else ArchiveUnreadable); an
    earlier one that cannot be read any more holds nothing."""
    by_index: dict[int, tuple[Any, ...]] = {}
    for k, a in enumerate(archives):
        for row in a.samples(key, first, end, must_read=k == 0):
            by_index.setdefault(row[0], row)
    return [by_index[i] for i in sorted(by_index)]


def absent_ranges(first: int, end: int, present: Iterable[int]) -> list[tuple[int, int]]:
    """The sub-ranges of ``[first, end)`` whose indices are not in ``present`` (sorted)."""
    out: list[tuple[int, int]] = []
    at = first
    for i in present:
        if i > at:
            out.append((at, i))
        at = max(at, i + 1)
    if at < end:
        out.append((at, end))
    return out


@dataclass(slots=True)
class Unfinished:
    """An earlier recording of this daemon with samples or events not confirmed by the broker."""

    archive: Archive
    ranges: dict[Key, list[tuple[int, int]]] = field(default_factory=dict)
    events: list[int] = field(default_factory=list)

    @property
    def samples(self) -> int:
        return sum(b - a for rs in self.ranges.values() for a, b in rs)


def _meta(con: sqlite3.Connection) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in con.execute("SELECT key, value FROM meta"):
        with contextlib.suppress(ValueError):
            out[k] = json.loads(v)
    return out


def unfinished(path: Path, *, daemon_id: str, prefix: str,
               broker: str) -> Unfinished | None:
    """What of ``path`` still has to reach ``broker``, or None (another daemon's, finished,
    in use, unreadable, or published elsewhere)."""
    with held(path) as free:
        if not free:
            return None
        try:
            con = _connect_ro(path, unused=True)  # under held(): nobody writes it
            try:
                meta = _meta(con)
                mq = meta.get("mqtt")
                if (meta.get("daemon_id") != daemon_id or not isinstance(mq, dict)
                        or mq.get("prefix") != prefix or mq.get("broker") != broker):
                    return None
                progress = meta.get("mqtt_progress")
                if isinstance(progress, dict) and progress.get("complete"):
                    return None
                ends = con.execute(
                    "SELECT d.uid, e.boot_id, min(s.sample_index), max(s.sample_index) "
                    "FROM samples s JOIN epochs e USING (epoch_id) JOIN dials d "
                    "ON d.dial_id = e.dial_id GROUP BY d.uid, e.boot_id").fetchall()
                event_ids = [i for (i,) in con.execute("SELECT event_id FROM events")]
            finally:
                con.close()
        except sqlite3.Error:
            return None
    out = Unfinished(Archive(path, meta.get("run_id")))
    known = progress if isinstance(progress, dict) else {}
    pending = {(str(p["dial"]), int(p["boot"])): p for p in known.get("epochs", [])}
    for uid, boot, lo, hi in ends:
        key = (str(uid), int(boot))
        ranges: list[tuple[int, int]] = []
        p = pending.get(key)
        if p is None:
            _add(ranges, int(lo), int(hi) + 1)
        else:
            for a, b in p.get("pending", []):
                _add(ranges, int(a), int(b))
            _add(ranges, max(int(lo), int(p.get("sent_below", lo))), int(hi) + 1)
        if ranges:
            out.ranges[key] = ranges
    if known:
        handed = int(known.get("events_handed_max", 0))
        waiting = {int(i) for i in known.get("events_pending", [])}
        out.events = sorted(i for i in event_ids if i in waiting or i > handed)
    else:
        out.events = sorted(event_ids)
    return out


def _recordings(directory: Path, skip: Iterable[Path]) -> list[Path]:
    """The recordings in ``directory``, newest first, but those ``skip`` names."""
    skipped = {p.resolve() for p in skip}
    try:
        files = [p for p in directory.glob("*.ratedial") if p.resolve() not in skipped]
        files.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return []
    return files


def find_unfinished(directory: Path, *, current: Path, daemon_id: str, prefix: str,
                    broker: str) -> list[Unfinished]:
    """The newest recordings in ``directory`` this daemon has not finished publishing."""
    out = []
    for p in _recordings(directory, [current])[:MAX_RESUME_FILES]:
        u = unfinished(p, daemon_id=daemon_id, prefix=prefix, broker=broker)
        if u is not None and (u.ranges or u.events):
            out.append(u)
    return out


def find_earlier(directory: Path, *, current: Path, daemon_id: str,
                 skip: Iterable[Path] = ()) -> list[Archive]:
    """The other recordings of this daemon id in ``directory`` (its newest
    :data:`MAX_RESUME_FILES`, but those ``skip`` names and any another process has open):
    replay requests are answered from them too, so that a collector started after an earlier
    run ended gets that run's samples (docs/mqtt.md, "Replay requests")."""
    out: list[Archive] = []
    for p in _recordings(directory, [current, *skip]):
        if len(out) == MAX_RESUME_FILES:
            break
        with held(p) as free:
            if not free:
                continue
            try:
                con = _connect_ro(p, unused=True)
                try:
                    meta = _meta(con)
                finally:
                    con.close()
            except sqlite3.Error:
                continue
        if meta.get("daemon_id") == daemon_id:
            run = meta.get("run_id")
            out.append(Archive(p, run if isinstance(run, str) else None))
    return out


def mark_complete(path: Path) -> bool:
    """Note in an earlier recording that the broker has all of it. False if that failed."""
    try:
        con = sqlite3.connect(path, timeout=5)
        try:
            with con:
                con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                            ("mqtt_progress", json.dumps({"complete": True})))
        finally:
            con.close()
    except sqlite3.Error:
        return False
    return True
