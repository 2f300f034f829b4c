"""The recorder: one writer thread that owns the SQLite connection (docs/recording.md).

Invariants:

* The file is created with mode 0600 before SQLite touches it; SQLite gives the ``-wal`` and
  ``-shm`` files the same mode.
* Everything handed to the recorder is committed within ``commit_interval_s`` (default
  0.25 s). A ``kill -9`` of the process loses at most that much; the file always opens.
* The ``-wal`` file is folded into the recording at least every :data:`CHECKPOINT_S`
  (a passive checkpoint, on this thread): after a crash, the recording file alone holds all
  but the last seconds (SQLite's own checkpoint waits for 4 MB of ``-wal``, ~50 s of two
  dials), and the ``-wal`` beside it the rest.
* :meth:`Recorder.close` folds every commit into the file and checks that it did (SQLite's
  own checkpoint at close fails silently: a disk full at the run's end left the file
  looking complete with its last part only in the ``-wal``); only then is ``ended_wall_ns``
  written. A failure is the run's error, naming the ``-wal`` to keep; a reader holding the
  fold back is :attr:`Recorder.folded` False.
* The asyncio side never blocks on SQLite: it enqueues rows; the thread batches them.
* A write failure (disk full, file removed, I/O error) stops the recorder and is reported
  once, as a :class:`RecordingError` with a one-line message; rows are never dropped silently.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from .._platform.lock import try_lock
from .._platform.privacy import make_private_dirs, remove_made_dirs
from ..errors import RatedialError
from .batch import insert_many
from .schema import DDL, FORMAT, FORMAT_VERSION
from .walfile import fold, wal_has_data, wal_left, wal_of

CHECKPOINT_S = 5.0  # the -wal is folded into the recording at least this often
LOOK_S = 1.0  # how often the writer looks that its file is still where it was made


def _identity(path: Path) -> tuple[int, int] | None:
    """The file at ``path`` (device, inode), or None if there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)

Row = Sequence[Any]

SQL = {
    "dials": "INSERT INTO dials (dial_id, uid, rater, board, firmware, backend) "
    "VALUES (?,?,?,?,?,?)",
    "epochs": "INSERT INTO epochs (epoch_id, dial_id, boot_id, first_host_ns, hello) "
    "VALUES (?,?,?,?,?)",
    "samples": "INSERT OR IGNORE INTO samples (epoch_id, sample_index, dial_id, device_us, "
    "host_ns, count, rating, flags, media_id, media_s, media_state) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
    "gaps": "INSERT INTO gaps (epoch_id, dial_id, first_index, end_index, reason, "
    "first_host_ns, end_host_ns) VALUES (?,?,?,?,?,?,?)",
    "events": "INSERT INTO events (event_id, host_ns, dial_id, kind, data) VALUES (?,?,?,?,?)",
    "sync_obs": "INSERT INTO sync_obs (epoch_id, token, host_send_ns, device_rx_us, "
    "device_tx_us, host_recv_ns) VALUES (?,?,?,?,?,?)",
    "arrivals": "INSERT INTO arrivals (epoch_id, last_index, device_us, host_recv_ns) "
    "VALUES (?,?,?,?)",
    "clock_models": "INSERT INTO clock_models (epoch_id, host_ns, ref_device_us, ref_host_ns, "
    "skew_ppm, uncertainty_ns, n_obs, skew_uncertainty_ppm) VALUES (?,?,?,?,?,?,?,?)",
    "wall_anchors": "INSERT INTO wall_anchors (host_ns, wall_ns) VALUES (?,?)",
    "media": "INSERT INTO media (media_id, path, duration_s, fps, fingerprint) VALUES (?,?,?,?,?)",
    "media_obs": "INSERT INTO media_obs (host_ns, media_id, media_s, rate, playing, source) "
    "VALUES (?,?,?,?,?,?)",
    "meta": "INSERT OR REPLACE INTO meta (key, value) VALUES (?,?)",
    # a gap's reason learnt later (ratedial record --mqtt); run after the commit's inserts
    "gap_reasons": "UPDATE gaps SET reason = ? WHERE epoch_id = ? AND first_index = ? "
    "AND end_index = ?",
    # an epoch's hello corrected later (ratedial record --mqtt: the nominal rate told late)
    "epoch_hellos": "UPDATE epochs SET hello = ? WHERE epoch_id = ?",
    "notes": "INSERT INTO notes (wall_ns, kind, data) VALUES (?,?,?)",
}


