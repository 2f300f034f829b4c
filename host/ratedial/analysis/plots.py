"""Figures for papers: both raters over media time, and a one-page dyad overview.

Invariants:

* No global matplotlib state: figures are built on the Agg canvas directly (no pyplot), so
  plotting works without a display and never changes a caller's backend.
* A missing bin is drawn as nothing: lines break at gaps and are never bridged.
* Sizes are in millimetres for print (a full page width is 180 mm); text is at least 7 pt.
  Colours are the Okabe-Ito palette (safe for colour-blind readers), and the raters also
  differ in line style, so the figures survive black-and-white printing.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter

from ..outfile import staged
from .analyse import GroupResult, RaterResult
from .fmt import fmt_num, fmt_p, fmt_signed
from .mediatime import fmt_span, fmt_time
from .read import DEFAULT_ANCHORS, RUN_TIMELINE
from .stats import CATEGORY_NAMES

MM = 1 / 25.4
RATER_COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#56B4E9", "#E69F00")
RATER_STYLES = ("-", "--", "-.", ":", "-", "--")
TOP_COLOR = "#009E73"
BOTTOM_COLOR = "#E69F00"
NEUTRAL_COLOR = "#777777"
RC: Any = {"font.size": 7.5, "axes.titlesize": 8.5, "axes.labelsize": 7.5, "xtick.labelsize": 7,
      "ytick.labelsize": 7, "legend.fontsize": 7, "svg.fonttype": "none",
      "axes.spines.top": False, "axes.spines.right": False}
_STEPS = (5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)


def time_ticks(duration_s: float, max_ticks: int = 10) -> list[float]:
    step = next((s for s in _STEPS if duration_s / s <= max_ticks), _STEPS[-1])
    return [float(x) for x in np.arange(0, duration_s + 1e-9, step)]


def _anchors(result: GroupResult) -> dict[float, str]:
    a = result.group.series[0].recording.anchors()
    return a or dict(DEFAULT_ANCHORS)


def _limits(result: GroupResult) -> tuple[float, float]:
    scale = result.group.series[0].recording.scale
    lo, hi = scale.get("minimum", 0), scale.get("maximum", 100)
    return (float(lo), float(hi)) if isinstance(lo, int | float) and isinstance(
        hi, int | float) else (0.0, 100.0)


def _neutral(result: GroupResult) -> float:
    for v, name in _anchors(result).items():
        if name.lower() == "neutral":
            return v
    band = result.options.band
    return (band.low + band.high) / 2


def _style_axes(ax: Axes, result: GroupResult, *, xlabel: bool) -> None:
    lo, hi = _limits(result)
    pad = (hi - lo) * 0.04
    ax.set_ylim(lo - pad, hi + pad)
    anchors = _anchors(result)
    ax.yaxis.set_major_locator(FixedLocator(list(anchors)))
    ax.set_yticklabels([f"{name} {v:g}" for v, name in anchors.items()])
    dur = result.group.duration_s
    ax.set_xlim(0, dur)
    ax.xaxis.set_major_locator(FixedLocator(time_ticks(dur)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: fmt_time(x)))
    band = result.options.band
    ax.axhspan(band.low, band.high, color="#000000", alpha=0.06, lw=0, zorder=0)
    ax.axhline(_neutral(result), color=NEUTRAL_COLOR, lw=0.6, ls=(0, (1, 1.5)), zorder=1)
    if xlabel:  # a recording without a player is on run time, and says so
        run = result.group.media.timeline == RUN_TIMELINE
        ax.set_xlabel("run time (mm:ss)" if run else "media time (mm:ss)")
    ax.set_ylabel("rating")


def _curve(ax: Axes, r: RaterResult, i: int, n: int, rate: float, **kw: Any) -> None:
    v = np.full(n, np.nan)
    m = min(n, len(r.series.values))
    v[:m] = r.series.values[:m]
    t = (np.arange(n) + 0.5) / rate
    ax.plot(t, v, color=RATER_COLORS[i % len(RATER_COLORS)],
            ls=RATER_STYLES[i % len(RATER_STYLES)], lw=kw.pop("lw", 0.9), label=r.rater,
            zorder=3, **kw)


def _shade_segments(ax: Axes, r: RaterResult) -> None:
    top = ax.get_ylim()[1]
    for s in r.segments:
        color = TOP_COLOR if s.kind == "top" else BOTTOM_COLOR
        # white edges keep adjacent segments apart
        ax.axvspan(s.start_s, s.end_s, facecolor=to_rgba(color, 0.22), edgecolor="white",
                   lw=0.8, zorder=0.5)
        ax.text((s.start_s + s.end_s) / 2, top, s.label, ha="center", va="bottom", fontsize=6.5,
                color="#222222", clip_on=False)


def draw_rater(ax: Axes, result: GroupResult, i: int, *, xlabel: bool) -> None:
    """One rater's curve with its top (green) and bottom (orange) segments shaded."""
    r = result.raters[i]
    _style_axes(ax, result, xlabel=xlabel)
    _shade_segments(ax, r)
    _curve(ax, r, i, result.group.n_bins, result.group.rate_hz)
    ax.set_title(f"{r.rater}: mean {r.describe.mean:.1f}, SD {r.describe.sd:.1f}",
                 loc="left", pad=9)


