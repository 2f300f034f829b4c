"""The recorder writes real SQLite files: private, committed promptly, crash-safe."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time

import pytest

from ratedial.recording.schema import FORMAT, FORMAT_VERSION
from ratedial.recording.writer import Recorder, RecordingError


def sample_row(epoch_id, dial_id, i):
    return (epoch_id, i, dial_id, 1000 * i, 10**9 + 10**6 * i, i, 50.0 + i % 7, 0, None, None, 5)


def test_file_is_private_and_holds_what_was_written(tmp_path):
    path = tmp_path / "recordings" / "D07" / "run.ratedial"  # new folders: made private too
    rec = Recorder(path, meta={"software_version": "test"})
    dial = rec.add_dial("e66038b7132f4a2c", "client", "pico", "0.1.0", "pio")
    epoch = rec.add_epoch(dial, 0x1234, 5, {"rate_hz": 1000})
    rec.put_many("samples", (sample_row(epoch, dial, i) for i in range(1000)))
    rec.event(7, dial, "dial_connected", {"port": "/dev/ttyACM0"})
    rec.flush()
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700
    for suffix in ("", "-wal", "-shm"):
        p = path.parent / f"run.ratedial{suffix}"
        if p.exists():
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, suffix
    rec.close()
    con = sqlite3.connect(path)
    meta = dict(con.execute("SELECT key, value FROM meta"))
    assert json.loads(meta["format"]) == FORMAT
    assert json.loads(meta["format_version"]) == FORMAT_VERSION
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT count(*), min(sample_index), max(sample_index) FROM samples"
                       ).fetchone() == (1000, 0, 999)
    assert con.execute("SELECT uid, rater FROM dials").fetchall() == [
        ("e66038b7132f4a2c", "client")]
    assert con.execute("SELECT kind FROM events").fetchall() == [("dial_connected",)]


def test_the_file_alone_holds_what_was_committed_before_the_last_checkpoint(tmp_path,
                                                                             monkeypatch):
    """An audit (2026-12-04): after a kill -9, the recording file alone (copied without its
    -wal) held no table at all: SQLite folds the -wal in only every 4 MB. The writer now
    checkpoints at least every CHECKPOINT_S (0 here: at every commit)."""
    import shutil

    from ratedial.recording import writer

    monkeypatch.setattr(writer, "CHECKPOINT_S", 0.0, raising=False)
    path = tmp_path / "run.ratedial"
    rec = Recorder(path, meta={"software_version": "test"})
    dial = rec.add_dial("e66038b7132f4a2c", "client", "pico", "0.1.0", "pio")
    epoch = rec.add_epoch(dial, 0x1234, 5, {"rate_hz": 1000})
    rec.put_many("samples", (sample_row(epoch, dial, i) for i in range(500)))
    rec.flush()
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(path, alone / "run.ratedial")  # as a crash leaves it: no -wal beside it
    rec.close()
    con = sqlite3.connect(alone / "run.ratedial")
    assert con.execute("SELECT count(*) FROM samples").fetchone() == (500,)
    con.close()


def test_an_existing_file_is_never_overwritten(tmp_path):
    path = tmp_path / "x.ratedial"
    path.write_text("precious")
    with pytest.raises(RecordingError, match="already exists"):
        Recorder(path, meta={})
    assert path.read_text() == "precious"


def test_rows_are_committed_within_the_interval_without_flush(tmp_path):
    path = tmp_path / "run.ratedial"
    rec = Recorder(path, meta={}, commit_interval_s=0.1)
    rec.put_many("samples", (sample_row(1, 1, i) for i in range(10)))
    reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    deadline = time.monotonic() + 5
    seen = 0
    while time.monotonic() < deadline and seen < 10:
        seen = reader.execute("SELECT count(*) FROM samples").fetchone()[0]
    assert seen == 10
    rec.close()


def test_disk_full_stops_with_one_line_error(tmp_path):
    path = tmp_path / "full.ratedial"
    errors = []
    rec = Recorder(path, meta={}, on_error=errors.append)
    rec._con.execute("PRAGMA max_page_count = 40")  # SQLite's own "disk full" (SQLITE_FULL)
    with pytest.raises(RecordingError, match="full") as info:
        for i in range(100_000):
            rec.put("samples", sample_row(1, 1, i))
            if i % 1000 == 999:
                rec.flush()
    assert "\n" not in str(info.value)
    assert errors and errors[0] is rec.error
    with pytest.raises(RecordingError):
        rec.put("samples", sample_row(1, 1, 10**6))
    with pytest.raises(RecordingError):
        rec.close()


@pytest.mark.parametrize("bad", ["kl\udce9", 2**64])
def test_a_value_sqlite_cannot_hold_stops_with_one_line_error(tmp_path, bad):
    """An audit (2026-12-05): a rater label with a Latin-1 byte (kept by Python as a lone
    surrogate) ended the writer thread with a UnicodeEncodeError traceback; every later row
    was lost while the run went on reporting samples received and exit 0. It is now the
    recording's error, one line, told to on_error (which stops a run)."""
    path = tmp_path / "bad.ratedial"
    errors = []
    rec = Recorder(path, meta={}, on_error=errors.append)
    rec.put("dials", (1, "e66038b7132f4a2c", "x", "pico", "0.1.0", "pio"))
    rec.flush()
    rec.put("dials", (2, "e66038b7132f4a2d", bad, "pico", "0.1.0", "pio"))
    with pytest.raises(RecordingError, match="recording stopped: cannot write") as info:
        rec.flush(timeout=10)
    assert "\n" not in str(info.value)
    assert errors and errors[0] is rec.error
    with pytest.raises(RecordingError):
        rec.close()
    con = sqlite3.connect(path)  # what was committed before stays
    assert con.execute("SELECT uid FROM dials").fetchall() == [("e66038b7132f4a2c",)]


