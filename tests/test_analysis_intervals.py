"""Interval estimates are honest: an interval contains its estimate or says why not (issue 15).

A two-rater demo printed kappa ``0.00 95% CI [0.00, 0.00]`` around an estimate of 0.0035:
in most bootstrap resamples one rater used a single category, where kappa is exactly 0.
"""

from __future__ import annotations

import numpy as np

from ratedial.analysis.report import _est, _notes
from ratedial.analysis.stats import Band, _estimate, agreement

Q = (2.5, 97.5)


def test_an_interval_that_misses_its_estimate_says_why():
    reps = np.zeros(2000)
    reps[:40] = 0.1  # 2 % of resamples saw both raters use several categories
    e = _estimate("kappa", 0.0035, reps, Q)
    assert (e.ci_low, e.ci_high) == (0.0, 0.0)
    assert e.note is not None
    assert "0.0035" in e.note and "98% of 2000 resamples gave exactly 0" in e.note
    assert "single category" in e.note
    assert _est(e) == "0.0035  95% CI [0.0000, 0.0000]"
    assert _notes(("kappa", e)) == [f"  note: kappa: {e.note}"]


def test_an_interval_containing_its_estimate_has_no_note_and_counts_undefined():
    rng = np.random.default_rng(1)
    reps = rng.normal(0.5, 0.05, 1000)
    reps[:25] = np.nan  # a rater constant throughout these resamples
    e = _estimate("pearson", 0.5, reps, Q)
    assert e.note is None and e.undefined == 25
    assert e.ci_low < 0.5 < e.ci_high
    assert _notes(("Pearson r", e)) == [
        "  note: Pearson r: 25 bootstrap resamples undefined, left out of the interval"]


def test_every_interval_from_agreement_contains_its_estimate_or_has_a_note():
    """Raters that agree little, one mostly neutral: the kappa case of the demo."""
    rng = np.random.default_rng(5)
    n = 1200
    x = 50 + 30 * np.sin(np.arange(n) / 40) + rng.normal(0, 3, n)
    y = np.full(n, 50.0) + rng.normal(0, 1, n)
    y[600:612] = 70.0  # the only moment the second rater left neutral
    ag = agreement(x, y, Band(low=45, high=55), block_bins=300, replicates=500, seed=0)
    assert ag is not None
    for e in (ag.pearson, ag.spearman, ag.icc2_1, ag.icc3_1, ag.kappa):
        inside = e.ci_low - 1e-9 <= e.value <= e.ci_high + 1e-9
        assert inside or e.note is not None, e
    assert np.isfinite(ag.kappa.value)