def draw_both(ax: Axes, result: GroupResult, *, xlabel: bool) -> None:
    """Every rater of the group over media time, with the neutral line."""
    _style_axes(ax, result, xlabel=xlabel)
    for i, r in enumerate(result.raters):
        _curve(ax, r, i, result.group.n_bins, result.group.rate_hz)
    ax.legend(loc="upper right", ncols=len(result.raters), frameon=False,
              bbox_to_anchor=(1, 1.16))


def _new_figure(width_mm: float, height_mm: float) -> Figure:
    fig = Figure(figsize=(width_mm * MM, height_mm * MM), dpi=150, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def time_course(result: GroupResult, *, width_mm: float = 180.0) -> Figure:
    """Both raters overlaid, then one panel per rater with its segments shaded."""
    with mpl.rc_context(RC):
        k = len(result.raters)
        fig = _new_figure(width_mm, 42 * (k + 1) + 10)
        axes = fig.subplots(k + 1, 1, sharex=True)
        ax_list = list(np.atleast_1d(axes))
        draw_both(ax_list[0], result, xlabel=False)
        ax_list[0].set_title(f"{result.label}: {result.group.media.name}", loc="left", pad=9)
        for i in range(k):
            draw_rater(ax_list[i + 1], result, i, xlabel=i == k - 1)
    return fig


def _summary_text(result: GroupResult) -> str:
    lines = []
    for r in result.raters:
        d = r.describe
        lines.append(f"{r.rater}: mean {d.mean:.1f} (SD {d.sd:.1f}), below/within/above "
                     f"{d.below:.0%}/{d.within:.0%}/{d.above:.0%}, rated {r.coverage:.0%}")
    p = result.pair
    if p is not None and p.agreement is not None:
        ag = p.agreement
        lines += [
            "",
            f"Pearson r {fmt_num(ag.pearson.value, 2)} [{fmt_num(ag.pearson.ci_low, 2)}, "
            f"{fmt_num(ag.pearson.ci_high, 2)}], p {fmt_p(ag.pearson_p)} "
            f"(eff. n {fmt_num(ag.n_eff_pearson, 0)})",
            f"Spearman rho {fmt_num(ag.spearman.value, 2)} [{fmt_num(ag.spearman.ci_low, 2)}, "
            f"{fmt_num(ag.spearman.ci_high, 2)}]",
            f"ICC(2,1) {fmt_num(ag.icc2_1.value, 2)}   ICC(3,1) {fmt_num(ag.icc3_1.value, 2)}   "
            f"kappa {fmt_num(ag.kappa.value, 2)}",
            f"best lag {fmt_signed(p.best_lag_s)} s ({p.b} after {p.a} when > 0), "
            f"r {fmt_num(p.best_lag_r, 2)}",
        ]
        if p.divergent:
            lines.append("most divergent: " + ", ".join(
                f"{fmt_span(d.start_s, d.end_s)}" for d in p.divergent))
    return "\n".join(lines)


def overview(result: GroupResult) -> Figure:
    """A one-page (A4 portrait) dyad overview: curves, segments, lag, categories, figures."""
    with mpl.rc_context(RC):
        fig = _new_figure(180, 260)
        k = len(result.raters)
        gs = fig.add_gridspec(k + 3, 2, height_ratios=[1.0] * (k + 1) + [0.9, 0.9])
        ax0 = fig.add_subplot(gs[0, :])
        draw_both(ax0, result, xlabel=False)
        ax0.set_title(f"{result.label}: {result.group.media.name} "
                      f"({fmt_time(result.group.duration_s)})", loc="left", pad=9)
        for i in range(k):
            ax = fig.add_subplot(gs[i + 1, :], sharex=ax0)
            draw_rater(ax, result, i, xlabel=i == k - 1)
        p = result.pair
        ax_lag = fig.add_subplot(gs[k + 1, 0])
        ax_cat = fig.add_subplot(gs[k + 1, 1])
        if p is not None:
            ax_lag.plot(p.lags_s, p.xcorr, color="#000000", lw=0.9)
            if math.isfinite(p.best_lag_s):  # none when no lag has an r
                ax_lag.axvline(p.best_lag_s, color=NEUTRAL_COLOR, lw=0.6, ls="--")
            ax_lag.set_xlabel(f"lag (s; > 0: {p.b} after {p.a})")
            ax_lag.set_ylabel("r")
            ax_lag.set_title("cross-correlation", loc="left")
            if p.agreement is not None:
                m = np.array(p.agreement.confusion)
                ax_cat.imshow(m, cmap="Greys", vmin=0, vmax=max(0.01, float(m.max())))
                for i in range(3):
                    for j in range(3):
                        ax_cat.text(j, i, f"{m[i, j]:.0%}", ha="center", va="center",
                                    color="#ffffff" if m[i, j] > m.max() / 2 else "#000000")
                ax_cat.set_xticks(range(3), CATEGORY_NAMES)
                ax_cat.set_yticks(range(3), CATEGORY_NAMES)
                ax_cat.set_xlabel(p.b)
                ax_cat.set_ylabel(p.a)
                ax_cat.set_title("share of common time", loc="left")
        else:
            ax_lag.set_axis_off()
            ax_cat.set_axis_off()
        ax_txt = fig.add_subplot(gs[k + 2, :])
        ax_txt.set_axis_off()
        ax_txt.text(0, 1, _summary_text(result), va="top", ha="left", family="monospace",
                    fontsize=7)
    return fig


def save(fig: Figure, path: Path) -> Path:
    """Save as PNG (300 dpi) or SVG by ``path``'s suffix; the file is private (0600)."""
    with staged(path, overwrite=True) as part, mpl.rc_context(RC):
        fig.savefig(part, dpi=300 if path.suffix.lower() == ".png" else None)
    return path


MAX_NAME_BYTES = 100  # of a label in a file name: with prefix and suffix well under 255


def safe_name(label: str) -> str:
    """``label`` as part of a file name: characters a name cannot hold become ``_``; a long
    one is cut (at a character) and given a hash of the whole label, so it stays unique."""
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in label) or "dyad"
    if len(name.encode()) > MAX_NAME_BYTES:
        digest = hashlib.sha256(label.encode()).hexdigest()[:8]
        cut = name.encode()[:MAX_NAME_BYTES - 9].decode("utf-8", "ignore")
        name = f"{cut}-{digest}"
    return name


def safe_names(labels: Sequence[str]) -> list[str]:
    """:func:`safe_name` of each label, made unique (``A_B``, ``A_B-2``, ...; compared
    without case, as Windows and macOS compare file names): two dyads whose labels differ
    only in characters a file name cannot hold (``A/B`` and ``A_B``) never share a file."""
    out: list[str] = []
    taken: set[str] = set()
    for label in labels:
        base = name = safe_name(label)
        k = 1
        while name.lower() in taken:
            k += 1
            name = f"{base}-{k}"
        taken.add(name.lower())
        out.append(name)
    return out


def write_plots(results: Sequence[GroupResult], directory: Path,
                formats: Sequence[str] = ("png", "svg")) -> list[Path]:
    out = []
    for r, name in zip(results, safe_names([r.label for r in results]), strict=True):
        figs = {"": time_course(r), "-overview": overview(r)}
        for suffix, fig in figs.items():
            for fmt in formats:
                out.append(save(fig, directory / f"{name}{suffix}.{fmt}"))
    return out
