"""An mpv the rater started, given a file it cannot play: the run's line and the
``media_error`` event name that file, as docs/players.md's example does (2026 players audit,
F6: they said "the file it was given" and ``path`` null). Real headless mpv, ``ratedial run``
as a subprocess.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest_media import MpvClient, have

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def test_a_file_a_self_started_mpv_cannot_play_is_named(tmp_path):
    if not have("mpv"):
        pytest.skip("mpv is not installed (apt-get install mpv)")
    sock = tmp_path / "mpv.sock"
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video\n")
    mpv = subprocess.Popen(["mpv", "--idle=yes", "--vo=null", "--ao=null", "--no-config",
                            f"--input-ipc-server={sock}"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    rec = tmp_path / "r.ratedial"
    try:
        client = MpvClient(str(sock))
        run = subprocess.Popen(
            [sys.executable, "-m", "ratedial", "run", "--player", f"mpv:{sock}",
             "--broker", "none", "--record", str(rec), "--duration", "4"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
        time.sleep(1.5)  # ratedial follows mpv by now
        client.command("loadfile", str(bad))
        _, err = run.communicate(timeout=60)
        client.close()
        assert run.returncode == 0, err
    finally:
        mpv.terminate()
        mpv.wait(10)
    assert (f"mpv could not play {bad} (unrecognized file format): media times stay unknown"
            in err), err
    with sqlite3.connect(rec) as db:
        (data,), = db.execute("SELECT data FROM events WHERE kind = 'media_error'")
    assert json.loads(data) == {"player": "mpv", "path": str(bad),
                                "error": "unrecognized file format"}
