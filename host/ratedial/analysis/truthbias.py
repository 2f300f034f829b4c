"""West and Kenny's (2011) Truth-and-Bias model over many dyads: the client's ratings as the
truth, the therapist's as the judgment, moment by moment.

For dyad *i* and moment *t* (one row per ``step_s`` seconds of video rated by both, the
mean of the grid bins in it), with ``M`` the mean of all truth values over all dyads::

    J_it - M = b0 + b1 (T_it - M) + u0_i + u1_i (T_it - M) + e_it

* ``b1``, the **truth force**: how strongly the therapist's rating follows the client's
  (1: moves one point per point; 0: unrelated).
* ``b0``, the **directional bias**: how far the therapist's rating lies above (> 0) or
  below (< 0) the client's at the client's mean rating.
* ``u0_i``, ``u1_i``: dyad random effects (intercept and slope; their SDs are reported),
  ``e_it`` the residual.

Fitted by restricted maximum likelihood with statsmodels ``MixedLM``; with one dyad only, by
ordinary least squares (no random effects; said in ``method``). :func:`reml_fit` is a second,
independent fit of the same model (the REML likelihood written out, maximised by scipy) that
the tests compare with statsmodels and, where R is installed, with lme4.

Caveat, stated in every output: the moments of one session are autocorrelated, so the
standard errors are too small whatever the step (a coarser ``step_s`` helps); use the
estimates, and the intervals with care.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from .align import padded
from .fmt import fmt_range
from .groups import Group

FloatArray = npt.NDArray[np.float64]

CAVEAT = ("moments within a session are autocorrelated: standard errors and p values are "
          "too small; read the estimates, and the intervals with care")


@dataclass(frozen=True, kw_only=True)
class TBData:
    dyad: list[str]
    truth: FloatArray  # T - M
    judgment: FloatArray  # J - M
    mean_truth: float  # M
    step_s: float


@dataclass(frozen=True, kw_only=True)
class TruthBias:
    truth_force: float
    truth_force_se: float
    directional_bias: float
    directional_bias_se: float
    sd_dyad_intercept: float | None
    sd_dyad_slope: float | None
    sd_residual: float
    mean_truth: float
    n_dyads: int
    n_moments: int
    step_s: float
    method: str  # "REML mixed model (statsmodels MixedLM)" or "OLS (one dyad)"
    truth: str  # role label of the truth (client)
    judge: str  # role label of the judge (therapist)
    notes: tuple[str, ...] = field(default_factory=tuple)
    #: per dyad: (truth force, directional bias) = fixed effects plus its random effects
    by_dyad: dict[str, tuple[float, float]] = field(default_factory=dict)

    def ci(self, which: str) -> tuple[float, float]:
        est, se = ((self.truth_force, self.truth_force_se) if which == "truth_force"
                   else (self.directional_bias, self.directional_bias_se))
        return est - 1.959964 * se, est + 1.959964 * se


def one_scale(groups: Sequence[Group]) -> tuple[list[Group], list[str]]:
    """The paired groups the model may pool, and why each other one is left out.

    A bias is a difference of ratings and a truth force a slope of one on the other: both
    mean nothing across units. So a dyad whose two raters are on different scales is left
    out, and of the rest, the dyads on the scale most of them share (the first's on a tie):
    never a fit of 1-7 judgments on 0-100 truths."""
    same: dict[tuple[float, float], list[Group]] = {}
    why: list[str] = []
    for g in groups:
        if g.pair is None:
            continue
        ka, kb = (s.recording.scale_range for s in g.pair)
        if ka != kb:
            why.append(f"{g.label} (the raters' scales differ: {g.pair[0].rater} "
                       f"{fmt_range(ka)}, {g.pair[1].rater} {fmt_range(kb)})")
        else:
            same.setdefault(ka, []).append(g)
    if not same:
        return [], why
    key = max(same, key=lambda k: len(same[k]))  # the first of the most on a tie
    for k, gs in same.items():
        if k != key:
            why += [f"{g.label} (on the scale {fmt_range(k)}, the study's "
                    f"{fmt_range(key)})" for g in gs]
    return same[key], why


def tb_data(groups: Sequence[Group], *, step_s: float = 1.0) -> TBData | None:
    """Rows for the model from every paired group: ``step_s`` means of bins rated by both.

    ``None`` without a paired moment, or when the truth is the same at every moment."""
    dyads: list[str] = []
    ts: list[FloatArray] = []
    js: list[FloatArray] = []
    for g in groups:
        if g.pair is None:
            continue
        n = g.n_bins
        a, b = padded(g.pair[0].values, n), padded(g.pair[1].values, n)
        k = max(1, round(step_s * g.rate_hz))
        m = n // k
        if m == 0:
            continue
        both = ~np.isnan(a[: m * k]) & ~np.isnan(b[: m * k])
        aa = np.where(both, a[: m * k], 0.0).reshape(m, k)
        bb = np.where(both, b[: m * k], 0.0).reshape(m, k)
        cnt = both.reshape(m, k).sum(axis=1)
        keep = cnt >= max(1, k // 2)  # at least half of the step rated by both
        if not keep.any():
            continue
        ts.append(aa.sum(axis=1)[keep] / cnt[keep])
        js.append(bb.sum(axis=1)[keep] / cnt[keep])
        dyads += [g.label] * int(keep.sum())
    if not ts:
        return None
    t = np.concatenate(ts)
    j = np.concatenate(js)
    if len(t) < 3 or float(np.ptp(t)) == 0:  # a truth that never moves has no force to fit
        return None
    mean_t = float(t.mean())
    return TBData(dyad=dyads, truth=t - mean_t, judgment=j - mean_t, mean_truth=mean_t,
                  step_s=step_s)


def fit(data: TBData, *, truth: str = "client", judge: str = "therapist") -> TruthBias:
    """The Truth-and-Bias model of ``data`` (statsmodels; OLS for one dyad)."""
    n_dyads = len(set(data.dyad))
    notes = [CAVEAT]
    if n_dyads < 2:
        b1, b0, se1, se0, scale = _ols(np.asarray(data.truth, dtype=float),
                                       np.asarray(data.judgment, dtype=float))
        return TruthBias(
            by_dyad={str(data.dyad[0]): (b1, b0)}, truth_force=b1, truth_force_se=se1,
            directional_bias=b0, directional_bias_se=se0, sd_dyad_intercept=None,
            sd_dyad_slope=None, sd_residual=float(np.sqrt(scale)),
            mean_truth=data.mean_truth, n_dyads=n_dyads, n_moments=len(data.dyad),
            step_s=data.step_s, method="OLS (one dyad: no dyad random effects)",
            truth=truth, judge=judge, notes=tuple(notes))
    import pandas as pd
    import statsmodels.formula.api as smf

    df = pd.DataFrame({"dyad": data.dyad, "t": data.truth, "j": data.judgment})
    model = smf.mixedlm("j ~ t", df, groups=df["dyad"], re_formula="~t")
    res, bse, caught = _best_reml(model)
    for w in caught:
        text = str(w.message).splitlines()[0]
        if res.converged and ("Retrying" in text or "failed to converge" in text):
            continue
        if text and f"statsmodels: {text}" not in notes:
            notes.append(f"statsmodels: {text}")
    if n_dyads < 5:
        notes.append(f"{n_dyads} dyads: the dyad variances are poorly determined")
    cov = np.asarray(res.cov_re)
    b0, b1 = float(res.fe_params["Intercept"]), float(res.fe_params["t"])
    by_dyad = {str(d): (b1 + float(re.iloc[1]), b0 + float(re.iloc[0]))
               for d, re in res.random_effects.items()}
    return TruthBias(by_dyad=by_dyad,
        truth_force=float(res.fe_params["t"]), truth_force_se=float(bse["t"]),
        directional_bias=float(res.fe_params["Intercept"]),
        directional_bias_se=float(bse["Intercept"]),
        sd_dyad_intercept=float(math.sqrt(max(cov[0, 0], 0.0))),
        sd_dyad_slope=float(math.sqrt(max(cov[1, 1], 0.0))),
        sd_residual=float(math.sqrt(res.scale)), mean_truth=data.mean_truth,
        n_dyads=n_dyads, n_moments=len(df), step_s=data.step_s,
        method="REML mixed model (statsmodels MixedLM), dyad random intercept and slope",
        truth=truth, judge=judge, notes=tuple(notes))


def _ols(t: FloatArray, j: FloatArray) -> tuple[float, float, float, float, float]:
    """``j = b0 + b1 t`` by least squares, as statsmodels' ``OLS(j, add_constant(t)).fit()``
    computes it (pseudo-inverse; residual variance over ``n`` minus the design's rank):
    slope, intercept, their standard errors and the residual variance. In numpy: importing
    statsmodels took 0.9 s of a one-dyad analysis's 2 s (tests compare with statsmodels)."""
    x = np.column_stack([np.ones_like(t), t])
    pinv = np.linalg.pinv(x)
    b0, b1 = pinv @ j
    resid = j - x @ np.array([b0, b1])
    df_resid = len(j) - int(np.linalg.matrix_rank(x))
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = float(np.float64(resid @ resid) / np.float64(df_resid))
        se0, se1 = np.sqrt(np.diag(pinv @ pinv.T) * scale)
    return float(b1), float(b0), float(se1), float(se0), scale


# Optimizers tried for the REML fit: the first two always, the others when those two disagree
# or did not converge. One optimizer alone can stop short of the optimum without failing: an
# audit's three-dyad study (2026-12-05) got lbfgs's unconverged fit, then powell's, whose
# dyad SDs and standard errors were 1-23 % below lme4's (bfgs and cg matched lme4).
OPTIMIZERS = ("lbfgs", "bfgs", "powell", "cg")


def _best_reml(model: Any) -> tuple[Any, Any, list[warnings.WarningMessage]]:
    """The fit with the highest restricted likelihood among the optimizers (converged ones
    first), its fixed effects' standard errors and the warnings its fit and errors gave."""
    best: tuple[tuple[bool, float], Any, Any, list[warnings.WarningMessage]] | None = None
    converged_llf: list[float] = []
    for k, method in enumerate(OPTIMIZERS):
        if k == 2 and len(converged_llf) == 2 and abs(converged_llf[0] - converged_llf[1]) < 1e-4:
            break  # the first two agree: the optimum
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                res = model.fit(reml=True, method=[method])
                # read here: a singular fit's standard errors warn (sqrt of a negative
                # variance), which is a note, not a line from statsmodels' source on stderr
                bse = res.bse_fe
            except (ValueError, np.linalg.LinAlgError):
                continue
        llf = float(res.llf) if math.isfinite(res.llf) else -math.inf
        if res.converged:
            converged_llf.append(llf)
        rank = (bool(res.converged), llf)
        if best is None or rank > best[0]:
            best = (rank, res, bse, list(caught))
    if best is None:
        raise ValueError("no optimizer could fit the Truth-and-Bias model")
    return best[1], best[2], best[3]


def reml_fit(data: TBData) -> dict[str, float]:
    """A second fit of the same model, independent of statsmodels: the REML log-likelihood
    of ``y_i ~ N(X_i b, Z_i G Z_i' + s2 I)`` (``X = Z = [1, T-M]``) written out with the
    Woodbury identity and maximised over (log s, Cholesky factor of G / s) with scipy.

    Returns ``b0``, ``b1``, ``sd_intercept``, ``sd_slope``, ``sd_residual``.
    """
    from scipy.optimize import minimize

    labels = np.array(data.dyad)
    groups = [np.flatnonzero(labels == d) for d in dict.fromkeys(data.dyad)]
    xs = [np.column_stack([np.ones(len(ix)), data.truth[ix]]) for ix in groups]
    ys = [data.judgment[ix] for ix in groups]
    p = 2

    def parts(theta: FloatArray) -> tuple[float, Any, Any, Any, float]:
        s2 = math.exp(2 * theta[0])
        lam = np.array([[math.exp(theta[1]), 0.0], [theta[2], math.exp(theta[3])]])
        g = s2 * lam @ lam.T  # G
        xtvx = np.zeros((p, p))
        xtvy = np.zeros(p)
        logdet = 0.0
        cache = []
        ginv = np.linalg.inv(g)
        for x, y in zip(xs, ys, strict=True):
            ztz = x.T @ x  # Z = X
            m = ginv + ztz / s2
            minv = np.linalg.inv(m)
            # V^-1 = I/s2 - Z M^-1 Z' / s2^2 ; log|V| = n log s2 + log|G| + log|M|
            def vinv(a: Any, x: Any = x, minv: Any = minv) -> Any:
                return a / s2 - x @ (minv @ (x.T @ a)) / s2**2
            logdet += (len(y) * math.log(s2) + np.linalg.slogdet(g)[1]
                       + np.linalg.slogdet(m)[1])
            vx = vinv(x)
            xtvx += x.T @ vx
            xtvy += vx.T @ y
            cache.append(vinv)
        b = np.linalg.solve(xtvx, xtvy)
        quad = 0.0
        for x, y, vinv in zip(xs, ys, cache, strict=True):
            r = y - x @ b
            quad += float(r @ vinv(r[:, None])[:, 0])
        return logdet, xtvx, b, g, quad

    def neg_reml(theta: FloatArray) -> float:
        try:
            logdet, xtvx, _b, _g, quad = parts(theta)
        except np.linalg.LinAlgError:
            return 1e300
        return float(0.5 * (logdet + np.linalg.slogdet(xtvx)[1] + quad))

    start = np.array([math.log(float(np.std(data.judgment)) or 1.0), -1.0, 0.0, -3.0])
    best = minimize(neg_reml, start, method="Nelder-Mead",
                    options={"maxiter": 20000, "xatol": 1e-8, "fatol": 1e-10})
    best = minimize(neg_reml, best.x, method="BFGS")
    _logdet, _xtvx, b, g, _quad = parts(best.x)
    return {"b0": float(b[0]), "b1": float(b[1]),
            "sd_intercept": float(math.sqrt(g[0, 0])), "sd_slope": float(math.sqrt(g[1, 1])),
            "sd_residual": float(math.exp(best.x[0]))}


def to_json(tb: TruthBias | None) -> dict[str, Any] | None:
    if tb is None:
        return None

    def num(x: float | None) -> float | None:
        return None if x is None or not math.isfinite(x) else round(float(x), 6)

    lo1, hi1 = tb.ci("truth_force")
    lo0, hi0 = tb.ci("directional_bias")
    return {"truth": tb.truth, "judge": tb.judge, "method": tb.method,
            "truth_force": {"value": num(tb.truth_force), "se": num(tb.truth_force_se),
                            "ci_low": num(lo1), "ci_high": num(hi1)},
            "directional_bias": {"value": num(tb.directional_bias),
                                 "se": num(tb.directional_bias_se), "ci_low": num(lo0),
                                 "ci_high": num(hi0)},
            "sd_dyad_intercept": num(tb.sd_dyad_intercept),
            "sd_dyad_slope": num(tb.sd_dyad_slope), "sd_residual": num(tb.sd_residual),
            "mean_truth": num(tb.mean_truth), "n_dyads": tb.n_dyads,
            "n_moments": tb.n_moments, "step_s": tb.step_s, "notes": list(tb.notes)}


def format_tb(tb: TruthBias) -> str:
    lo1, hi1 = tb.ci("truth_force")
    lo0, hi0 = tb.ci("directional_bias")
    sds = ("-" if tb.sd_dyad_intercept is None else
           f"dyad SD intercept {tb.sd_dyad_intercept:.2f}, slope {tb.sd_dyad_slope:.3f}, ")
    def ci(lo: float, hi: float, digits: int) -> str:  # none where the SE does not exist
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return "95% CI not available"
        return f"95% CI [{lo:.{digits}f}, {hi:.{digits}f}]"

    dyads = "1 dyad" if tb.n_dyads == 1 else f"{tb.n_dyads} dyads"
    lines = [f"Truth and Bias ({tb.judge} judging {tb.truth}; {dyads}, "
             f"{tb.n_moments} moments of {tb.step_s:g} s; {tb.method})",
             f"  truth force       {tb.truth_force:.3f}  {ci(lo1, hi1, 3)}  "
             f"({tb.judge} moves {tb.truth_force:.2f} points per point of {tb.truth})",
             f"  directional bias  {tb.directional_bias:+.2f}  {ci(lo0, hi0, 2)}  "
             f"({tb.judge} rates {'higher' if tb.directional_bias > 0 else 'lower'} than "
             f"{tb.truth} at {tb.truth}'s mean {tb.mean_truth:.1f})",
             f"  {sds}residual SD {tb.sd_residual:.2f}".replace("  -", "  ")]
    lines += [f"  note: {n}" for n in tb.notes]
    return "\n".join(lines)
