"""`export` and the raters' scales: a note when they differ, whatever the formats, each
series' scale in the sidecar, and the assumed 0-100 scale (never ``{}``) for a recording
without one (recording.md, the sidecar)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from ratedial.analysis.synth import Play, SynthMedia, SynthRater, constant, write_recording

ONE_TO_SEVEN = {"minimum": 1.0, "maximum": 7.0, "start": 4.0, "counts_per_point": 10.0,
                "anchors": {"1": "hindering", "4": "neutral", "7": "helpful"}}
DEFAULT = {"minimum": 0.0, "maximum": 100.0, "start": 50.0, "counts_per_point": 1.0,
           "anchors": {"0": "hindering", "50": "neutral", "100": "helpful"}}


def export(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ratedial", "export", *args], text=True,
                          capture_output=True, timeout=120, check=False)


def _rec(path: Path, role: str, value: float, scale=None) -> str:
    write_recording(path, [SynthRater(label=role, uid=role[:2], curve=constant(value),
                                      script=(Play(start_s=0, end_s=10),))],
                    media=SynthMedia(duration_s=10.0), rate_hz=50,
                    session={"dyad": "P01"}, scale=scale)
    return str(path)


def test_raters_on_different_scales_are_said_and_each_scale_is_in_the_sidecar(tmp_path):
    """An audit (2026-12-05): client 0-100 and therapist 1-7 exported to CSV with no word,
    the sidecar naming only 0-100, and the wide table putting 80.0 and 6.0 side by side."""
    recs = [_rec(tmp_path / "c.ratedial", "client", 80),
            _rec(tmp_path / "t.ratedial", "therapist", 6, ONE_TO_SEVEN)]
    res = export(*recs, "-o", str(tmp_path / "out" / "P01"), "--format", "csv-wide")
    assert res.returncode == 0, res.stderr
    assert res.stderr.strip() == (
        "ratedial: note: the raters' scales differ (client 0 to 100, therapist 1 to 7): "
        "ratings are exported as recorded, in different units side by side; each series' "
        "scale is in the sidecar (dyads[].series[].scale)")
    side = json.loads((tmp_path / "out" / "P01.json").read_text())
    scales = {s["rater"]: s["scale"] for s in side["dyads"][0]["series"]}
    assert scales == {"client": DEFAULT, "therapist": ONE_TO_SEVEN}
    # the top-level scale is the first series' (the first dyad's first role: the client's),
    # whatever the order of the files given (recording.md; an audit read "first recording")
    assert side["scale"] == DEFAULT
    back = export(recs[1], recs[0], "-o", str(tmp_path / "back" / "P01"), "--format",
                  "csv-wide")
    assert back.returncode == 0, back.stderr
    assert json.loads((tmp_path / "back" / "P01.json").read_text())["scale"] == DEFAULT
    same = export(recs[0], "-o", str(tmp_path / "one" / "C"), "--format", "csv-long")
    assert same.returncode == 0 and same.stderr == "", same.stderr


def test_a_recording_without_a_scale_gets_the_assumed_one(tmp_path):
    path = Path(_rec(tmp_path / "s.ratedial", "client", 60))
    with sqlite3.connect(path) as con:
        con.execute("DELETE FROM meta WHERE key = 'scale'")
    res = export(str(path), "-o", str(tmp_path / "x"), "--format", "csv-long")
    assert res.returncode == 0 and res.stderr == "", res.stderr
    side = json.loads((tmp_path / "x.json").read_text())
    assert side["scale"] == DEFAULT
    assert side["dyads"][0]["series"][0]["scale"] == DEFAULT
