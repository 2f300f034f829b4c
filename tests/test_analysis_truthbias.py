"""The Truth-and-Bias model: known effects recovered, statsmodels against a second fit
(the REML likelihood written out) and against R's lme4 where R is installed, and its place
in `analyze` (text, --json with the schema, --table CSV)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jsonschemas import analyze_json
from ratedial.analysis.synth import Play, SynthMedia, SynthRater, write_recording

pytest.importorskip("statsmodels")

from ratedial.analysis.truthbias import TBData, fit, reml_fit, tb_data


def synthetic(seed: int = 3, dyads: int = 8, n: int = 300, *, force: float = 0.6,
              bias: float = 5.0) -> TBData:
    rng = np.random.default_rng(seed)
    dy, ts, js = [], [], []
    for i in range(dyads):
        x = np.cumsum(rng.normal(0, 2, n))
        x = 55 + 15 * (x - x.mean()) / x.std()
        u0, u1 = rng.normal(0, 3), rng.normal(0, 0.1)
        y = 55 + bias + u0 + (force + u1) * (x - 55) + rng.normal(0, 6, n)
        dy += [f"D{i:02d}"] * n
        ts.append(x)
        js.append(y)
    t, j = np.concatenate(ts), np.concatenate(js)
    m = float(t.mean())
    return TBData(dyad=dy, truth=t - m, judgment=j - m, mean_truth=m, step_s=1.0)


def test_known_truth_force_and_bias_are_recovered():
    tb = fit(synthetic())
    assert tb.n_dyads == 8 and tb.n_moments == 2400
    assert tb.truth_force == pytest.approx(0.6, abs=0.08)
    assert tb.directional_bias == pytest.approx(5.0, abs=2.5)
    lo, hi = tb.ci("truth_force")
    assert lo < tb.truth_force < hi
    assert tb.sd_residual == pytest.approx(6.0, abs=0.4)
    assert set(tb.by_dyad) == {f"D{i:02d}" for i in range(8)}
    assert "autocorrelated" in tb.notes[0]


@pytest.mark.parametrize("case", ["random", "constant_truth", "two_moments", "exact_line"])
def test_one_dyads_ols_equals_statsmodels(case):
    """One dyad is fitted by least squares in numpy (importing statsmodels took half of a
    one-dyad analysis's time): the same slope, intercept, standard errors and residual SD
    as statsmodels' OLS, also where the design is singular or has no residual freedom."""
    import statsmodels.api as sm

    data = synthetic(seed=5, dyads=1, n=200)
    t, j = data.truth, data.judgment
    if case == "constant_truth":
        t = np.full_like(t, 2.5)
    elif case == "two_moments":
        t, j = t[:2], j[:2]
    elif case == "exact_line":
        j = 3.0 + 0.5 * t
    one = TBData(dyad=["D00"] * len(t), truth=t, judgment=j, mean_truth=data.mean_truth,
                 step_s=1.0)
    tb = fit(one)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = sm.OLS(j, sm.add_constant(t, has_constant="add")).fit()
            want = (res.params[1], res.params[0], res.bse[1], res.bse[0], np.sqrt(res.scale))
    got = (tb.truth_force, tb.directional_bias, tb.truth_force_se, tb.directional_bias_se,
           tb.sd_residual)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9, equal_nan=True)
    assert tb.method.startswith("OLS") and tb.by_dyad == {"D00": (got[0], got[1])}


def test_statsmodels_equals_an_independent_reml_fit():
    data = synthetic(seed=11)
    tb = fit(data)
    second = reml_fit(data)
    assert second["b1"] == pytest.approx(tb.truth_force, abs=1e-5)
    assert second["b0"] == pytest.approx(tb.directional_bias, abs=1e-4)
    assert second["sd_residual"] == pytest.approx(tb.sd_residual, rel=1e-3)
    assert second["sd_intercept"] == pytest.approx(tb.sd_dyad_intercept, rel=2e-2, abs=1e-3)
    assert second["sd_slope"] == pytest.approx(tb.sd_dyad_slope, rel=2e-2, abs=1e-3)