FLUSH = "__flush__"  # a queue item: commit what came before it now
# statements that change rows the others insert
UPDATES = frozenset({"gap_reasons", "epoch_hellos"})


class RecordingError(RatedialError):
    """The recording cannot be written; the run must stop. ``summary``: the run's summary
    as far as it got, when a run stopped for it (``--json`` still prints one)."""

    summary: Any = None


def describe_sqlite_error(path: Path, exc: BaseException, *,
                          started: bool = True) -> str:
    """One line for a recording that cannot be written; ``started=False``: it could not
    even be created (nothing was recorded, so nothing "stopped")."""
    text = str(exc)
    what = "recording stopped" if started else "cannot start recording"
    if "full" in text or getattr(exc, "errno", None) == 28:
        return f"{what}: the disk holding {path} is full"
    if "readonly" in text or "read-only" in text:
        return f"{what}: {path} is read-only"
    return f"{what}: cannot write {path}: {text}"


__all__ = ["SQL", "Recorder", "RecordingError", "create_private_file",
           "describe_sqlite_error", "fold_and_end", "remove_recording", "try_lock"]


def _free_name(path: Path) -> Path:
    """``path``, or ``NAME-restored.ratedial``, ``NAME-restored-2.ratedial``, ... beside it:
    the first that does not exist."""
    target, k = path, 1
    while target.exists():
        k += 1
        target = path.with_name(f"{path.stem}-restored{'' if k == 2 else f'-{k - 1}'}"
                                f"{path.suffix}")
    return target


def remove_recording(path: Path, made_dirs: list[Path] | None = None) -> None:
    """Remove a recording this process made and will not keep, with SQLite's side files
    (quietly: what is already gone is gone), and the folders made for it (``made_dirs``, from
    :func:`create_private_file`) that are left empty."""
    for p in (path, wal_of(path), path.with_name(path.name + "-shm")):
        with contextlib.suppress(OSError):
            p.unlink()
    remove_made_dirs(made_dirs or [])


def create_private_file(path: Path) -> list[Path]:
    """Create ``path`` (mode 0600) or refuse if it exists: a recording is never overwritten.
    Returns the folders made for it (outermost first)."""
    try:
        made = make_private_dirs(path.parent)  # private, like the file
    except OSError as exc:
        why = ("part of the path is a file" if isinstance(exc, FileExistsError | NotADirectoryError)
               else exc.strerror)
        raise RecordingError(f"cannot create recording {path}: {why}") from None
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise RecordingError(f"{path} already exists; choose another --record path") from None
    except OSError as exc:
        remove_made_dirs(made)
        raise RecordingError(f"cannot create recording {path}: {exc.strerror}") from None
    os.close(fd)
    return made


def fold_and_end(con: sqlite3.Connection, ended: dict[str, Any] | None) -> bool:
    """A recording's final save on ``con``: every commit folded into the file itself
    (:func:`~ratedial.recording.walfile.fold`), then ``ended`` (the meta keys that say the
    recording ended cleanly, ``ended_wall_ns``) written and folded the same way, so a file
    that says it ended holds everything. True when all of it is in the file (False: a
    reader held a fold back). A failure to write (a full disk) raises sqlite3.Error."""
    folded = fold(con)
    if ended:
        with con:
            con.executemany(SQL["meta"], [(k, json.dumps(v)) for k, v in ended.items()])
        # a reader that held the first fold back (busy) is not waited for again
        folded = fold(con, wait=folded)
    return folded


