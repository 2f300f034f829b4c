"""``ratedial review`` and ``--guess``: the procedure with scripted answers, and end to end
against a real mpv without a display (``--vo=null --ao=null``)."""

from __future__ import annotations

import csv
import io
import json
import os
import random
import selectors
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ratedial.analysis.errors import ReviewAborted
from ratedial.analysis.load import load
from ratedial.analysis.mpvctl import MpvPlayer
from ratedial.analysis.notes import read_notes
from ratedial.analysis.review import (
    NoVideo,
    Prompter,
    order_segments,
    parse_answer,
    run_guess,
    run_review,
)
from ratedial.analysis.segments import SegmentOptions, find_segments
from ratedial.analysis.synth import SynthMedia, piecewise, simple_rater, write_recording

WINDOW = 3.0
# tops at 5, 20, 33 s; bottoms at 12, 27, 36 s (3 s each); 50 elsewhere
CURVE = piecewise([5, 8, 12, 15, 20, 23, 27, 30, 33, 36, 39],
                  [50, 95, 50, 5, 50, 90, 50, 10, 50, 85, 15, 50])
EXPECTED = {"T1": 5.0, "T2": 20.0, "T3": 33.0, "B1": 12.0, "B2": 27.0, "B3": 36.0}


def make_recording(d: Path, video: Path | None, fingerprint: str = "rdfp1:review") -> Path:
    path = d / "D01-client.ratedial"
    write_recording(path, [simple_rater("client", CURVE, 40)], rate_hz=100,
                    media=SynthMedia(duration_s=40.0, path=str(video) if video else "gone.mp4",
                                     fingerprint=fingerprint),
                    session={"dyad": "D01"})
    return path


def segments_of(path: Path):
    (s,) = load([path])
    return find_segments(s.values, s.rate_hz, SegmentOptions(window_s=WINDOW))


class CountingPlayer(NoVideo):
    plays = True

    def __init__(self) -> None:
        self.spans: list[tuple[float, float]] = []

    def play(self, start_s: float, end_s: float) -> float:
        self.spans.append((start_s, end_s))
        return end_s


def test_segments_are_the_known_ones(tmp_path):
    segs = segments_of(make_recording(tmp_path, None))
    assert {s.label: s.start_s for s in segs} == EXPECTED


def test_review_saves_a_note_per_segment_in_rank_order(tmp_path):
    rec = make_recording(tmp_path, None)
    segs = segments_of(rec)
    answers = "/replay\n\nfelt understood\nsecond line\n\n" + "\n".join(
        f"note {i}\n" for i in range(2, 7)) + "\n"
    out = io.StringIO()
    player = CountingPlayer()
    run_review(rec, "client", segs, player=player, prompter=Prompter(io.StringIO(answers), out),
               lead_in_s=2.0)
    notes = read_notes(rec, "segment_note")
    assert [n["data"]["segment"]["label"] for n in notes] == ["T1", "T2", "T3", "B1", "B2", "B3"]
    assert notes[0]["data"]["text"] == "felt understood\nsecond line"
    assert [n["data"]["text"] for n in notes[1:]] == [f"note {i}" for i in range(2, 7)]
    assert player.spans[:2] == [(3.0, 8.0), (3.0, 8.0)]  # 2 s lead-in, replayed once
    assert "T1 (highest 1): 00:05-00:08, mean 95.0" in out.getvalue()


def test_orders():
    from ratedial.analysis.segments import Segment

    segs = [Segment(kind=k, rank=r, start_s=s, end_s=s + 3, mean=0, coverage=1)
            for k, r, s in (("bottom", 1, 1.0), ("top", 2, 9.0), ("top", 1, 5.0))]
    assert [s.label for s in order_segments(segs, "rank")] == ["T1", "T2", "B1"]
    assert [s.label for s in order_segments(segs, "chronological")] == ["B1", "T1", "T2"]
    a = order_segments(segs, "random", random.Random(3))
    assert a == order_segments(segs, "random", random.Random(3))


