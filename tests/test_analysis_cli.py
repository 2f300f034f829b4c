"""The analysis commands as a user meets them: one-line errors, a fast --help, annotate."""

from __future__ import annotations

import json
import subprocess
import sys

from jsonschemas import analyze_json
from ratedial.analysis.notes import read_notes
from ratedial.analysis.synth import (
    NoPlayer,
    SynthMedia,
    SynthRater,
    constant,
    piecewise,
    simple_rater,
    write_recording,
)


def run(*args, stdin=""):
    return subprocess.run([sys.executable, "-m", "ratedial", *args], input=stdin, text=True,
                          capture_output=True, timeout=60, check=False)


def test_help_does_not_import_the_analysis_stack():
    code = ("import sys; from ratedial.cli import cli; "
            "print(sorted(m for m in ('numpy', 'scipy', 'pandas', 'matplotlib') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
    res = run("--help")
    assert all(c in res.stdout for c in ("analyze", "export", "plot", "review", "annotate"))


def test_errors_are_one_line(tmp_path):
    junk = tmp_path / "junk.ratedial"
    junk.write_text("hello")
    res = run("analyze", str(junk))
    assert res.returncode == 1
    assert res.stderr.strip().count("\n") == 0 and "not a ratedial recording" in res.stderr
    rec = tmp_path / "r.ratedial"
    write_recording(rec, [simple_rater("client", constant(50), 10)], rate_hz=50,
                    media=SynthMedia(duration_s=10.0))
    res = run("analyze", str(rec), "--band", "60")
    assert res.returncode == 2 and "--band" in res.stderr
    res = run("analyze", str(rec), "--band", "60:40")
    assert res.returncode == 2 and "neutral band" in res.stderr
    res = run("export", str(rec), "-o", str(tmp_path / "x"), "--format", "xlsx")
    assert res.returncode == 2 and "csv-long" in res.stderr
    res = run("review", str(rec), "--no-video", "--of", "therapist")
    assert res.returncode == 2 and "no rater 'therapist'" in res.stderr


def test_analyze_json_for_one_rater(tmp_path):
    rec = tmp_path / "r.ratedial"
    write_recording(rec, [simple_rater("client", constant(60), 90)], rate_hz=50,
                    media=SynthMedia(duration_s=90.0))
    res = run("analyze", str(rec), "--json")
    assert res.returncode == 0, res.stderr
    (dyad,) = analyze_json(res.stdout)["dyads"]
    assert dyad["pair"] is None
    (r,) = dyad["raters"]
    assert r["mean"] == 60 and r["share_above"] == 1 and r["coverage"] == 1
    assert len(r["segments"]) == 3  # three tops fill 90 s; no bottom may overlap them


def test_a_missing_kind_of_segments_is_said_in_the_report_and_the_json(tmp_path):
    """An audit: a 90 s video with 30 s windows gave top segments only, and neither the
    report nor the JSON said there were no bottom ones, or why."""
    rec = tmp_path / "r.ratedial"
    write_recording(rec, [simple_rater("client", constant(60), 90)], rate_hz=50,
                    media=SynthMedia(duration_s=90.0))
    note = ("no bottom (hindering) segments: every 30 s window rated ≥ 90% overlaps a top "
            "segment (a shorter --window leaves room for both)")
    res = run("analyze", str(rec), "--json")
    (r,) = analyze_json(res.stdout)["dyads"][0]["raters"]
    assert [(x["label"], x["mean"]) for x in r["segments"]] == [("T1", 60), ("T2", 60),
                                                                ("T3", 60)]
    assert r["segments_note"] == note
    res = run("analyze", str(rec), "--no-truth-bias")
    assert res.returncode == 0, res.stderr
    assert f"  client: {note}" in res.stdout.splitlines(), res.stdout
    res = run("analyze", str(rec), "--json", "--window", "10")  # room for both: no note
    (r,) = analyze_json(res.stdout)["dyads"][0]["raters"]
    assert r["segments_note"] is None and len(r["segments"]) == 6
    assert "no bottom" not in run("analyze", str(rec), "--window", "10").stdout
    res = run("analyze", str(rec), "--json", "--window", "100")
    (r,) = analyze_json(res.stdout)["dyads"][0]["raters"]
    assert r["segments"] == []
    assert r["segments_note"] == "none (the video is shorter than one 100 s window)"


def test_analyze_without_a_player_says_run_time_everywhere(tmp_path):
    rec = tmp_path / "wall.ratedial"
    write_recording(rec, [SynthRater(label="client", curve=piecewise([20], [70, 30]),
                                     script=(NoPlayer(seconds=40),)),
                          SynthRater(label="therapist", uid="bb",
                                     curve=piecewise([20], [65, 35]),
                                     script=(NoPlayer(seconds=40),))],
                    media=None, rate_hz=50, session={"dyad": "W2"})
    res = run("analyze", str(rec), "--json", "--window", "5", "--bootstrap", "200")
    assert res.returncode == 0, res.stderr
    (dyad,) = analyze_json(res.stdout)["dyads"]
    assert dyad["timeline"]["kind"] == "run"
    assert "run time, seconds since the recording's first sample" in dyad["timeline"]["note"]
    assert dyad["media"]["key"] == "run-time"
    c, t = dyad["raters"]
    assert c["mean"] == 50 and c["coverage"] == 1 and t["mean"] == 50
    assert dyad["pair"]["pearson"]["value"] > 0.99
    res = run("analyze", str(rec), "--window", "5", "--bootstrap", "200",
              "--table", str(tmp_path / "t.csv"))
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("W2 · run time (no video) · 00:40 ·")
    assert "  timeline: RUN TIME. No sample in the recording has a video time" in res.stdout
    assert ",timeline," in (tmp_path / "t.csv").read_text().splitlines()[0]
    res = run("export", str(rec), "-o", str(tmp_path / "x"), "--format", "csv-long")
    assert res.returncode == 0, res.stderr
    side = json.loads((tmp_path / "x.json").read_text())
    assert side["dyads"][0]["timeline"]["kind"] == "run"


def test_the_brief_overview_marks_a_run_time_dyad(tmp_path):
    """An audit: ``analyze --brief`` on a recording without a player said nothing of run
    time (``miss.ratedial  (no pair)``), though every other output says it."""
    wall = tmp_path / "wall.ratedial"
    write_recording(wall, [SynthRater(label="client", curve=piecewise([20], [70, 30]),
                                      script=(NoPlayer(seconds=40),)),
                           SynthRater(label="therapist", uid="bb",
                                      curve=piecewise([20], [65, 35]),
                                      script=(NoPlayer(seconds=40),))],
                    media=None, rate_hz=50, session={"dyad": "W2"})
    alone = tmp_path / "alone.ratedial"
    write_recording(alone, [SynthRater(label="client", curve=constant(60),
                                       script=(NoPlayer(seconds=10),))], media=None, rate_hz=50)
    video = tmp_path / "v.ratedial"
    write_recording(video, [simple_rater("client", constant(60), 10)], rate_hz=50,
                    media=SynthMedia(duration_s=10.0), session={"dyad": "V1"})
    res = run("analyze", str(wall), str(alone), str(video), "--brief", "--window", "5",
              "--bootstrap", "200")
    assert res.returncode == 0, res.stderr
    rows = {ln.split()[0]: ln for ln in res.stdout.splitlines()[1:] if ln.strip()}
    assert rows["W2"].startswith("W2") and rows["W2"].endswith("  (run time)"), res.stdout
    assert " 1.00 " in rows["W2"]  # the figures are still there, the mark after them
    assert rows["alone.ratedial"].endswith("(no pair)  (run time)"), res.stdout
    assert "run time" not in rows["V1"], res.stdout


def test_the_guess_params_in_the_json_are_the_notes_timeline_included(tmp_path):
    """An audit: raters[].guess.params had no ``timeline``, though analysis.md says they
    are as for segment_note (which has it)."""
    for name, media, script in (
            ("v.ratedial", SynthMedia(duration_s=40.0), None),
            ("w.ratedial", None, (NoPlayer(seconds=40),))):
        rec = tmp_path / name
        curve = piecewise([10, 20, 30], [50, 90, 50, 10])
        rater = (simple_rater("client", curve, 40) if script is None else
                 SynthRater(label="client", curve=curve, script=script))
        write_recording(rec, [rater], rate_hz=50, media=media)
        res = run("review", str(rec), "--guess", "--no-video", "--window", "5",
                  "--order-seed", "1", stdin="+\n" * 6)
        assert res.returncode == 0, res.stderr
        (note,) = read_notes(rec, "guess")
        res = run("analyze", str(rec), "--json", "--window", "5")
        (r,) = analyze_json(res.stdout)["dyads"][0]["raters"]
        assert r["guess"]["params"] == note["data"]["params"]
        assert r["guess"]["params"]["timeline"] == ("media" if script is None else "run")
        assert r["guess"]["same_segments"] is True


def test_annotate_round_trip(tmp_path):
    rec = tmp_path / "r.ratedial"
    write_recording(rec, [simple_rater("client", constant(60), 5)], rate_hz=50,
                    media=SynthMedia(duration_s=5.0))
    res = run("annotate", str(rec), "wai=52", "srs=33.5", "note=late start", "done=true")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"wai": 52, "srs": 33.5, "note": "late start",
                                      "done": True}
    res = run("annotate", str(rec), "--remove", "note")
    assert "note" not in json.loads(res.stdout)
    assert json.loads(run("annotate", str(rec)).stdout) == {"wai": 52, "srs": 33.5,
                                                            "done": True}
    history = read_notes(rec, "annotation")
    assert [h["data"]["removed"] for h in history] == [[], ["note"]]
    res = run("annotate", str(rec), "broken")
    assert res.returncode == 2 and "KEY=VALUE" in res.stderr
    # removing a key that is not there (a typo) or setting and removing one is refused, and
    # nothing changes
    for args in (("--remove", "wia"), ("wai=1", "--remove", "wai"),
                 ("--remove", "wai", "--remove", "wai")):
        res = run("annotate", str(rec), *args)
        assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
        assert "wai" in res.stderr and "Traceback" not in res.stderr
    assert json.loads(run("annotate", str(rec)).stdout) == {"wai": 52, "srs": 33.5,
                                                            "done": True}
    assert len(read_notes(rec, "annotation")) == 2