class Recorder:
    """Writes one recording file from a background thread.

    Ids for dials, epochs and media are allocated here, synchronously, so callers can use
    them at once; the rows follow through the queue like everything else.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        meta: dict[str, Any],
        commit_interval_s: float = 0.25,
        on_error: Callable[[RecordingError], None] | None = None,
        on_notice: Callable[[str], None] | None = None,
        append: bool = False,
        next_ids: dict[str, int] | None = None,
    ) -> None:
        """``append=True`` continues an existing recording (``next_ids``: the first free id
        of each table); otherwise the file is created and must not exist. ``on_notice``
        (called on the writer thread) is told when the file had to be written again."""
        self.path = Path(path)
        self.commit_interval_s = commit_interval_s
        self._on_error = on_error
        self._on_notice = on_notice
        # (table, rows): a frame's samples travel as one item, not one per sample
        self._queue: queue.SimpleQueue[tuple[str, list[Row]] | None] = queue.SimpleQueue()
        self._next_id = {"dials": 1, "epochs": 1, "media": 1, "events": 1, **(next_ids or {})}
        self._id_lock = threading.Lock()
        self._flushed = threading.Condition()
        self._kick = threading.Event()  # set by flush() and close(): commit now
        self._enqueued = 0
        self._committed = 0
        self.rows_written = 0
        self.commits = 0
        self._next_checkpoint = time.monotonic() + CHECKPOINT_S
        self.error: RecordingError | None = None
        self._told_wal = False  # the error names the -wal left with data in it
        self.folded = False  # after close: everything is in the file itself, no -wal left
        self.made_dirs: list[Path] = []  # folders made for a new file (gone with it)
        if not append:
            self.made_dirs = create_private_file(self.path)
        elif not self.path.is_file():
            raise RecordingError(f"cannot continue recording {self.path}: no such file")
        con: sqlite3.Connection | None = None
        try:
            con = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            con.executescript(DDL)
            con.execute("PRAGMA synchronous = NORMAL")
            base = {"format": FORMAT, "format_version": FORMAT_VERSION}
            con.executemany(SQL["meta"], [(k, json.dumps(v)) for k, v in {**base, **meta}.items()])
        except sqlite3.Error as exc:
            if con is not None:
                with contextlib.suppress(sqlite3.Error):
                    con.close()
            if not append:  # a file this run made and could not set up (a full disk): it
                # would only make the corrected command refuse the name ("already exists")
                remove_recording(self.path, self.made_dirs)
            raise RecordingError(describe_sqlite_error(self.path, exc,
                                                       started=append)) from None
        self._con = con
        self._ident = _identity(self.path)
        self._next_look = time.monotonic() + LOOK_S
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self._thread.start()

    # --- producer side (any thread) -------------------------------------------------------

    def _new_id(self, table: str) -> int:
        with self._id_lock:
            new = self._next_id[table]
            self._next_id[table] = new + 1
            return new

    def next_id(self, table: str) -> int:
        """The id the next row of ``table`` (dials, epochs, media, events) will get."""
        with self._id_lock:
            return self._next_id[table]

    def put(self, table: str, row: Row) -> None:
        if self.error is not None:
            raise self.error
        self._enqueued += 1
        self._queue.put((table, [row]))

    def put_many(self, table: str, rows: Iterable[Row]) -> None:
        """Queue several rows of one table as one item (one queue operation a frame)."""
        if self.error is not None:
            raise self.error
        batch = list(rows)
        if batch:
            self._enqueued += len(batch)
            self._queue.put((table, batch))

    def add_dial(self, uid: str, rater: str | None, board: str, firmware: str,
                 backend: str) -> int:
        dial_id = self._new_id("dials")
        self.put("dials", (dial_id, uid, rater, board, firmware, backend))
        return dial_id

    def add_epoch(self, dial_id: int, boot_id: int, first_host_ns: int,
                  hello: dict[str, Any]) -> int:
        epoch_id = self._new_id("epochs")
        self.put("epochs", (epoch_id, dial_id, boot_id, first_host_ns, json.dumps(hello)))
        return epoch_id

    def add_media(self, path: str | None, duration_s: float | None, fps: float | None,
                  fingerprint: str | None) -> int:
        media_id = self._new_id("media")
        self.put("media", (media_id, path, duration_s, fps, fingerprint))
        return media_id

    def new_event_id(self) -> int:
        return self._new_id("events")

    def event(self, host_ns: int, dial_id: int | None, kind: str, data: dict[str, Any],
              event_id: int | None = None) -> int:
        """Record an event; ``event_id`` from :meth:`new_event_id`, or a new one."""
        if event_id is None:
            event_id = self.new_event_id()
        self.put("events", (event_id, host_ns, dial_id, kind, json.dumps(data)))
        return event_id

    def set_meta(self, key: str, value: Any) -> None:
        self.put("meta", (key, json.dumps(value)))

    def flush(self, timeout: float = 10.0) -> None:
        """Block until everything enqueued so far is committed (or the recorder failed)."""
        target = self._enqueued
        self._queue.put((FLUSH, []))
        self._kick.set()
        deadline = time.monotonic() + timeout
        with self._flushed:
            while self._committed < target and self.error is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RecordingError(f"recording {self.path} did not flush in {timeout} s")
                self._flushed.wait(left)
        if self.error is not None:
            raise self.error

    def close(self, timeout: float = 10.0, *, ended: dict[str, Any] | None = None) -> None:
        """Commit what is queued, stop the thread, fold the ``-wal`` into the file and close
        it. ``ended``: the meta keys that say the run ended cleanly (``ended_wall_ns``),
        written only once everything else is in the file itself: when that final save fails
        (the disk is full) they are left out, and the error says where the data is."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._kick.set()
            self._thread.join(timeout)
        if self.error is None and not self._thread.is_alive():
            self._finish(ended or {})
        with contextlib.suppress(sqlite3.Error):
            self._con.close()  # folds the -wal in and removes it, unless the disk is full
        if self.error is not None:
            if not self._told_wal and self.path.is_file() and wal_has_data(wal_of(self.path)):
                # the same error object the run was told of (on_error) says it too
                self._told_wal = True
                self.error.args = (wal_left(self.path, self.error),)
            raise self.error

    def _finish(self, ended: dict[str, Any]) -> None:
        """The final save: every commit folded into the file itself (a checkpoint that
        must end with the ``-wal`` empty; SQLite's own one at close fails silently, which
        left a run on a full disk looking clean with its last part only in the ``-wal``),
        then ``ended``, folded in the same way."""
        try:
            self.folded = fold_and_end(self._con, ended)
        except (sqlite3.Error, OSError) as exc:
            self.error = RecordingError(describe_sqlite_error(self.path, exc))

    # --- writer thread --------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self._queue.get()  # idle: wait for the first row of the next commit
            pending: dict[str, list[Row]] = {}
            n_pending = 0
            deadline = time.monotonic() + self.commit_interval_s
            while item is not None and item[0] != FLUSH:
                pending.setdefault(item[0], []).extend(item[1])
                n_pending += len(item[1])
                item = self._next(deadline)
            if not self._commit(pending, n_pending) or item is None:
                return

    def _write_again(self) -> None:
        """The file was deleted (or replaced) while recording: everything is still in the
        open database, so it is written to a new file (the same path, or beside it if
        something else is there now) and recording goes on in that one. When its folder
        cannot take it (the disk filled up too), it goes to a new folder of its own in the
        system's temporary folder (``ratedial-rescued-XXXX``) rather than be lost with the
        deleted file."""
        old = self.path
        try:
            new, target = self._copy_to(_free_name(old))
            where = "to the same path" if target == old else f"to {target}"
        except (RecordingError, sqlite3.Error, OSError) as exc:
            why = exc if isinstance(exc, RecordingError) else describe_sqlite_error(old, exc)
            folder: Path | None = None
            try:  # a folder of its own (0700, this user's: a shared /tmp is everyone's)
                folder = Path(tempfile.mkdtemp(prefix="ratedial-rescued-"))
                new, target = self._copy_to(folder / old.name)
            except (RecordingError, sqlite3.Error, OSError) as exc2:
                if folder is not None:
                    with contextlib.suppress(OSError):
                        folder.rmdir()
                why2 = (exc2 if isinstance(exc2, RecordingError)
                        else describe_sqlite_error(Path(tempfile.gettempdir()), exc2))
                raise RecordingError(f"{old} was deleted while recording, and it cannot be "
                                     f"written again: {why}; nor in the temporary folder "
                                     f"({why2}): what it held is lost") from None
            where = f"to {target} (its own folder could not take it: {why})"
        with contextlib.suppress(sqlite3.Error):
            self._con.close()
        self._con, self.path = new, target
        self._ident = _identity(target)
        message = (f"{old} was deleted while recording: everything recorded so far was "
                   f"written again {where}, and recording goes on there")
        if self._on_notice is not None:
            self._on_notice(message)

    def _copy_to(self, target: Path) -> tuple[sqlite3.Connection, Path]:
        """The open database written to a new file ``target``; nothing is left of it (no
        empty file, no folder made for it) when that fails."""
        made = create_private_file(target)
        try:
            new = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
            try:
                self._con.backup(new)
                new.execute("PRAGMA synchronous = NORMAL")
            except sqlite3.Error:
                new.close()
                raise
        except (sqlite3.Error, OSError):
            remove_recording(target, made)
            raise
        return new, target

    def _next(self, deadline: float) -> tuple[str, list[Row]] | None:
        """The next queued item, or a flush marker at ``deadline``. Rows do not wake this
        thread: it sleeps to the deadline (or a flush or close) and then drains the queue, so
        the event loop's thread is not made to hand over the GIL for every frame."""
        while True:
            try:
                return self._queue.get_nowait()
            except queue.Empty:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                return (FLUSH, [])
            self._kick.wait(left)
            self._kick.clear()

    def _commit(self, pending: dict[str, list[Row]], n: int) -> bool:
        committed = False  # past COMMIT: a later failure (the checkpoint) must not redo it
        try:
            if pending:
                self._con.execute("BEGIN")
                # updates after inserts: a row and its update can share a commit
                for table in sorted(pending, key=lambda t: t in UPDATES):
                    insert_many(self._con, table, SQL[table], pending[table])
                self._con.execute("COMMIT")
                committed = True
                self.commits += 1
                self.rows_written += n
                now = time.monotonic()
                if now >= self._next_checkpoint:
                    self._next_checkpoint = now + CHECKPOINT_S
                    self._con.execute("PRAGMA wal_checkpoint(PASSIVE)")
            if time.monotonic() >= self._next_look:
                self._next_look = time.monotonic() + LOOK_S
                if _identity(self.path) != self._ident:
                    self._write_again()
        except (RecordingError, sqlite3.Error, OSError, ValueError, OverflowError) as exc:
            # RecordingError: from _write_again; ValueError, OverflowError: a value SQLite
            # cannot hold (text that is not UTF-8, an integer beyond 64 bits), which must stop
            # the recording in one line rather than end this thread with a traceback
            if not committed:
                with contextlib.suppress(sqlite3.Error):
                    self._con.execute("ROLLBACK")
            if not isinstance(exc, RecordingError) and _identity(self.path) != self._ident:
                # the file was deleted, and then its disk filled up (or the failure came
                # before the next look): what is still open is written again, elsewhere if
                # need be, and this commit goes there (unless it was in before the failure)
                self._next_look = 0.0
                return self._commit_after_loss(pending, n, committed=committed)
            self.error = exc if isinstance(exc, RecordingError) else RecordingError(
                describe_sqlite_error(self.path, exc))
            with self._flushed:
                self._flushed.notify_all()
            if self._on_error is not None:
                self._on_error(self.error)
            return False
        with self._flushed:
            self._committed += n
            self._flushed.notify_all()
        return True

    def _commit_after_loss(self, pending: dict[str, list[Row]], n: int, *,
                           committed: bool) -> bool:
        """The file is gone and a commit failed: write the open database again, then this
        commit's rows into the new file (``committed``: they were in before the failure,
        and were written again with the rest)."""
        try:
            self._write_again()
        except RecordingError as exc:
            self.error = exc
            with self._flushed:
                self._flushed.notify_all()
            if self._on_error is not None:
                self._on_error(exc)
            return False
        if not committed:
            return self._commit(pending, n)
        with self._flushed:
            self._committed += n
            self._flushed.notify_all()
        return True
