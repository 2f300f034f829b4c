"""``ratedial review`` on a recording that is still being recorded (a real run of a
scripted virtual dial): refused unless ``--live``; with it, the notes say the segments were
of a partial recording, and a guess test made then is never reported as one of the final
segments (docs/analysis.md, section 9)."""

from __future__ import annotations

import contextlib
import csv
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from jsonschemas import analyze_json
from ratedial.analysis.notes import read_notes

# run time: 50 at rest, a plateau at 70, back to 50, then 95 from about 30 s on (the knob
# rests first: the firmware counts from where it is when it starts); the partial recording
# is read long before 30 s, however slow the machine
CURVE = "0,50\n3,50\n4,70\n25,70\n26,50\n29,50\n30,95\n300,95\n"
SEGMENTS = ("--window", "2", "--segments", "1")


def ratedial(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ratedial", *args], input=stdin, text=True,
                          capture_output=True, timeout=120, check=False)


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def live_run(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """``ratedial run`` recording a scripted virtual dial as ``client``, run time (no
    player); both stopped on leaving."""
    script = tmp_path / "curve.csv"
    script.write_text(CURVE)
    dial = subprocess.Popen([sys.executable, "-m", "ratedial", "virtual-dial", "--script",
                             str(script), "--duration", "120"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    rec = tmp_path / "D01-client.ratedial"
    run = None
    try:
        assert dial.stdout is not None
        port = dial.stdout.readline().strip()
        assert port, "the virtual dial printed no port"
        run = subprocess.Popen([sys.executable, "-m", "ratedial", "run", "--port", port,
                                "--no-scan", "--broker", "none", "--record", str(rec),
                                "--rater", f"client={port}", "--session", "dyad=D01",
                                "--duration", "100"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
        yield run, rec
    finally:
        if run is not None:
            _stop(run)
        _stop(dial)


def wait_run_time(run: subprocess.Popen[str], rec: Path, seconds: float) -> None:
    """Until the recording holds ``seconds`` of run time (committed samples)."""
    sql = ("SELECT 1 FROM samples WHERE host_ns >= "
           f"(SELECT min(host_ns) FROM samples) + {int(seconds * 1e9)} LIMIT 1")
    deadline = time.monotonic() + 30 + seconds
    while time.monotonic() < deadline:
        assert run.poll() is None, run.stdout.read() if run.stdout else ""
        with contextlib.suppress(sqlite3.Error):
            if rec.exists():
                con = sqlite3.connect(f"file:{rec}?mode=ro", uri=True)
                try:
                    if con.execute(sql).fetchone():
                        return
                finally:
                    con.close()
        time.sleep(0.1)
    raise AssertionError(f"the run did not reach {seconds} s")


def test_a_guess_on_a_recording_still_being_recorded_is_never_taken_for_the_final_one(
        tmp_path):
    """An audit: review and review --guess ran on a recording still being recorded, on
    the segments of what it held so far, and the guess note (same options) would have been
    reported later with same_segments true against the final segments."""
    with live_run(tmp_path) as (run, rec):
        wait_run_time(run, rec, 6.0)  # the 70 plateau is there, the 95 not yet
        res = ratedial("review", str(rec), "--guess", "--no-video", *SEGMENTS, stdin="+\n-\n")
        assert res.returncode == 2, res.stdout + res.stderr
        assert res.stderr.count("\n") == 1 and "is still being recorded" in res.stderr
        assert "--live" in res.stderr and "Traceback" not in res.stderr
        res = ratedial("review", str(rec), "--no-video", *SEGMENTS, stdin="a\n\nb\n\n")
        assert res.returncode == 2 and "still being recorded" in res.stderr, res.stderr
        assert read_notes(rec, "guess") == read_notes(rec, "segment_note") == []

        res = ratedial("review", str(rec), "--guess", "--no-video", "--live", *SEGMENTS,
                       "--order-seed", "3", stdin="+\n-\n")
        assert res.returncode == 0, res.stdout + res.stderr
        assert "is still being recorded: this is what it holds so far" in res.stderr
        res = ratedial("review", str(rec), "--no-video", "--live", *SEGMENTS,
                       stdin="a\n\nb\n\n")
        assert res.returncode == 0, res.stdout + res.stderr
        wait_run_time(run, rec, 34.0)  # the recording grew: the 95 is its top now
        _stop(run)
        assert run.returncode == 0
    (guess,) = (n["data"] for n in read_notes(rec, "guess"))
    assert guess["partial"] is True and guess["params"]["timeline"] == "run"
    notes = [n["data"] for n in read_notes(rec, "segment_note")]
    assert len(notes) == 2 and all(n["partial"] is True for n in notes)
    then = next(s for s in guess["segments"] if s["kind"] == "top")

    res = ratedial("analyze", str(rec), "--json", *SEGMENTS, "--bootstrap", "100")
    assert res.returncode == 0, res.stderr
    (r,) = analyze_json(res.stdout)["dyads"][0]["raters"]
    now = next(s for s in r["segments"] if s["kind"] == "top")
    assert then["start_s"] < 25 and now["start_s"] >= 28, (now, then)
    assert now["mean"] > then["mean"] + 15, (now, then)
    g = r["guess"]
    assert (g["score"], g["n"], g["partial"]) == (guess["score"], 2, True)
    same = ("rate_hz", "window_s", "k", "min_coverage", "mode")
    assert {k: g["params"][k] for k in same} == {k: guess["params"][k] for k in same}
    assert g["same_segments"] is False  # the same options, but not the final segments
    res = ratedial("analyze", str(rec), *SEGMENTS, "--bootstrap", "100", "--no-truth-bias")
    assert ("client     guess test: therapist "
            f"{guess['score']} of 2 right: made on other segments (on the recording while it "
            "was still being recorded), not the ones above") in res.stdout, res.stdout
    table = tmp_path / "t.csv"
    res = ratedial("analyze", str(rec), *SEGMENTS, "--bootstrap", "100", "--table", str(table))
    assert res.returncode == 0, res.stderr
    (row,) = list(csv.DictReader(table.open()))
    assert row["client_guess_same_segments"] == "False"


def test_a_guess_on_a_finished_recording_is_of_its_segments(tmp_path):
    """The comparison of windows does not turn a guess of the same segments into 'other
    segments': the same options on the same finished recording give same_segments true."""
    with live_run(tmp_path) as (run, rec):
        wait_run_time(run, rec, 6.0)
        _stop(run)
        assert run.returncode == 0
    res = ratedial("review", str(rec), "--guess", "--no-video", *SEGMENTS, "--live",
                   stdin="+\n-\n")
    assert res.returncode == 0, res.stdout + res.stderr
    (guess,) = (n["data"] for n in read_notes(rec, "guess"))
    assert "partial" not in guess  # --live on a finished recording changes nothing
    res = ratedial("analyze", str(rec), "--json", *SEGMENTS, "--bootstrap", "100")
    (r,) = analyze_json(res.stdout)["dyads"][0]["raters"]
    assert r["guess"]["same_segments"] is True and r["guess"]["partial"] is False
    assert r["guess"]["params"]["window_s"] == 2