def three_dyads() -> TBData:
    """The one-second moments of an audit's three-dyad study (2026-12-05, scripted virtual
    dials): statsmodels' first optimizer stopped short of the REML optimum without failing,
    the second fell short too: dyad SDs and standard errors 1-23 % below lme4's."""
    with (Path(__file__).parent / "data" / "tb_three_dyads.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    t = np.array([float(r["t"]) for r in rows])
    return TBData(dyad=[r["dyad"] for r in rows], truth=t,
                  judgment=np.array([float(r["j"]) for r in rows]), mean_truth=56.2098,
                  step_s=1.0)


def test_the_fit_reaches_the_reml_optimum_of_a_small_study():
    data = three_dyads()
    tb = fit(data)
    second = reml_fit(data)
    assert tb.n_dyads == 3 and tb.n_moments == 177
    assert second["sd_intercept"] == pytest.approx(tb.sd_dyad_intercept, rel=1e-3)
    assert second["sd_slope"] == pytest.approx(tb.sd_dyad_slope, rel=1e-3)
    assert second["b1"] == pytest.approx(tb.truth_force, abs=1e-5)


def _lme4_available() -> bool:
    if shutil.which("Rscript") is None:
        return False
    res = subprocess.run(["Rscript", "-e", "library(lme4)"], capture_output=True, check=False,
                         timeout=120)
    return res.returncode == 0


@pytest.mark.skipif(not _lme4_available(),
                    reason="R with lme4 not installed (Debian: r-cran-lme4); "
                           "the independent REML fit above still checks statsmodels")
@pytest.mark.parametrize("which", ["synthetic", "three_dyads"])
def test_statsmodels_equals_lme4(tmp_path, which):
    data = synthetic(seed=5) if which == "synthetic" else three_dyads()
    tb = fit(data)
    path = tmp_path / "tb.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["dyad", "t", "j"])
        w.writerows(zip(data.dyad, data.truth.tolist(), data.judgment.tolist(), strict=True))
    script = (f"suppressMessages(library(lme4)); d <- read.csv('{path}'); "
              "m <- lmer(j ~ t + (t | dyad), data = d, REML = TRUE); "
              "v <- as.data.frame(VarCorr(m)); "
              "cat(fixef(m)[1], fixef(m)[2], v$sdcor[1], v$sdcor[2], v$sdcor[4], "
              "sqrt(diag(vcov(m))), '\\n')")
    res = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True,
                         check=True, timeout=120)
    b0, b1, sd0, sd1, sde, se0, se1 = map(float, res.stdout.split())
    assert b1 == pytest.approx(tb.truth_force, abs=1e-4)
    assert b0 == pytest.approx(tb.directional_bias, abs=1e-3)
    assert sde == pytest.approx(tb.sd_residual, rel=1e-3)
    assert sd0 == pytest.approx(tb.sd_dyad_intercept, rel=2e-2)
    assert sd1 == pytest.approx(tb.sd_dyad_slope, rel=2e-2, abs=1e-3)
    assert se1 == pytest.approx(tb.truth_force_se, rel=2e-2)
    assert se0 == pytest.approx(tb.directional_bias_se, rel=2e-2)


def _curve(seed: int):
    rng = np.random.default_rng(seed)
    knots = rng.uniform(20, 90, 16)

    def f(t):
        return np.interp(t, np.linspace(0, 120, 16), knots)
    return f