def test_guess_is_seeded_scored_and_saved(tmp_path):
    rec = make_recording(tmp_path, None)
    segs = segments_of(rec)
    shown = order_segments(segs, "random", random.Random(7))
    truth = ["helpful" if s.kind == "top" else "hindering" for s in shown]
    flip = {"helpful": "-", "hindering": "+"}
    # four right (one after a replay and a typo), two wrong
    lines = ["/replay", "maybe", truth[0], *truth[1:4], flip[truth[4]], flip[truth[5]]]
    out = io.StringIO()
    result = run_guess(rec, "client", segs, player=NoVideo(), answerer="therapist", seed=7,
                       prompter=Prompter(io.StringIO("\n".join(lines) + "\n"), out))
    assert result.score == 4 and [s.label for s in result.shown] == [s.label for s in shown]
    (note,) = read_notes(rec, "guess")
    data = note["data"]
    assert data["seed"] == 7 and data["order"] == [s.label for s in shown]
    assert data["score"] == 4 and data["n"] == 6 and data["answered_by"] == "therapist"
    assert [a["correct"] for a in data["answers"]] == [True] * 4 + [False] * 2
    text = out.getvalue()
    assert "Score: 4 of 6 correct" in text
    # blind: before the score, no segment label or mean is shown
    before = text.split("Score:")[0]
    assert not any(lbl in before for lbl in EXPECTED) and "mean" not in before


def test_guess_without_all_answers_saves_nothing(tmp_path):
    rec = make_recording(tmp_path, None)
    with pytest.raises(ReviewAborted):
        run_guess(rec, "client", segments_of(rec), player=NoVideo(), seed=1,
                  prompter=Prompter(io.StringIO("helpful\n-\n"), io.StringIO()))
    assert read_notes(rec, "guess") == []


def test_answers_accepted():
    assert [parse_answer(x) for x in ("Helpful", " + ", "hindering", "-", "HINDER", "x")] == [
        "helpful", "helpful", "hindering", "hindering", "hindering", None]


# --- real mpv -----------------------------------------------------------------------------

needs_mpv = pytest.mark.skipif(shutil.which("mpv") is None or shutil.which("ffmpeg") is None,
                               reason="needs mpv and ffmpeg (apt-get install mpv ffmpeg)")


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg")
    path = tmp_path_factory.mktemp("video") / "session.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc=size=96x64:rate=10", "-t", "40", "-c:v", "libx264", "-preset",
                    "ultrafast", "-g", "10", "-pix_fmt", "yuv420p", str(path)], check=True,
                   timeout=60)
    return path


@needs_mpv
def test_mpv_plays_a_span_and_stops_there(video):
    player = MpvPlayer(video, headless=True, speed=2.0)
    try:
        assert player.duration_s == pytest.approx(40, abs=0.2)
        t0 = time.monotonic()
        pos = player.play(10.0, 13.0)
        took = time.monotonic() - t0
        assert pos == pytest.approx(13.0, abs=0.3)
        assert took > 0.8 * 3.0 / 2.0  # it played in real time (at speed 2), not jumped
        assert player.client.get("pause") is True
    finally:
        player.close()
    assert player._proc.poll() is not None  # the mpv we started is gone