def test_known_mean_band_shares_and_segments_end_to_end(tmp_path):
    from ratedial.analysis.synth import piecewise

    rec = tmp_path / "r.ratedial"
    write_recording(rec, [simple_rater("client", piecewise([20, 50], [30, 50, 70]), 100)],
                    rate_hz=200, media=SynthMedia(duration_s=100.0))
    res = run("analyze", str(rec), "--json", "--segments", "1")
    (r,) = analyze_json(res.stdout)["dyads"][0]["raters"]
    assert r["mean"] == 56.0 and r["median"] == 60.0
    assert (r["share_below"], r["share_within"], r["share_above"]) == (0.2, 0.3, 0.5)
    top, bottom = r["segments"]
    assert (top["start_s"], top["end_s"], top["mean"]) == (50.0, 80.0, 70.0)
    assert (bottom["start_s"], bottom["mean"]) == (0.0, round((30 * 20 + 50 * 10) / 30, 6))
    res = run("analyze", str(rec), "--json", "--band", "25:35")
    (r,) = analyze_json(res.stdout)["dyads"][0]["raters"]
    assert (r["share_below"], r["share_within"], r["share_above"]) == (0.0, 0.2, 0.8)


def test_reading_a_finished_recording_leaves_nothing_beside_it(tmp_path):
    """Found by a black-box test: analyze and export read with read-only connections, which
    left a -wal and -shm beside a cleanly closed recording (recording.md teaches to keep
    those after a crash: the recording then looked like a crashed one)."""
    rec = tmp_path / "recs" / "r.ratedial"
    rec.parent.mkdir()
    write_recording(rec, [simple_rater("client", constant(60), 5)], rate_hz=50,
                    media=SynthMedia(duration_s=5.0))
    assert sorted(p.name for p in rec.parent.iterdir()) == ["r.ratedial"]
    for args in (("analyze", str(rec)), ("export", str(rec), "-o", str(tmp_path / "x"),
                                         "--format", "csv-long"), ("annotate", str(rec))):
        res = run(*args)
        assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in rec.parent.iterdir()) == ["r.ratedial"]
