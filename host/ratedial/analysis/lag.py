"""A rater's reaction lag against another series, with a block-bootstrap interval (pure).

The lag is the shift of the cross-correlation's maximum (``stats.cross_correlation``'s
sign: > 0, ``y`` follows ``x``). Its interval comes from a block bootstrap that keeps time
order inside blocks: the paired series are cut into non-overlapping blocks of ``block``
bins; for every block and lag the sums a cross-correlation needs are computed once, using
only pairs inside the block (a lag never reaches across a block edge); a replicate draws
blocks with replacement, adds their sums and takes the lag of the highest r. The 2.5 and
97.5 percentiles of the replicates' lags are the 95 % interval.

Invariants: no pair is ever formed across a gap (NaN) or a block edge; the result depends
only on the inputs and ``seed``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .stats import lag_sign

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, kw_only=True)
class Lag:
    lag_s: float  # > 0: y follows x
    r: float
    ci_low_s: float
    ci_high_s: float
    replicates: int
    blocks: int


def _block_sums(x: FloatArray, y: FloatArray, max_lag: int, block: int) -> FloatArray:
    """(blocks, lags, 6): n, Σa, Σb, Σa², Σb², Σab over the pairs of each block and lag."""
    n_blocks = len(x) // block
    lags = np.arange(-max_lag, max_lag + 1)
    out = np.zeros((n_blocks, len(lags), 6))
    for i in range(n_blocks):
        xs, ys = x[i * block:(i + 1) * block], y[i * block:(i + 1) * block]
        for j, lag in enumerate(lags):
            if abs(lag) >= block:
                continue
            a, b = (xs[: block - lag], ys[lag:]) if lag >= 0 else (xs[-lag:], ys[: block + lag])
            ok = ~np.isnan(a) & ~np.isnan(b)
            a, b = a[ok], b[ok]
            out[i, j] = (len(a), a.sum(), b.sum(), (a * a).sum(), (b * b).sum(), (a * b).sum())
    return out


def _r(s: FloatArray) -> FloatArray:
    n, sa, sb, saa, sbb, sab = (s[..., k] for k in range(6))
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = sab - sa * sb / n
        va = saa - sa * sa / n
        vb = sbb - sb * sb / n
        r = cov / np.sqrt(va * vb)
    return np.where((n >= 3) & (va > 0) & (vb > 0), r, np.nan)


def _best(r: FloatArray, lags: npt.NDArray[np.int64],
          sign: float = 1.0) -> npt.NDArray[np.int64]:
    """Per row, the lag of the highest ``sign * r`` (the smallest |lag| among equal maxima),
    as :func:`~.stats.best_lag`; ``sign`` is the whole series' (:func:`~.stats.lag_sign`)."""
    filled = np.where(np.isnan(r), -np.inf, sign * r)
    top = filled.max(axis=-1, keepdims=True)
    tie = np.isclose(filled, top, rtol=0, atol=1e-12)
    score = np.where(tie, -np.abs(lags), np.iinfo(np.int64).min)
    return np.asarray(lags[np.argmax(score, axis=-1)], dtype=np.int64)


def reaction_lag(x: FloatArray, y: FloatArray, *, rate_hz: float, max_lag_s: float,
                 block_s: float, replicates: int = 1000, seed: int = 0) -> Lag | None:
    """The lag of ``y`` behind ``x`` and its 95 % block-bootstrap interval.

    ``None`` when fewer than two blocks hold pairs. Blocks are at least four times the
    largest lag, so that most of every block's pairs exist at every lag.
    """
    max_lag = max(0, round(max_lag_s * rate_hz))
    block = max(round(block_s * rate_hz), 4 * max_lag, 1)
    sums = _block_sums(x, y, max_lag, block)
    sums = sums[sums[:, max_lag, 0] > 0]  # blocks with pairs at lag 0
    if len(sums) < 2:
        return None
    lags = np.arange(-max_lag, max_lag + 1, dtype=np.int64)
    r_all = _r(sums.sum(axis=0))
    if not np.isfinite(r_all).any():
        return None
    sign = lag_sign(lags, r_all)  # one estimator for the series and every replicate
    best = int(_best(r_all[None, :], lags, sign)[0])
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(len(sums), np.full(len(sums), 1 / len(sums)), size=replicates)
    rep = np.einsum("rb,blk->rlk", counts.astype(np.float64), sums)
    lag_rep = _best(_r(rep), lags, sign) / rate_hz
    lo, hi = np.percentile(lag_rep, [2.5, 97.5])
    return Lag(lag_s=best / rate_hz, r=float(r_all[best + max_lag]), ci_low_s=float(lo),
               ci_high_s=float(hi), replicates=replicates, blocks=len(sums))


def shift(y: FloatArray, lag_bins: int) -> FloatArray:
    """``y`` moved back by ``lag_bins`` (``out[t] = y[t + lag]``), NaN where it runs out:
    after it, a rater who follows by ``lag`` lines up with the one followed."""
    out = np.full(len(y), np.nan)
    if lag_bins >= 0:
        out[: len(y) - lag_bins] = y[lag_bins:]
    else:
        out[-lag_bins:] = y[: len(y) + lag_bins]
    return out


def fmt_lag(lag: Lag, a: str, b: str) -> str:
    ci = f"95% CI [{round(lag.ci_low_s, 2):g}, {round(lag.ci_high_s, 2):g}] s"
    if lag.lag_s == 0:
        return f"no lag (r {lag.r:.2f}; {ci})"
    who = f"{b} follows {a}" if lag.lag_s > 0 else f"{a} follows {b}"
    return f"{who} by {abs(lag.lag_s):g} s (r {lag.r:.2f}; {ci})" if math.isfinite(lag.r) \
        else f"{who} by {abs(lag.lag_s):g} s ({ci})"
