"""Per-rater figures against their definitions in docs/analysis.md section 3, on recordings
written with recording.md's tables and read by the real CLI: the neutral band's ends are
included (also for ratings that are a double's rounding away from them), and the last grid
bin of a video counts only the time left of it."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ratedial.analysis.stats import Band, categories, describe, off_side
from ratedial.analysis.synth import (
    NoPlayer,
    Play,
    SynthMedia,
    SynthRater,
    constant,
    piecewise,
    simple_rater,
    write_recording,
)

ONE_TO_SEVEN = {"minimum": 1.0, "maximum": 7.0, "start": 4.0, "counts_per_point": 10.0}


def analyze_json(*args: str) -> dict:
    res = subprocess.run([sys.executable, "-m", "ratedial", "analyze", "--json",
                          "--no-truth-bias", *args], text=True, capture_output=True,
                         timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stderr == "", res.stderr
    return json.loads(res.stdout)


@pytest.mark.parametrize("value", [3.7, 3.6999999999999993, 4.3, 4.299999999999999,
                                   4.300000000000001])
def test_a_rater_resting_on_a_band_edge_is_within_the_band(tmp_path: Path, value: float):
    """3.6999999999999993 is how a daemon that summed 0.1-point steps stored 3.7: such
    recordings are judged right too."""
    path = tmp_path / "e.ratedial"
    rater = SynthRater(label="client", curve=constant(value), quantize=False,
                       script=(Play(start_s=0, end_s=20),))
    write_recording(path, [rater], rate_hz=1000,
                    media=SynthMedia(duration_s=20.0), scale=ONE_TO_SEVEN)
    out = analyze_json(str(path), "--window", "5")["dyads"][0]
    r = out["raters"][0]
    assert out["options"]["neutral_band"] == [3.7, 4.3]
    assert (r["share_below"], r["share_within"], r["share_above"]) == (0, 1, 0)
    text = subprocess.run([sys.executable, "-m", "ratedial", "analyze", "--no-truth-bias",
                           "--window", "5", str(path)], text=True, capture_output=True,
                          timeout=120, check=True).stdout
    tops = [ln for ln in text.splitlines() if re.search(r" T\d ", ln)]
    bottoms = [ln for ln in text.splitlines() if re.search(r" B\d ", ln)]
    assert tops and all("(not above the neutral band)" in ln for ln in tops), text
    assert bottoms and all("(not below the neutral band)" in ln for ln in bottoms), text


def test_band_edges_are_included_within_a_rounding():
    band = Band(low=3.7, high=4.3)
    v = np.array([3.6999999999999993, 4.300000000000008, 3.69, 4.31, np.nan])
    assert categories(v, band).tolist() == [1, 1, 0, 2, -1]
    assert off_side("top", 4.300000000000008, band) is not None
    assert off_side("bottom", 3.6999999999999993, band) is not None
    assert off_side("top", 4.31, band) is None


def test_the_last_bin_weighs_only_the_video_left(tmp_path: Path):
    """A 1.05 s video: 50 for 0.5 s, 70 for 0.55 s. Time-weighted (analysis.md section 3):
    mean (0.5 * 50 + 0.55 * 70) / 1.05, within-band share 0.5 / 1.05."""
    path = tmp_path / "p.ratedial"
    write_recording(path, [simple_rater("client", piecewise([0.5], [50, 70]), 1.05)],
                    rate_hz=1000, media=SynthMedia(duration_s=1.05))
    r = analyze_json(str(path), "--window", "0.5")["dyads"][0]["raters"][0]
    assert r["rated_s"] == 1.05
    assert r["mean"] == pytest.approx((0.5 * 50 + 0.55 * 70) / 1.05, abs=1e-6)
    assert r["share_within"] == pytest.approx(0.5 / 1.05, abs=1e-6)
    assert r["share_above"] == pytest.approx(0.55 / 1.05, abs=1e-6)
    assert r["median"] == 70  # more than half the time is at 70
    # SD with frequency weights in bins (5 at 50, 5.5 at 70) and n - 1
    w, x = np.array([5, 5.5]), np.array([50.0, 70.0])
    m = np.sum(w * x) / w.sum()
    assert r["sd"] == pytest.approx(np.sqrt(np.sum(w * (x - m) ** 2) / (w.sum() - 1)), abs=1e-6)


def test_equal_weights_are_the_plain_figures():
    v = np.array([1.0, 5.0, 2.0, 8.0, np.nan])
    plain, weighted = describe(v, Band()), describe(v, Band(), np.ones(5))
    assert plain == weighted
    assert plain.median == 3.5
    half = describe(np.array([1.0, 5.0, 2.0]), Band(), np.array([1.0, 1.0, 0.5]))
    assert half.median == 2.0 and half.mean == pytest.approx((1 + 5 + 1) / 2.5)


def _lone_run(path: Path, *, ended: bool) -> None:
    """A 20 s run without a player, one dial (100 Hz) lost for good after 9.6 s."""
    write_recording(path, [SynthRater(label="client", curve=constant(60),
                                      script=(NoPlayer(seconds=20),))], rate_hz=100,
                    media=None)
    with sqlite3.connect(path) as con:  # as the daemon leaves it: no sample after, no gap
        t0, = con.execute("SELECT min(host_ns) FROM samples").fetchone()
        con.execute("DELETE FROM samples WHERE sample_index >= 960")
        (last,) = con.execute("SELECT max(event_id) FROM events").fetchone()
        con.execute("INSERT INTO events (event_id, host_ns, dial_id, kind, data) VALUES "
                    "(?, ?, 1, 'dial_lost', ?)", (last + 1, t0 + 9_700_000_000, json.dumps(
                        {"port": "/dev/ttyACM0", "next_index": 960, "cause": "unplugged"})))
        if ended:
            con.execute("INSERT INTO events (event_id, host_ns, dial_id, kind, data) VALUES "
                        "(?, ?, NULL, 'run_end', ?)", (last + 2, t0 + 20_030_000_000,
                                                       json.dumps({"reason": "stopped"})))


def test_a_lone_dial_lost_for_good_leaves_the_rest_of_the_run_missing(tmp_path: Path):
    """An audit (2026-12-05): a single-rater run-time recording whose dial was lost at
    9.6 s of a 20 s run reported coverage 100 % and missing 0 s beside 'dial lost (not
    back)': its grid ended at the last rated bin. It now goes on to the run's end."""
    path = tmp_path / "lone.ratedial"
    _lone_run(path, ended=True)
    r = analyze_json(str(path), "--window", "2")["dyads"][0]["raters"][0]
    assert r["lost"][0]["back"] is False
    assert (r["rated_s"], r["missing_s"], r["duration_s"]) == (9.6, 10.4, 20.0)
    assert r["coverage"] == pytest.approx(0.48)
    assert r["mean"] == 60
    crashed = tmp_path / "crash.ratedial"  # no run_end: the run's end is not known
    _lone_run(crashed, ended=False)
    r = analyze_json(str(crashed), "--window", "2")["dyads"][0]["raters"][0]
    assert (r["rated_s"], r["missing_s"]) == (9.6, 0)


def test_a_short_scales_range_has_tenths(tmp_path: Path):
    """An audit (2026-12-05): a rater at 4.3 on 1-7 had 'range 4 to 4 (0)'."""
    path = tmp_path / "r.ratedial"
    write_recording(path, [simple_rater("client", piecewise([5], [4.3, 5.6]), 10)],
                    rate_hz=100, media=SynthMedia(duration_s=10.0),
                    scale=ONE_TO_SEVEN)
    with sqlite3.connect(path) as con:  # synth's raters are whole points: 1-7's are tenths
        con.execute("UPDATE samples SET rating = CASE WHEN media_s < 5 THEN 4.3 ELSE 5.6 END")
    text = subprocess.run([sys.executable, "-m", "ratedial", "analyze", "--no-truth-bias",
                           "--window", "2", str(path)], text=True, capture_output=True,
                          timeout=120, check=True).stdout
    (line,) = [ln for ln in text.splitlines() if ln.strip().startswith("range")]
    assert line.split()[1:] == ["4.3", "to", "5.6", "(1.3)"], line


def test_a_pair_with_no_common_time_is_a_pair_in_the_overview_and_table(tmp_path: Path):
    """An audit (2026-12-05): a dyad whose therapist's whole epoch was one gap was
    '(no pair)' in the overview while the table said rater_a=client, rater_b=therapist, and
    'client_top_rated_helpful_by_therapist' was 0 though no segment could be judged."""
    path = tmp_path / "S3.ratedial"
    therapist = SynthRater(label="therapist", uid="bb", curve=constant(60),
                           script=(Play(start_s=0, end_s=20, gaps=((0, 20, "link"),)),))
    write_recording(path, [simple_rater("client", piecewise([10], [70, 30]), 20, uid="aa"),
                           therapist], rate_hz=100, media=SynthMedia(duration_s=20.0),
                    session={"dyad": "S3"})
    table = tmp_path / "t.csv"
    res = subprocess.run([sys.executable, "-m", "ratedial", "analyze", "--brief",
                          "--no-truth-bias", "--window", "2", "--table", str(table),
                          str(path)], text=True, capture_output=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    (line,) = [ln for ln in res.stdout.splitlines() if ln.startswith("S3")]
    assert line.split() == ["S3", "client/therapist", "(no", "time", "rated", "by", "both)"]
    import csv

    with table.open() as fh:
        (row,) = list(csv.DictReader(fh))
    assert (row["rater_a"], row["rater_b"]) == ("client", "therapist")
    assert row["client_top_rated_helpful_by_therapist"] == ""
    assert row["client_bottom_rated_hindering_by_therapist"] == ""
