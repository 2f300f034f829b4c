"""The end of a recording: the final save folds the ``-wal`` into the file, or says why not.

An audit (2026-12-06) filled the disk exactly at a run's final save (the last checkpoint, at
close): the run exited 0 with nothing on stderr, the file said it had ended cleanly
(``ended_wall_ns``, ``run_end``) and a ``-wal`` and ``-shm`` stayed beside it, without which
the file read as damaged. SQLite's own checkpoint at close fails silently. What this proves
(docs/reliability.md "Disk fills", docs/recording.md):

* a final save that cannot be written is exit 1 and one line, the documented one followed by
  where the rest is (``PATH-wal``, keep it with the file) and how to fold it in;
* the recording is not marked as ended cleanly (no ``ended_wall_ns``), and nothing recorded
  is lost: the file and its ``-wal`` hold every sample, and a reader later folds them in;
* a program still reading the recording as the run ends is said in a note, not left silent.

The disk is made to fill at the final save deterministically: a file size limit
(``RLIMIT_FSIZE``, any user: SQLite's write then fails with EFBIG, "disk I/O error") or, as
root, a small tmpfs filled by a ballast file ("the disk ... is full"), set at the moment
``Recorder.close`` begins: the run's last commit then still goes into the ``-wal`` (it
reuses space the ``-wal`` had), and only the fold into the file needs more room.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from daemonrun import query, wait_until
from ratedial.virtual import VirtualDial
from tmpfs import tmpfs

pytestmark = [pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX"),
              pytest.mark.timeout(180)]


def ratedial(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ratedial", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def meta(path: Path) -> dict[str, str]:
    return dict(query(path, "SELECT key, value FROM meta"))


def copy_all(path: Path, folder: Path) -> Path:
    """The recording with its side files, as a careful user copies it."""
    folder.mkdir()
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{path}{suffix}").exists():
            shutil.copy(f"{path}{suffix}", folder / f"{path.name}{suffix}")
    return folder / path.name


RECORDER_SCRIPT = textwrap.dedent("""
    import os, resource, signal, sqlite3, sys
    from ratedial.recording.writer import Recorder, RecordingError
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
    path = sys.argv[1]
    rec = Recorder(path, meta={})
    dial = rec.add_dial("aa", "client", "virtual", "1", "virtual")
    epoch = rec.add_epoch(dial, 1, 0, {"rate_hz": 1000})
    def rows(a, b):
        return [(epoch, i, dial, i * 1000, i * 1_000_000, i, 50.0, 0, None, None, 0)
                for i in range(a, b)]
    rec.put_many("samples", rows(0, 20000))
    rec.flush()
    ck = sqlite3.connect(path)  # everything so far in the file itself: the -wal starts over
    assert ck.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[0] == 0
    ck.close()
    rec.put_many("samples", rows(20000, 21000))  # the last part: committed at close
    # the disk is full from here on: the file cannot grow by a page (the -wal still has room)
    resource.setrlimit(resource.RLIMIT_FSIZE,
                       (os.path.getsize(path) + 2048, resource.RLIM_INFINITY))
    try:
        rec.close(ended={"ended_wall_ns": 1})
    except RecordingError as exc:
        print("error:", exc)
    else:
        print("closed")
""")


def test_a_final_save_that_cannot_be_written_raises_and_keeps_everything(tmp_path):
    path = tmp_path / "r.ratedial"
    done = subprocess.run([sys.executable, "-c", RECORDER_SCRIPT, str(path)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    out = done.stdout.strip()
    assert out.startswith(f"error: recording stopped: cannot write {path}: "), out
    assert out.endswith(f"; its last part is in r.ratedial-wal: keep r.ratedial-wal and "
                        f"r.ratedial-shm beside r.ratedial (without them the file lacks its "
                        f"end or reads as damaged), and once the disk has room open it once "
                        f"(ratedial analyze {path}) to fold them in"), out
    assert Path(f"{path}-wal").stat().st_size > 0
    # the file with its -wal: every sample, and not marked as ended cleanly
    both = copy_all(path, tmp_path / "copy")
    assert query(both, "SELECT count(*), min(sample_index), max(sample_index) "
                       "FROM samples") == [(21000, 0, 20999)]
    assert "ended_wall_ns" not in meta(both)
    # with room again, a reader folds the -wal in and tidies up: the file alone is whole
    res = ratedial("export", str(path), "-o", str(tmp_path / "x"))
    assert res.returncode == 0, res.stderr
    assert f"{path} did not end cleanly" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("r.")) == \
        ["r.ratedial"]
    assert query(path, "PRAGMA integrity_check") == [("ok",)]
    assert query(path, "SELECT count(*) FROM samples") == [(21000,)]


def test_a_clean_close_folds_everything_into_the_file_and_marks_it_ended(tmp_path):
    from ratedial.recording.writer import Recorder

    path = tmp_path / "r.ratedial"
    rec = Recorder(path, meta={})
    rec.set_meta("x", 1)
    rec.close(ended={"ended_wall_ns": 7})
    assert rec.folded
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.ratedial"]
    assert meta(path)["ended_wall_ns"] == "7"


# ``ratedial run`` whose disk fills when the run's final save begins (Recorder.close)
RUN_SCRIPT = textwrap.dedent("""
    import os, resource, sys
    from ratedial.recording import writer
    from ratedial.entry import main
    how = sys.argv[1]  # (ratedial run ignores SIGXFSZ: a write past the limit fails, EFBIG)
    writer.CHECKPOINT_S = 1.0  # the file grows each second; the -wal holds one second
    close = writer.Recorder.close
    def full_at_close(self, *args, **kwargs):
        if how == "rlimit":
            resource.setrlimit(resource.RLIMIT_FSIZE,
                               (os.path.getsize(self.path) + 2048, resource.RLIM_INFINITY))
        else:  # a ballast file takes every free block of the (tmpfs) disk
            with open(self.path.parent / "ballast", "wb", buffering=0) as f:
                try:
                    while f.write(b"\\0" * 4096):
                        pass
                except OSError:
                    pass
        return close(self, *args, **kwargs)
    writer.Recorder.close = full_at_close
    sys.argv = ["ratedial", *sys.argv[2:]]
    main()
