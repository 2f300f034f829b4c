"""Real VLC (headless, as nobody), already playing when ``ratedial run`` starts: the attach
and rate changes of the 2026 players audit (F1, F2) against the real player.

VLC's first answer is up to a step (0.25-0.5 s) old, and its own position moves by -0.12 to
+0.37 s at a rate change; neither is a seek. The run must record the rate changes as
``media_rate`` and the one real seek as ``media_seek``, and nothing else as a seek.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest_media import have
from test_players_real import Vlc, video  # noqa: F401  (the session's test video)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.mark.skipif(os.geteuid() != 0, reason="starting VLC as user nobody needs root")
def test_attaching_to_a_playing_vlc_and_changing_its_rate_records_no_seek(tmp_path, video):  # noqa: F811
    if not have("cvlc"):
        pytest.skip("VLC is not installed (apt-get install vlc-bin vlc-plugin-base)")
    vlc = Vlc(video, "test-password", paused=False)
    rec = tmp_path / "attach.ratedial"
    try:
        vlc.status("?command=seek&val=20")
        time.sleep(1.5)  # VLC plays before ratedial looks
        run = subprocess.Popen(
            [sys.executable, "-m", "ratedial", "run", "--player", f"vlc:{vlc.port}",
             "--broker", "none", "--record", str(rec), "--duration", "9"],
            env={**os.environ, "RATEDIAL_VLC_PASSWORD": "test-password"},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(3.0)
        vlc.status("?command=rate&val=2")  # up: VLC's value jumps ahead at once
        time.sleep(1.5)
        vlc.status("?command=rate&val=1")  # down: it falls back a little at its next step
        time.sleep(1.5)
        vlc.status("?command=seek&val=60")  # the one real seek
        _, err = run.communicate(timeout=60)
        assert run.returncode == 0, err
    finally:
        vlc.close()
    with sqlite3.connect(rec) as db:
        events = [(k, d) for k, d in db.execute(
            "SELECT kind, data FROM events WHERE kind LIKE 'media%' ORDER BY event_id")]
    kinds = [k for k, _ in events]
    assert kinds[:2] == ["media_load", "media_play"], events
    assert kinds.count("media_rate") == 2, events
    seeks = [json.loads(d) for k, d in events if k == "media_seek"]
    assert len(seeks) == 1 and seeks[0]["to_s"] == pytest.approx(60.0, abs=0.001), events
