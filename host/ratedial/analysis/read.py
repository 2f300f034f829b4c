"""Reading recording files (docs/recording.md): read-only, in bounded memory.

Invariants:

* A recording is opened read-only (``mode=ro``); nothing here writes to it.
* Samples are never loaded whole: :func:`sample_groups` lets SQLite aggregate the samples of
  one epoch into groups of at most ``block`` consecutive sample indices that share media,
  player state and grid bin, and streams those groups out in chunks. The groups keep
  everything the alignment needs (order, media-time range, rating sum and count), at about
  one group per grid bin instead of one row per sample.
* Every query names its columns; unknown extra columns or tables in newer files are ignored.
* A recording in which no sample has a media time (no player was followed, or the player
  never reported a position) is read on its own timeline, *run time*: seconds since its
  first sample (``samples.host_ns``), as one pseudo-video of ``media_id`` 0 that is always
  "playing". ``Recording.timeline`` says which, and every output repeats it.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import statistics
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .._platform.lock import held
from ..recording.readonly import closed, connect_ro, uri
from ..recording.schema import FORMAT, FORMAT_VERSION, MediaState
from ..recording.walfile import fold, wal_has_data, wal_of, wal_pages
from .errors import NotARecording
from .guard import SQLITE_MAGIC, is_sqlite
from .labels import same_label
from .losses import Loss, read_losses, read_stalls, run_end_s
from .values import bad_sample, check_hello, check_scale, check_session, hello_rate

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Group ``bin`` values that are not grid bins: why the samples are not on the media timeline.
BIN_NO_MEDIA_TIME = -1  # media_s is NULL (no player, player lost, state unknown)
BIN_NOT_PLAYING = -2  # a media time is known, but the video was paused, seeking or ended

CHUNK_ROWS = 65_536

#: ``Recording.timeline`` values.
MEDIA_TIMELINE = "media"  # positions in the video, from the player
RUN_TIMELINE = "run"  # seconds since the recording's first sample: no media time at all
RUN_TIME_NOTE = ("no sample in the recording has a video time (no player was followed, or it "
                 "never reported a position): times are run time, seconds since the "
                 "recording's first sample, not positions in a video")


@dataclass(frozen=True, kw_only=True)
class Dial:
    dial_id: int
    uid: str
    rater: str | None
    board: str | None
    firmware: str | None
    backend: str | None


@dataclass(frozen=True, kw_only=True)
class Media:
    media_id: int
    path: str | None
    duration_s: float | None
    fps: float | None
    fingerprint: str | None
    timeline: str = MEDIA_TIMELINE

    @property
    def file_name(self) -> str | None:
        """The video's file name without its folders (a recording made on Windows read
        elsewhere too): what exports shared outside the clinic carry, not the folders of
        the recording computer, which may name the client."""
        return None if not self.path else self.path.replace("\\", "/").rsplit("/", 1)[-1]

    @property
    def name(self) -> str:
        if self.timeline == RUN_TIMELINE:
            return "run time (no video)"
        if self.path:
            return Path(self.path).name
        return (self.fingerprint or f"media {self.media_id}")[:24]


@dataclass(frozen=True, kw_only=True)
class Epoch:
    epoch_id: int
    dial_id: int
    boot_id: int
    rate_hz: float | None  # from the dial's HELLO
    last_index: int | None  # highest sample index recorded (None: no samples)


@dataclass(frozen=True, kw_only=True)
class Gap:
    """Missing samples ``[first_index, end_index)`` of an epoch, placed on the media timeline
    by the samples on either side (``None`` where a side has no media time)."""

    epoch_id: int
    dial_id: int
    first_index: int
    end_index: int
    reason: str
    seconds: float | None  # n_missing / sample rate
    media_from_s: float | None
    media_to_s: float | None
    # the videos of the samples on either side (None: no such sample, or no video then)
    media_ids: tuple[int | None, int | None] = (None, None)

    @property
    def n_missing(self) -> int:
        return self.end_index - self.first_index


@dataclass(frozen=True, kw_only=True)
class Clock:
    """The device-to-host clock model of one epoch, summarised."""

    epoch_id: int
    models: int
    uncertainty_us_median: float | None
    uncertainty_us_max: float | None
    skew_ppm: float | None  # the last fitted skew


# The scale points labelled when a recording names none (the default 0-100 scale's).
DEFAULT_ANCHORS: dict[float, str] = {0.0: "hindering", 50.0: "neutral", 100.0: "helpful"}


@dataclass(frozen=True, kw_only=True)
class Recording:
    path: Path
    meta: dict[str, Any]
    dials: tuple[Dial, ...]
    media: tuple[Media, ...]
    epochs: tuple[Epoch, ...]
    gaps: tuple[Gap, ...]
    clocks: tuple[Clock, ...]
    timeline: str = MEDIA_TIMELINE
    run_t0_ns: int | None = None  # run time 0 (host_ns of the first sample), run timeline only
    guesses: tuple[dict[str, Any], ...] = ()  # the guess-test notes (ratedial review --guess)
    losses: tuple[Loss, ...] = ()  # dials lost during the run, in order
    run_end_s: float | None = None  # the run's end on run time (run timeline, run_end event)
    scale_differs: int = 0  # collected: daemons whose ratings are on another scale
    stalls: dict[int, tuple[int, float]] = field(default_factory=dict)  # dial id: n, seconds

    def guess_of(self, rater: str) -> dict[str, Any] | None:
        """The newest guess test of ``rater``'s segments saved with this recording."""
        mine = [g for g in self.guesses if same_label(str(g.get("rater", "")), rater)]
        return mine[-1] if mine else None

    @property
    def session(self) -> dict[str, Any]:
        s = self.meta.get("session")
        return s if isinstance(s, dict) else {}

    @property
    def annotations(self) -> dict[str, Any]:
        a = self.meta.get("annotations")
        return a if isinstance(a, dict) else {}

    @property
    def scale(self) -> dict[str, Any]:
        s = self.meta.get("scale")
        return s if isinstance(s, dict) else {}

    @property
    def scale_range(self) -> tuple[float, float]:
        """``(minimum, maximum)`` of the scale (0-100 when the recording's is missing or
        impossible)."""
        sc = self.scale
        try:
            key = float(sc.get("minimum", 0.0)), float(sc.get("maximum", 100.0))
        except (TypeError, ValueError):
            key = 0.0, 100.0
        if not all(math.isfinite(v) for v in key) or key[1] <= key[0]:
            key = 0.0, 100.0
        return key

    def anchors(self) -> dict[float, str]:
        """Scale anchors, e.g. ``{0.0: "hindering", 50.0: "neutral", 100.0: "helpful"}``."""
        raw = self.scale.get("anchors")
        out: dict[float, str] = {}
        if isinstance(raw, dict):
            for k, v in raw.items():
                try:
                    out[float(k)] = str(v)
                except ValueError:
                    continue
        return dict(sorted(out.items()))

    def epochs_of(self, dial_id: int) -> list[Epoch]:
        return sorted((e for e in self.epochs if e.dial_id == dial_id), key=lambda e: e.epoch_id)


