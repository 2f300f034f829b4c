"""``ratedial run`` when its recording cannot be written: a disk that fills during the run, and
a recording path that cannot be created. Real tmpfs mounts (as root), real SQLite, a virtual
dial (the real firmware under MicroPython behind a pty).

What it proves (docs/reliability.md, "Disk fills"):

* the daemon stops on its own, exits non-zero and says so in one line on stderr naming the
  file ("the disk holding ... is full"), with no traceback;
* the file it leaves on the full disk opens read-only and passes ``PRAGMA integrity_check``;
  every index in it is received or in exactly one gap; every sample that was committed before
  the disk filled is still there, and the samples lost are only those after the last commit
  (at most the commit interval plus batching before the disk filled);
* a recording path that cannot be created (a read-only file system, a directory under one, a
  parent that is a file, a disk already full) is one line and a non-zero exit, before anything
  is recorded.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
import time
from pathlib import Path

import pytest

from daemonrun import (
    assert_exact_accounting,
    epoch_indices,
    query,
    recorded,
    start_daemon,
    wait_until,
)
from ratedial.virtual import VirtualDial
from tmpfs import tmpfs

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0 or sys.platform != "linux",
                       reason="needs root to mount a tmpfs"),
    pytest.mark.timeout(180),
]

N_SAMPLES = "SELECT count(*) FROM samples"
COMMIT_NS = 250_000_000  # the recorder commits at least every 250 ms
SLACK_NS = 250_000_000  # batching on the way from the dial to the recorder, scheduling


def fill(directory: Path) -> int:
    """Write a ballast file until the file system is full; return when it was (monotonic ns)."""
    chunk = b"\0" * 65536
    with open(directory / "ballast", "wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    with contextlib.suppress(OSError), open(directory / "ballast", "ab", buffering=0) as f:
        while f.write(b"\0"):  # the last partial block
            pass
    return time.monotonic_ns()


def one_line(err: str) -> str:
    """The one error line. (With --json, stderr also carries the live view's status lines.)"""
    assert "Traceback" not in err, err
    errors = [ln for ln in err.splitlines() if "error" in ln.lower()]
    assert len(errors) == 1, err
    assert err.strip().splitlines()[-1] == errors[0], err  # and it is the last word
    return errors[0]


def test_disk_fills_during_the_run_stops_with_one_line_and_keeps_what_was_committed(tmp_path):
    with tmpfs(tmp_path / "small", "size=4m", "mode=0700") as mnt, \
            VirtualDial(seed=23, subprocess=True) as dial:
        rec = mnt / "run.ratedial"
        proc = start_daemon("--port", dial.port, "--broker", "none", "--record", str(rec))
        try:
            wait_until(rec, N_SAMPLES, lambda n: n >= 3000)
            before = recorded(rec)  # committed: a reader sees only committed rows
            full_ns = fill(mnt)
            out, err = proc.communicate(timeout=20)  # it must stop on its own
            stopped_ns = time.monotonic_ns()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()

        # --- one clear line, a non-zero exit --------------------------------------------------
        assert proc.returncode == 1, (proc.returncode, err)
        said = f"ratedial: error: recording stopped: the disk holding {rec} is full"
        # what SQLite could not fold into the file (the disk is full) is in its -wal: the
        # line says so, for without it the file alone lacks its end (an audit, 2026-12-06)
        wal = rec.with_name("run.ratedial-wal")
        if wal.exists() and wal.stat().st_size > 0:
            said += ("; its last part is in run.ratedial-wal: keep run.ratedial-wal and "
                     "run.ratedial-shm beside run.ratedial (without them the file lacks its "
                     "end or reads as damaged), and once the disk has room open it once "
                     f"(ratedial analyze {rec}) to fold them in")
        assert one_line(err) == said
        assert "Traceback" not in out, out
        # --json still prints the counts, with the line the run ended with (a black-box
        # test found stdout empty: a script got nothing to read)
        stopped = json.loads(out.strip().splitlines()[-1])
        assert stopped["error"] == one_line(err).removeprefix("ratedial: error: ")
        assert stopped["path"] == str(rec) and stopped["dials"][0]["received"] >= 3000
        assert stopped["ended"] == "failed"  # neither its --duration nor a stop signal
        assert (stopped_ns - full_ns) / 1e9 < 5.0  # noticed at the next commit, not later

        # --- the file on the still-full disk: intact, exact, nothing committed lost ----------
        assert query(rec, "PRAGMA integrity_check") == [("ok",)]
        assert_exact_accounting(rec)
        after = recorded(rec)
        assert before <= after, len(before - after)
        assert len(after) >= len(before) >= 3000
        ((_, idx),) = epoch_indices(rec).items()  # one dial, one boot
        assert idx == list(range(idx[0], idx[-1] + 1))  # no gaps on a clean link
        (last_ns,) = query(rec, "SELECT max(host_ns) FROM samples")[0]
        lost_window_ns = full_ns - last_ns  # what was taken before the disk filled and is lost
        assert lost_window_ns < COMMIT_NS + SLACK_NS, lost_window_ns / 1e6
        meta = dict(query(rec, "SELECT key, value FROM meta"))
        assert "ended_wall_ns" not in meta  # the file itself says the run did not end cleanly
        kinds = {k for (k,) in query(rec, "SELECT kind FROM events")}
        assert "run_start" in kinds and "run_end" not in kinds
        print(f"disk full: {len(after)} samples kept ({len(after) - len(before)} committed after "
              f"the snapshot), last sample {lost_window_ns / 1e6:.0f} ms before the disk was "
              f"full, daemon stopped {(stopped_ns - full_ns) / 1e6:.0f} ms after")


def _read_only_mount(tmp: Path, stack: contextlib.ExitStack) -> Path:
    return stack.enter_context(tmpfs(tmp / "ro", "size=1m", "ro"))


def _full_mount(tmp: Path, stack: contextlib.ExitStack) -> Path:
    mnt = stack.enter_context(tmpfs(tmp / "full", "size=256k"))
    fill(mnt)
    return mnt


def _a_file(tmp: Path, stack: contextlib.ExitStack) -> Path:
    (tmp / "plain").write_text("not a directory\n")
    return tmp / "plain"


@pytest.mark.parametrize(("make", "sub", "reason"), [
    (_read_only_mount, "run.ratedial", "Read-only file system"),
    (_read_only_mount, "sessions/D07/run.ratedial", "Read-only file system"),
    (_a_file, "run.ratedial", "part of the path is a file"),
    (_a_file, "D07/run.ratedial", "part of the path is a file"),
    (_full_mount, "run.ratedial", "is full"),
], ids=["read-only-fs", "dir-on-read-only-fs", "parent-is-a-file", "under-a-file",
        "already-full"])
def test_a_recording_path_that_cannot_be_written_is_one_line(tmp_path, make, sub, reason):
    with contextlib.ExitStack() as stack:
        base = make(tmp_path, stack)
        rec = base / sub
        # The recording is created before any dial is opened: no dial is needed to fail.
        proc = start_daemon("--port", str(tmp_path / "no-dial"), "--broker", "none",
                            "--record", str(rec), "--duration", "5")
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 1, (proc.returncode, err)
        line = one_line(err)
        assert line.startswith("ratedial: error: ") and str(rec) in line, line
        assert reason in line, line
        assert "recording stopped" not in line  # nothing was recorded: nothing "stopped"
        assert "Traceback" not in out, out
        if reason != "is full":
            assert not rec.exists()


def test_outputs_after_the_recorder_failed_are_dropped_quietly(tmp_path):
    """Between a failed commit and the daemon's stop, frames still arrive: the sink must not
    raise into the event loop (that printed a traceback in the fault session once)."""
    from ratedial.daemon.sinks import RecorderSink
    from ratedial.outputs import EventOut
    from ratedial.recording.writer import Recorder, RecordingError

    rec = Recorder(tmp_path / "r.ratedial", meta={})
    try:
        rec.error = RecordingError("recording stopped: the disk holding it is full")
        sink = RecorderSink(rec, raters=lambda uid: None)
        sink.handle([EventOut("", 1, "run_end", {})])  # would raise from Recorder.put
    finally:
        rec.error = None
        rec.close()


def test_a_recording_deleted_while_recording_is_written_again_and_goes_on(tmp_path):
    """Found by a black-box test: `rm -rf` of the recording's folder mid-run lost every
    sample (SQLite went on writing to the deleted file) while the run exited 0 with a
    summary naming a file that no longer existed."""
    import json
    import shutil
    import signal

    folder = tmp_path / "recs"
    path = folder / "a.ratedial"
    with VirtualDial(seed=81, subprocess=True) as dial:
        proc = start_daemon("--port", dial.port, "--broker", "none", "--record", str(path),
                            "--duration", "120")
        try:
            before = wait_until(path, "SELECT count(*) FROM samples", lambda n: n >= 1000)
            shutil.rmtree(folder)
            # written again at the same path, and recording goes on in it
            wait_until(path, "SELECT count(*) FROM events WHERE kind = 'recording_restored'",
                       lambda n: n == 1)
            wait_until(path, "SELECT count(*) FROM samples", lambda n: n >= before + 1000)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert "was deleted while recording" in err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["path"] == str(path)
    (n,) = query(path, "SELECT count(*) FROM samples")[0]
    assert summary["dials"][0]["received"] == n
    assert_exact_accounting(path)  # from the first index on: nothing of before was lost
    assert (os.stat(path).st_mode & 0o777) == 0o600
