"""`ratedial render`: frames decoded by ffmpeg at known times show the cursor, the traces, the
neutral band and the segments where the recording says."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys

import numpy as np
import pytest

from ratedial.analysis.load import load
from ratedial.analysis.render import Layout, probe
from ratedial.analysis.synth import Play, SynthMedia, SynthRater, piecewise, write_recording

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                reason="needs ffmpeg (make sysdeps)")

W, H, FPS, SECONDS = 640, 360, 25, 12.0


def frame_at(path, t_s: float) -> np.ndarray:
    """The frame shown at ``t_s`` as H x W x 3 RGB, decoded by ffmpeg (not by our code)."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-ss", f"{t_s}", "-i", str(path),
                          "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True, timeout=60).stdout
    return np.frombuffer(raw, dtype=np.uint8).reshape(H, W, 3).astype(int)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    d = tmp_path_factory.mktemp("render")
    video = d / "session.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=size={W}x{H}:rate={FPS}:duration={SECONDS}", "-f", "lavfi", "-i",
                    "anullsrc=r=48000:cl=mono", "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(video)],
                   check=True, timeout=120)
    media = SynthMedia(path=str(video), duration_s=SECONDS, fingerprint=None)
    client = piecewise([3, 6, 9], [80, 20, 80, 20])
    therapist = piecewise([6], [30, 70])
    rec = d / "D1.ratedial"
    write_recording(rec, [
        SynthRater(label="client", curve=client, script=(Play(start_s=0, end_s=SECONDS),)),
        SynthRater(label="therapist", uid="bb", curve=therapist,
                   script=(Play(start_s=0, end_s=SECONDS),))],
        media=media, rate_hz=100, session={"dyad": "D1"})
    out = d / "out.mp4"
    res = subprocess.run([sys.executable, "-m", "ratedial", "render", str(rec), "-o", str(out),
                          "--window", "2", "--segments", "1"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    assert "x real time" in res.stdout
    layout = Layout.for_video(probe(video), n_raters=2)
    return out, layout, res.stdout


def blue(px: np.ndarray) -> np.ndarray:  # client, Okabe-Ito blue (0, 114, 178)
    return (px[..., 2] > 110) & (px[..., 2] > px[..., 0] + 70)


def vermillion(px: np.ndarray) -> np.ndarray:  # therapist (213, 94, 0)
    return (px[..., 0] > 140) & (px[..., 0] > px[..., 2] + 90)


def test_output_is_a_private_mp4_of_the_whole_video(rendered):
    out, layout, _ = rendered
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    info = probe(out)
    assert (info.width, info.height) == (W, H)
    assert info.duration_s == pytest.approx(SECONDS, abs=0.1)
    assert layout.panel_y == H - layout.panel_h and layout.plot_top < layout.plot_bottom <= H


@pytest.mark.parametrize("t_s", [1.5, 4.5, 7.5, 10.5])
def test_cursor_is_at_the_frame_time(rendered, t_s):
    out, layout, _ = rendered
    f = frame_at(out, t_s)
    rows = f[layout.plot_top:layout.plot_bottom]
    white = (rows.min(axis=2) > 200).sum(axis=0)  # white pixels per column
    x = int(np.argmax(white))
    assert white[x] > 0.6 * (layout.plot_bottom - layout.plot_top)
    assert abs(x - layout.x_of(t_s)) <= 2.5, (x, layout.x_of(t_s))


@pytest.mark.parametrize(("t_s", "client", "therapist"),
                         [(1.5, 80, 30), (4.5, 20, 30), (7.5, 80, 70), (10.5, 20, 70)])
def test_traces_are_at_the_recorded_ratings(rendered, t_s, client, therapist):
    out, layout, _ = rendered
    f = frame_at(out, 0.5 if t_s > 3 else 11.5)  # a frame whose cursor is elsewhere
    col = f[layout.panel_y:, round(layout.x_of(t_s)) - 1:round(layout.x_of(t_s)) + 2]
    for mask, value in ((blue(col), client), (vermillion(col), therapist)):
        rows = np.flatnonzero(mask.any(axis=1)) + layout.panel_y
        rows = rows[rows >= layout.plot_top]  # below the segment strips
        assert len(rows) >= 2, value
        assert abs(float(np.median(rows)) - layout.y_of(value)) <= 3.0, (rows, value)


def test_neutral_band_and_segments(rendered):
    out, layout, _ = rendered
    f = frame_at(out, 0.2)
    lum = f.mean(axis=2)
    xs = slice(round(layout.x_of(0.5)), round(layout.x_of(11.5)))
    inside = np.median(lum[round(layout.y_of(50)), xs])
    outside = np.median(lum[round(layout.y_of(40)), xs])
    assert inside > outside + 15, (inside, outside)
    # The client's strip: its top segment (80 over [0, 3) or [6, 9): a 2 s window inside
    # one) green, its bottom segment orange, where the recording has them.
    strip = f[layout.panel_y + layout.pad_y + layout.strip_h // 2]
    green = [(x, strip[x]) for x in range(W) if strip[x][1] > strip[x][0] + 80
             and strip[x][1] > strip[x][2] + 20]
    orange = [(x, strip[x]) for x in range(W) if strip[x][0] > 170 and strip[x][1] > 125
              and strip[x][2] < 90]
    assert green and orange
    tg = [(x - layout.margin_x) / layout.plot_w * SECONDS for x, _ in green]
    to = [(x - layout.margin_x) / layout.plot_w * SECONDS for x, _ in orange]
    assert max(tg) - min(tg) == pytest.approx(2.0, abs=0.2)
    assert (min(tg) >= -0.1 and max(tg) <= 3.1) or (min(tg) >= 5.9 and max(tg) <= 9.1), tg
    assert (min(to) >= 2.9 and max(to) <= 6.1) or (min(to) >= 8.9 and max(to) <= 12.1), to


# --- where render writes ------------------------------------------------------------------

SMALL_S = 4.0


@pytest.fixture(scope="module")
def small_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("small") / "session 07.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=size=160x120:rate=10:duration={SMALL_S}", "-c:v", "libx264",
                    "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)],
                   check=True, timeout=120)
    return path.read_bytes()


@pytest.fixture
def small(tmp_path, small_video):
    """A folder with a 4 s video and its recording (tops in [0, 2), bottoms in [2, 4))."""
    video = tmp_path / "session 07.mp4"
    video.write_bytes(small_video)
    rec = tmp_path / "D07.ratedial"
    write_recording(rec, [SynthRater(label="client", curve=piecewise([2], [80, 20]),
                                     script=(Play(start_s=0, end_s=SMALL_S),))],
                    media=SynthMedia(path=str(video), duration_s=SMALL_S, fingerprint=None),
                    rate_hz=50)
    return tmp_path, rec, video


def render_cli(rec, out, *extra):
    return subprocess.run([sys.executable, "-m", "ratedial", "render", str(rec), "-o", str(out),
                           "--window", "1", "--segments", "1", *extra],
                          capture_output=True, text=True, timeout=120, check=False)


def snapshot(folder):
    """Every file's bytes; of a folder and of SQLite's shared-memory index (which readers
    rewrite), the name."""
    return {p.name: None if p.is_dir() or p.name.endswith("-shm") else p.read_bytes()
            for p in folder.iterdir()}


def opened(*recordings):
    """Read each recording once, as render does, so SQLite's side files are already there."""
    load(list(recordings))


def test_render_never_writes_over_the_recording_or_the_video(small):
    d, rec, video = small
    victim = d / "victim.ratedial"  # a second recording, named as the one rendered
    victim.write_bytes(rec.read_bytes())
    (d / "link.mp4").symlink_to(video)
    opened(rec, victim)
    before = snapshot(d)
    for out, what in ((video, "the video being rendered"), (d / "link.mp4", "the video"),
                      (rec, f"the recording {rec}"), (f"{rec}-wal", f"the recording {rec}")):
        for extra in ((), ("--overwrite",)):
            res = render_cli(rec, out, *extra)
            assert res.returncode == 2, (out, res.stdout)
            err = res.stderr.strip()
            assert err.count("\n") == 0 and what in err and "never writes over" in err, err
    res = render_cli(f"{victim}", victim, "--overwrite")  # render victim.ratedial onto itself
    assert res.returncode == 2 and "never writes over a recording" in res.stderr
    assert snapshot(d) == before


def test_an_existing_output_is_kept_unless_overwrite(small):
    d, rec, _ = small
    notes, out = d / "notes.txt", d / "rated.mp4"
    notes.write_text("keep me\n")
    out.write_bytes(b"last week's render")
    opened(rec)
    before = snapshot(d)
    for target in (notes, out):
        res = render_cli(rec, target)
        assert res.returncode == 2 and snapshot(d) == before
        assert res.stderr.strip() == (f"ratedial: error: {target} exists: choose another -o, "
                                      "or pass --overwrite to replace it")
    res = render_cli(rec, out, "--overwrite")
    assert res.returncode == 0, res.stderr
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert probe(out).duration_s == pytest.approx(SMALL_S, abs=0.2)
    assert sorted(snapshot(d)) == sorted(before)  # no temporary file left beside it


def test_a_failed_render_leaves_nothing_and_changes_nothing(small):
    d, rec, _ = small
    notes = d / "notes.txt"
    notes.write_text("keep me\n")
    opened(rec)
    before = snapshot(d)
    res = render_cli(rec, d / "new" / "sub" / "rated")  # ffmpeg knows no format without .mp4
    assert res.returncode == 2
    assert snapshot(d) == before  # no temporary file, no folder made for the output
    assert "suffix (none)" in res.stderr, res.stderr
    res = render_cli(rec, notes, "--overwrite")
    assert res.returncode == 2 and snapshot(d) == before
    assert res.stderr.strip() == (f"ratedial: error: -o {notes}: ffmpeg knows no video format "
                                  "by the name's suffix (.txt): name the output .mp4")


def test_staged_output_never_replaces_a_file_that_appeared_meanwhile(tmp_path):
    from ratedial.analysis.errors import UsageError
    from ratedial.analysis.render import staged

    out = tmp_path / "rated.mp4"
    with pytest.raises(UsageError, match="appeared while rendering"), staged(out) as part:
        assert stat.S_IMODE(os.stat(part).st_mode) == 0o600 and part.parent == tmp_path
        part.write_bytes(b"new")
        out.write_bytes(b"another render's")
    assert out.read_bytes() == b"another render's" and os.listdir(tmp_path) == ["rated.mp4"]
    with staged(out, overwrite=True) as part:
        part.write_bytes(b"new")
    assert out.read_bytes() == b"new" and os.listdir(tmp_path) == ["rated.mp4"]
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600


def test_band_and_window_are_checked_as_analyze_checks_them(small):
    d, rec, _ = small
    res = render_cli(rec, d / "a.mp4", "--band", "60:40")
    assert res.returncode == 2
    assert res.stderr.strip() == ("ratedial: error: the neutral band's low end must not exceed "
                                  "its high end")
    res = subprocess.run([sys.executable, "-m", "ratedial", "render", str(rec), "-o",
                          str(d / "a.mp4"), "--window", "100"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 2
    assert res.stderr.strip() == ("ratedial: error: --window 100 s is longer than the video "
                                  "(4 s; client in D07.ratedial): choose a window of at most "
                                  "4 s")
    assert not (d / "a.mp4").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is POSIX")
def test_a_render_killed_by_sigterm_leaves_no_part_file(tmp_path):
    """SIGTERM mid-render cleans up like Ctrl+C: the hidden part file beside the output is
    removed (it used to stay, as no handler ran the cleanup)."""
    import os
    import signal

    from ratedial.analysis.render import staged

    out = tmp_path / "new" / "D07-rated.mp4"
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), staged(out) as part:
        part.write_bytes(b"half a video")
        os.kill(os.getpid(), signal.SIGTERM)
    assert not out.exists() and not (tmp_path / "new").exists()
    assert signal.getsignal(signal.SIGTERM) == before  # put back


# --- audit 2026-12-05 ----------------------------------------------------------------------


@pytest.mark.parametrize("recorded", [r"C:\Users\lab\Videos\séance 07 ü.mp4",
                                      r"\\nas\study\séance 07 ü.mp4", r"Videos\séance 07 ü.mp4",
                                      "/home/lab/Videos/séance 07 ü.mp4"])
def test_a_video_recorded_under_another_os_path_is_found_beside_the_recording(
        tmp_path, small_video, recorded):
    """An audit: a recording made on Windows names its video ``C:\\...\\séance 07 ü.mp4``;
    with the video beside the recording, render (and review) said "not found": the file name
    was taken by POSIX rules, where a backslash is part of the name."""
    (tmp_path / "séance 07 ü.mp4").write_bytes(small_video)
    rec = tmp_path / "D07.ratedial"
    write_recording(rec, [SynthRater(label="client", curve=piecewise([2], [80, 20]),
                                     script=(Play(start_s=0, end_s=SMALL_S),))],
                    media=SynthMedia(path=recorded, duration_s=SMALL_S, fingerprint=None),
                    rate_hz=50)
    res = render_cli(rec, tmp_path / "out.mp4")
    assert res.returncode == 0, res.stderr
    assert probe(tmp_path / "out.mp4").duration_s == pytest.approx(SMALL_S, abs=0.2)


def _with_audio(tmp_path, small_video, codec: str, name: str):
    video, silent = tmp_path / name, tmp_path / "silent.mp4"
    silent.write_bytes(small_video)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(silent), "-f", "lavfi", "-i",
                    f"sine=frequency=440:sample_rate=48000:duration={SMALL_S}", "-map", "0:v",
                    "-map", "1:a", "-c:v", "copy", "-c:a", codec, str(video)],
                   check=True, timeout=120)
    rec = tmp_path / "D07.ratedial"
    write_recording(rec, [SynthRater(label="client", curve=piecewise([2], [80, 20]),
                                     script=(Play(start_s=0, end_s=SMALL_S),))],
                    media=SynthMedia(path=str(video), duration_s=SMALL_S, fingerprint=None),
                    rate_hz=50)
    return rec


def _audio_codec(path) -> str:
    return subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
                           "stream=codec_name", "-of", "csv=p=0", str(path)],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_audio_an_mp4_cannot_hold_is_encoded_to_aac(tmp_path, small_video):
    """An audit: a video with PCM audio (as a camera or a screen recorder writes it) rendered
    to .mp4 failed with "Error initializing output stream 0:0 --", the cause hidden: MP4
    holds no PCM, and the audio was always copied. It is encoded to AAC for an MP4 now; audio
    an MP4 holds (AAC) and any audio in a container that takes it (.mkv) is still copied."""
    rec = _with_audio(tmp_path, small_video, "pcm_s16le", "pcm.mkv")
    for out, codec in (("out.mp4", "aac"), ("OUT.MP4", "aac"), ("out.mkv", "pcm_s16le")):
        res = render_cli(rec, tmp_path / out)
        assert res.returncode == 0, res.stderr
        assert _audio_codec(tmp_path / out) == codec
        assert probe(tmp_path / out).duration_s == pytest.approx(SMALL_S, abs=0.2)
    # a container that cannot hold the streams: ffmpeg's cause, not its last line
    res = render_cli(rec, tmp_path / "out.m4a")
    assert res.returncode == 2
    err = res.stderr.strip()
    assert err.count("\n") == 0 and "Could not find tag for codec" in err, err
    assert "Error initializing output stream" not in err and "0x" not in err, err
    assert not (tmp_path / "out.m4a").exists()


def test_a_video_that_ends_before_the_segments_is_refused_as_review_refuses_it(small):
    """An audit: review refuses a video that ends before the last segment ("is 00:30.0 long,
    but segment T2 ends at 00:44.4"), but render drew the ratings over it and wrote a shorter
    film missing the later segments, with only the fingerprint's warning."""
    d, rec, video = small
    cut = d / "cut.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(video), "-t", "2", "-c", "copy",
                    str(cut)], check=True, timeout=60)
    res = render_cli(rec, d / "out.mp4", "--video", str(cut))
    assert res.returncode == 2, res.stderr
    err = res.stderr.strip()
    assert err.count("\n") == 0 and f"{cut} is 00:02.0 long, but segment B1 ends at" in err, err
    assert "is it this recording's video? (--video FILE)" in err, err
    assert not (d / "out.mp4").exists()