""")


@pytest.mark.parametrize("how", [
    "rlimit",
    pytest.param("tmpfs", marks=pytest.mark.skipif(
        os.geteuid() != 0 or sys.platform != "linux", reason="needs root to mount a tmpfs")),
])
def test_a_run_whose_disk_fills_at_its_final_save_exits_1_and_says_where_its_end_is(
        tmp_path, how):
    with contextlib.ExitStack() as stack:
        folder = tmp_path / "rec"
        if how == "tmpfs":
            stack.enter_context(tmpfs(folder, "size=16m"))
        else:
            folder.mkdir()
        path = folder / "w.ratedial"
        dial = stack.enter_context(VirtualDial(seed=41, subprocess=True))
        res = subprocess.run(
            [sys.executable, "-c", RUN_SCRIPT, how, "run", "--no-scan", "--broker", "none",
             "--json", "--port", dial.port, "--record", str(path), "--duration", "4"],
            capture_output=True, text=True, timeout=120, check=False)
        assert res.returncode == 1, (res.returncode, res.stderr)
        assert "Traceback" not in res.stderr + res.stdout, res.stderr
        errors = [ln for ln in res.stderr.splitlines() if ln.startswith("ratedial: error: ")]
        assert len(errors) == 1, res.stderr
        line = errors[0]
        said = ("recording stopped: the disk holding {p} is full" if how == "tmpfs"
                else "recording stopped: cannot write {p}: disk I/O error").format(p=path)
        assert line == (f"ratedial: error: {said}; its last part is in w.ratedial-wal: keep "
                        f"w.ratedial-wal and w.ratedial-shm beside w.ratedial (without them "
                        f"the file lacks its end or reads as damaged), and once the disk has "
                        f"room open it once (ratedial analyze {path}) to fold them in"), line
        summary = json.loads(res.stdout.strip().splitlines()[-1])
        assert summary["error"] == line.removeprefix("ratedial: error: ")
        assert summary["ended"] == "failed"
        received = summary["dials"][0]["received"]
        assert received >= 3000
        assert Path(f"{path}-wal").stat().st_size > 0
        both = copy_all(path, tmp_path / "copy")  # (the tmpfs is full: copied elsewhere)
        # the file and its -wal: every sample received, the run's end, not "ended cleanly"
        assert query(both, "SELECT count(*) FROM samples") == [(received,)]
        kinds = {k for (k,) in query(both, "SELECT kind FROM events")}
        assert "run_end" in kinds
        assert "ended_wall_ns" not in meta(both)


def test_a_program_reading_the_recording_as_the_run_ends_is_told_of(tmp_path):
    """A reader that holds an older state of the file (``analyze`` on a recording being
    made) keeps the final save from folding the last commits in: the run waits for it up to
    SQLite's busy timeout, then says the -wal must stay with the file; a reader opening it
    afterwards folds it in."""
    path = tmp_path / "r.ratedial"
    with VirtualDial(seed=42, subprocess=True) as dial:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ratedial", "run", "--no-scan", "--broker", "none", "--json",
             "--port", dial.port, "--record", str(path), "--duration", "4"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_until(path, "SELECT count(*) FROM samples", lambda n: n >= 500)
            reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            reader.execute("BEGIN")
            (held,) = reader.execute("SELECT count(*) FROM samples").fetchone()
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        reader.close()
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert "error" not in summary
    assert (f"ratedial: note: another program was reading {path} as the run ended, so its "
            f"last part is still only in r.ratedial-wal: keep r.ratedial-wal and "
            f"r.ratedial-shm beside it until it has been opened once after that program is "
            f"done (ratedial analyze {path} folds them in)") in " ".join(err.split()), err
    received = summary["dials"][0]["received"]
    assert received > held
    assert Path(f"{path}-wal").stat().st_size > 0
    res = ratedial("export", str(path), "-o", str(tmp_path / "x"))
    assert res.returncode == 0, res.stderr
    assert "did not end cleanly" not in res.stderr  # it did: its end was in the -wal
    assert not Path(f"{path}-wal").exists() and not Path(f"{path}-shm").exists()
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(path, alone / path.name)  # the file alone now holds the whole run
    assert query(alone / path.name, "SELECT count(*) FROM samples") == [(received,)]
    assert "ended_wall_ns" in meta(alone / path.name)