@pytest.mark.skipif(os.geteuid() != 0 or sys.platform != "linux", reason="needs root for a tmpfs")
def test_a_real_full_filesystem_stops_with_one_line_error(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)],
                      capture_output=True, check=False).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        rec = Recorder(mnt / "run.ratedial", meta={})
        with pytest.raises(RecordingError, match="full"):
            for i in range(200_000):
                rec.put("samples", sample_row(1, 1, i))
                if i % 2000 == 1999:
                    rec.flush()
        with pytest.raises(RecordingError):
            rec.close()
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


WRITER = textwrap.dedent("""
    import sys, time
    from ratedial.recording.writer import Recorder
    rec = Recorder(sys.argv[1], meta={}, commit_interval_s=0.25)
    i = 0
    t0 = time.monotonic_ns()
    print("ready", flush=True)
    while True:
        now = time.monotonic_ns()
        while i < (now - t0) // 1_000_000:   # 1 kHz of samples, stamped with their host time
            rec.put("samples", (1, i, 1, i * 1000, t0 + i * 1_000_000, i, 50.0, 0, None, None, 5))
            i += 1
        time.sleep(0.001)
""")


def test_kill_9_loses_at_most_the_commit_interval(tmp_path):
    path = tmp_path / "killed.ratedial"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "ready"
    reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    deadline = time.monotonic() + 20
    while reader.execute("SELECT count(*) FROM samples").fetchone()[0] < 2000:
        assert time.monotonic() < deadline, "writer made no progress"
    reader.close()
    killed_at = time.monotonic_ns()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    n, last_ns = con.execute("SELECT count(*), max(host_ns) FROM samples").fetchone()
    assert n == con.execute("SELECT max(sample_index) + 1 FROM samples").fetchone()[0]
    lost_ms = (killed_at - last_ns) / 1e6
    assert 0 <= lost_ms <= 250 + 50, lost_ms  # commit interval plus scheduling slack


def test_a_recording_deleted_on_a_disk_that_then_fills_is_rescued_elsewhere(tmp_path,
                                                                          monkeypatch):
    """An audit (2026-12-05): the recording deleted, then its disk filled: the run stopped
    with "the disk holding X is full" naming a file that no longer existed, everything it
    had recorded was gone, and once a 0-byte file was left behind. What the open database
    still holds is written to the system's temporary folder, and recording goes on there."""
    import tempfile

    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                      capture_output=True, check=False).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    spare = tmp_path / "tmp"
    spare.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spare))
    notices: list[str] = []
    try:
        path = mnt / "run.ratedial"
        rec = Recorder(path, meta={}, on_notice=notices.append)
        for i in range(3000):
            rec.put("samples", sample_row(1, 1, i))
        rec.flush()
        for p in mnt.glob("run.ratedial*"):
            p.unlink()
        # and the disk fills up
        with open(mnt / "ballast", "wb", buffering=0) as f, contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 65536)
        for i in range(3000, 6000):
            rec.put("samples", sample_row(1, 1, i))
        rec.flush()
        rec.close()
        (rescued,) = spare.glob("ratedial-rescued-*/run.ratedial")  # a folder of its own
        assert rec.path == rescued and (os.stat(rescued.parent).st_mode & 0o777) == 0o700
        with sqlite3.connect(rescued) as con:
            assert con.execute("SELECT count(*), min(sample_index), max(sample_index) "
                               "FROM samples").fetchone() == (6000, 0, 5999)
        assert (os.stat(rescued).st_mode & 0o777) == 0o600
        assert len(notices) == 1 and f"written again to {rescued}" in notices[0]
        assert "is full" in notices[0]
        assert not list(mnt.glob("run*"))  # no empty file left where it could not be written
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_failure_after_the_commit_is_not_written_twice_into_the_rescued_file(tmp_path):
    """A review (2026-12-05): a commit that went in, then a checkpoint that failed (a full
    disk) on a deleted file, was written again and then its rows once more: 'UNIQUE
    constraint failed: events.event_id' stopped the recording (rows without a key would have
    been doubled)."""

    class CheckpointFails:
        def __init__(self, real: sqlite3.Connection) -> None:
            self.real, self.armed = real, False

        def execute(self, sql: str, *args):
            if self.armed and sql.startswith("PRAGMA wal_checkpoint"):
                self.armed = False
                raise sqlite3.OperationalError("database or disk is full")
            return self.real.execute(sql, *args)

        def __getattr__(self, name: str):
            return getattr(self.real, name)

    errors: list[Exception] = []
    notices: list[str] = []
    rec = Recorder(tmp_path / "r.ratedial", meta={}, on_error=errors.append,
                   on_notice=notices.append)
    rec.flush()
    rec._con = CheckpointFails(rec._con)  # the one fault that cannot be made for real here
    os.unlink(rec.path)  # the recording is deleted ...
    rec._con.armed = True  # ... and the next checkpoint meets a full disk
    rec._next_checkpoint = 0.0
    rec.event(1, None, "marker", {"x": 1})
    for i in range(5):
        rec.put("samples", sample_row(1, 1, i))
    rec.flush()
    rec.close()
    assert errors == [] and len(notices) == 1 and "written again" in notices[0]
    with sqlite3.connect(rec.path) as con:
        assert con.execute("SELECT count(*) FROM events WHERE kind = 'marker'").fetchone() == (1,)
        assert con.execute("SELECT count(*) FROM samples").fetchone() == (5,)