def _cli(args, stdin, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    return subprocess.run([sys.executable, "-m", "ratedial", *args], input=stdin, text=True,
                          capture_output=True, timeout=120, env=env, check=False)


@needs_mpv
def test_review_end_to_end_with_mpv(tmp_path, video):
    rec = make_recording(tmp_path, video)
    notes = "".join(f"segment {i} notes\n\n" for i in range(1, 7))
    res = _cli(["review", str(rec), "--window", "3", "--lead-in", "1", "--speed", "8"], notes)
    assert res.returncode == 0, res.stderr + res.stdout
    saved = read_notes(rec, "segment_note")
    assert [n["data"]["text"] for n in saved] == [f"segment {i} notes" for i in range(1, 7)]
    assert saved[0]["data"]["segment"] == {"label": "T1", "kind": "top", "rank": 1,
                                           "start_s": 5.0, "end_s": 8.0, "mean": 95.0}
    assert saved[0]["data"]["params"]["window_s"] == 3
    assert "is not the video of this recording" in res.stderr  # recorded "rdfp1:review"


@needs_mpv
def test_guess_end_to_end_with_mpv(tmp_path, video):
    identity = pytest.importorskip("ratedial.players.identity")
    rec = make_recording(tmp_path, video, fingerprint=identity.fingerprint(str(video)))
    shown = order_segments(segments_of(rec), "random", random.Random(11))
    truth = ["+" if s.kind == "top" else "-" for s in shown]
    answers = truth[:4] + ["-" if t == "+" else "+" for t in truth[4:]]
    res = _cli(["review", str(rec), "--guess", "--order-seed", "11", "--window", "3",
                "--lead-in", "1", "--speed", "8", "--video", str(video)],
               "\n".join(answers) + "\n")
    assert res.returncode == 0, res.stderr + res.stdout
    assert "Score: 4 of 6 correct" in res.stdout
    assert "warning" not in res.stderr  # the right video
    (note,) = read_notes(rec, "guess")
    assert note["data"]["seed"] == 11 and note["data"]["score"] == 4
    assert note["data"]["order"] == [s.label for s in shown]


@needs_mpv
def test_review_stops_cleanly_when_input_ends(tmp_path, video):
    rec = make_recording(tmp_path, video)
    res = _cli(["review", str(rec), "--guess", "--order-seed", "1", "--window", "3",
                "--lead-in", "0", "--speed", "8"], "+\n")
    assert res.returncode == 3
    assert "input ended" in res.stderr and "Traceback" not in res.stderr
    assert read_notes(rec, "guess") == []


def test_review_in_random_order_records_its_seed(tmp_path):
    rec = make_recording(tmp_path, None)
    segs = segments_of(rec)
    run_review(rec, "client", segs, player=NoVideo(), order="random",
               prompter=Prompter(io.StringIO("\n" * 6), io.StringIO()))
    notes = read_notes(rec, "segment_note")
    seed = notes[0]["data"]["seed"]
    assert isinstance(seed, int) and all(n["data"]["seed"] == seed for n in notes)
    again = order_segments(segs, "random", random.Random(seed))
    assert [n["data"]["segment"]["label"] for n in notes] == [s.label for s in again]


# --- /replay ------------------------------------------------------------------------------


class PositionPlayer(NoVideo):
    """Records how much of the input had been read when each play started."""

    plays = True

    def __init__(self, inp: io.StringIO) -> None:
        self.inp = inp
        self.read_at: list[int] = []

    def play(self, start_s: float, end_s: float) -> float:
        self.read_at.append(self.inp.tell())
        return end_s


def test_replay_plays_at_once_and_keeps_the_lines_after_it(tmp_path):
    rec = make_recording(tmp_path, None)
    typed = "/replay\nnote after replay\n\nsecond\n\n" + "\n" * 4
    inp = io.StringIO(typed)
    player = PositionPlayer(inp)
    run_review(rec, "client", segments_of(rec), player=player,
               prompter=Prompter(inp, io.StringIO()), lead_in_s=0.0)
    notes = read_notes(rec, "segment_note")
    assert [n["data"]["text"] for n in notes] == ["note after replay", "second", "", "", "", ""]
    # T1 played, then again right after "/replay" was read, before the note's first line
    assert player.read_at[:3] == [0, len("/replay\n"), len("/replay\nnote after replay\n\n")]


def test_replay_keeps_the_lines_before_and_after_it(tmp_path):
    rec = make_recording(tmp_path, None)
    player = CountingPlayer()
    run_review(rec, "client", segments_of(rec), player=player, lead_in_s=0.0,
               prompter=Prompter(io.StringIO("before\n/replay\nafter\n\n" + "\n" * 5),
                                 io.StringIO()))
    notes = read_notes(rec, "segment_note")
    assert notes[0]["data"]["text"] == "before\nafter"
    assert player.spans[:3] == [(5.0, 8.0), (5.0, 8.0), (20.0, 23.0)]


def _read_until(proc: subprocess.Popen[bytes], text: str, count: int,
                deadline_s: float = 120.0) -> str:
    """The process's output up to the ``count``-th ``text`` (waiting for it, not sleeping)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    got = b""
    end = time.monotonic() + deadline_s
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while got.decode(errors="replace").count(text) < count:
            left = end - time.monotonic()
            if left <= 0 or not sel.select(left):
                pytest.fail(f"no {count}. {text!r} within {deadline_s} s: {got.decode()!r}")
            chunk = os.read(fd, 4096)
            if not chunk:
                pytest.fail(f"output ended before the {count}. {text!r}: {got.decode()!r}")
            got += chunk
    return got.decode()


def test_review_replays_when_replay_is_typed_into_an_open_pipe(tmp_path):
    """The tester's repro: ``/replay`` then, while the pipe stays open, the note."""
    rec = make_recording(tmp_path, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ratedial", "review", str(rec), "--window", "3",
         "--segments", "1", "--lead-in", "0", "--no-video"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    try:
        assert proc.stdin is not None
        proc.stdin.write(b"/replay\n")
        proc.stdin.flush()
        seen = _read_until(proc, "(--no-video): 00:05.0", 2)  # T1 again, with nothing more typed
        assert "Notes for T1" in seen and "saved" not in seen
        out, err = proc.communicate(b"note after replay\n\nsecond\n\n", timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out.decode().count("saved.") == 2 and "(--no-video): 00:05.0" not in out.decode()
    notes = read_notes(rec, "segment_note")
    assert [(n["data"]["segment"]["label"], n["data"]["text"]) for n in notes] == [
        ("T1", "note after replay"), ("B1", "second")]


def test_review_refuses_a_window_longer_than_the_video(tmp_path):
    rec = make_recording(tmp_path, None)  # 40 s
    res = _cli(["review", str(rec), "--window", "100", "--no-video"], "\n" * 6)
    assert res.returncode == 2
    assert res.stderr.strip() == ("ratedial: error: --window 100 s is longer than the video "
                                  "(40 s; client in D01-client.ratedial): choose a window of "
                                  "at most 40 s")
    assert read_notes(rec, "segment_note") == []
    res = _cli(["review", str(rec), "--window", "40", "--no-video", "--segments", "1"], "\n")
    assert res.returncode == 0, res.stderr
    (note,) = read_notes(rec, "segment_note")
    assert (note["data"]["segment"]["start_s"], note["data"]["segment"]["end_s"]) == (0, 40)


def test_ctrl_c_keeps_the_lines_typed_for_the_segment(tmp_path):
    """docs/analysis.md: an interrupted interview keeps what was typed; Ctrl+C in the middle
    of a note used to lose that segment's lines."""
    import pytest

    class Interrupting(io.StringIO):
        def readline(self, *args):  # type: ignore[override]
            line = super().readline(*args)
            if not line:
                raise KeyboardInterrupt
            return line

    rec = make_recording(tmp_path, None)
    with pytest.raises(KeyboardInterrupt):
        run_review(rec, "client", segments_of(rec), player=CountingPlayer(), lead_in_s=0.0,
                   prompter=Prompter(Interrupting("first note\n\nhalf a\nnote\n"),
                                     io.StringIO()))
    notes = read_notes(rec, "segment_note")
    assert [(n["data"]["segment"]["label"], n["data"]["text"]) for n in notes] == [
        ("T1", "first note"), ("T2", "half a\nnote")]
    assert notes[1]["data"]["interrupted"] is True and "interrupted" not in notes[0]["data"]


def test_the_guess_test_never_shows_the_answerer_their_own_segments(tmp_path):
    """``review D01-therapist.ratedial --guess``: the file has no client, and the therapist
    was shown their own segments and scored on them ("rater: therapist, answered_by:
    therapist"). A one-line error now; a label typed "Client" still finds the client."""
    path = tmp_path / "D01-therapist.ratedial"
    write_recording(path, [simple_rater("therapist", CURVE, 40)], rate_hz=100,
                    media=SynthMedia(duration_s=40.0, path="gone.mp4"), session={"dyad": "D01"})
    res = _cli(["review", str(path), "--guess", "--no-video", "--window", "3"], "+\n" * 6)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "no rater 'client' in the recording (raters: therapist)" in res.stderr
    res = _cli(["review", str(path), "--guess", "--of", "therapist", "--no-video",
                "--window", "3"], "+\n" * 6)
    assert res.returncode == 2 and "would guess their own segments" in res.stderr
    # labels are one as the analysis pairs them: "Therapist " is the therapist too
    res = _cli(["review", str(path), "--guess", "--of", "Therapist ", "--no-video",
                "--window", "3"], "+\n" * 6)
    assert res.returncode == 2 and "would guess their own segments" in res.stderr
    assert read_notes(path, "guess") == []
    client = make_recording(tmp_path, None)
    res = _cli(["review", str(client), "--guess", "--of", "Client", "--no-video",
                "--window", "3", "--order-seed", "2"], "+\n" * 6)
    assert res.returncode == 0, res.stderr
    (note,) = read_notes(client, "guess")
    assert note["data"]["answered_by"] == "therapist"


# --- audit 2026-12-04: what a note says, and inputs that end or are odd -------------------


def _review(rec: Path, *args: str, stdin: bytes | None = b"", shell_close_stdin: bool = False):
    cmd = [sys.executable, "-m", "ratedial", "review", str(rec), "--window", "3", *args]
    if shell_close_stdin:  # standard input closed, not empty: ``<&-`` in a shell
        return subprocess.run(" ".join(map(shlex.quote, cmd)) + " <&-", shell=True,
                              capture_output=True, timeout=120, check=False)
    return subprocess.run(cmd, input=stdin, capture_output=True, timeout=120, check=False)


def test_note_params_hold_every_option_the_segments_depend_on(tmp_path):
    rec = make_recording(tmp_path, None)
    for fill in ("0", "10"):
        res = _review(rec, "--segments", "1", "--no-video", "--max-fill", fill,
                      "--rewind-tolerance", "2", stdin=b"x\n\ny\n\n")
        assert res.returncode == 0, res.stderr
    params = [n["data"]["params"] for n in read_notes(rec, "segment_note")]
    assert [p["max_fill_s"] for p in params] == [0, 0, 10, 10]
    assert all(p["rewind_tolerance_s"] == 2 and p["timeline"] == "media" for p in params)


def test_review_of_a_run_time_recording_says_so_and_notes_it(tmp_path):
    from ratedial.analysis.synth import NoPlayer, SynthRater

    rec = tmp_path / "nv.ratedial"
    write_recording(rec, [SynthRater(label="client", curve=CURVE,
                                     script=(NoPlayer(seconds=40),))], media=None, rate_hz=100)
    res = _review(rec, "--segments", "1", "--no-video", stdin=b"a\n\nb\n\n")
    assert res.returncode == 0, res.stderr
    assert b"timeline: RUN TIME" in res.stdout
    notes = read_notes(rec, "segment_note")
    assert len(notes) == 2 and all(n["data"]["params"]["timeline"] == "run" for n in notes)


def test_no_video_says_nothing_is_played(tmp_path):
    res = _review(make_recording(tmp_path, None), "--segments", "1", "--no-video",
                  stdin=b"\n\n")
    assert res.returncode == 0, res.stderr
    assert b"playing" not in res.stdout and b"not played (--no-video)" in res.stdout


def test_closed_stdin_is_input_that_ended(tmp_path):
    rec = make_recording(tmp_path, None)
    for extra in ((), ("--guess", "--answerer", "therapist")):
        res = _review(rec, "--no-video", *extra, shell_close_stdin=True)
        assert res.returncode == 3, res.stderr
        assert b"input ended before the interview was complete" in res.stderr
        assert b"Traceback" not in res.stderr


def test_a_note_cut_off_by_the_end_of_input_is_marked_interrupted(tmp_path):
    rec = make_recording(tmp_path, None)
    res = _review(rec, "--no-video", stdin=b"a\n\npartial\n")
    assert res.returncode == 3 and b"input ended" in res.stderr
    notes = [n["data"] for n in read_notes(rec, "segment_note")]
    assert [(n["segment"]["label"], n["text"], n.get("interrupted")) for n in notes] == [
        ("T1", "a", None), ("T2", "partial", True)]


def test_note_text_that_is_not_utf8_is_read_as_latin1_and_said(tmp_path):
    rec = make_recording(tmp_path, None)
    res = _review(rec, "--segments", "1", "--no-video", stdin=b"caf\xe9 latin1\n\n\n",
                  )
    assert res.returncode == 0, res.stderr
    assert b"not UTF-8" in res.stdout
    assert read_notes(rec, "segment_note")[0]["data"]["text"] == "café latin1"


def test_segments_zero_is_refused_as_such(tmp_path):
    res = _review(make_recording(tmp_path, None), "--segments", "0", "--no-video")
    assert res.returncode == 2 and b"--segments 0" in res.stderr


def test_the_lead_in_saved_and_said_is_the_one_shown(tmp_path):
    rec = tmp_path / "early.ratedial"
    early = piecewise([0.6, 3.6], [50, 95, 50])  # the top segment starts at 0.6 s
    write_recording(rec, [simple_rater("client", early, 40)], rate_hz=100,
                    media=SynthMedia(duration_s=40.0, path="gone.mp4", fingerprint="x"))
    res = _review(rec, "--segments", "1", "--no-video", stdin=b"\n\n")
    assert res.returncode == 0, res.stderr
    assert b"(0.6 s lead-in)" in res.stdout
    t1 = next(n["data"] for n in read_notes(rec, "segment_note")
              if n["data"]["segment"]["label"] == "T1")
    assert t1["lead_in_s"] == 0.6


@needs_mpv
def test_a_file_mpv_cannot_play_and_a_short_video_are_one_line_each(tmp_path, video):
    rec = make_recording(tmp_path, video)
    text = tmp_path / "notavideo.mp4"
    text.write_text("hello\n")
    res = _review(rec, "--video", str(text), stdin=b"\n" * 12)
    assert res.returncode != 0 and b"mpv could not play" in res.stderr
    assert b"Traceback" not in res.stderr
    short = tmp_path / "short.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc=size=96x64:rate=10", "-t", "20", "-c:v", "libx264", "-preset",
                    "ultrafast", "-pix_fmt", "yuv420p", str(short)], check=True, timeout=60)
    res = _review(rec, "--video", str(short), stdin=b"\n" * 12)
    assert res.returncode == 2, res.stderr
    assert b"long, but segment" in res.stderr and b"did not get there" not in res.stderr
    assert read_notes(rec, "segment_note") == []  # refused before the first prompt


# --- audit 2026-12-05: what review does when the recording, the player or the input fail --


def test_a_recording_that_cannot_be_written_is_refused_before_the_first_prompt(tmp_path):
    """An audit: review on a recording in a read-only folder played the segments and took
    the whole interview, then failed at the first save and lost it. Refused up front now
    (here the folder is immutable, which stops root too)."""
    folder = tmp_path / "archive"
    folder.mkdir()
    rec = make_recording(folder, None)
    if subprocess.run(["chattr", "+i", str(folder)], check=False,
                      capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not possible here")
    try:
        for extra in ((), ("--guess",)):
            res = _review(rec, "--no-video", *extra, stdin=b"a note\n\n+\n" * 6)
            err = res.stderr.decode().strip()
            assert res.returncode == 1, (res.stdout, err)
            assert err.count("\n") == 0 and "Traceback" not in err, err
            assert "D01-client.ratedial cannot be changed" in err and "read-only" in err, err
            assert b"Notes for" not in res.stdout and b"Guess test" not in res.stdout
            assert b"[1/" not in res.stdout  # nothing was played or asked
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=False)
    assert read_notes(rec) == []


@needs_mpv
def test_a_video_recorded_on_windows_is_found_beside_the_recording(tmp_path, video):
    """An audit: ``media.path`` ``C:\\Users\\lab\\Videos\\séance 07 ü.mp4`` with that video
    next to the recording: "video ... not found" (the name was taken by POSIX rules)."""
    shutil.copy(video, tmp_path / "séance 07 ü.mp4")
    rec = tmp_path / "D01-client.ratedial"
    write_recording(rec, [simple_rater("client", CURVE, 40)], rate_hz=100,
                    media=SynthMedia(duration_s=40.0,
                                     path="C:\\Users\\lab\\Videos\\séance 07 ü.mp4"))
    res = _review(rec, "--segments", "1", "--lead-in", "0", "--speed", "8",
                  stdin=b"one\n\ntwo\n\n")
    assert res.returncode == 0, res.stderr
    assert [n["data"]["text"] for n in read_notes(rec, "segment_note")] == ["one", "two"]


def _mpv_child(pid: int) -> int:
    """The mpv process ``ratedial review`` (``pid``) started."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    if not path.exists():
        pytest.skip("needs /proc/PID/task/PID/children (Linux)")
    (child,) = (int(c) for c in path.read_text().split())
    assert "mpv" in Path(f"/proc/{child}/cmdline").read_bytes().decode(errors="replace")
    return child


@needs_mpv
def test_mpv_closed_mid_review_says_what_was_saved_and_skip_noted_goes_on(tmp_path, video):
    """An audit: quitting or closing mpv during review ended with "error: mpv closed its IPC
    connection" (or "Broken pipe"), and a rerun started again at segment 1. Now one line says
    mpv was closed and how many notes were saved; ``--skip-noted`` goes on with the rest."""
    import signal

    rec = make_recording(tmp_path, video)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ratedial", "review", str(rec), "--window", "3", "--segments",
         "2", "--lead-in", "0", "--speed", "8"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    try:
        assert proc.stdin is not None
        proc.stdin.write(b"first\n\n")
        _read_until(proc, "Notes for T2", 1)  # T2 has played; its note is being typed
        os.kill(_mpv_child(proc.pid), signal.SIGKILL)  # the mpv this review started
        out, err = proc.communicate(b"second\n\n", timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in err.decode(), err
    line = err.decode().strip().splitlines()[-1]  # after the fingerprint's warning
    assert proc.returncode == 3, (out, line)
    assert line.startswith("ratedial: error: mpv was closed"), line
    assert "2 notes saved" in line and "--skip-noted" in line, line
    assert "IPC" not in line and "Broken pipe" not in line, line
    res = _review(rec, "--segments", "2", "--no-video", "--skip-noted",
                  stdin=b"third\n\nfourth\n\n")
    assert res.returncode == 0, res.stderr
    assert b"2 already noted" in res.stdout and b"[3/4]" in res.stdout, res.stdout
    notes = [n["data"] for n in read_notes(rec, "segment_note")]
    assert [(n["segment"]["label"], n["text"], n["position"]) for n in notes] == [
        ("T1", "first", 1), ("T2", "second", 2), ("B1", "third", 3), ("B2", "fourth", 4)]
    # every segment noted with these options: nothing left, said so, nothing asked
    res = _review(rec, "--segments", "2", "--no-video", "--skip-noted", stdin=b"")
    assert res.returncode == 0, res.stderr
    assert b"Nothing left" in res.stdout and len(read_notes(rec, "segment_note")) == 4


class ClosingPlayer(CountingPlayer):
    """Closed (as mpv by its user) when asked to play the ``at``-th time."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def play(self, start_s: float, end_s: float) -> float:
        from ratedial.analysis.errors import PlayerClosed

        if len(self.spans) + 1 == self.at:
            raise PlayerClosed("mpv was closed")
        return super().play(start_s, end_s)


def test_a_player_closed_during_a_replay_keeps_the_note_and_says_so(tmp_path):
    from ratedial.analysis.errors import PlayerClosed

    rec = make_recording(tmp_path, None)
    with pytest.raises(PlayerClosed) as exc:
        run_review(rec, "client", segments_of(rec), player=ClosingPlayer(3), lead_in_s=0.0,
                   prompter=Prompter(io.StringIO("one\n\nhalf\n/replay\nmore\n\n"),
                                     io.StringIO()))
    assert str(exc.value).startswith("mpv was closed during T2 (2 of 6): 1 note saved in "
                                     "D01-client.ratedial, and T2's lines so far (marked "
                                     "interrupted)"), str(exc.value)
    notes = [n["data"] for n in read_notes(rec, "segment_note")]
    assert [(n["segment"]["label"], n["text"], n.get("interrupted")) for n in notes] == [
        ("T1", "one", None), ("T2", "half", True)]


def test_a_player_closed_during_the_guess_test_saves_nothing_and_says_so(tmp_path):
    from ratedial.analysis.errors import PlayerClosed

    rec = make_recording(tmp_path, None)
    with pytest.raises(PlayerClosed) as exc:
        run_guess(rec, "client", segments_of(rec), player=ClosingPlayer(2), seed=5,
                  prompter=Prompter(io.StringIO("+\n-\n+\n"), io.StringIO()))
    assert str(exc.value) == ("mpv was closed during segment 2 of 6: a guess test is saved "
                              "only when every answer was given, so nothing was saved; run "
                              "it again (--order-seed 5 shows the same order)")
    assert read_notes(rec, "guess") == []


def test_one_segment_is_one_segment(tmp_path):
    """An audit: "1 segments"."""
    rec = make_recording(tmp_path, None)
    res = _review(rec, "--window", "40", "--segments", "1", "--no-video", stdin=b"\n")
    assert res.returncode == 0, res.stderr
    assert b": 1 segment, order rank." in res.stdout, res.stdout


def test_a_lowest_segment_above_neutral_is_said_to_be_so(tmp_path):
    """An audit (2026-12-05): a client who never went below neutral got three 'lowest'
    segments (mean 52) presented as lowest and, in the guess test, scored as hindering, with
    no word. The interview, the guess test's results and the report now say it."""
    path = tmp_path / "D02-client.ratedial"  # 60..80: never below the band 45-55
    write_recording(path, [simple_rater("client", piecewise([10, 20, 30], [60, 80, 62, 75]),
                                        40)], rate_hz=100,
                    media=SynthMedia(duration_s=40.0, path="gone.mp4"), session={"dyad": "D02"})
    res = _cli(["review", str(path), "--window", "5", "--no-video", "--lead-in", "0"],
               "\n" * 6)
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("[")]
    lows = [ln for ln in lines if "(lowest" in ln]
    assert lows and all(ln.endswith("(note: not below the neutral band 45 to 55)") for ln in lows)
    assert not any("note:" in ln for ln in lines if "(highest" in ln)  # 80: helpful indeed
    res = _cli(["review", str(path), "--window", "5", "--no-video", "--lead-in", "0", "--guess",
                "--of", "client"], "+\n" * 6)
    assert res.returncode == 0, res.stderr
    results = [ln for ln in res.stdout.splitlines() if "answered" in ln]
    assert sum("not below the neutral band" in ln for ln in results) == len(lows)
    report = subprocess.run([sys.executable, "-m", "ratedial", "analyze", str(path),
                             "--window", "5", "--no-truth-bias"], capture_output=True,
                            text=True, timeout=120, check=False)
    assert report.returncode == 0, report.stderr
    segs = [ln for ln in report.stdout.splitlines() if ln.strip().startswith("client ")
            and " B" in ln]
    assert segs and all(ln.endswith("(not below the neutral band)") for ln in segs), segs


