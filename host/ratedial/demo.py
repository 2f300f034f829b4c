"""``make demo``: the whole study in about a minute, without hardware.

1. ffmpeg makes a short test video (a clock and a frame counter burned in) next to the
   recording; mpv plays it (in a window when a display exists, headless otherwise).
2. Two virtual dials (the real firmware under MicroPython, behind pseudo-terminals) follow
   scripted client and therapist curves: a helpful rise, a dip both share, and a stretch
   where they diverge (client helpful, therapist hindering).
3. ``ratedial run`` records and publishes them (embedded MQTT broker) while following mpv,
   with the live view on a terminal.
4. The recording is analysed as ``ratedial analyze`` would: the report, the top and bottom
   segments, the figures; then the next commands to try.

Invariants:

* Playback starts only once the daemon follows mpv and records both dials (a player
  observation and both dials' samples are in the recording), so the whole video is on the
  recording's media timeline and rated from its first frame.
* Without ffmpeg or mpv the demo still runs: it records without a player and the analysis
  runs on the recording's own timeline (run time), and says so.
* Output that is not a terminal is never wrapped mid-sentence (rich ``soft_wrap``).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from ._platform import has_display
from ._platform.privacy import make_private_dirs
from .config import MqttConfig, RunConfig
from .daemon.app import serve
from .daemon.summary import print_summary
from .recording.readonly import connect_ro

TABLES = ("dials", "epochs", "samples", "gaps", "events", "sync_obs", "arrivals",
          "clock_models")
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"
FPS = 25
#: Seconds from the start of the run until the video must be playing; then the demo gives up.
PLAY_WAIT_S = 20.0
#: Seconds the scripts rest at neutral before the curve: the daemon starts meanwhile (~1 s),
#: and playback starts when they are over, so script time lead + t is video time t.
LEAD_S = 3.0

# The scripted raters, as (fraction of the video, rating) knots. Both rise to a helpful
# stretch, share a dip at about 40 %, and diverge at 60-70 % (client helpful, therapist
# hindering); docs/analysis.md walks through the resulting report.
CLIENT_CURVE = ((0.0, 50), (0.08, 50), (0.16, 68), (0.22, 82), (0.30, 76), (0.36, 40),
                (0.40, 18), (0.46, 22), (0.52, 55), (0.58, 84), (0.70, 88), (0.75, 62),
                (0.80, 36), (0.86, 58), (1.0, 66))
THERAPIST_CURVE = ((0.0, 50), (0.08, 50), (0.16, 58), (0.22, 72), (0.30, 66), (0.36, 42),
                   (0.40, 26), (0.46, 28), (0.52, 48), (0.58, 28), (0.70, 24), (0.75, 50),
                   (0.80, 44), (0.86, 56), (1.0, 58))


def script_csv(curve: Sequence[tuple[float, float]], seconds: float, *,
               lead_s: float) -> str:
    """A virtual-dial script (``t_s,value``): a rest at 50 for ``lead_s`` (the dial starts
    before the video plays), then ``curve`` stretched over ``seconds``, with a small wiggle
    every second so that the ratings look hand-made."""
    rows = [(0.0, 50.0)] if lead_s > 0 else []
    knots = [(lead_s + f * seconds, float(v)) for f, v in curve]
    t = lead_s
    end = knots[-1][0]
    while t <= end + 1e-9:
        for (t0, v0), (t1, v1) in itertools.pairwise(knots):
            if t0 <= t <= t1:
                v = v0 + (v1 - v0) * (t - t0) / (t1 - t0) if t1 > t0 else v1
                break
        wiggle = 0.0 if t < lead_s + 0.08 * seconds else 2.5 * math.sin(1.7 * t)
        rows.append((round(t, 3), round(min(100.0, max(0.0, v + wiggle)), 1)))
        t += 1.0
    return "t_s,value\n" + "".join(f"{t:g},{v:g}\n" for t, v in rows)


def make_video(path: Path, seconds: float) -> Path:
    """A 480x270 H.264 mp4 with the media time and frame number burned in (~1 s to make)."""
    text = (r"drawtext=text='%{pts\:hms}  frame %{frame_num}':fontsize=24:fontcolor=white"
            ":box=1:boxcolor=black@0.6:x=12:y=12")
    if os.path.exists(FONT):
        text = f"drawtext=fontfile={FONT}:" + text.removeprefix("drawtext=")
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size=480x270:rate={FPS}:duration={seconds}",
         "-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono",
         "-vf", text, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
         "-g", str(FPS), "-c:a", "aac", "-b:a", "32k", "-shortest", str(path)],
        check=True, timeout=120, stdin=subprocess.DEVNULL)
    os.chmod(path, 0o600)
    return path


@contextlib.contextmanager
def mpv_player(video: Path, sock: Path, *, window: bool) -> Iterator[subprocess.Popen[bytes]]:
    """mpv, paused on the first frame, controllable on ``sock``."""
    args = ["mpv", f"--input-ipc-server={sock}", "--pause", "--keep-open=yes",
            "--no-terminal", "--ao=null", "--osd-level=0"]
    args += ["--force-window=yes", "--title=ratedial demo"] if window else ["--vo=null"]
    proc = subprocess.Popen([*args, "--", str(video)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(3.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _player_followed(path: Path, dials: int = 0) -> bool:
    """The daemon has received an observation from the player (media_obs has a row) and
    records ``dials`` dials (on a busy machine they can connect after the scripts' lead-in:
    the video would start with nobody rating it)."""
    if not path.exists():
        return False
    try:
        con = connect_ro(path, timeout=0.2)
        try:
            if con.execute("SELECT 1 FROM media_obs LIMIT 1").fetchone() is None:
                return False
            return dials <= 0 or con.execute(
                "SELECT count(DISTINCT dial_id) FROM samples").fetchone()[0] >= dials
        finally:
            con.close()
    except sqlite3.Error:
        return False


@dataclass
class Starter:
    """Unpauses mpv once the daemon follows it; ``error`` says why it could not."""

    recording: Path
    sock: Path
    stop: threading.Event
    not_before: float  # time.monotonic() when the scripts' lead-in is over
    dials: int = 0  # how many dials must be recording first
    error: str | None = None
    started_at: float | None = None

    def run(self) -> None:
        deadline = time.monotonic() + PLAY_WAIT_S
        while not _player_followed(self.recording, self.dials):
            if self.stop.wait(0.05) or time.monotonic() > deadline:
                self.error = "the daemon did not follow mpv; the video was not played"
                return
        if self.stop.wait(max(0.0, self.not_before - time.monotonic())):
            return
        if sys.platform == "win32":  # the demo's virtual dials need Linux; mpv's pipe differs
            self.error = "playback control needs a Unix socket"
            return
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(2.0)
                s.connect(str(self.sock))
                s.sendall(json.dumps({"command": ["set_property", "pause", False]})
                          .encode() + b"\n")
                s.recv(4096)  # mpv's reply: the command was carried out
        except OSError as exc:
            self.error = f"cannot start playback in mpv: {exc}"
            return
        self.started_at = time.monotonic()


def describe(path: Path) -> list[str]:
    """One line per table with its row count, and per rater the rating range."""
    con = connect_ro(path)
    try:
        lines = [f"  {t:13s} {con.execute(f'SELECT count(*) FROM {t}').fetchone()[0]:>9,} rows"
                 for t in TABLES]
        for rater, n, lo, hi, mean in con.execute(
                "SELECT d.rater, count(*), min(rating), max(rating), avg(rating) "
                "FROM samples s JOIN dials d USING (dial_id) GROUP BY s.dial_id"):
            lines.append(f"  {rater or '-'}: {n:,} samples, rating {lo:.0f}-{hi:.0f}, "
                         f"mean {mean:.1f}")
        return lines
    finally:
        con.close()


def demo_window_s(video_s: float) -> float:
    """Segment length for a short demo video: six segments fit with room between them."""
    return max(1.0, round(video_s / 8, 1))


def demo_lag_block_s(video_s: float) -> tuple[float, float]:
    """The lag search and bootstrap block of the demo's analysis (0.1 s steps, so that the
    printed command gives the same numbers): the scripts have no designed lag, so only a
    small range is searched."""
    return round(min(2.0, video_s / 8), 1), round(min(30.0, video_s / 6), 1)


def analyse(path: Path, *, video_s: float, figures: Path, console: Console) -> list[Path]:
    """The analysis of ``ratedial analyze`` on the demo's recording; returns the figures."""
    from .analysis.align import AlignOptions
    from .analysis.analyse import AnalysisOptions, analyse_group
    from .analysis.groups import group_series
    from .analysis.load import load
    from .analysis.plots import write_plots
    from .analysis.report import format_group
    from .analysis.segments import SegmentOptions

    series = load([path], AlignOptions(rate_hz=10.0))
    max_lag_s, block_s = demo_lag_block_s(video_s)
    opt = AnalysisOptions(segments=SegmentOptions(k=3, window_s=demo_window_s(video_s)),
                          max_lag_s=max_lag_s, block_s=block_s, replicates=500)
    results = [analyse_group(g, opt) for g in group_series(series)]
    for r in results:
        console.print(format_group(r), highlight=False, markup=False)
    figs = write_plots(results, figures, ("png",))
    # Read-only readers leave SQLite's -wal and -shm files behind; the last read-write
    # connection to close removes them (the recording itself is unchanged).
    con = sqlite3.connect(path)
    try:
        con.execute("SELECT count(*) FROM meta").fetchone()
    finally:
        con.close()
    return figs


