"""Seek edges with a real headless mpv while a dial records (issue 15).

During a seek mpv's ``time-pos`` is the seek's *target* (75 s in a 60 s video, or the
requested time of an inexact seek that lands on an earlier keyframe). The recording must hold
only positions the player shows: never past the end, the state SEEKING (with the last shown
position) until mpv says where it landed, then that position; ``media_seek`` events name the
landed position. Frame steps move the paused position by one frame each way.

The video is 20 s at 30 fps with a keyframe every 3 s, so an inexact seek lands on a multiple
of 3 s. The tests drive the player through its own interface and wait on what the recording
holds (no sleeps as synchronisation). VLC (polled) gets the same seek past the end.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest_media import Daemon, Dial, MpvClient, have

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

DURATION = 20.0
GOP_S = 3.0
FRAME = 1 / 30


@pytest.fixture(scope="module")
def video() -> Iterator[Path]:
    if not have("ffmpeg", "mpv"):
        pytest.skip("needs ffmpeg and mpv (apt-get install ffmpeg mpv)")
    d = Path(tempfile.mkdtemp(prefix="ratedial-seek-"))
    d.chmod(0o755)  # VLC runs as nobody
    path = d / "gop3.mp4"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size=160x90:rate=30:duration={DURATION}",
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
         "-g", "90", "-keyint_min", "90", "-sc_threshold", "0", str(path)],
        check=True, timeout=120)
    path.chmod(0o644)
    yield path
    shutil.rmtree(d, ignore_errors=True)


def n_seeks(n: int) -> str:
    return f"SELECT 1 WHERE (SELECT count(*) FROM events WHERE kind = 'media_seek') >= {n}"


def paused_at(pos: float, after_ns: int) -> str:
    return (f"SELECT 1 FROM samples WHERE media_state = 2 AND abs(media_s - {pos!r}) < 1e-6 "
            f"AND host_ns > {after_ns}")


def test_mpv_seek_edges_record_what_the_player_shows(tmp_path, video):
    sock = str(tmp_path / "mpv.sock")
    mpv = subprocess.Popen(
        ["mpv", "--vo=null", "--ao=null", "--idle=yes", "--pause", "--no-terminal",
         "--keep-open=yes", f"--input-ipc-server={sock}", str(video)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dial = Dial(60)
    daemon = None
    client = None
    landed: dict[str, float] = {}
    try:
        client = MpvClient(sock)
        duration = client.wait_duration()
        assert abs(duration - DURATION) < 0.1
        daemon = Daemon(tmp_path, dial.path, f"mpv:{sock}")
        daemon.wait_for("SELECT 1 FROM events WHERE kind = 'media_load'")
        daemon.wait_for("SELECT 1 FROM samples WHERE media_state = 2")

        # 1. Playing, seek past the end: mpv says time-pos = 35 during the seek.
        client.command("set_property", "pause", False)
        daemon.wait_for("SELECT 1 FROM samples WHERE media_state = 1 AND media_s > 0.3")
        client.command("seek", 35, "absolute")
        daemon.wait_for(n_seeks(1))
        daemon.wait_for("SELECT 1 FROM samples WHERE media_state = 4", timeout=20)
        landed["end"] = client.command("get_property", "time-pos")

        # 2. Paused, exact seek to 12.7, then relative -5: the target 7.7, a keyframe at 6.
        client.command("set_property", "pause", True)
        client.command("seek", 12.7, "absolute+exact")
        daemon.wait_for(n_seeks(2))
        client.command("seek", -5, "relative")
        daemon.wait_for(n_seeks(3))
        landed["relative"] = client.command("get_property", "time-pos")
        daemon.wait_for(paused_at(landed["relative"], time.monotonic_ns()))

        # 3. Frame steps while paused: one frame forward, one back (a seek in mpv).
        client.command("frame-step")
        step_deadline = time.monotonic() + 5
        while client.command("get_property", "time-pos") == landed["relative"]:
            assert time.monotonic() < step_deadline, "frame-step did not move mpv"
            time.sleep(0.01)  # polling mpv for its own state change, not synchronising us
        landed["step"] = client.command("get_property", "time-pos")
        daemon.wait_for(paused_at(landed["step"], time.monotonic_ns()))
        client.command("frame-back-step")
        daemon.wait_for(n_seeks(4))
        landed["back"] = client.command("get_property", "time-pos")
        daemon.wait_for(paused_at(landed["back"], time.monotonic_ns()))
        out = daemon.stop()
        assert daemon.proc.returncode == 0, out
    finally:
        if daemon is not None:
            daemon.stop()
        if client is not None:
            client.close()
        mpv.terminate()
        mpv.wait(10)
        dial.close()

    rec = daemon.recording
    positions = [m for (m,) in rec.query("SELECT media_s FROM samples WHERE media_s IS NOT NULL")]
    assert len(positions) > 1000
    assert max(positions) <= duration, max(positions)
    assert min(positions) >= 0.0
    assert 35.0 not in positions  # the past-the-end target
    assert not any(abs(m - 7.7) < 1e-6 for m in positions)  # the relative seek's target

    # The landed positions as mpv reports them, and the events say the same.
    assert duration - 2 * FRAME < landed["end"] <= duration
    assert landed["relative"] == pytest.approx(6.0, abs=1e-6)  # the keyframe, not 7.7
    assert landed["step"] == pytest.approx(landed["relative"] + FRAME, abs=1e-3)
    assert landed["back"] == pytest.approx(landed["relative"], abs=1e-3)
    seeks = [json.loads(d) for _, k, d in rec.events("media_seek")]
    assert len(seeks) == 4, seeks
    assert seeks[0]["to_s"] == pytest.approx(landed["end"], abs=1e-6), seeks
    assert seeks[1]["to_s"] == pytest.approx(12.7, abs=FRAME), seeks
    assert seeks[2]["to_s"] == pytest.approx(landed["relative"], abs=1e-6), seeks
    assert seeks[3]["to_s"] == pytest.approx(landed["back"], abs=1e-6), seeks

    # During a seek: state SEEKING, and the position is one shown before it (or unknown).
    seeking = [m for (m,) in rec.query("SELECT media_s FROM samples WHERE media_state = 3")]
    assert seeking, "no sample fell inside a seek"
    assert all(m is None or m <= duration for m in seeking)
    ended = [m for (m,) in rec.query("SELECT media_s FROM samples WHERE media_state = 4")]
    assert ended and all(m is None or m == pytest.approx(landed["end"]) for m in ended)


def test_vlc_seek_past_the_end_is_clamped_to_the_video(tmp_path, video):
    """VLC (3.0, polled) answers a seek past the end by pausing where it was; ratedial
    records that, never a time past the end; then an absolute and a relative seek land."""
    if not have("cvlc"):
        pytest.skip("VLC is not installed (apt-get install vlc-bin vlc-plugin-base)")
    from test_players_real import Vlc

    vlc = Vlc(video, "test-password")
    dial = Dial(60)
    daemon = None
    try:
        daemon = Daemon(tmp_path, dial.path, f"vlc:127.0.0.1:{vlc.port}",
                        env={"RATEDIAL_VLC_PASSWORD": "test-password"})
        daemon.wait_for("SELECT 1 FROM events WHERE kind = 'media_load'")
        daemon.wait_for("SELECT 1 FROM samples WHERE media_state = 2")
        vlc.status("?command=pl_forceresume")
        daemon.wait_for("SELECT 1 FROM samples WHERE media_state = 1 AND media_s > 0.5")
        vlc.status("?command=seek&val=35")
        after = time.monotonic_ns()
        daemon.wait_for(f"SELECT 1 FROM samples WHERE media_state IN (2, 4) "
                        f"AND host_ns > {after + 500_000_000}", timeout=20)
        (seeks_before,), = daemon.recording.query(
            "SELECT count(*) FROM events WHERE kind = 'media_seek'")
        vlc.status("?command=seek&val=12")
        daemon.wait_for(n_seeks(seeks_before + 1), timeout=20)
        vlc.status("?command=seek&val=-5")  # relative, paused
        daemon.wait_for(n_seeks(seeks_before + 2), timeout=20)
        out = daemon.stop()
        assert daemon.proc.returncode == 0, out
    finally:
        if daemon is not None:
            daemon.stop()
        vlc.close()
        dial.close()

    rec = daemon.recording
    (duration,), = rec.query("SELECT duration_s FROM media")
    assert duration == pytest.approx(DURATION, abs=0.1)
    positions = [m for (m,) in rec.query("SELECT media_s FROM samples WHERE media_s IS NOT NULL")]
    assert max(positions) <= duration and min(positions) >= 0.0
    seeks = [json.loads(d) for _, k, d in rec.events("media_seek")]
    assert all(0.0 <= s["to_s"] <= duration for s in seeks), seeks
    assert seeks[-2]["to_s"] == pytest.approx(12.0, abs=0.5), seeks
    assert seeks[-1]["to_s"] == pytest.approx(7.0, abs=0.5), seeks
