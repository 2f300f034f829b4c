"""Statistics checked against scipy, pingouin, statsmodels and scikit-learn, and the
effective sample size checked for what it is for: honest p values on autocorrelated series."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats as sps

from ratedial.analysis.stats import (
    P_FLOOR,
    Band,
    _all_from,
    _features,
    acf,
    agreement,
    best_lag,
    block_bootstrap,
    categories,
    corr_p,
    cross_correlation,
    describe,
    effective_n,
    rank_average,
)

pingouin = pytest.importorskip("pingouin")
pd = pytest.importorskip("pandas")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning",
                                        "ignore:The inplace keyword:Warning")


def pingouin_icc(xs, ys):
    """ICC(2,1) and ICC(3,1) from pingouin (ICC2/ICC3, or ICC(A,1)/ICC(C,1) in newer
    versions, McGraw & Wong's names for the same forms)."""
    long = pd.DataFrame({"t": np.tile(np.arange(len(xs)), 2),
                         "rater": ["a"] * len(xs) + ["b"] * len(ys),
                         "v": np.concatenate([xs, ys])})
    icc = pingouin.intraclass_corr(data=long, targets="t", raters="rater",
                                   ratings="v").set_index("Type")["ICC"]
    pick = lambda *names: next(float(icc[n]) for n in names if n in icc.index)  # noqa: E731
    return pick("ICC2", "ICC(A,1)"), pick("ICC3", "ICC(C,1)")


def ar1(rng, n, phi):
    e = rng.standard_normal(n)
    x = np.empty(n)
    x[0] = e[0] / np.sqrt(1 - phi * phi)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + e[i]
    return x


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(5)
    common = ar1(rng, 3000, 0.98)
    x = 55 + 10 * (0.7 * common + 0.3 * ar1(rng, 3000, 0.98))
    y = 48 + 8 * (0.7 * common + 0.3 * ar1(rng, 3000, 0.98))
    x[200:260] = np.nan  # a gap in one rater
    y[1000:1010] = np.nan
    return x, y


def test_describe_known_shares():
    v = np.concatenate([np.full(100, 30.0), np.full(100, 50.0), np.full(200, 70.0),
                        np.full(7, np.nan), [45.0, 55.0]])
    d = describe(v, Band(low=45, high=55))
    assert d.n == 402
    assert d.mean == pytest.approx(np.nanmean(v))
    assert d.sd == pytest.approx(np.nanstd(v, ddof=1))
    assert (d.below, d.within, d.above) == pytest.approx((100 / 402, 102 / 402, 200 / 402))
    assert d.range == 40
    assert categories(np.array([44.9, 45, 55, 55.1, np.nan]), Band()).tolist() == [0, 1, 1, 2, -1]


def test_point_estimates_match_scipy_pingouin_and_sklearn(pair):
    x, y = pair
    ag = agreement(x, y, Band(), block_bins=300, replicates=200)
    both = ~np.isnan(x) & ~np.isnan(y)
    xs, ys = x[both], y[both]
    assert ag.n == both.sum()
    assert ag.pearson.value == pytest.approx(sps.pearsonr(xs, ys).statistic, abs=1e-10)
    assert ag.spearman.value == pytest.approx(sps.spearmanr(xs, ys).statistic, abs=1e-10)
    icc2, icc3 = pingouin_icc(xs, ys)
    assert ag.icc2_1.value == pytest.approx(icc2, abs=1e-10)
    assert ag.icc3_1.value == pytest.approx(icc3, abs=1e-10)
    assert ag.icc2_1.value < ag.icc3_1.value  # the raters' means differ: absolute < consistency
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    kappa = sklearn_metrics.cohen_kappa_score(categories(xs, Band()), categories(ys, Band()))
    assert ag.kappa.value == pytest.approx(kappa, abs=1e-10)
    assert np.sum(ag.confusion) == pytest.approx(1.0)
    corr = pingouin.corr(xs, ys)
    assert ag.pearson.value == pytest.approx(corr["r"].iloc[0], abs=1e-10)
    for e in (ag.pearson, ag.spearman, ag.icc2_1, ag.icc3_1, ag.kappa):
        assert e.ci_low <= e.value <= e.ci_high


def test_acf_matches_statsmodels():
    tsa = pytest.importorskip("statsmodels.tsa.stattools")
    x = ar1(np.random.default_rng(1), 2000, 0.8)
    np.testing.assert_allclose(acf(x, 40), tsa.acf(x, nlags=40, fft=False), atol=1e-10)


def test_effective_n_white_noise_and_ar1():
    rng = np.random.default_rng(2)
    n = 6000
    ne = effective_n(rng.standard_normal(n), rng.standard_normal(n))
    assert 0.8 * n < ne <= n
    phi = 0.9
    theory = n * (1 - phi * phi) / (1 + phi * phi)  # Bartlett for two AR(1) with the same phi
    ne_ar = np.median([effective_n(ar1(rng, n, phi), ar1(rng, n, phi)) for _ in range(9)])
    assert 0.75 * theory < ne_ar < 1.3 * theory


def test_effective_n_keeps_false_positives_near_nominal():
    """Independent smooth series: the naive test rejects far too often, ours does not."""
    rng = np.random.default_rng(3)
    naive = ours = 0
    reps = 200
    for _ in range(reps):
        x, y = ar1(rng, 1500, 0.97), ar1(rng, 1500, 0.97)
        r = float(np.corrcoef(x, y)[0, 1])
        naive += corr_p(r, 1500) < 0.05
        ours += corr_p(r, effective_n(x, y)) < 0.05
    assert naive / reps > 0.4
    assert ours / reps < 0.1


def test_bootstrap_sums_equal_resampling_the_rows():
    rng = np.random.default_rng(4)
    x, y = ar1(rng, 103, 0.5) + 50, ar1(rng, 103, 0.5) + 40
    f = _features(x, y, categories(x, Band()), categories(y, Band()))
    sums = block_bootstrap(f, block=10, replicates=5, seed=9)
    # redo the resampling by hand with the same generator calls
    g = np.random.default_rng(9)
    starts = g.integers(0, 103 - 10 + 1, size=(5, 10))
    tail = g.integers(0, 103 - 3 + 1, size=5)
    for i in range(5):
        idx = np.concatenate([np.arange(s, s + 10) for s in starts[i]]
                             + [np.arange(tail[i], tail[i] + 3)])
        xs, ys = x[idx], y[idx]
        np.testing.assert_allclose(sums[i], f[idx].sum(axis=0), atol=1e-8)
        est = _all_from(sums[i], 103)
        assert est["pearson"] == pytest.approx(np.corrcoef(xs, ys)[0, 1], abs=1e-10)
        icc2, icc3 = pingouin_icc(xs, ys)
        assert est["icc2_1"] == pytest.approx(icc2, abs=1e-9)
        assert est["icc3_1"] == pytest.approx(icc3, abs=1e-9)


def test_block_bootstrap_widens_for_autocorrelated_series():
    rng = np.random.default_rng(6)
    n = 4000
    white = agreement(50 + 10 * rng.standard_normal(n), 50 + 10 * rng.standard_normal(n),
                      Band(), block_bins=1, replicates=1000)
    fisher = 2 * 1.96 / np.sqrt(n - 3)  # width of the Fisher z interval around r = 0
    width = white.pearson.ci_high - white.pearson.ci_low
    assert 0.8 * fisher < width < 1.2 * fisher
    x, y = 50 + ar1(rng, n, 0.99), 50 + ar1(rng, n, 0.99)
    iid = agreement(x, y, Band(), block_bins=1, replicates=1000)
    blocks = agreement(x, y, Band(), block_bins=400, replicates=1000)
    assert (blocks.pearson.ci_high - blocks.pearson.ci_low) > 3 * (
        iid.pearson.ci_high - iid.pearson.ci_low)


def test_same_seed_same_interval(pair):
    x, y = pair
    a = agreement(x, y, Band(), block_bins=300, replicates=300, seed=11)
    b = agreement(x, y, Band(), block_bins=300, replicates=300, seed=11)
    c = agreement(x, y, Band(), block_bins=300, replicates=300, seed=12)
    assert a.pearson == b.pearson
    assert a.pearson.ci_low != c.pearson.ci_low


def test_p_value_uses_effective_n(pair):
    x, y = pair
    ag = agreement(x, y, Band(), block_bins=300, replicates=200)
    assert 3 <= ag.n_eff_pearson < ag.n / 10
    r = ag.pearson.value
    t = r * np.sqrt((ag.n_eff_pearson - 2) / (1 - r * r))
    assert ag.pearson_p == pytest.approx(2 * sps.t.sf(abs(t), ag.n_eff_pearson - 2))
    assert ag.pearson_p_naive <= ag.pearson_p


def test_cross_correlation_finds_a_known_lag():
    rng = np.random.default_rng(7)
    base = np.convolve(rng.standard_normal(3000), np.ones(30) / 30, mode="same")
    lag = 23  # bins
    x = base.copy()
    y = np.roll(base, lag) + 0.01 * rng.standard_normal(3000)
    y[:lag] = np.nan
    x[1500:1550] = np.nan
    lags, r = cross_correlation(x, y, 60)
    best, rb = best_lag(lags, r)
    assert best == lag and rb > 0.99
    i = int(np.flatnonzero(lags == -5)[0])
    a, b = x[5:], y[:-5]
    ok = ~np.isnan(a) & ~np.isnan(b)
    assert r[i] == pytest.approx(np.corrcoef(a[ok], b[ok])[0, 1])
    lags2, r2 = cross_correlation(y, x, 60)
    assert best_lag(lags2, r2)[0] == -lag


def test_too_little_overlap_gives_none():
    x = np.full(50, np.nan)
    x[:5] = 1.0
    assert agreement(x, x.copy(), Band(), block_bins=10) is None


def test_icc_does_not_exist_where_both_raters_are_constant():
    """Two raters resting at 50 and 53, then moving: resamples of the rest alone have no
    subject or error variance, ICC(3,1) is 0/0 there; computed from sums it was rounding
    noise (0.5 to 1.75, beyond ICC's bound of 1) inside the interval. Such resamples are
    left out and counted, as for Pearson's r (and ICC(2,1), defined there, stays)."""
    rng = np.random.default_rng(3)
    moving = 50 + np.cumsum(rng.standard_normal(200))
    x = np.concatenate([np.full(400, 50.0), moving])
    y = np.concatenate([np.full(400, 53.0), moving + rng.standard_normal(200)])
    ag = agreement(x, y, Band(), block_bins=100, replicates=400, seed=1)
    assert ag is not None
    assert ag.icc3_1.undefined > 0
    assert ag.icc3_1.undefined == ag.pearson.undefined
    assert ag.icc3_1.ci_high <= 1.0 and ag.icc2_1.ci_high <= 1.0
    assert ag.icc2_1.undefined == 0  # the raters differ: ICC(2,1) = 0 there, not 0/0
    s = _all_from(_features(np.full(50, 50.0), np.full(50, 50.0),
                            categories(np.full(50, 50.0), Band()),
                            categories(np.full(50, 50.0), Band())).sum(axis=0), 50)
    assert np.isnan(s["icc3_1"]) and np.isnan(s["icc2_1"])


def test_lags_with_little_overlap_have_no_r():
    """``--max-lag 1000`` on a 60 s recording reported "b follows a by 47.7 s (r 0.92)" from
    12 s of overlap; a lag now needs half the overlap of lag 0."""
    rng = np.random.default_rng(4)
    x = np.cumsum(rng.standard_normal(600))
    y = x + rng.standard_normal(600)
    y[550:] = x[:50] * 3  # the end of b happens to look like the start of a, 50 bins long
    lags, r = cross_correlation(x, y, 599)
    assert np.isnan(r[np.abs(lags) > 300]).all()
    assert np.isfinite(r[np.abs(lags) <= 300]).all()
    assert best_lag(lags, r)[0] == 0


@given(st.lists(st.integers(-3, 3).map(float) | st.floats(-1e3, 1e3), min_size=1,
                max_size=60))
def test_rank_average_is_scipys_rankdata(xs: list[float]) -> None:
    """Ranks with ties averaged, as scipy.stats.rankdata (default method) gives them: the
    small integers make ties of every length."""
    x = np.asarray(xs, dtype=np.float64)
    assert rank_average(x).tolist() == sps.rankdata(x).tolist()


@pytest.mark.parametrize("r", [0.0, 0.05, -0.3, 0.5, 0.9, -0.999, 0.999999])
@pytest.mark.parametrize("n_eff", [2.5, 3.0, 10.0, 57.3, 1e4])
def test_corr_p_is_the_t_tests_two_sided_p(r: float, n_eff: float) -> None:
    t = r * np.sqrt((n_eff - 2) / (1 - r * r))
    want = max(P_FLOOR, float(2 * sps.t.sf(abs(t), n_eff - 2)))
    assert corr_p(r, n_eff) == pytest.approx(want, rel=1e-12, abs=0)


def test_analyze_loads_no_scipy_stats_or_signal(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """scipy.stats and scipy.signal take most of a second to load: an analysis without the
    Truth-and-Bias model (statsmodels loads them) does without them."""
    import subprocess
    import sys

    from ratedial.analysis.synth import SynthMedia, piecewise, simple_rater, write_recording
    path = tmp_path / "D01.ratedial"
    write_recording(path, [
        simple_rater("client", piecewise([20, 40], [30, 70, 50]), 60, uid="aa"),
        simple_rater("therapist", piecewise([25, 45], [40, 80, 45]), 60, uid="bb")],
        rate_hz=50, media=SynthMedia(duration_s=60.0), session={"dyad": "D01"})
    code = ("import sys, runpy\n"
            "sys.argv = ['ratedial', 'analyze', sys.argv[1], '--json', '--bootstrap', '200',\n"
            "            '--no-truth-bias']\n"
            "try:\n    runpy.run_module('ratedial', run_name='__main__')\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "print(sorted(m for m in sys.modules if m in ('scipy.stats', 'scipy.signal')))")
    res = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                         text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "[]", res.stdout[-500:]