def test_analyze_reports_truth_and_bias_for_a_study(tmp_path):
    recs = []
    media = SynthMedia(path="v.mp4", duration_s=120.0, fingerprint=None)
    for i in range(4):
        client = _curve(i)
        shift = 4.0 * (i - 1.5)

        def therapist(t, client=client, shift=shift):
            return 58 + shift + 0.5 * (client(t) - 55)
        for role, curve in (("client", client), ("therapist", therapist)):
            p = tmp_path / f"S{i}-{role}.ratedial"
            write_recording(p, [SynthRater(label=role, uid=f"{i:02x}{role[0]}", curve=curve,
                                           quantize=False,
                                           script=(Play(start_s=0, end_s=120),))],
                            media=SynthMedia(path=f"S{i}.mp4", duration_s=media.duration_s,
                                             fingerprint=None),
                            rate_hz=50, session={"dyad": f"S{i}"})
            recs.append(str(p))
    args = ["--bootstrap", "200", "--window", "10", "--tb-step", "2"]
    res = subprocess.run([sys.executable, "-m", "ratedial", "analyze", *recs, "--json", *args],
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    tb = analyze_json(res.stdout)["truth_and_bias"]
    assert tb["truth"] == "client" and tb["judge"] == "therapist" and tb["n_dyads"] == 4
    assert tb["n_moments"] == 4 * 60 and tb["step_s"] == 2
    assert tb["truth_force"]["value"] == pytest.approx(0.5, abs=1e-3)
    # the therapist is 58 + shift at the client's 55: bias = 3 + mean shift + 0.5 (55 - M) - ...
    assert tb["directional_bias"]["value"] == pytest.approx(
        58 - tb["mean_truth"] + 0.5 * (tb["mean_truth"] - 55), abs=0.05)
    table = tmp_path / "study.csv"
    res = subprocess.run([sys.executable, "-m", "ratedial", "analyze", *recs, "--table",
                          str(table), *args], capture_output=True, text=True, timeout=120,
                         check=False)
    assert res.returncode == 0, res.stderr
    assert "Truth and Bias (therapist judging client; 4 dyads" in res.stdout
    assert "truth force       0.500" in res.stdout
    with table.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["dyad"] for r in rows] == ["S0", "S1", "S2", "S3"]
    assert all(float(r["tb_truth_force"]) == pytest.approx(0.5, abs=1e-3) for r in rows)
    per_dyad = [float(r["tb_dyad_directional_bias"]) for r in rows]
    assert per_dyad == sorted(per_dyad)  # the shift grows with i
    assert per_dyad[3] - per_dyad[0] == pytest.approx(12.0, abs=0.5)
    res = subprocess.run([sys.executable, "-m", "ratedial", "analyze", *recs[:2], "--json",
                          *args], capture_output=True, text=True, timeout=120, check=False)
    one = json.loads(res.stdout)["truth_and_bias"]
    assert one["n_dyads"] == 1 and one["method"].startswith("OLS")
    # --roles naming nobody: the pairs form by label order, and the fit names those labels
    # (it said "bar judging foo" of the client and therapist)
    res = subprocess.run([sys.executable, "-m", "ratedial", "analyze", *recs, "--json",
                          "--roles", "foo,bar", *args], capture_output=True, text=True,
                         timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    by_order = json.loads(res.stdout)["truth_and_bias"]
    assert (by_order["truth"], by_order["judge"]) == ("client", "therapist")


def test_no_pair_no_model(tmp_path):
    p = tmp_path / "x.ratedial"
    write_recording(p, [SynthRater(label="client", curve=_curve(1),
                                   script=(Play(start_s=0, end_s=60),))],
                    media=SynthMedia(duration_s=60.0), rate_hz=50)
    from ratedial.analysis.groups import group_series
    from ratedial.analysis.load import load

    assert tb_data(group_series(load([p]))) is None


def test_a_truth_that_never_moves_is_not_fitted(tmp_path):
    from ratedial.analysis.groups import group_series
    from ratedial.analysis.load import load
    from ratedial.analysis.synth import constant

    p = tmp_path / "flat.ratedial"
    write_recording(p, [SynthRater(label="client", curve=constant(50),
                                   script=(Play(start_s=0, end_s=60),)),
                        SynthRater(label="therapist", uid="bb", curve=_curve(2),
                                   script=(Play(start_s=0, end_s=60),))],
                    media=SynthMedia(duration_s=60.0), rate_hz=50, session={"dyad": "F1"})
    (g,) = group_series(load([p]))
    assert g.pair is not None and tb_data([g]) is None


def test_a_singular_fit_says_its_interval_is_not_available():
    """Two dyads judged without any noise: the mixed model is singular, its standard errors
    do not exist; the report printed "95% CI [nan, nan]" and statsmodels' RuntimeWarning
    with a line of its source reached stderr."""
    import warnings

    from ratedial.analysis.truthbias import TBData, fit, format_tb

    rng = np.random.default_rng(1)
    truth = rng.uniform(20, 80, 120)
    judge = 0.5 * truth + 20
    data = TBData(dyad=["A"] * 60 + ["B"] * 60, truth=truth - truth.mean(),
                  judgment=judge - truth.mean(), mean_truth=float(truth.mean()), step_s=1.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tb = fit(data)
    assert caught == []
    text = format_tb(tb)
    assert "nan" not in text and "95% CI not available" in text, text


ONE_TO_SEVEN = {"minimum": 1.0, "maximum": 7.0, "start": 4.0, "counts_per_point": 10.0}


def _dyad(tmp_path: Path, label: str, client, therapist, *, client_scale=None,
          therapist_scale=None) -> list[str]:
    out = []
    for role, curve, scale in (("client", client, client_scale),
                               ("therapist", therapist, therapist_scale)):
        p = tmp_path / f"{label}-{role}.ratedial"
        write_recording(p, [SynthRater(label=role, uid=f"{label}{role[0]}", curve=curve,
                                       quantize=False, script=(Play(start_s=0, end_s=60),))],
                        media=SynthMedia(path=f"{label}.mp4", duration_s=60.0,
                                         fingerprint=None),
                        rate_hz=50, session={"dyad": label}, scale=scale)
        out.append(str(p))
    return out


def test_dyads_on_other_scales_are_left_out_and_said(tmp_path):
    """An audit (2026-12-05): a 1-7 therapist exactly following a 0-100 client (r = 1) got a
    'directional bias -33' from a fit of 1-7 judgments on 0-100 truths, and pooled with
    0-100 dyads in the study's estimates and tb_* columns, with no word about units."""
    client = _curve(2)

    def on_seven(t):
        return 1 + 6 * client(t) / 100

    mixed = _dyad(tmp_path, "M", client, on_seven, therapist_scale=ONE_TO_SEVEN)
    res = subprocess.run([sys.executable, "-m", "ratedial", "analyze", *mixed, "--json",
                          "--bootstrap", "200", "--window", "10"], capture_output=True,
                         text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["truth_and_bias"] is None
    assert ("Truth-and-Bias leaves out M (the raters' scales differ: client 0 to 100, "
            "therapist 1 to 7)") in res.stderr
    same = _dyad(tmp_path, "A", client, lambda t: 0.5 * client(t) + 30)
    seven = _dyad(tmp_path, "B", on_seven, on_seven, client_scale=ONE_TO_SEVEN,
                  therapist_scale=ONE_TO_SEVEN)
    table = tmp_path / "t.csv"
    res = subprocess.run([sys.executable, "-m", "ratedial", "analyze", *mixed, *same,
                          *seven, "--json", "--table", str(table), "--bootstrap", "200",
                          "--window", "10"], capture_output=True, text=True, timeout=120,
                         check=False)
    assert res.returncode == 0, res.stderr
    tb = analyze_json(res.stdout)["truth_and_bias"]
    # A alone (one dyad on 0-100 both; B is on 1-7, the scale of fewer dyads on a tie: the
    # first's wins): its exact line, 0.5 per point and 30 + 0.5 M - M at M
    assert tb["n_dyads"] == 1 and tb["method"].startswith("OLS")
    assert tb["truth_force"]["value"] == pytest.approx(0.5, abs=1e-6)
    assert tb["directional_bias"]["value"] == pytest.approx(30 - 0.5 * tb["mean_truth"],
                                                            abs=1e-4)
    assert any(n.startswith("left out: M (the raters' scales differ") and
               "B (on the scale 1 to 7, the study's 0 to 100)" in n for n in tb["notes"])
    assert "B (on the scale 1 to 7, the study's 0 to 100)" in res.stderr
    with table.open() as fh:
        rows = {r["dyad"]: r for r in csv.DictReader(fh)}
    assert rows["M"]["tb_dyad_directional_bias"] == rows["B"]["tb_dyad_directional_bias"] == ""
    assert float(rows["A"]["tb_dyad_truth_force"]) == pytest.approx(0.5, abs=1e-6)
