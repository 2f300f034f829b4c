"""Closing the terminal a run was started in (a real hangup, not `kill -HUP`) ends it the
same clean way as Ctrl+C or SIGTERM (README): an audit (2026-12-04) found exit 1 with
"Input/output error", the live view's last table written to the dead terminal, and a
recording left looking crashed (no ended_wall_ns)."""

from __future__ import annotations

import json
import os
import select
import sqlite3
import sys
import time

import pytest

from daemonrun import query
from ratedial.virtual import VirtualDial

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="a POSIX terminal hangup")


def test_closing_the_terminal_ends_the_run_cleanly(tmp_path):
    rec = tmp_path / "hup.ratedial"
    with VirtualDial(seed=23, subprocess=True) as dial:
        pid, master = run_on_a_terminal(dial.port, rec)
        try:
            shown = until_recording(master, rec)
            assert query_count(rec) >= 1000, shown[-500:]
        finally:
            os.close(master)  # the terminal window is closed: SIGHUP, then EIO on writes
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    (ended,) = query(rec, "SELECT value FROM meta WHERE key = 'ended_wall_ns'")[0]
    assert isinstance(json.loads(ended), int)
    kinds = [k for (k,) in query(rec, "SELECT kind FROM events")]
    assert kinds[-1] == "run_end"


def query_count(rec) -> int:
    try:
        return int(query(rec, "SELECT count(*) FROM samples")[0][0])
    except sqlite3.Error:  # not created yet, or its schema not yet written
        return 0



def test_kill_hup_with_the_terminal_open_still_shows_the_summary(tmp_path):
    """SIGHUP sent by a process manager while the terminal is still there: the run ends
    cleanly and its summary is shown on the terminal (output is only dropped when the
    terminal itself is gone)."""
    import signal

    rec = tmp_path / "hup.ratedial"
    with VirtualDial(seed=29, subprocess=True) as dial:
        pid, master = run_on_a_terminal(dial.port, rec)
        try:
            shown = until_recording(master, rec)
            os.kill(pid, signal.SIGHUP)
            while True:  # the rest of what it prints, to its end
                if select.select([master], [], [], 30)[0]:
                    try:
                        chunk = os.read(master, 65536)
                    except OSError:  # EIO: the child has closed the terminal
                        break
                    if not chunk:
                        break
                    shown += chunk
                else:
                    break
        finally:
            os.close(master)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    flat = "".join(shown.decode(errors="replace").split())  # the terminal wraps lines
    assert f"recording:{rec}" in flat and "inspectit(schema:docs/recording.md):sqlite3" in flat, \
        flat[-800:]


def run_on_a_terminal(port: str, rec) -> tuple[int, int]:
    """``ratedial run`` with a pseudo-terminal as its stdin, stdout and stderr."""
    import pty

    pid, master = pty.fork()
    if pid == 0:
        os.execv(sys.executable, [sys.executable, "-m", "ratedial", "run", "--port", port,
                                  "--no-scan", "--broker", "none", "--record", str(rec),
                                  "--duration", "60"])
    return pid, master


def until_recording(master: int, rec, n: int = 1000) -> bytes:
    """What the terminal shows (the live view) until ``n`` samples are recorded."""
    shown = b""
    end = time.monotonic() + 60
    while time.monotonic() < end and query_count(rec) < n:
        if select.select([master], [], [], 0.1)[0]:
            shown += os.read(master, 65536)
    return shown


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_stop_signal_the_moment_the_recording_appears_is_a_clean_stop(tmp_path, sig):
    """Found by a black-box test: in the first ~50 ms after the recording file appeared,
    SIGTERM killed the run (status 143, a file without tables left behind that refused the
    next run of the same command) and Ctrl+C was lost (the run went on for 10 minutes). Now
    the stop handlers are in place before the file is made."""
    import signal
    import subprocess

    rec = tmp_path / "early.ratedial"
    with VirtualDial(seed=31, subprocess=True) as dial:
        proc = subprocess.Popen([sys.executable, "-m", "ratedial", "run", "--port", dial.port,
                                 "--no-scan", "--broker", "none", "--record", str(rec),
                                 "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            while not rec.exists():  # the moment it appears, not a time
                assert proc.poll() is None, proc.communicate()
            proc.send_signal(getattr(signal, sig))
            out, err = proc.communicate(timeout=60)  # Ctrl+C lost: this times out
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert "Traceback" not in err
    if proc.returncode == 1:  # stopped before the dial answered: nothing kept
        assert "stopped before a dial answered" in err and not rec.exists()
    else:
        assert proc.returncode == 0, (proc.returncode, err)
        assert json.loads(out.strip().splitlines()[-1])["path"] == str(rec)
        (ended,) = query(rec, "SELECT value FROM meta WHERE key = 'ended_wall_ns'")[0]
        assert isinstance(json.loads(ended), int)
