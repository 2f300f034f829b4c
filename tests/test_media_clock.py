"""The media clock model (pure): anchors, envelopes, seeks, history, latency, end, loss."""

from __future__ import annotations

import random

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ratedial.media import ClockConfig, MediaClock, PollExtrapolate, Source
from ratedial.players.mpv_input import mpv_clock_config
from ratedial.players.simulate import STANDARD_SCRIPT, Action, simulate
from ratedial.players.vlc import vlc_clock_config
from ratedial.recording import MediaState

MS = 1_000_000
S = 1_000_000_000
FRAME = 1 / 30


def push_clock(**kw: object) -> MediaClock:
    c = MediaClock(mpv_clock_config(float(kw.pop("latency_ms", 0.0))))  # type: ignore[arg-type]
    c.connected(0)
    c.load(0, fps=30.0, duration_s=100.0)
    c.identify(0, media_id=7, path="/v.mp4", duration_s=100.0, fps=30.0)
    return c


def play_frames(c: MediaClock, t0: int, p0: float, n: int, *, latency: list[int] | None = None,
                rate: float = 1.0) -> int:
    """Push n frames from (t0, p0): frame k shown at t0 + k frames, received after latency."""
    t = t0
    for k in range(n):
        t = t0 + round(k * FRAME / rate * S)
        c.position(t + (latency[k] if latency else 0), p0 + k * FRAME)
    return t


