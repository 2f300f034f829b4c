"""Reaction lag: recovered from synthetic raters (against the other rater and against the
scripted ground truth), its block-bootstrap interval, and `analyze --align-lag`."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest

from jsonschemas import analyze_json
from ratedial.analysis.align import AlignOptions
from ratedial.analysis.lag import reaction_lag, shift
from ratedial.analysis.load import load
from ratedial.analysis.synth import (
    Play,
    SynthMedia,
    SynthRater,
    shifted,
    smooth_random,
    write_dyad,
    write_recording,
)

RATE = 10.0


def test_lag_between_two_series_with_its_interval():
    rng = np.random.default_rng(1)
    truth = smooth_random(4, 700.0, knot_s=6.0)
    t = np.arange(0, 600, 1 / RATE)
    x = truth(t) + rng.normal(0, 2, len(t))
    y = truth(t - 1.5) + rng.normal(0, 2, len(t))  # y follows x by 1.5 s
    y[2000:2300] = np.nan  # a gap stays a gap
    lag = reaction_lag(x, y, rate_hz=RATE, max_lag_s=5, block_s=30, replicates=500)
    assert lag is not None
    assert lag.lag_s == pytest.approx(1.5, abs=0.1)
    assert lag.ci_low_s <= 1.5 <= lag.ci_high_s and lag.ci_high_s - lag.ci_low_s < 1.0
    assert lag.blocks == 600 // 30 and lag.r > 0.9
    back = reaction_lag(y, x, rate_hz=RATE, max_lag_s=5, block_s=30, replicates=200)
    assert back is not None and back.lag_s == pytest.approx(-1.5, abs=0.1)
    same = reaction_lag(x, y, rate_hz=RATE, max_lag_s=5, block_s=30, replicates=500)
    assert same == lag  # seeded: reproducible


def test_each_raters_lag_against_the_scripted_ground_truth(tmp_path):
    truth = smooth_random(7, 400.0, knot_s=5.0)
    rec = tmp_path / "r.ratedial"
    write_recording(rec, [
        SynthRater(label="client", curve=shifted(truth, 0.7), quantize=False,
                   script=(Play(start_s=0, end_s=300),)),
        SynthRater(label="therapist", uid="bb", curve=shifted(truth, 2.1), quantize=False,
                   script=(Play(start_s=0, end_s=300),))],
        media=SynthMedia(duration_s=300.0), rate_hz=100)
    series = load([rec], AlignOptions(rate_hz=RATE))
    grid = (np.arange(3000) + 0.5) / RATE  # bin centres
    got = {}
    for s in series:
        lag = reaction_lag(truth(grid), s.values[:3000], rate_hz=RATE, max_lag_s=5,
                           block_s=30, replicates=300)
        assert lag is not None
        got[s.rater] = lag
    assert got["client"].lag_s == pytest.approx(0.7, abs=0.1)
    assert got["therapist"].lag_s == pytest.approx(2.1, abs=0.1)
    assert got["therapist"].ci_low_s <= 2.1 <= got["therapist"].ci_high_s + 0.1


def test_shift_moves_back_and_pads_with_nan():
    y = np.arange(6, dtype=float)
    assert np.array_equal(shift(y, 2), [2, 3, 4, 5, np.nan, np.nan], equal_nan=True)
    assert np.array_equal(shift(y, -1), [np.nan, 0, 1, 2, 3, 4], equal_nan=True)


def test_analyze_reports_the_interval_and_aligns_on_request(tmp_path):
    c, t = write_dyad(tmp_path, "D01", duration_s=300, seed=3, rate_hz=50, agreement=0.95,
                      lag_s=2.0)
    base = [sys.executable, "-m", "ratedial", "analyze", str(c), str(t), "--bootstrap", "300",
            "--window", "20"]
    plain = subprocess.run([*base, "--json"], capture_output=True, text=True, timeout=120,
                           check=False)
    assert plain.returncode == 0, plain.stderr
    p0 = analyze_json(plain.stdout)["dyads"][0]["pair"]
    assert p0["lag"]["lag_s"] == pytest.approx(2.0, abs=0.2)
    assert p0["lag"]["ci_low_s"] <= p0["lag"]["lag_s"] <= p0["lag"]["ci_high_s"]
    assert p0["aligned_lag_s"] is None
    aligned = subprocess.run([*base, "--json", "--align-lag"], capture_output=True, text=True,
                             timeout=120, check=False)
    d1 = analyze_json(aligned.stdout)["dyads"][0]
    p1 = d1["pair"]
    assert d1["options"]["align_lag"] is True
    assert p1["aligned_lag_s"] == p0["best_lag_s"]
    assert p1["pearson"]["value"] > p0["pearson"]["value"] + 0.02
    assert p1["n_bins"] < p0["n_bins"]  # the shifted end has no partner
    text = subprocess.run([*base, "--align-lag", "--table", str(tmp_path / "t.csv")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert "aligned         therapist moved back by" in text.stdout
    assert "95% CI [" in text.stdout.split("best lag", 1)[1].splitlines()[0]
    with (tmp_path / "t.csv").open() as fh:
        (row,) = list(csv.DictReader(fh))
    assert float(row["aligned_lag_s"]) == p0["best_lag_s"]
    assert float(row["best_lag_ci_low_s"]) <= float(row["best_lag_s"])


def test_the_lag_interval_is_shown_with_its_own_estimate(tmp_path):
    """Found by a black-box test: the report and the table put the block bootstrap's
    interval next to the whole series' best lag (0.5 s) although the interval is around the
    blocks' own estimate (0.3 s)."""
    import csv
    import json as _json

    from click.testing import CliRunner

    from ratedial.analysis.synth import write_dyad
    from ratedial.cli import cli

    c, t = write_dyad(tmp_path, "D1", duration_s=300.0, seed=1, lag_s=0.5)
    table = tmp_path / "t.csv"
    res = CliRunner().invoke(cli, ["analyze", str(c), str(t), "--json", "--table", str(table),
                                   "--bootstrap", "200", "--no-truth-bias"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    pair = _json.loads(res.output)["dyads"][0]["pair"]
    (row,) = list(csv.DictReader(table.open()))
    assert float(row["best_lag_blocks_s"]) == pytest.approx(pair["lag"]["lag_s"])
    text = CliRunner().invoke(cli, ["analyze", str(c), str(t), "--bootstrap", "200",
                                    "--no-truth-bias"], catch_exceptions=False).output
    (line,) = [ln for ln in text.splitlines() if "best lag" in ln]
    differs = pair["lag"]["lag_s"] != pair["best_lag_s"]
    assert ("in blocks" in line) == differs
    if differs:
        assert f"in blocks {pair['lag']['lag_s']:g} s" in line


def test_raters_who_move_in_opposite_directions_have_their_lag_where_r_is_most_negative():
    """An audit (2026-12-05): a dyad that disagreed throughout (r -0.99, the therapist 0.1 s
    behind) got a best lag of 8.4 s at r 0.59, the highest positive r, and --align-lag then
    reported the dyad as agreeing (r 0.59)."""
    from ratedial.analysis.stats import best_lag, cross_correlation

    rng = np.random.default_rng(3)
    truth = smooth_random(5, 700.0, knot_s=6.0)
    t = np.arange(0, 600, 1 / RATE)
    x = truth(t) + rng.normal(0, 1, len(t))
    y = 100 - truth(t - 0.8) + rng.normal(0, 1, len(t))  # opposite, 0.8 s behind
    lags, r = cross_correlation(x, y, int(10 * RATE))
    lag, at = best_lag(lags, r)
    assert lag / RATE == pytest.approx(0.8, abs=0.1) and at < -0.9
    boot = reaction_lag(x, y, rate_hz=RATE, max_lag_s=10, block_s=40, replicates=200)
    assert boot is not None and boot.lag_s == pytest.approx(0.8, abs=0.1) and boot.r < -0.9
    assert boot.ci_low_s <= 0.8 <= boot.ci_high_s


def test_a_rhythm_in_the_session_gives_agreeing_raters_no_false_negative_lag():
    """A review (2026-12-05) of the fix above, which took the highest |r|: a session with a
    16 s rhythm gives agreeing raters a trough of r half a cycle away, about as deep as
    their peak is high, and it won in 26 of 200 seeds (b 1 s behind a, lag 8.8 s at r
    -0.59). The sign of r at lag 0 now says which extreme is the lag."""
    from ratedial.analysis.stats import best_lag, cross_correlation

    wrong = 0
    for seed in range(60):
        rng = np.random.default_rng(seed)
        t = np.arange(6000) / RATE
        truth = np.sin(2 * np.pi * t / 16 + rng.uniform(0, 6)) * 20 + np.cumsum(
            rng.normal(0, 0.05, len(t)))
        a = truth + rng.normal(0, 12, len(t))
        b = np.roll(truth, 10) + rng.normal(0, 12, len(t))  # b follows a by 1 s
        lags, r = cross_correlation(a, b, 100)
        lag, at = best_lag(lags, r)
        wrong += abs(lag / RATE - 1.0) > 0.5 or at < 0
    assert wrong == 0