def connect(path: str | Path, *, write: bool = False) -> sqlite3.Connection:
    """Open a recording (read-only unless ``write``) after checking that it is one."""
    p = Path(path)
    if not p.is_file():
        raise NotARecording(f"{p}: no such recording file")
    cut = _cut_short(p)
    if cut:
        raise NotARecording(f"{p} is damaged: {cut}")
    # a closed file is opened immutable: no side files made (they would outlive a
    # read-only connection, and a finished recording look crashed)
    address = uri(p, "rw" if write else "ro", immutable=not write and closed(p))
    try:
        try:
            con = _check(sqlite3.connect(address, uri=True, check_same_thread=False))
        except sqlite3.OperationalError:
            if write or not _read_only_folder(p):
                raise
            con = _check(_immutable(p))
        row = con.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        version = con.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()
    except sqlite3.Error as exc:
        if "no such table" in str(exc):
            if not is_sqlite(p):  # SQLite reads an empty (or a 1-byte) file as empty
                raise NotARecording(f"{p} is not a ratedial recording (not an SQLite "
                                    "file)") from None
            hint = ""
            if _crash_copy(p):
                hint = ("; if it is a recording copied after a crash, its data is in "
                        f"{wal_of(p).name}: copy that file beside it too")
            raise NotARecording(f"{p} is not a ratedial recording (an SQLite file without "
                                f"ratedial's meta table{hint})") from None
        if write and is_sqlite(p) and (not os.access(p, os.W_OK) or _read_only_folder(p)):
            raise NotARecording(f"{p} cannot be changed: the file or its folder is read-only "
                                "(copy it to a folder you can write)") from None
        if is_sqlite(p):
            raise NotARecording(f"{p} is damaged: an SQLite file that SQLite cannot read "
                                f"({exc}; a truncated or partly copied file?)") from None
        raise NotARecording(f"{p} is not a ratedial recording (not an SQLite file with a "
                            "meta table)") from None
    if row is None or _json(row[0]) != FORMAT:
        con.close()
        raise NotARecording(f"{p} is not a ratedial recording (meta.format is not {FORMAT!r})")
    wrong = _wrong_version(None if version is None else version[0])
    if wrong:
        con.close()
        raise NotARecording(f"{p} {wrong}")
    return con