def test_a_guess_test_of_one_kind_of_segments_warns_and_scores_it_as_such(tmp_path):
    """An audit: a short video with long windows gave a guess test of top segments only,
    with no warning, scored "helpful 2 of 2, hindering 0 of 0" as if balanced."""
    rec = make_recording(tmp_path, None)
    res = _review(rec, "--window", "15", "--guess", "--no-video", "--order-seed", "1",
                  stdin=b"+\n-\n")
    assert res.returncode == 0, res.stderr
    out = res.stdout.decode()
    lines = out.splitlines()
    warning = ("warning: client's segments are all of one kind (with these options no "
               "window is left for the other): the score cannot show whether helpful and "
               "hindering moments are told apart; a shorter --window gives both")
    assert lines[1] == warning, out  # at the start, before the first segment
    (note,) = read_notes(rec, "guess")
    data = note["data"]
    assert {s["kind"] for s in data["segments"]} == {"top"} and data["n"] == 2
    assert (data["score"], data["helpful_correct"], data["hindering_correct"]) == (1, 1, 0)
    assert (data["helpful_n"], data["hindering_n"]) == (2, 0)  # 0 of 0, not a miss
    # the table and --json say so too (an audit: "hindering_correct 0" read as a miss)
    table = tmp_path / "t.csv"
    an = subprocess.run([sys.executable, "-m", "ratedial", "analyze", str(rec), "--window",
                         "15", "--no-truth-bias", "--table", str(table), "--json"],
                        capture_output=True, text=True, timeout=120, check=False)
    assert an.returncode == 0, an.stderr
    (row,) = list(csv.DictReader(table.open()))
    assert {k: row[f"client_guess_{k}"] for k in (
        "n", "helpful_n", "helpful_correct", "hindering_n", "hindering_correct")} == {
        "n": "2", "helpful_n": "2", "helpful_correct": "1", "hindering_n": "0",
        "hindering_correct": "0"}
    (rater,) = json.loads(an.stdout)["dyads"][0]["raters"]
    assert (rater["guess"]["helpful_n"], rater["guess"]["hindering_n"]) == (2, 0)
    assert ("Score: 1 of 2 correct (helpful 1 of 2; no hindering segment, so not a test of "
            "telling the two apart).") in out
    assert "hindering 0 of 0" not in out
    res = _review(rec, "--guess", "--no-video", "--order-seed", "1", stdin=b"+\n" * 6)
    assert res.returncode == 0 and b"all of one kind" not in res.stdout  # 3 s: both kinds
    assert b"(helpful 3 of 3, hindering 0 of 3)" in res.stdout
