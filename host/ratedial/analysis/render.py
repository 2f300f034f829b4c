"""``ratedial render``: the video with the rating traces drawn over it, written by ffmpeg.

A panel across the lower part of the frame shows every rater's trace over the whole video
(gaps left blank), the neutral band, each rater's top and bottom segments as strips, and a
cursor that moves with the video. The panel is drawn once (matplotlib, one PNG); ffmpeg
overlays it and moves a cursor over it with an expression of the frame's time, so the cost
is one decode and one encode of the video, whatever its length.

Invariants:

* The panel's geometry is :class:`Layout`, pure and exact: time ``t`` is at pixel column
  ``x_of(t)``, rating ``v`` at row ``y_of(v)`` of the output frame. The test decodes frames
  and checks traces and cursor at those pixels.
* A missing bin is drawn as nothing; lines are never bridged across gaps.
* The output is created with mode 0600 (it shows clinical video and ratings). ffmpeg writes
  a private temporary file beside it, which becomes the output only when ffmpeg succeeded:
  a failed or interrupted render leaves nothing behind and no existing file changed.
* The output is never a recording (or its SQLite side files) or the video being rendered,
  and an existing output is replaced only when asked (``overwrite``).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .._platform.privacy import open_private
from ..outfile import staged
from .align import padded
from .errors import UsageError
from .guard import refuse_inputs, same_file
from .segments import Segment

#: Okabe-Ito colours, the same as the figures' (plots.RATER_COLORS), as RGB.
RATER_RGB = ((0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (86, 180, 233),
             (230, 159, 0))
TOP_RGB = (0, 158, 115)
BOTTOM_RGB = (230, 159, 0)
CURSOR_RGB = (255, 255, 255)
PANEL_ALPHA = 0.8  # the panel's black background over the video


#: Audio an MP4 holds, copied as it is; other audio (PCM, Vorbis, ...) is encoded to AAC.
MP4_AUDIO = frozenset({"aac", "mp3", "alac", "ac3", "eac3"})
MP4_SUFFIXES = frozenset({".mp4", ".m4v"})


@dataclass(frozen=True, kw_only=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    duration_s: float
    audio: tuple[str, ...] = ()  # the codec of each audio stream


@dataclass(frozen=True, kw_only=True)
class Layout:
    """Where the panel lies in the output frame (pixels, origin top left)."""

    width: int
    height: int
    duration_s: float
    panel_h: int
    margin_x: int
    pad_y: int
    strip_h: int  # height of one rater's segment strip, at the top of the panel
    n_strips: int
    low: float = 0.0  # the scale's ends
    high: float = 100.0

    @classmethod
    def for_video(cls, info: VideoInfo, *, n_raters: int, share: float = 0.32,
                  low: float = 0.0, high: float = 100.0) -> Layout:
        panel_h = max(60, 2 * round(info.height * share / 2))
        strip_h = max(4, 2 * round(panel_h / 28))
        return cls(width=info.width, height=info.height, duration_s=info.duration_s,
                   panel_h=panel_h, margin_x=max(4, info.width // 40),
                   pad_y=max(4, panel_h // 14), strip_h=strip_h, n_strips=n_raters,
                   low=low, high=high)

    @property
    def panel_y(self) -> int:
        return self.height - self.panel_h

    @property
    def plot_top(self) -> int:
        """First row of the trace area (below the segment strips)."""
        return self.panel_y + self.pad_y + self.n_strips * self.strip_h

    @property
    def plot_bottom(self) -> int:
        return self.height - self.pad_y

    @property
    def plot_w(self) -> int:
        return self.width - 2 * self.margin_x

    def x_of(self, t_s: float) -> float:
        return self.margin_x + t_s / self.duration_s * self.plot_w

    def y_of(self, value: float) -> float:
        frac = (value - self.low) / (self.high - self.low)
        return self.plot_bottom - frac * (self.plot_bottom - self.plot_top)


@dataclass(frozen=True, kw_only=True)
class Trace:
    rater: str
    values: np.ndarray  # grid values (NaN: missing)
    rate_hz: float
    segments: tuple[Segment, ...]


def probe(video: Path) -> VideoInfo:
    """Width, height, frame rate and duration of ``video`` (ffprobe)."""
    if shutil.which("ffprobe") is None or shutil.which("ffmpeg") is None:
        raise UsageError("render needs ffmpeg and ffprobe (Debian/Ubuntu: apt-get install "
                         "ffmpeg; macOS: brew install ffmpeg)")
    res = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries",
         "stream=codec_type,codec_name,width,height,avg_frame_rate:format=duration", "-of",
         "json", str(video)],
        capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
    try:
        info = json.loads(res.stdout)
        streams = info["streams"]
        st = next(x for x in streams if x.get("codec_type") == "video")
        num, _, den = str(st["avg_frame_rate"]).partition("/")
        fps = float(num) / float(den or 1)
        return VideoInfo(width=int(st["width"]), height=int(st["height"]),
                         fps=fps if math.isfinite(fps) and fps > 0 else 25.0,
                         duration_s=float(info["format"]["duration"]),
                         audio=tuple(str(x.get("codec_name")) for x in streams
                                     if x.get("codec_type") == "audio"))
    except (ValueError, KeyError, IndexError, ZeroDivisionError, StopIteration, TypeError):
        raise UsageError(f"{video}: ffprobe finds no video stream in it") from None


def draw_panel(layout: Layout, traces: Sequence[Trace], band: tuple[float, float],
               path: Path) -> None:
    """The panel as an RGBA PNG of ``layout.width`` x ``layout.panel_h`` pixels."""
    w, h = layout.width, layout.panel_h
    dpi = 100
    fig = Figure(figsize=(w / dpi, h / dpi), dpi=dpi)
    fig.patch.set_facecolor((0, 0, 0, PANEL_ALPHA))
    # The axes cover exactly the trace area: data maps onto the pixels of Layout.
    top = layout.plot_top - layout.panel_y
    bottom = layout.plot_bottom - layout.panel_y
    ax = fig.add_axes((layout.margin_x / w, (h - bottom) / h, layout.plot_w / w,
                       (bottom - top) / h))
    ax.set_xlim(0, layout.duration_s)
    ax.set_ylim(layout.low, layout.high)
    ax.set_axis_off()
    ax.axhspan(band[0], band[1], color=(1, 1, 1, 0.18), linewidth=0)
    lw = max(3.0, h / 36) * 72 / dpi  # pixels to points; thick enough for 4:2:0 chroma
    for i, tr in enumerate(traces):
        t = np.arange(len(tr.values)) / tr.rate_hz + 0.5 / tr.rate_hz  # bin centres
        keep = t <= layout.duration_s
        ax.plot(t[keep], tr.values[keep], color=_rgb(RATER_RGB[i % len(RATER_RGB)]),
                linewidth=lw, solid_capstyle="butt", antialiased=True)
    # One strip per rater above the traces: its top (green) and bottom (orange) segments.
    for i, tr in enumerate(traces):
        y0 = layout.pad_y + i * layout.strip_h  # rows from the panel's top
        sx = fig.add_axes((layout.margin_x / w, (h - y0 - layout.strip_h) / h,
                           layout.plot_w / w, layout.strip_h / h))
        sx.set_xlim(0, layout.duration_s)
        sx.set_ylim(0, 1)
        sx.set_axis_off()
        sx.axhspan(0.3, 0.7, color=_rgb(RATER_RGB[i % len(RATER_RGB)]), linewidth=0)
        for seg in tr.segments:
            colour = TOP_RGB if seg.kind == "top" else BOTTOM_RGB
            sx.axvspan(seg.start_s, seg.end_s, color=_rgb(colour), linewidth=0)
    # Rater names at the right end, above the scale's top (the last ~6 % of the time axis).
    for i, tr in enumerate(traces):
        fig.text((w - layout.margin_x - 2) / w, 1 - (top + 1 + i * 11) / h, tr.rater,
                 color=_rgb(RATER_RGB[i % len(RATER_RGB)]), fontsize=7, va="top",
                 ha="right")
    FigureCanvasAgg(fig)
    with os.fdopen(open_private(path), "wb") as fh:
        fig.savefig(fh, format="png", dpi=dpi, facecolor=fig.get_facecolor())


def _rgb(c: tuple[int, int, int]) -> tuple[float, float, float]:
    return (c[0] / 255, c[1] / 255, c[2] / 255)


def filter_graph(layout: Layout, *, cursor_w: int) -> str:
    """The ffmpeg graph: the panel over the video, and the cursor moving with ``t``."""
    scale = layout.plot_w / layout.duration_s
    x = f"{layout.margin_x}+t*{scale:.9f}-{cursor_w / 2:g}"
    return (f"[0:v][1:v]overlay=x=0:y={layout.panel_y}:shortest=1[p];"
            f"[p][2:v]overlay=x='{x}':y={layout.panel_y}:shortest=1:eval=frame,"
            "format=yuv420p[v]")


def check_output(output: Path, *, recordings: Sequence[Path], video: Path,
                 overwrite: bool = False) -> None:
    """Refuse (one line) an output that is a recording, one of its SQLite side files, any
    SQLite database (:func:`~ratedial.analysis.guard.refuse_inputs`) or the video, and an
    existing output unless ``overwrite``. Writes nothing."""
    refuse_inputs([output], recordings=recordings, option="-o")
    if same_file(output, video):
        raise UsageError(f"-o {output} is the video being rendered: render never writes over "
                         "it; choose another -o")
    if not overwrite and os.path.lexists(output):
        raise UsageError(f"{output} exists: choose another -o, or pass --overwrite to "
                         "replace it")


def render(video: Path, traces: Sequence[Trace], output: Path, *,
           band: tuple[float, float] = (45.0, 55.0), scale: tuple[float, float] = (0.0, 100.0),
           duration_s: float | None = None, preset: str = "veryfast", crf: int = 23,
           overwrite: bool = False) -> Layout:
    """Write ``output`` (MP4, H.264, the video's audio copied, or encoded to AAC when an MP4
    cannot hold it: :func:`audio_args`); returns the layout used.
    An existing ``output`` is replaced only when ``overwrite`` (never the video itself)."""
    check_output(output, recordings=(), video=video, overwrite=overwrite)
    info = probe(video)
    dur = duration_s or info.duration_s
    layout = Layout.for_video(
        VideoInfo(width=info.width, height=info.height, fps=info.fps, duration_s=dur),
        n_raters=len(traces), low=scale[0], high=scale[1])
    cursor_w = max(2, 2 * round(info.width / 400))
    with tempfile.TemporaryDirectory(prefix="ratedial-render-") as tmp:
        panel = Path(tmp) / "panel.png"
        draw_panel(layout, traces, band, panel)
        with staged(output, overwrite=overwrite) as part:
            cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(video),
                   "-loop", "1", "-framerate", f"{info.fps:g}", "-i", str(panel),
                   "-f", "lavfi", "-i",
                   f"color=c=white:s={cursor_w}x{layout.panel_h}:r={info.fps:g}",
                   "-filter_complex", filter_graph(layout, cursor_w=cursor_w),
                   "-map", "[v]", "-map", "0:a?", "-c:v", "libx264", "-preset", preset,
                   "-crf", str(crf), *audio_args(info, output), "-movflags", "+faststart",
                   str(part)]
            res = subprocess.run(cmd, capture_output=True, text=True, check=False,
                                 stdin=subprocess.DEVNULL)
            if res.returncode != 0:
                raise UsageError(_ffmpeg_failed(res.stderr, res.returncode, part, output))
    return layout


def audio_args(info: VideoInfo, output: Path) -> list[str]:
    """The audio copied, unless the output is an MP4 and some audio is of a kind an MP4
    cannot hold (PCM from a camera, Vorbis): then all of it is encoded to AAC."""
    if output.suffix.lower() in MP4_SUFFIXES and not set(info.audio) <= MP4_AUDIO:
        return ["-c:a", "aac", "-b:a", "192k"]
    return ["-c:a", "copy"]


def _ffmpeg_failed(stderr: str, code: int, part: Path, output: Path) -> str:
    """ffmpeg's reason in one line, naming the output (not the temporary file): its first
    error line, which gives the cause (the last ones are the steps that failed after it, e.g.
    "Error initializing output stream 0:0 --"), without its ``[mp4 @ 0x...]`` prefix."""
    if "suitable output format" in stderr:
        return (f"-o {output}: ffmpeg knows no video format by the name's suffix "
                f"({output.suffix or 'none'}): name the output .mp4")
    lines = [re.sub(r"^\[[^]]* @ 0x[0-9a-f]+\] *", "", ln).strip()
             for ln in stderr.replace(str(part), str(output)).splitlines()]
    why = [ln for ln in lines if ln]
    return f"ffmpeg could not render {output}: {why[0] if why else f'exit status {code}'}"


def traces_of(values: Sequence[tuple[str, np.ndarray, float, Sequence[Segment]]],
              n: int) -> list[Trace]:
    return [Trace(rater=r, values=padded(v, n), rate_hz=hz, segments=tuple(s))
            for r, v, hz, s in values]
