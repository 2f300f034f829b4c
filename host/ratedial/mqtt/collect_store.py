"""The collected recording on disk: :class:`RecorderStore` writes the collector's rows into a
:class:`Recorder`; :func:`read_resume_state` reads back what an existing collected recording
holds, so that a restarted collector continues the same file.

Invariants:

* Resuming writes nothing twice: the samples, gaps, events and ids the file holds become the
  collector's starting :class:`~ratedial.mqtt.collect_state.ResumeState`, and new rows take
  ids after the highest ones there.
* Only a recording collected by ``ratedial record --mqtt`` (this format and version, with
  ``collected`` meta) is resumed; any other file is refused with a one-line
  :class:`UsageError`.
* A gap's new reason (:meth:`RecorderStore.gap_reason`) is an update of the row written
  earlier, never a second row. So are a dial's fields learnt after its row
  (:meth:`RecorderStore.dial_info`); the recorder has no statement for them, so they are
  written when the store closes, and a collector killed before that leaves them to the run
  that continues the file (it reads them back from the file's ``dial_connected`` events and
  the dials' retained statuses).
* Reading a recording to resume it changes none of its rows (it only recovers the WAL a
  killed collector left), so a file refused after reading stays as it was.
* The ``uncollected`` gap rows an earlier run left are holes again for this run (not gaps),
  but their rows stay until this run ends: :meth:`RecorderStore.close` replaces them, in one
  transaction, by the holes still open then (a run killed before that leaves them as they
  were, for the next run to take up).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..recording.schema import FORMAT, FORMAT_VERSION
from ..recording.walfile import wal_has_data, wal_left, wal_of
from ..recording.writer import (
    SQL,
    Recorder,
    RecordingError,
    describe_sqlite_error,
    fold_and_end,
)
from .collect_ranges import is_int
from .collect_state import UNCOLLECTED, ResumeState


def read_resume_state(path: Path) -> ResumeState:
    """Read an existing collected recording; one-line error if it is not one."""
    try:
        con = sqlite3.connect(path)  # read-write: recovers the WAL of a killed collector
        try:
            meta = {k: json.loads(v) for k, v in con.execute("SELECT key, value FROM meta")}
        except (sqlite3.Error, ValueError, TypeError, RecursionError):
            raise UsageError(f"{path} exists and is not a ratedial recording; choose another "
                             "--record path") from None
        if (meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION
                or not isinstance(meta.get("collected"), dict)):
            raise UsageError(f"{path} exists and is not a recording collected by ratedial "
                             "record --mqtt; choose another --record path")
        st = ResumeState(meta=meta)
        collected = meta["collected"]
        st.daemons = set(collected.get("daemons") or ())
        st.brokers = _brokers(meta)
        for uid, dial_id, rater, board, firmware, backend in con.execute(
                "SELECT uid, dial_id, rater, board, firmware, backend FROM dials"):
            st.dial_ids[uid] = dial_id
            st.dial_rows[uid] = (rater, board or "", firmware or "", backend or "")
        uid_of = {v: k for k, v in st.dial_ids.items()}
        for eid, did, boot, hello in con.execute(
                "SELECT epoch_id, dial_id, boot_id, hello FROM epochs"):
            h = json.loads(hello)
            st.epochs[(uid_of[did], boot)] = (eid, h.get("daemon") if isinstance(h, dict)
                                              else None)
            if isinstance(h, dict):
                st.hellos[eid] = h
        for eid, a, b in con.execute(
                "SELECT epoch_id, MIN(sample_index), MAX(sample_index) + 1 FROM ("
                " SELECT epoch_id, sample_index, sample_index - ROW_NUMBER() OVER ("
                "  PARTITION BY epoch_id ORDER BY sample_index) AS island FROM samples)"
                " GROUP BY epoch_id, island ORDER BY epoch_id, 2"):
            st.received.setdefault(eid, []).append((a, b))
        # holes an earlier run of the collection left (uncollected) are holes again: this
        # run asks for them; their rows are replaced when it ends (RecorderStore.close)
        for eid, a, b, reason in con.execute(
                "SELECT epoch_id, first_index, end_index, reason FROM gaps"):
            (st.uncollected if reason == UNCOLLECTED else st.gaps).setdefault(
                eid, []).append((a, b))
        for mid, fp in con.execute("SELECT media_id, fingerprint FROM media"):
            if isinstance(fp, str) and fp.startswith("daemon:"):
                st.media[fp.removeprefix("daemon:")] = mid
        for dial_id, kind, data in con.execute(
                "SELECT dial_id, kind, data FROM events ORDER BY event_id"):
            d = json.loads(data)
            if kind == "dial_connected" and dial_id in uid_of:
                known = st.dial_events.setdefault(uid_of[dial_id], {})
                for k in ("board", "firmware", "backend"):
                    if isinstance(d.get(k), str) and d[k] and k not in known:
                        known[k] = d[k]
            src = d.get("source")
            if isinstance(src, dict) and isinstance(src.get("daemon"), str) and is_int(
                    src.get("event_id")):
                run = src.get("run")
                st.events.add((src["daemon"], run if isinstance(run, str) else "",
                               src["event_id"]))
        for table, col in (("dials", "dial_id"), ("epochs", "epoch_id"), ("media", "media_id"),
                           ("events", "event_id")):
            st.next_ids[table] = int(con.execute(
                f"SELECT COALESCE(MAX({col}), 0) + 1 FROM {table}").fetchone()[0])
        row = con.execute("SELECT wall_ns - host_ns FROM wall_anchors ORDER BY rowid "
                          "LIMIT 1").fetchone()
        st.wall_offset_ns = None if row is None else int(row[0])
        return st
    except sqlite3.Error as exc:
        raise UsageError(f"cannot resume {path}: {exc}") from None
    finally:
        with contextlib.suppress(UnboundLocalError):
            con.close()


def _brokers(meta: dict[str, Any]) -> list[str]:
    """The brokers a collected recording was collected from (files written before
    ``collected.brokers`` existed name only the first, in ``config``)."""
    brokers = meta["collected"].get("brokers")
    if isinstance(brokers, list):
        return [b for b in brokers if isinstance(b, str)]
    first = ((meta.get("config") or {}).get("mqtt") or {}).get("broker")
    return [first] if isinstance(first, str) else []


@dataclass(slots=True)
class RecorderStore:
    """:class:`Store` on a :class:`Recorder`."""

    recorder: Recorder
    dial_rows: dict[int, tuple[str | None, str, str, str]] = field(default_factory=dict)
    holes: list[tuple[int, int, int, int]] | None = None  # uncollected rows, from close()

    def add_dial(self, uid: str, rater: str | None, board: str, firmware: str,
                 backend: str) -> int:
        return self.recorder.add_dial(uid, rater, board, firmware, backend)

    def dial_info(self, dial_id: int, rater: str | None, board: str, firmware: str,
                  backend: str) -> None:
        self.dial_rows[dial_id] = (rater, board, firmware, backend)  # written by close()

    def uncollected(self, rows: list[tuple[int, int, int, int]]) -> None:
        self.holes = list(rows)  # written by close()

    def close(self, *, ended: dict[str, Any] | None = None) -> None:
        """Close the recorder, then write the dial fields learnt after their rows and
        replace the file's ``uncollected`` gap rows by the holes still open (one
        transaction). ``ended`` (``ended_wall_ns``): written last, once everything else is
        folded into the file itself (:meth:`Recorder.close`)."""
        later = bool(self.dial_rows) or self.holes is not None
        self.recorder.close(ended=None if later else ended)
        if not later:
            return
        path = self.recorder.path
        try:
            con = sqlite3.connect(path)
            try:
                with con:
                    con.executemany(
                        "UPDATE dials SET rater = ?, board = ?, firmware = ?, backend = ? "
                        "WHERE dial_id = ?", [(*row, dial_id) for dial_id, row in
                                              sorted(self.dial_rows.items())])
                    if self.holes is not None:
                        con.execute("DELETE FROM gaps WHERE reason = ?", (UNCOLLECTED,))
                        con.executemany(SQL["gaps"], [(e, d, a, b, UNCOLLECTED, None, None)
                                                      for e, d, a, b in self.holes])
                fold_and_end(con, ended)
            finally:
                con.close()
        except sqlite3.Error as exc:
            error = RecordingError(describe_sqlite_error(path, exc))
            if wal_has_data(wal_of(path)):
                error = RecordingError(wal_left(path, error))
            raise error from None
        self.dial_rows.clear()
        self.holes = None

    def add_epoch(self, dial_id: int, boot: int, first_host_ns: int,
                  hello: dict[str, Any]) -> int:
        return self.recorder.add_epoch(dial_id, boot, first_host_ns, hello)

    def epoch_hello(self, epoch_id: int, hello: dict[str, Any]) -> None:
        self.recorder.put("epoch_hellos", (json.dumps(hello), epoch_id))

    def add_media(self, daemon: str) -> int:
        return self.recorder.add_media(None, None, None, f"daemon:{daemon}")

    def samples(self, rows: list[tuple[Any, ...]]) -> None:
        self.recorder.put_many("samples", rows)

    def gap(self, epoch_id: int, dial_id: int, first: int, end: int, reason: str) -> None:
        self.recorder.put("gaps", (epoch_id, dial_id, first, end, reason, None, None))

    def gap_reason(self, epoch_id: int, first: int, end: int, reason: str) -> None:
        self.recorder.put("gap_reasons", (reason, epoch_id, first, end))

    def event(self, host_ns: int, dial_id: int | None, kind: str,
              data: dict[str, Any]) -> None:
        self.recorder.event(host_ns, dial_id, kind, data)

    def meta(self, key: str, value: Any) -> None:
        self.recorder.set_meta(key, value)