def test_push_lower_envelope_ignores_late_deliveries():
    c = push_clock()
    c.paused(0, True)
    c.position(MS, 10.0)
    c.paused(100 * MS, False)
    rng = random.Random(3)
    lat = [MS // 2 + rng.choice([0, 0, 8 * MS, 15 * MS]) for _ in range(120)]
    t_last = play_frames(c, 100 * MS, 10.0, 120, latency=lat)
    # With a mean fit the late deliveries would bias the clock by ~6 ms; the envelope by 0.5.
    for dt in (0, 5 * MS, 20 * MS):
        t = t_last + dt
        truth = 10.0 + (t - 100 * MS) / S
        _, pos, state = c.at(t)
        assert state is MediaState.PLAYING
        assert pos == pytest.approx(truth - 0.0005, abs=0.0003)


def test_paused_rating_belongs_to_the_paused_frame():
    c = push_clock()
    c.paused(0, False)
    play_frames(c, 0, 0.0, 31)
    c.paused(1_010 * MS, True)  # pause arrives a third of a frame after frame 30 (1.0 s)
    ids, pos, states = c.annotate([1_020 * MS, 5 * S])
    assert ids == (7, 7) and states == (2, 2)
    assert pos == (1.0, 1.0)


def test_history_answers_past_times_from_the_segment_then():
    c = push_clock()
    c.paused(0, False)
    play_frames(c, 0, 0.0, 31)
    c.paused(1_003 * MS, True)
    c.seeking(1_500 * MS, True)
    c.position(1_500 * MS, 40.0)  # the target
    c.seeking(1_505 * MS, False)
    c.position(1_506 * MS, 40.0)  # where it landed (the answer to get_property)
    # Samples taken before the pause and the seek, annotated only now:
    _, (a, b, d, e), states = c.annotate([995 * MS, 1_002 * MS, 1_502 * MS, 1_600 * MS])
    assert states == (1, 1, 3, 2)
    assert a == pytest.approx(0.995, abs=0.001) and b == pytest.approx(1.002, abs=0.001)
    assert d == 1.0  # during the seek: the paused frame, still on the screen
    assert e == 40.0


def test_seek_events_and_seek_while_paused():
    c = push_clock()
    events = c.paused(0, False)
    assert [e.kind for e in events] == ["media_play"]
    play_frames(c, 0, 0.0, 61)
    events = c.seeking(2_010 * MS, True) + c.position(2_010 * MS, 50.0)
    _, seeking_at, state = c.at(2_011 * MS)
    assert state is MediaState.SEEKING and seeking_at == pytest.approx(2.0, abs=0.02)
    events += c.paused(2_012 * MS, True)  # pause during the seek
    events += c.seeking(2_020 * MS, False)
    assert c.settling and c.at(2_021 * MS)[2] is MediaState.SEEKING
    events += c.position(2_021 * MS, 50.0)
    assert [e.kind for e in events] == ["media_pause", "media_seek"]
    assert events[1].data == {"from_s": pytest.approx(2.0, abs=0.02), "to_s": 50.0}
    assert c.at(2_030 * MS)[1:] == (50.0, MediaState.PAUSED)
    events = c.seeking(3 * S, True) + c.position(3 * S, 20.0) + c.seeking(3 * S + 5 * MS, False)
    events += c.position(3 * S + 6 * MS, 20.0)
    assert [e.data for e in events] == [{"from_s": 50.0, "to_s": 20.0}]
    assert c.at(4 * S)[1:] == (20.0, MediaState.PAUSED)


def test_stalled_player_stops_the_clock_within_a_frame_and_a_half():
    c = push_clock()
    c.paused(0, False)
    play_frames(c, 0, 0.0, 30)  # last frame 29/30 at 0.9667 s, then nothing
    assert c.at(3 * S)[1] == pytest.approx(29 * FRAME + 1.5 * FRAME)
    play_frames(c, 3 * S, 30 * FRAME, 4)  # it resumes 2 s late: a slip, re-anchored
    assert c.at(3 * S + 100 * MS)[1] == pytest.approx(30 * FRAME + 0.1, abs=0.002)


def test_rate_change_and_end_of_file():
    c = push_clock()
    c.paused(0, False)
    play_frames(c, 0, 0.0, 31)
    events = c.set_rate(1_000 * MS, 2.0)
    assert events[0].kind == "media_rate" and events[0].data["rate"] == 2.0
    play_frames(c, 1_000 * MS, 1.0, 60, rate=2.0)
    _, pos, _ = c.at(1_500 * MS)
    assert pos == pytest.approx(2.0, abs=0.002)
    events = c.ended(2_500 * MS, True)
    assert [e.kind for e in events] == ["media_end"]
    assert c.at(3 * S)[1:] == (pytest.approx(1.0 + 59 * FRAME), MediaState.ENDED)


def test_display_latency_shifts_the_answer():
    c = push_clock(latency_ms=40.0)
    c.paused(0, False)
    play_frames(c, 0, 0.0, 31)
    assert c.at(1_000 * MS)[1] == pytest.approx(0.960, abs=0.001)


def test_lost_player_is_unknown_and_old_history_is_forgotten():
    c = push_clock()
    c.paused(0, False)
    play_frames(c, 0, 0.0, 31)
    c.lost(1_100 * MS)
    assert c.at(1_200 * MS) == (None, None, MediaState.UNKNOWN)
    assert c.annotate([None]) == ((None,), (None,), (0,))
    assert c.at(1_000 * MS)[2] is MediaState.PLAYING  # before the loss: still known
    c.connected(40 * S)
    c.load(40 * S)
    assert c.at(1_000 * MS) == (None, None, MediaState.UNKNOWN)  # older than history_s


def poll_clock(source: Source = Source.POLL) -> MediaClock:
    cfg = ClockConfig(source=source, window_s=10.0) if source is Source.POLL \
        else vlc_clock_config(0.0)
    c = MediaClock(cfg)
    c.connected(0)
    c.load(0, fps=30.0, duration_s=100.0)
    c.identify(0, media_id=1, duration_s=100.0, fps=30.0)
    return c


def test_polled_seek_is_detected_from_a_residual_over_two_frames():
    c = poll_clock()
    truth = 5.0
    t = 0
    for _ in range(50):  # playing, polled every 40 ms, answered after 3 ms
        c.poll(t, t + 3 * MS, media_s=truth + (t + 3 * MS) / S, playing=True, rate=1.0)
        t += 40 * MS
    kinds = []
    # An answer one frame behind is a late answer, not a seek ...
    kinds += [e.kind for e in c.poll(t, t + 3 * MS, media_s=truth + (t + 3 * MS) / S - FRAME,
                                     playing=True, rate=1.0)]
    t += 40 * MS
    # ... a jump by three frames is.
    kinds += [e.kind for e in c.poll(t, t + 3 * MS, media_s=truth + (t + 3 * MS) / S + 0.1,
                                     playing=True, rate=1.0)]
    assert kinds == ["media_seek"]
    _, pos, _ = c.at(t + 3 * MS)
    assert pos == pytest.approx(truth + (t + 3 * MS) / S + 0.1, abs=0.002)


def test_polled_pause_placed_between_polls_and_stale_steps():
    c = poll_clock(Source.STEP)
    t = 0
    value = 0.0
    for _ in range(100):  # a VLC-like position refreshed every 250 ms
        recv = t + 21 * MS
        value = max(value, recv // (250 * MS) * 0.25)
        c.poll(t, recv, media_s=value, playing=True, rate=1.0)
        t += 40 * MS
    _, pos, state = c.at(t)
    assert state is MediaState.PLAYING and pos == pytest.approx(t / S, abs=0.03)
    events = c.poll(t, t + 21 * MS, media_s=value, playing=False, rate=1.0)
    assert [e.kind for e in events] == ["media_pause"]
    assert events[0].data["media_s"] == pytest.approx(t / S, abs=0.04)


def test_manual_marks():
    c = MediaClock(ClockConfig(source=Source.NONE))
    assert c.at(S)[2] is MediaState.UNKNOWN
    events = c.mark(S, 12.0)
    assert [e.kind for e in events] == ["media_play"]
    assert c.at(3 * S)[1:] == (14.0, MediaState.PLAYING)
    events = c.mark(4 * S, 0.0)
    assert events[0].kind == "media_seek" and events[0].data["to_s"] == 0.0


def test_poll_extrapolate_baseline():
    b = PollExtrapolate()
    assert b.at(0) is None
    b.poll(0, 3.0, playing=True, rate=1.0)
    b.poll(500 * MS, 3.0, playing=True, rate=1.0)  # unchanged: keep extrapolating
    assert b.at(900 * MS) == pytest.approx(3.9)
    b.poll(S, 4.0, playing=False, rate=1.0)
    assert b.at(2 * S) == 4.0


@pytest.mark.parametrize("player", ["mpv", "vlc", "mpc"])
def test_simulated_session_tracks_the_truth(player):
    r = simulate(player)
    ours, base = r.stats("ratedial"), r.stats("baseline")
    bound = {"mpv": 5, "vlc": 40, "mpc": 5}[player]
    assert ours["p99_ms"] < bound and ours["median_ms"] <= base["median_ms"] + 1.0, (ours, base)
    assert r.state_agree / r.samples > 0.995
    kinds = [e.kind for e in r.events]
    for kind in ("media_load", "media_play", "media_pause", "media_seek", "media_rate",
                 "media_end"):
        assert kind in kinds, (player, kinds)


actions = st.lists(st.tuples(st.sampled_from(["play", "pause", "seek", "seek_by", "rate"]),
                             st.floats(0.0, 120.0), st.floats(0.05, 3.0)),
                   min_size=1, max_size=8)


@settings(max_examples=15, deadline=None)
@given(actions, st.sampled_from(["mpv", "mpc", "vlc"]), st.integers(0, 1000))
# A seek back to 0.0 within VLC's first stale step: status.json shows no change until VLC's
# next refresh (found by hypothesis in CI preview; 15 % off against an 11 % budget).
@example([("seek", 0.0, 3.0)], "vlc", 28)
# Play, a seek back to 0.0 and a pause 0.5 s later (found by hypothesis in a full run,
# 2026-12-05: 88 % of samples off, 533 ms).
@example([("seek", 0.0, 0.5), ("pause", 0.0, 1.0)], "vlc", 87)
def test_random_sessions_stay_within_bounds_away_from_transitions(script, player, seed):
    t = 1.0
    acts = [Action(0.5, "play")]
    for name, x, gap in script:
        arg = {"rate": 0.5 + x / 60, "seek_by": x / 4 - 15}.get(name, x)
        acts.append(Action(t, name, arg))
        t += gap
    r = simulate(player, tuple(acts), seed=seed, end_s=t + 2.0)
    # Within a frame (VLC: its documented 80 ms, a pause's frame being known only that well),
    # except near a change: one poll interval and answer each.
    bound = 0.080 if player == "vlc" else FRAME
    off = sum(abs(e) > bound for e in r.ratedial) / max(1, len(r.ratedial))
    budget = (len(acts) + 2) * (0.1 if player == "vlc" else 0.06) / (t + 2.0)
    # A seek VLC's answers cannot show (the same status.json before and after) is seen at
    # its next refresh: up to its largest measured step (0.5 s) at the rate in force. A pause
    # before that refresh holds the unseen difference for the whole pause (VLC's paused value
    # stays as stale as it was, and the line is within its staleness): until the next play's
    # first refresh.
    fastest = max([1.0] + [a.arg for a in acts if a.name == "rate"])
    for at in r.unseen_at_s:
        pause = next((a.at_s for a in acts if a.name == "pause" and at < a.at_s <= at + 1.05),
                     None)
        if pause is None:
            budget += 0.5 * fastest / (t + 2.0)
        else:
            resume = next((a.at_s for a in acts if a.name == "play" and a.at_s > pause),
                          t + 2.0)
            budget += (resume + 0.5 * fastest - at) / (t + 2.0)
    assert off <= budget + 0.01, (player, acts, r.stats("ratedial"))


def test_standard_script_is_a_rater_session():
    names = [a.name for a in STANDARD_SCRIPT]
    assert {"play", "pause", "seek", "seek_by", "rate"} <= set(names)


# --- seek edges: the target is never a media time (issue 15) ----------------------------------


def test_seek_past_the_end_records_the_last_frame_never_the_target():
    """mpv order (measured): seek, time-pos = 75 (the target), seeking, playback-restart,
    then the landed 59.967 (answer to get_property); paused, eof-reached may come first."""
    c = MediaClock(mpv_clock_config(0.0))
    c.connected(0)
    c.load(0, fps=30.0, duration_s=60.0)
    c.identify(0, media_id=1, path="/v.mp4", duration_s=60.0, fps=30.0)
    c.paused(0, False)
    play_frames(c, 0, 10.0, 31)
    events = c.seek(1_010 * MS) + c.position(1_010 * MS, 75.0) + c.seeking(1_011 * MS, True)
    events += c.seeking(1_030 * MS, False)
    events += c.ended(1_031 * MS, True)  # eof before the landing report
    events += c.position(1_032 * MS, 59.966667, sent_ns=1_030 * MS)
    events += c.paused(1_033 * MS, True)
    _, pos, states = c.annotate([t * MS for t in range(1_000, 1_100)])
    assert all(p is None or p <= 60.0 for p in pos), max(p for p in pos if p is not None)
    assert 75.0 not in pos
    assert pos[-1] == pytest.approx(59.966667) and states[-1] == int(MediaState.ENDED)
    seeks = [e.data for e in events if e.kind == "media_seek"]
    assert seeks == [{"from_s": pytest.approx(11.0, abs=0.01), "to_s": 59.966667}]


def test_relative_seek_records_the_keyframe_it_landed_on():
    c = push_clock()
    c.paused(0, False)
    play_frames(c, 0, 15.0, 31)
    events = c.seek(1_001 * MS) + c.position(1_001 * MS, 11.0) + c.seeking(1_001 * MS, True)
    events += c.seeking(1_035 * MS, False)
    events += c.position(1_035 * MS + 200_000, 9.0, sent_ns=1_035 * MS)  # the keyframe
    play_frames(c, 1_068 * MS, 9.0 + FRAME, 10)
    _, pos, states = c.annotate([t * MS for t in range(1_002, 1_300)])
    assert 11.0 not in pos
    during = [p for p, s in zip(pos, states, strict=True) if s == int(MediaState.SEEKING)]
    assert during and all(p == pytest.approx(16.0, abs=0.01) for p in during)
    after = c.at(1_200 * MS)
    assert after[2] is MediaState.PLAYING and after[1] == pytest.approx(9.165, abs=0.035)
    assert [e.data["to_s"] for e in events if e.kind == "media_seek"] == [9.0]


def test_repeated_seeks_land_once_from_the_first_position():
    c = push_clock()
    c.paused(0, True)
    c.position(MS, 30.0)
    events = c.seek(10 * MS) + c.position(10 * MS, 35.0) + c.seeking(10 * MS, True)
    events += c.seeking(20 * MS, False)
    events += c.seek(21 * MS) + c.position(21 * MS, 40.0)  # a second seek before the landing
    events += c.seeking(30 * MS, False) + c.position(31 * MS, 39.9)
    assert [e.data for e in events if e.kind == "media_seek"] == [
        {"from_s": 30.0, "to_s": 39.9}]
    assert c.at(40 * MS)[1:] == (39.9, MediaState.PAUSED)


def test_positions_are_clamped_to_the_video():
    c = push_clock()  # 100 s
    c.paused(0, True)
    c.position(MS, 130.0)  # a player saying more than the file holds
    assert c.at(2 * MS)[1] == 100.0
    c.position(3 * MS, -2.0)
    assert c.at(4 * MS)[1] == 0.0
    c.mark(5 * MS, 150.0)
    assert c.at(6 * MS)[1] == 100.0


def test_polled_players_are_clamped_to_the_video_too():
    from ratedial.players.mpc import mpc_clock_config

    c = MediaClock(mpc_clock_config(0.0))
    c.connected(0)
    c.load(0, fps=25.0, duration_s=60.0)
    c.identify(0, media_id=1, path="/v.mp4", duration_s=60.0, fps=25.0)
    c.poll(0, MS, media_s=10.0, playing=True, rate=1.0)
    events = c.poll(40 * MS, 41 * MS, media_s=75.0, playing=True, rate=1.0)  # past the end
    assert [(e.kind, e.data["to_s"]) for e in events] == [("media_seek", 60.0)]
    for t in (42 * MS, 500 * MS, 5 * S):
        assert c.at(t)[1] == 60.0
    c.poll(80 * MS, 81 * MS, media_s=75.0, playing=False, rate=1.0)
    assert c.at(100 * MS)[1:] == (60.0, MediaState.PAUSED)


def test_a_stale_answer_after_a_seek_does_not_hold_the_clock_back():
    """Measured with real mpv: after a seek while playing at 1.5x, time-pos pushed 147.067,
    then the answer to get_property said 147.033, then 147.1: the stale answer must not
    become the frame ceiling (it held the recording 50 ms behind mpv)."""
    c = push_clock()
    c.paused(0, False)
    c.set_rate(0, 1.5)
    play_frames(c, 0, 10.0, 10, rate=1.5)
    c.seek(400 * MS)
    c.position(400 * MS, 80.0)
    c.seeking(420 * MS, False)
    c.position(420 * MS, 80.066667)  # lands
    c.position(420 * MS + 250_000, 80.033333)  # the answer, older
    c.position(421 * MS, 80.1)
    _, pos, state = c.at(438 * MS)  # 17 ms later, before the next frame's report
    assert state is MediaState.PLAYING
    assert pos == pytest.approx(80.1 + 1.5 * 0.017, abs=0.003)


def test_event_positions_are_clamped_too():
    """mpv reported time-pos 150.025 at the end of a file whose duration is 150.016."""
    c = push_clock()  # 100 s
    c.paused(0, False)
    play_frames(c, 0, 99.9, 5)
    events = c.ended(200 * MS, True)
    assert [(e.kind, e.data["media_s"]) for e in events] == [("media_end", 100.0)]


def test_a_caller_that_knows_where_the_seek_landed_says_so_on_restart():
    c = push_clock()
    c.paused(0, True)
    c.position(MS, 5.0)
    events = c.seeking(10 * MS, True) + c.position(10 * MS, 50.0)  # target
    events += c.seeking(20 * MS, False, landed_s=48.0)
    assert not c.settling
    assert [e.data for e in events if e.kind == "media_seek"] == [{"from_s": 5.0, "to_s": 48.0}]
    assert c.at(30 * MS)[1:] == (48.0, MediaState.PAUSED)


@pytest.mark.parametrize("polled", [False, True])
def test_a_shorter_file_loaded_next_does_not_clamp_the_samples_of_the_first(polled):
    """An audit (2026-12-04) with VLC: samples taken at 26.5 s of a 30 s video, annotated
    after a 5 s video was loaded, were recorded at 5.5 s (the new file's length) under the
    old file's media_id: fake rewinds that export's `last` rule then used."""
    c = poll_clock(Source.POLL) if polled else push_clock()  # a 100 s file, media_id 1 / 7
    first_id = c.at(0)[0]
    if polled:
        c.poll(0, MS, media_s=20.0, playing=True, rate=1.0)
        c.poll(500 * MS, 501 * MS, media_s=20.5, playing=True, rate=1.0)
    else:
        play_frames(c, 0, 20.0, 16)
    taken = 500 * MS  # a sample taken while the first file played, near 20.5 s
    before = c.at(taken)
    assert before[0] == first_id and before[1] is not None and before[1] > 20.0
    c.load(600 * MS, fps=30.0, duration_s=5.0)  # the next file, 5 s long
    c.identify(601 * MS, media_id=2, path="/short.mp4", duration_s=5.0, fps=30.0)
    ids, pos, states = c.annotate([taken])  # annotated after the load, as the daemon does
    assert (ids[0], pos[0], states[0]) == (first_id, before[1], int(before[2]))
    if polled:
        c.poll(700 * MS, 701 * MS, media_s=9.0, playing=True, rate=1.0)  # past its end
    else:
        c.position(700 * MS, 9.0)
    assert c.at(800 * MS)[:2] == (2, 5.0)  # the new file's own times are still clamped


def test_a_file_opened_paused_gets_its_position_and_its_seeks():
    """An audit (2026-12-04) with VLC: a file opened while paused kept no position (3,450
    samples paused with media_s NULL) and a seek made then was never recorded."""
    c = poll_clock(Source.STEP)  # VLC
    c.poll(0, MS, media_s=10.0, playing=True, rate=1.0)
    c.poll(200 * MS, 201 * MS, media_s=10.2, playing=False, rate=1.0)  # paused at 10.2
    c.load(300 * MS, fps=30.0, duration_s=5.0)  # the next file opens paused
    c.identify(301 * MS, media_id=2, path="/next.mp4", duration_s=5.0, fps=30.0)
    c.poll(400 * MS, 401 * MS, media_s=0.0, playing=False, rate=1.0)
    assert c.at(450 * MS) == (2, 0.0, MediaState.PAUSED)
    events = c.poll(600 * MS, 601 * MS, media_s=3.0, playing=False, rate=1.0)
    assert [(e.kind, e.data) for e in events] == [("media_seek", {"from_s": 0.0, "to_s": 3.0})]
    assert c.at(700 * MS) == (2, 3.0, MediaState.PAUSED)


def test_the_seek_to_the_start_mpv_makes_opening_a_file_is_no_seek():
    """An audit (2026-12-04): a file loaded a second time in one run was identified at once,
    before mpv's own seek to its start landed a frame on: a media_seek 0.0 -> 0.04 was
    recorded (and went into the ELAN events tier)."""
    c = push_clock()  # loaded and identified at 0
    c.paused(0, False)
    c.position(1 * MS, 0.0)
    c.seeking(2 * MS, True)  # mpv's own seek to the start, from 0.0 ...
    events = c.seeking(60 * MS, False, landed_s=0.04)  # ... lands a frame on
    assert [e.kind for e in events] == []
    assert c.at(61 * MS)[1] is not None and abs(c.at(61 * MS)[1] - 0.041) < 0.002
    # a seek the rater makes back to the start later is recorded
    play_frames(c, 2 * S, 2.0, 3)
    c.seeking(2_200 * MS, True)
    events = c.seeking(2_220 * MS, False, landed_s=0.0)
    assert [(e.kind, e.data["to_s"]) for e in events] == [("media_seek", 0.0)]


def test_a_file_of_unknown_length_is_not_clamped_to_the_next_files_length():
    """A review (2026-12-04): a segment of a file with no known duration fell back to the
    loaded file's: the same wrong clamp as above, for streams and files of unknown length."""
    c = MediaClock(mpv_clock_config(0.0))
    c.connected(0)
    c.load(0, fps=30.0)
    c.identify(0, media_id=1, path="/stream", fps=30.0)  # no duration
    c.paused(0, False)
    play_frames(c, 0, 26.0, 16)
    taken = 500 * MS
    before = c.at(taken)
    assert before[1] is not None and before[1] > 26.0
    c.load(600 * MS, fps=30.0, duration_s=5.0)
    c.identify(601 * MS, media_id=2, path="/short.mp4", duration_s=5.0, fps=30.0)
    assert c.annotate([taken])[1] == (before[1],)


def test_a_file_closed_by_the_player_is_a_media_stop_event():
    """mpv ``stop``, VLC's stop, a file closed: the samples' state turned unknown with no
    event saying why (an audit). Now ``media_stop`` with the last position, once."""
    c = push_clock()
    c.paused(0, False)
    play_frames(c, 0, 10.0, 30)
    events = c.unload(S)
    assert [e.kind for e in events] == ["media_stop"]
    assert events[0].data["media_s"] == pytest.approx(11.0, abs=0.005)
    assert c.at(3 * S)[2] is MediaState.UNKNOWN
    assert c.unload(4 * S) == []  # nothing loaded any more: nothing to say
    c.load(5 * S, fps=30.0, duration_s=100.0)
    assert c.unload(6 * S) == []  # loaded but never identified: no media row to name