def _crash_copy(p: Path) -> bool:
    """``p`` looks like a recording copied without its ``-wal`` before its run ever folded
    it: an SQLite file in WAL mode (header bytes 18 and 19 are 2) without a single table,
    and no ``-wal`` beside it. Only then is "its data is in NAME-wal" a plausible hint (an
    audit, 2026-12-05: a 1-byte file and another program's SQLite file were given it)."""
    try:
        with open(p, "rb") as f:
            head = f.read(100)
        if len(head) < 100 or head[18:20] != b"\x02\x02" or wal_of(p).exists():
            return False
        con = connect_ro(p, immutable=True)
        try:
            return bool(con.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,))
        finally:
            con.close()
    except (OSError, sqlite3.Error):
        return False


def _cut_short(p: Path) -> str | None:
    """What is wrong with the size of an SQLite file, or None: it must be the page count
    times the page size its 100-byte header gives. SQLite reads a last page that is cut
    short as if zeros were there, and its integrity check sees nothing when the cut falls in
    a record: a recording cut by 1-12 bytes was read whole, its last sample's rating 55.0
    read as 0.0 (an audit, 2026-12-05). While a ``-wal`` with data is beside it, the file
    holds the recording as of its last fold (or part of a fold a crash cut off) and the
    ``-wal`` the rest: the file may then be shorter than its header says, by pages (or part
    of a page: a fold cut off by a full disk or a file size limit) that are all in the
    ``-wal``'s committed frames (the fold writes them whole). Anything else is cut short:
    folding it would have SQLite pad the file with zeros to its header's size, and the cut
    read as zeros without a word (and the file rewritten; a review, 2026-12-05)."""
    try:
        with open(p, "rb") as f:
            head = f.read(100)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return None  # SQLite says why it cannot be read
    if not head.startswith(SQLITE_MAGIC):
        return None  # not SQLite at all: said by the caller
    if len(head) < 100:
        return (f"an SQLite file cut short within its 100-byte header ({size} bytes; a "
                "truncated or partly copied file?)")
    raw = int.from_bytes(head[16:18], "big")
    page = 65536 if raw == 1 else raw
    if page < 512 or page & (page - 1):
        return None
    pages = int.from_bytes(head[28:32], "big")
    if pages == 0 or head[24:28] != head[92:96]:  # no valid in-header size (SQLite < 3.7)
        pages = -(-size // page)
    if size == pages * page:
        return None
    wal = wal_of(p)
    with_wal = wal_has_data(wal)
    if with_wal and (
            # whole pages after the header's: the fold truncates them
            (size > pages * page and size % page == 0)
            # pages missing or cut short (a fold stopped by a full disk writes part of one):
            # every one is in the -wal, whose copy the fold writes whole
            or (size < pages * page
                and set(range(size // page + 1, pages + 1)) <= wal_pages(wal, page))):
        return None
    with held(p) as free:
        if not free:  # being recorded: its writer may be folding the -wal in right now
            return None
    said = f"{size} bytes, where its header says {pages} pages of {page} bytes"
    if size < pages * page:
        return f"an SQLite file cut short ({said}; a truncated or partly copied file?)"
    return (f"an SQLite file with {size - pages * page} bytes after its last page ({said}; "
            "bytes appended in a copy?)")


def _wrong_version(raw: str | None) -> str | None:
    """What is wrong with ``meta.format_version`` (its stored text), or None: it must be
    the JSON number 1. Text such as ``"1"`` was refused as "version 1; this ratedial reads
    version 1" (an audit, 2026-12-06)."""
    ours = f"this ratedial reads version {FORMAT_VERSION}"
    if raw is None:
        return f"has no meta.format_version; {ours}"
    value = _json(raw)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return (f"has meta.format_version {str(raw)[:40]}, which is not a number; {ours}, "
                f"written as the JSON number {FORMAT_VERSION}")
    if value != FORMAT_VERSION:
        return f"has recording format version {value}; {ours}"
    return None


def _fold_wal(p: Path) -> bool:
    """Fold what a crashed run left in ``FILE-wal`` into the recording itself, so that the
    file alone holds everything from now on (docs/recording.md): only when no process writes
    it (the recorder's lock is free) and its folder can be written; quietly otherwise (the
    reader still reads the ``-wal``). The contents do not change, only where they are. With
    no other connection open, SQLite then removes the emptied ``-wal`` and the ``-shm`` (an
    empty pair left beside a folded file read as a crash's). True when it folded."""
    wal = wal_of(p)
    try:
        if not wal.is_file() or _read_only_folder(p):
            return False
    except OSError:
        return False
    with held(p) as free:
        if not free:  # being recorded: its writer folds it
            return False
        try:
            con = sqlite3.connect(uri(p, "rw"), uri=True)
            try:
                return fold(con)
            finally:
                con.close()
        except sqlite3.Error:
            return False


def _check(con: sqlite3.Connection) -> sqlite3.Connection:
    """``con``, once SQLite has read its schema (it opens files lazily)."""
    try:
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error:
        con.close()
        raise
    return con


def _read_only_folder(p: Path) -> bool:
    """The recording's folder cannot be written (read-only media, an archive share): SQLite
    cannot create the ``-shm`` file a reader of a WAL database needs."""
    return not os.access(p.parent, os.W_OK) or _on_read_only_fs(p)


def _on_read_only_fs(p: Path) -> bool:
    if sys.platform == "win32":
        return False
    try:
        return bool(os.statvfs(p.parent).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _immutable(p: Path) -> sqlite3.Connection:
    """Open a recording in a folder that cannot be written: as an immutable file, which is
    exact when everything is in the main file. A ``-wal`` file with contents (a recording
    whose daemon was killed, copied as it was) would be ignored that way, so it is refused."""
    wal = wal_of(p)
    if wal.is_file() and wal.stat().st_size > 0:
        raise NotARecording(
            f"{p} is in a folder that cannot be written and has an unfinished {wal.name} "
            "file, which SQLite can read only where it can write: copy both files to a "
            "writable folder")
    return connect_ro(p, immutable=True, check_same_thread=False)


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _intact(con: sqlite3.Connection, p: Path) -> None:
    """SQLite's integrity check: bytes changed inside a recording (a bad copy, a failing disk)
    can leave it readable with wrong values in it (a sample's time, its index); a damaged
    file is refused whole, never read in part (docs/reliability.md). About 0.3 s per million
    samples."""
    try:
        (found,) = con.execute("PRAGMA integrity_check(1)").fetchone()
    except sqlite3.Error as exc:
        found = str(exc)
    if found != "ok":
        con.close()
        said = " ".join(str(found).replace("*** in database main ***", "").split())
        raise NotARecording(f"{p} is damaged: SQLite's integrity check says: {said} (bytes "
                            "changed in a copy or on the disk?); use an intact copy") from None


def read_recording(path: str | Path) -> Recording:
    """Everything about a recording except its samples."""
    p = Path(path)
    con = connect(p)
    _intact(con, p)
    if wal_of(p).exists():  # once per recording read, before its samples are; with
        con.close()  # this connection closed, the folding one is the last and tidies up
        _fold_wal(p)
        con = connect(p)
    try:
        raw = dict(con.execute("SELECT key, value FROM meta").fetchall())
        check_scale(p, raw.get("scale"))
        check_session(p, raw.get("session"))
        meta = {k: _json(v) for k, v in raw.items()}
        dials = tuple(Dial(dial_id=r[0], uid=r[1], rater=r[2], board=r[3], firmware=r[4],
                           backend=r[5])
                      for r in con.execute("SELECT dial_id, uid, rater, board, firmware, backend "
                                           "FROM dials ORDER BY dial_id"))
        media = tuple(Media(media_id=r[0], path=r[1], duration_s=r[2], fps=r[3],
                            fingerprint=r[4])
                      for r in con.execute("SELECT media_id, path, duration_s, fps, fingerprint "
                                           "FROM media ORDER BY media_id"))
        epochs = []
        for eid, did, boot, hello in con.execute(
                "SELECT epoch_id, dial_id, boot_id, hello FROM epochs ORDER BY epoch_id"):
            rate = hello_rate(check_hello(p, eid, hello))
            last = con.execute("SELECT MAX(sample_index) FROM samples WHERE epoch_id=?",
                               (eid,)).fetchone()[0]
            epochs.append(Epoch(epoch_id=eid, dial_id=did, boot_id=boot,
                                rate_hz=rate, last_index=last))
        _check_owners(con, p, dials, epochs)
        rates = {e.epoch_id: e.rate_hz for e in epochs}
        timeline, run_t0 = MEDIA_TIMELINE, None
        if con.execute("SELECT 1 FROM samples WHERE media_s IS NOT NULL LIMIT 1").fetchone() \
                is None:
            run_t0 = con.execute("SELECT MIN(host_ns) FROM samples").fetchone()[0]
            if run_t0 is not None:
                timeline = RUN_TIMELINE
                media = (Media(media_id=0, path=None, duration_s=None, fps=None,
                               fingerprint=None, timeline=RUN_TIMELINE),)
        gaps = []
        for eid, did, first, end, reason in con.execute(
                "SELECT epoch_id, dial_id, first_index, end_index, reason FROM gaps "
                "ORDER BY epoch_id, first_index").fetchall():
            before = con.execute("SELECT media_s, media_id FROM samples WHERE epoch_id=? AND "
                                 "sample_index=?", (eid, first - 1)).fetchone()
            after = con.execute("SELECT media_s, media_id FROM samples WHERE epoch_id=? AND "
                                "sample_index=?", (eid, end)).fetchone()
            rate = rates.get(eid)
            gaps.append(Gap(epoch_id=eid, dial_id=did, first_index=first, end_index=end,
                            reason=reason, seconds=None if rate is None else (end - first) / rate,
                            media_from_s=None if before is None else before[0],
                            media_to_s=None if after is None else after[0],
                            media_ids=(None if before is None else before[1],
                                       None if after is None else after[1])))
        if timeline == RUN_TIMELINE:
            gaps = [_run_gap(con, g, run_t0) for g in gaps]
        clocks = []
        for eid in sorted(rates):
            rows = con.execute("SELECT uncertainty_ns, skew_ppm FROM clock_models "
                               "WHERE epoch_id=? ORDER BY host_ns", (eid,)).fetchall()
            unc = [r[0] / 1000 for r in rows if r[0] is not None]
            clocks.append(Clock(epoch_id=eid, models=len(rows),
                                uncertainty_us_median=statistics.median(unc) if unc else None,
                                uncertainty_us_max=max(unc) if unc else None,
                                skew_ppm=rows[-1][1] if rows else None))
        losses = read_losses(con, run_t0 if timeline == RUN_TIMELINE else None)
        stalls = read_stalls(con)
        run_end = run_end_s(con, run_t0 if timeline == RUN_TIMELINE else None)
        (scale_differs,) = con.execute("SELECT count(*) FROM events WHERE kind = "
                                       "'scale_differs'").fetchone()
        guesses = []
        for (data,) in con.execute("SELECT data FROM notes WHERE kind = 'guess' "
                                   "ORDER BY note_id"):
            g = _json(data)
            if isinstance(g, dict):
                guesses.append(g)
    except sqlite3.Error as exc:
        raise NotARecording(f"{p}: cannot read the recording: {exc}") from None
    finally:
        con.close()
    return Recording(path=p, meta=meta, dials=dials, media=media, epochs=tuple(epochs),
                     gaps=tuple(gaps), clocks=tuple(clocks), timeline=timeline, losses=losses,
                     scale_differs=scale_differs, stalls=stalls, run_end_s=run_end,
                     run_t0_ns=run_t0, guesses=tuple(guesses))


def _check_owners(con: sqlite3.Connection, p: Path, dials: tuple[Dial, ...],
                  epochs: list[Epoch]) -> None:
    """Every sample belongs to an epoch of the ``epochs`` table, and every epoch to a dial of
    the ``dials`` table: samples without them belong to no rater, and a recording whose rows
    there were deleted was said to have "no sample has a media time or a host time" though
    every sample had one (an audit, 2026-12-05). Refused whole, as a damaged file is. The
    samples' epochs are found through their primary key, one lookup per epoch."""
    known = {d.dial_id for d in dials}
    for e in epochs:
        if e.dial_id not in known:
            raise NotARecording(
                f"{p} is damaged: its epoch {e.epoch_id} names dial {e.dial_id}, which has no "
                "row in its dials table (rows deleted?), so those samples belong to no "
                "rater; use an intact copy")
    have = {e.epoch_id for e in epochs}
    (eid,) = con.execute("SELECT MIN(epoch_id) FROM samples").fetchone()
    while eid is not None:
        if eid not in have:
            raise NotARecording(
                f"{p} is damaged: it has samples of epoch {eid}, which has no row in its "
                "epochs table (rows deleted?), so they belong to no dial; use an intact copy")
        (eid,) = con.execute("SELECT MIN(epoch_id) FROM samples WHERE epoch_id > ?",
                             (eid,)).fetchone()


def _run_gap(con: sqlite3.Connection, g: Gap, t0_ns: int | None) -> Gap:
    """A gap placed on run time by the samples on either side."""
    def at(index: int) -> float | None:
        row = con.execute("SELECT host_ns FROM samples WHERE epoch_id=? AND sample_index=?",
                          (g.epoch_id, index)).fetchone()
        return None if row is None or row[0] is None or t0_ns is None \
            else (row[0] - t0_ns) / 1e9

    return replace(g, media_from_s=at(g.first_index - 1), media_to_s=at(g.end_index))


@dataclass(frozen=True, kw_only=True)
class Groups:
    """The samples of one epoch, aggregated (see the module docstring), in recording order.

    ``bin`` is the grid bin ``floor(media_s * rate_hz)`` of samples taken while the video
    played, or :data:`BIN_NO_MEDIA_TIME` / :data:`BIN_NOT_PLAYING` for excluded samples.
    """

    first_index: IntArray
    media_id: IntArray  # -1 for NULL
    state: IntArray
    bin: IntArray
    media_min: FloatArray
    media_max: FloatArray
    rating_sum: FloatArray
    count: IntArray

    def take(self, mask: npt.NDArray[np.bool_]) -> Groups:
        return Groups(first_index=self.first_index[mask], media_id=self.media_id[mask],
                      state=self.state[mask], bin=self.bin[mask],
                      media_min=self.media_min[mask], media_max=self.media_max[mask],
                      rating_sum=self.rating_sum[mask], count=self.count[mask])


_GROUP_SQL = """
SELECT MIN(sample_index), COALESCE(media_id, -1), media_state, bin,
       COALESCE(MIN(media_s), -1.0), COALESCE(MAX(media_s), -1.0), SUM(rating), COUNT(*),
       SUM(typeof(rating) NOT IN ('integer', 'real'))
FROM (SELECT sample_index, media_id, media_state, media_s, rating,
             CASE WHEN media_s IS NULL OR media_s < 0 THEN {no_time}
                  WHEN media_state = {playing}
                       THEN CAST(media_s * :rate + 1e-9 AS INTEGER)
                  ELSE {not_playing} END AS bin
      FROM {source})
GROUP BY sample_index / :block, media_id, media_state, bin
"""
_MEDIA_SOURCE = "samples WHERE epoch_id = :epoch"
# Run time: every sample with a host time is "playing" the pseudo-video 0.
_RUN_SOURCE = (f"(SELECT sample_index, 0 AS media_id, {int(MediaState.PLAYING)} AS media_state,"
               " (host_ns - :t0) * 1e-9 AS media_s, rating FROM samples"
               " WHERE epoch_id = :epoch)")


def _group_sql(source: str) -> str:
    return _GROUP_SQL.format(no_time=BIN_NO_MEDIA_TIME, playing=int(MediaState.PLAYING),
                             not_playing=BIN_NOT_PLAYING, source=source)


def sample_groups(path: str | Path, epoch_id: int, *, rate_hz: float, block: int,
                  run_t0_ns: int | None = None) -> Groups:
    """Aggregate the samples of one epoch for a grid of ``rate_hz`` (see :class:`Groups`).

    ``block`` bounds how many consecutive sample indices one group may span; keep
    ``block / sample rate`` below the rewind tolerance so that a rewind never merges two
    passes over the same bin into one group. With ``run_t0_ns`` the samples are placed on
    run time (see the module docstring) instead of media time.
    """
    con = connect(path)
    try:
        if run_t0_ns is None:
            cur = con.execute(_group_sql(_MEDIA_SOURCE),
                              {"rate": rate_hz, "epoch": epoch_id, "block": block})
        else:
            cur = con.execute(_group_sql(_RUN_SOURCE), {"rate": rate_hz, "epoch": epoch_id,
                                                        "block": block, "t0": run_t0_ns})
        parts: list[npt.NDArray[np.float64]] = []
        while rows := cur.fetchmany(CHUNK_ROWS):
            part = np.array(rows, dtype=np.float64).reshape(len(rows), 9)
            if part[:, 8].any() or not np.isfinite(part[:, 4:7]).all():
                raise bad_sample(con, path, epoch_id)
            parts.append(part)
    except (ValueError, TypeError):  # a media_s (a MIN or MAX) that is text or a blob
        raise bad_sample(con, path, epoch_id) from None
    except sqlite3.Error as exc:
        raise NotARecording(f"{path}: cannot read samples: {exc}") from None
    finally:
        con.close()
    a = np.concatenate(parts) if parts else np.zeros((0, 9))
    a = a[np.argsort(a[:, 0], kind="stable")]
    as_int = a[:, [0, 1, 2, 3, 7]].astype(np.int64)
    return Groups(first_index=as_int[:, 0], media_id=as_int[:, 1], state=as_int[:, 2],
                  bin=as_int[:, 3], media_min=a[:, 4].copy(), media_max=a[:, 5].copy(),
                  rating_sum=a[:, 6].copy(), count=as_int[:, 4])