def run_demo(*, seconds: float, seed: int, video: bool = True) -> None:
    """Record a scripted client and therapist over a ``seconds``-long video, then analyse."""
    from .virtual import VirtualDial

    tty = sys.stdout.isatty()
    console = Console(soft_wrap=not tty)
    stamp = time.strftime("demo-%Y%m%d-%H%M%S")
    out = Path("recordings")
    make_private_dirs(out)
    path = out / f"{stamp}.ratedial"
    missing = [p for p in ("ffmpeg", "mpv") if shutil.which(p) is None]
    if video and missing:
        console.print(f"note: {' and '.join(missing)} not found (Debian/Ubuntu: apt-get "
                      f"install {' '.join(missing)}): recording without a video; the "
                      "analysis runs on the recording's own timeline", highlight=False)
        video = False
    clip = out / f"{stamp}.mp4"
    if video:
        console.print(f"making a {seconds:g} s test video with ffmpeg: {clip}", highlight=False)
        make_video(clip, seconds)
    work = Path(tempfile.mkdtemp(prefix="ratedial-demo-"))
    try:
        # With a video the dials start before it plays and rest at neutral meanwhile; without
        # one, run time starts with the first sample, about when the scripts start.
        lead_s = LEAD_S if video else 0.0
        scripts = {}
        for name, curve in (("client", CLIENT_CURVE), ("therapist", THERAPIST_CURVE)):
            scripts[name] = work / f"{name}.csv"
            scripts[name].write_text(script_csv(curve, seconds, lead_s=lead_s),
                                     encoding="ascii")
        sock = work / "mpv.sock"
        window = has_display()
        console.print("starting two virtual dials (the real firmware under MicroPython), "
                      "client and therapist, following scripted curves", highlight=False)
        with contextlib.ExitStack() as stack:
            client = VirtualDial(seed=seed, drift_ppm=80.0, subprocess=True,
                                 script=scripts["client"])
            therapist = VirtualDial(seed=seed + 1, drift_ppm=-40.0, subprocess=True,
                                    script=scripts["therapist"])
            stack.push(client)  # their __exit__: closed (and checked) at the end
            stack.push(therapist)
            # Both start at once, so that their scripts (and so the raters) keep time with
            # each other: one after the other, the second would lag by its start-up time.
            with ThreadPoolExecutor(max_workers=2) as pool:
                for future in [pool.submit(d.start) for d in (client, therapist)]:
                    future.result()
            script_t0 = time.monotonic()  # the scripts' time 0, give or take 0.1 s
            player = "none"
            starter = None
            stop = threading.Event()
            if video:
                stack.enter_context(mpv_player(clip, sock, window=window))
                player = f"mpv:{sock}"
                starter = Starter(recording=path, sock=sock, stop=stop,
                                  not_before=script_t0 + lead_s, dials=2)
                where = "a window" if window else "headless: no display"
                console.print(f"playing it in mpv ({where}) once the daemon follows the "
                              "player", highlight=False)
                thread = threading.Thread(target=starter.run, name="demo-play", daemon=True)
                thread.start()
                stack.callback(thread.join)
                stack.callback(stop.set)
            cfg = RunConfig(
                ports=(client.port, therapist.port),
                raters={"client": client.port, "therapist": therapist.port},
                # with a video: the lead-in, the video, and slack for a slow start on a busy
                # machine (the samples after the end are recorded as "ended")
                record=str(path), duration_s=seconds + (lead_s + 4.0 if video else 0.0),
                scan=False,
                player=player, session={"demo": True, "dyad": "demo"},
                mqtt=MqttConfig(broker="embedded"))
            summary = serve(cfg, console=console, argv=["ratedial", "demo"])
        if starter is not None and starter.error is not None:
            console.print(f"note: {starter.error}", highlight=False)
        print_summary(console, summary)
        console.print("what the recording holds:", highlight=False)
        for line in describe(summary.path):
            console.print(line, highlight=False)
        console.print("\nthe analysis (ratedial analyze):\n", highlight=False)
        figures = out / f"{stamp}-figures"
        figs = analyse(summary.path, video_s=seconds, figures=figures, console=console)
        console.print("\nfigures:", highlight=False)
        for f in figs:
            console.print(f"  {f}", highlight=False)
        _next_commands(console, summary.path, seconds, clip if video else None)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _next_commands(console: Console, rec: Path, seconds: float, clip: Path | None) -> None:
    w = demo_window_s(seconds)
    # the options analyse() used, so that the command gives the numbers shown above
    lag, block = demo_lag_block_s(seconds)
    same = f"--window {w:g} --max-lag {lag:g} --block {block:g} --bootstrap 500"
    lines = [f"ratedial analyze {rec} {same} --plots figures/ --json",
             f"ratedial export {rec} -o demo --format csv-long,sav,eaf,xdf --window {w:g}"]
    if clip is not None:
        lines += [f"ratedial render {rec} --window {w:g} -o demo-rated.mp4",
                  f"ratedial review {rec} --of client --window {w:g}",
                  f"ratedial review {rec} --guess --answerer therapist --window {w:g}"]
    lines.append(f"ratedial annotate {rec} alliance=4.2 srs=36")
    console.print("\nnext, try:", highlight=False)
    for line in lines:
        console.print(f"  {line}", highlight=False, markup=False)
