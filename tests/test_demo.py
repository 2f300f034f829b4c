"""`make demo` runs `ratedial demo`: a test video played in headless mpv, two scripted virtual
dials recorded and published, then the analysis of the video it just followed."""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import sqlite3
import stat
import subprocess
import sys

import pytest

from ratedial.demo import CLIENT_CURVE, THERAPIST_CURVE, demo_window_s, script_csv
from ratedial.virtual import parse_script

pytestmark = pytest.mark.skipif(shutil.which("mpv") is None or shutil.which("ffmpeg") is None,
                                reason="needs mpv and ffmpeg (make sysdeps)")

SECONDS = 16.0


def _span(text: str) -> tuple[float, float]:
    a, b = text.split("-")
    return tuple(int(x.split(":")[0]) * 60 + float(x.split(":")[1]) for x in (a, b))  # type: ignore[return-value]


def test_scripts_are_valid_virtual_dial_scripts():
    for curve in (CLIENT_CURVE, THERAPIST_CURVE):
        for lead in (0.0, 3.0):
            text = script_csv(curve, 40.0, lead_s=lead)
            assert parse_script(text) is not None
            rows = [tuple(map(float, r.split(","))) for r in text.splitlines()[1:]]
            assert rows[0] == (0.0, 50.0) and rows[-1][0] == pytest.approx(40.0 + lead)


def test_demo_follows_the_video_and_ends_with_its_analysis(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    proc = subprocess.run([sys.executable, "-m", "ratedial", "demo", "--seconds", str(SECONDS)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=150,
                          check=False, env=env)
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr[-2000:] + out[-2000:]
    assert "Traceback" not in out + proc.stderr
    assert "embedded MQTT broker on mqtt://127.0.0.1:" in out
    assert "headless: no display" in out
    (path,) = (tmp_path / "recordings").glob("demo-*.ratedial")
    (video,) = (tmp_path / "recordings").glob("demo-*.mp4")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not list((tmp_path / "recordings").glob("*-wal"))  # no SQLite leftovers

    # The recording: both raters, on the media timeline of the video the demo made.
    con = sqlite3.connect(path)
    (media_path, duration), = con.execute("SELECT path, duration_s FROM media").fetchall()
    assert os.path.basename(media_path) == video.name
    assert duration == pytest.approx(SECONDS, abs=0.1)
    playing = dict(con.execute(
        "SELECT d.rater, max(media_s) - min(media_s) FROM samples s JOIN dials d "
        "USING (dial_id) WHERE media_state = 1 GROUP BY d.rater"))
    # samples lost and recorded as gaps (a virtual dial starved by a busy machine drops
    # samples on the device, at 1 kHz): that share of the video is honestly unrated
    lost = dict(con.execute(
        "SELECT d.rater, coalesce(sum(end_index - first_index), 0) FROM dials d "
        "LEFT JOIN gaps g USING (dial_id) GROUP BY d.rater"))
    con.close()
    assert set(playing) == {"client", "therapist"}
    assert all(v > SECONDS - 0.5 for v in playing.values()), playing

    # Not a terminal: no sentence is wrapped.
    assert re.search(r"inspect it \(schema: docs/recording.md\):\n"
                     r" +sqlite3 \S+ 'SELECT count\(\*\) FROM samples'\n", out)

    # The analysis of that video.
    assert "the analysis (ratedial analyze):" in out
    assert re.search(rf"demo · {re.escape(video.name)} · 00:16 · grid 10 Hz", out)
    rated = re.search(r"\n  rated +(\S+) \((\d+)%\) +(\S+) \((\d+)%\)\n", out)
    assert rated is not None, out[out.find("rated"):][:300]
    allowed = {r: 97 - math.ceil(100 * n / 1000 / SECONDS) for r, n in lost.items()}
    assert int(rated.group(2)) >= allowed["client"], (rated.group(0), lost)
    assert int(rated.group(4)) >= allowed["therapist"], (rated.group(0), lost)
    segs = dict(re.findall(r"  client +(B1|T1)  (\S+) ", out))
    # Playback starts when the scripts' lead-in is over, or later when the daemon was slow
    # to follow mpv on a busy machine: then the curves land earlier in the video.
    dip = (0.36 * SECONDS, 0.48 * SECONDS)  # the shared dip, in video time
    b1 = _span(segs["B1"])
    assert dip[0] - 2.5 <= b1[0] and b1[1] <= dip[1] + 1.0, (b1, dip)
    # The divergence (client helpful, therapist hindering) is the most divergent window.
    (first,) = re.findall(r"\n    1  (\S+) +([\d.]+)   client ([\d.]+), therapist ([\d.]+)",
                          out)
    start, end = _span(first[0])
    assert start >= 0.52 * SECONDS - 2.5 and end <= 0.76 * SECONDS + 1.0, first
    assert float(first[2]) > 70 and float(first[3]) < 40, first
    assert demo_window_s(SECONDS) == 2.0
    assert "2 s windows" in out
    assert "best lag" in out

    # Figures exist and are PNG; the next commands name the recording.
    figs = re.findall(r"^  (recordings/\S+\.png)$", out, re.MULTILINE)
    assert len(figs) == 2
    for f in figs:
        assert (tmp_path / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "next, try:" in out
    assert f"ratedial review {path.relative_to(tmp_path)} --of client" in out
    assert f"ratedial render {path.relative_to(tmp_path)} --window 2 -o demo-rated.mp4" in out

    # The analyze command it suggests gives the numbers it printed (an audit, 2026-12-04:
    # the demo searched ±2 s with its own block and bootstrap, the command ±10 s).
    (cmd,) = re.findall(r"^  ratedial (analyze .* --json)$", out, re.MULTILINE)
    res = subprocess.run([sys.executable, "-m", "ratedial", *shlex.split(cmd)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=150, check=False)
    assert res.returncode == 0, res.stderr
    pair = json.loads(res.stdout)["dyads"][0]["pair"]
    printed = re.search(r"Pearson r +(\S+)  95% CI \[(\S+), (\S+)\]", out)
    assert printed is not None
    est = pair["pearson"]
    assert printed.groups() == tuple(f"{est[k]:.2f}" for k in ("value", "ci_low", "ci_high"))
    lag = re.search(r"best lag .*searched ±(\S+) s", out)
    assert lag is not None and f"--max-lag {lag.group(1)} " in cmd


def test_demo_without_a_video_analyses_on_run_time(tmp_path):
    env = {**os.environ, "PATH": "/nonexistent"}  # no ffmpeg, no mpv
    proc = subprocess.run([sys.executable, "-m", "ratedial", "demo", "--seconds", "8"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          check=False, env=env)
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr[-2000:] + out[-2000:]
    assert "note: ffmpeg and mpv not found" in out
    assert "demo · run time (no video) · 00:0" in out
    assert "  timeline: RUN TIME. No sample in the recording has a video time" in out
    assert "ratedial review" not in out  # nothing to replay without a video
