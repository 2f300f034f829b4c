"""Alignment on media time against synthetic recordings with known ground truth: re-rated
stretches by each rule, pauses and unknown media time left out, gaps kept missing, short
holes filled, reboots, several raters and videos."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from ratedial.analysis.align import (
    FILLED,
    MISSING,
    RATED,
    AlignOptions,
    Binned,
    fill_short,
    pass_ids,
    resolve,
)
from ratedial.analysis.errors import NotARecording, NothingToAnalyse
from ratedial.analysis.groups import group_series
from ratedial.analysis.load import load
from ratedial.analysis.read import sample_groups
from ratedial.analysis.synth import (
    NoPlayer,
    Pause,
    Play,
    Reboot,
    SynthMedia,
    SynthRater,
    Unknown,
    constant,
    piecewise,
    simple_rater,
    write_recording,
)

SAMPLE_HZ = 100.0


def _script():
    """The client's session (see the module docstring of the test for the story)."""
    return (
        Play(start_s=0, end_s=40),  # 30 until 20 s, then 70
        Pause(at_s=40, seconds=5, rating=90),  # turned to 90 while paused: left out
        Play(start_s=40, end_s=60, rating=constant(60)),
        Play(start_s=30, end_s=60, rating=constant(80)),  # rewound: 30-60 rated again
        Play(start_s=60, end_s=80, rating=constant(40)),
        Unknown(seconds=3),  # player lost: no media time
        Play(start_s=80, end_s=100, rating=constant(40),
             gaps=((85, 87, "link"), (90, 90.3, "crc"))),
        Reboot(),
        Play(start_s=100, end_s=120, rating=constant(20)),
    )


def _expected(rule):
    v = np.full(1200, np.nan)
    v[0:200] = 30
    v[200:300] = 70
    first = {"last": (80, 80), "first": (70, 60), "mean": (75, 70)}[rule]
    v[300:400] = first[0]
    v[400:600] = first[1]
    v[600:850] = 40
    v[870:1000] = 40
    v[1000:1200] = 20
    return v


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    path = tmp_path_factory.mktemp("align") / "client.ratedial"
    rater = SynthRater(label="client", curve=piecewise([20], [30, 70]), script=_script())
    written = write_recording(path, [rater], media=SynthMedia(duration_s=120.0),
                              rate_hz=SAMPLE_HZ, session={"dyad": "D01"})
    return path, written


@pytest.mark.parametrize("rule", ["last", "first", "mean"])
def test_rerated_stretch_follows_the_rule(story, rule):
    path, _ = story
    (s,) = load([path], AlignOptions(rerate=rule))
    exp = _expected(rule)
    assert len(s.values) == 1200
    filled = s.status == FILLED
    np.testing.assert_allclose(s.values[~filled], exp[~filled], equal_nan=True)
    assert s.binned.n_passes[300:600].min() == 2
    assert s.binned.n_passes[:300].max() == 1 and s.binned.n_passes[600:].max() <= 1


def test_gaps_stay_missing_and_short_holes_are_filled(story):
    path, written = story
    (s,) = load([path])
    assert (s.status[850:870] == MISSING).all()  # 2 s lost: longer than the 0.5 s limit
    assert np.isnan(s.values[850:870]).all()
    assert (s.status[900:903] == FILLED).all()  # 0.3 s lost: interpolated
    np.testing.assert_allclose(s.values[900:903], 40)
    assert (s.status[:850] == RATED).all() and (s.status[870:900] == RATED).all()
    (never,) = load([path], AlignOptions(max_fill_s=0))
    assert np.isnan(never.values[900:903]).all()
    assert [(g.reason, g.n_missing) for g in s.gaps] == [("link", 200), ("crc", 30)]
    assert s.gaps[0].media_from_s == pytest.approx(84.99)
    assert s.gaps[0].media_to_s == pytest.approx(87.0)
    assert [(g[3], g[2] - g[1]) for g in written.gaps] == [("link", 200), ("crc", 30)]


def test_excluded_samples_are_counted_not_used(story):
    path, _ = story
    (s,) = load([path])
    assert s.excluded == {"paused": 500, "no_media_time": 300}
    assert s.passes == 3  # first watch, the rewound pass, after the reboot
    assert s.samples_used == (40 + 20 + 30 + 20 + 20 + 20) * 100 - 230
    con = sqlite3.connect(path)
    total = con.execute("SELECT count(*) FROM samples").fetchone()[0]
    assert total == s.samples_used + 500 + 300


def test_means_against_ground_truth(story):
    path, _ = story
    (s,) = load([path])
    exp = _expected("last")
    ok = ~np.isnan(exp)
    exp[900:903] = 40
    assert np.nanmean(s.values) == pytest.approx(exp[ok].mean(), abs=1e-9)


def test_groups_never_mix_passes_and_stay_small(story):
    path, _ = story
    g = sample_groups(path, 1, rate_hz=10, block=50)
    assert g.count.sum() == (40 + 5 + 20 + 30 + 20 + 3 + 20) * 100 - 230  # epoch 1, all kinds
    assert len(g.bin) < g.count.sum() / 9  # about one group per bin (10 samples), not per sample
    assert (np.diff(g.first_index) > 0).all()  # recording order


def test_rewind_tolerance_decides_what_is_a_new_pass(tmp_path):
    script = (Play(start_s=0, end_s=10, rating=constant(20)),
              Play(start_s=9.8, end_s=20, rating=constant(60)))
    path = tmp_path / "jitter.ratedial"
    write_recording(path, [SynthRater(label="client", curve=constant(0), script=script)],
                    media=SynthMedia(duration_s=20.0), rate_hz=SAMPLE_HZ)
    (same,) = load([path], AlignOptions(rewind_tolerance_s=0.5))
    assert same.passes == 1
    assert same.values[98] == pytest.approx((20 * 10 + 60 * 10) / 20)  # one pass: all samples
    (new,) = load([path], AlignOptions(rewind_tolerance_s=0.1))
    assert new.passes == 2
    assert new.values[98] == 60 and new.binned.n_passes[98] == 2


def test_two_recordings_align_on_the_video(tmp_path):
    media = SynthMedia(duration_s=60.0, fingerprint="rdfp1:abc")
    a = tmp_path / "client.ratedial"
    b = tmp_path / "therapist.ratedial"
    write_recording(a, [simple_rater("client", piecewise([30], [40, 60]), 60)], media=media,
                    rate_hz=SAMPLE_HZ)
    # the therapist starts at 10 s and stops at 50 s
    write_recording(b, [SynthRater(label="therapist", curve=piecewise([30], [45, 65]),
                                   script=(Play(start_s=10, end_s=50),))], media=media,
                    rate_hz=SAMPLE_HZ)
    series = load([a, b])
    (g,) = group_series(series)
    assert g.pair is not None and [s.rater for s in g.pair] == ["client", "therapist"]
    ca, th = g.pair
    assert len(ca.values) == len(th.values) == 600
    assert np.isnan(th.values[:100]).all() and np.isnan(th.values[500:]).all()
    np.testing.assert_allclose(th.values[100:300], 45)
    np.testing.assert_allclose(th.values[300:500], 65)
    np.testing.assert_allclose(ca.values[300:], 60)


def test_several_dials_and_videos_in_one_recording(tmp_path):
    path = tmp_path / "both.ratedial"
    write_recording(path, [simple_rater("client", constant(70), 30, uid="aa"),
                           simple_rater("therapist", constant(30), 30, uid="bb")],
                    media=SynthMedia(duration_s=30.0), rate_hz=SAMPLE_HZ)
    series = load([path])
    assert {s.rater: float(np.nanmean(s.values)) for s in series} == {"client": 70.0,
                                                                      "therapist": 30.0}
    relabelled = load([path], raters={"both.ratedial:bb": "observer"})
    assert sorted(s.rater for s in relabelled) == ["client", "observer"]


def test_duration_unknown_uses_the_last_rated_bin(tmp_path):
    path = tmp_path / "x.ratedial"
    write_recording(path, [simple_rater("client", constant(50), 12.34)],
                    media=SynthMedia(duration_s=None), rate_hz=SAMPLE_HZ)
    (s,) = load([path])
    assert len(s.values) == 124


def test_no_player_analyses_on_run_time(tmp_path):
    # ratedial run without a player: no sample has a media time. The ratings are placed on
    # run time (seconds since the first sample), and the series says so.
    path = tmp_path / "wall.ratedial"
    step = piecewise([10, 20], [30, 80, 60])
    write_recording(path, [SynthRater(label="client", curve=step,
                                      script=(NoPlayer(seconds=30),)),
                           SynthRater(label="therapist", uid="bb", curve=constant(40),
                                      script=(NoPlayer(seconds=30),))], media=None,
                    rate_hz=SAMPLE_HZ, session={"dyad": "W1"})
    series = load([path], AlignOptions(rate_hz=10))
    assert [s.media.timeline for s in series] == ["run", "run"]
    assert series[0].recording.timeline == "run"
    c = series[0].values
    assert len(c) == 300 and not np.isnan(c).any()
    assert np.allclose(c[:100], 30) and np.allclose(c[100:200], 80) and np.allclose(c[200:], 60)
    assert np.allclose(series[1].values, 40)
    (g,) = group_series(series)
    assert g.label == "W1" and g.pair is not None and g.media_key == "run-time"


def test_player_lost_all_along_analyses_on_run_time(tmp_path):
    # A player was configured but never reported a position: run time too, never silently.
    path = tmp_path / "lost.ratedial"
    write_recording(path, [SynthRater(label="client", curve=constant(50),
                                      script=(Unknown(seconds=5),))], media=None,
                    rate_hz=SAMPLE_HZ)
    (s,) = load([path])
    assert s.media.timeline == "run" and s.media.name == "run time (no video)"
    assert len(s.values) == 50 and np.allclose(s.values, 50)


def test_a_recording_without_samples_is_nothing_to_analyse(tmp_path):
    path = tmp_path / "empty.ratedial"
    write_recording(path, [SynthRater(label="client", curve=constant(50), script=())],
                    media=None, rate_hz=SAMPLE_HZ)
    with pytest.raises(NothingToAnalyse, match="no samples to analyse"):
        load([path])


def test_not_a_recording(tmp_path):
    junk = tmp_path / "junk.ratedial"
    junk.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(NotARecording, match="not a ratedial recording"):
        load([junk])
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    con.execute("INSERT INTO meta VALUES ('format', '\"something-else\"')")
    con.commit()
    con.close()
    with pytest.raises(NotARecording, match=r"meta\.format"):
        load([other])
    with pytest.raises(NotARecording, match="no such"):
        load([tmp_path / "missing.ratedial"])


@pytest.mark.parametrize(("table", "said"), [
    ("dials", r"its epoch 1 names dial 1, which has no row in its dials table \(rows "
              r"deleted\?\), so those samples belong to no rater; use an intact copy$"),
    ("epochs", r"it has samples of epoch 1, which has no row in its epochs table \(rows "
               r"deleted\?\), so they belong to no dial; use an intact copy$")])
def test_a_recording_whose_dials_or_epochs_were_deleted_says_so(story, tmp_path, table, said):
    """An audit (2026-12-05): such a recording was "no samples to analyse ... (no sample has
    a media time or a host time)", though every sample in it had a host time."""
    whole, _ = story
    path = tmp_path / "edited.ratedial"
    path.write_bytes(whole.read_bytes())
    con = sqlite3.connect(path)
    with con:
        con.execute(f"DELETE FROM {table}")
    con.close()
    with pytest.raises(NotARecording, match=r"edited\.ratedial is damaged: " + said):
        load([path])


@pytest.mark.parametrize(("hello", "said"), [
    ("[1,2", r"is not JSON \('\[1,2'\)"), ("[1, 2]", r"is not a JSON object \(\[1, 2\]\)")])
def test_an_epochs_hello_that_is_not_a_json_object_is_refused(story, tmp_path, hello, said):
    """An audit (2026-12-05): a hello of '[1,2' was read without a word by every command,
    while a meta.session that is not JSON is refused. docs/recording.md: both are refused."""
    whole, _ = story
    path = tmp_path / "h.ratedial"
    path.write_bytes(whole.read_bytes())
    con = sqlite3.connect(path)
    with con:
        con.execute("UPDATE epochs SET hello = ? WHERE epoch_id = 2", (hello,))
    con.close()
    with pytest.raises(NotARecording, match=r"h\.ratedial: epochs\.hello of epoch 2 " + said
                       + r": an epoch's hello is the JSON object of the dial's HELLO"):
        load([path])
    con = sqlite3.connect(path)
    with con:  # an object without a rate is read, as before
        con.execute("UPDATE epochs SET hello = '{}' WHERE epoch_id = 2")
    con.close()
    assert load([path])


@pytest.mark.parametrize("rate", ["Infinity", "-Infinity", "1e999", "NaN", "true", "false",
                                  "1" + "0" * 400, "0", "-100", '"100"', "null"])
def test_an_epochs_hello_rate_that_is_not_a_finite_positive_number_is_unknown(
        story, tmp_path, rate):
    """A review (2026-12-05): a hello rate_hz of Infinity or 1e999 crashed analyze and export
    (OverflowError), and true was read as 1.0 Hz. docs/recording.md: a rate_hz that is not a
    positive number leaves the rate unknown, as none does."""
    from ratedial.analysis.read import read_recording

    whole, _ = story
    path = tmp_path / "h.ratedial"
    path.write_bytes(whole.read_bytes())

    def rates_and_values(hello):
        con = sqlite3.connect(path)
        with con:
            con.execute("UPDATE epochs SET hello = ? WHERE epoch_id = 2", (hello,))
        con.close()
        rates = {e.epoch_id: e.rate_hz for e in read_recording(path).epochs}
        return rates, [s.values for s in load([path])]

    absent = rates_and_values("{}")
    assert absent[0][2] is None
    rates, values = rates_and_values(f'{{"rate_hz": {rate}}}')
    assert rates == absent[0]
    assert len(values) == len(absent[1]) and all(
        np.array_equal(a, b, equal_nan=True) for a, b in zip(values, absent[1], strict=True))
    assert rates_and_values('{"rate_hz": 100}')[0][2] == 100.0


def test_a_truncated_recording_is_named_damaged(story, tmp_path):
    whole, _ = story
    assert load([whole])  # the whole file reads
    cut = tmp_path / "cut.ratedial"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])  # a copy interrupted two thirds through
    with pytest.raises(NotARecording, match=r"cut\.ratedial is damaged: an SQLite file"):
        load([cut])


def test_a_recording_cut_short_by_a_few_bytes_is_named_damaged(story, tmp_path):
    """An audit (2026-12-05): a file cut by 1-12 bytes passed SQLite's integrity check and
    was read whole, its last sample's values read as zeros (a rating 55.0 as 0.0).
    reliability.md: a file cut short is "damaged". So is one with bytes appended."""
    whole, _ = story
    data = whole.read_bytes()
    assert len(data) % 4096 == 0
    cut = tmp_path / "cut.ratedial"
    cut.write_bytes(data[:-3])
    def rows(p, sql="SELECT * FROM samples ORDER BY epoch_id, sample_index"):
        con = sqlite3.connect(f"file:{p}?immutable=1", uri=True)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    # the case: SQLite itself sees nothing wrong, and a value changed
    assert rows(cut, "PRAGMA integrity_check") == [("ok",)]
    assert rows(cut) != rows(whole)
    for k in (1, 3, 12, 100, 4095, 4096):
        cut.write_bytes(data[:-k])
        with pytest.raises(NotARecording, match=(
                rf"cut\.ratedial is damaged: an SQLite file cut short \({len(data) - k} bytes, "
                rf"where its header says {len(data) // 4096} pages of 4096 bytes; a truncated "
                r"or partly copied file\?\)$")):
            load([cut])
    cut.write_bytes(data + b"\0" * 7)
    with pytest.raises(NotARecording, match=r"cut\.ratedial is damaged: an SQLite file with "
                                            r"7 bytes after its last page"):
        load([cut])
    cut.write_bytes(data[:60])
    with pytest.raises(NotARecording, match=r"is damaged: an SQLite file cut short within"):
        load([cut])


def _page_one_of_wal(wal: bytes, page: int = 4096) -> bytes:
    """The newest page 1 in a -wal (32-byte header, then frames of a 24-byte header and a
    page; a frame's first 4 bytes are its page number)."""
    found = None
    for at in range(32, len(wal) - 24 - page + 1, 24 + page):
        if int.from_bytes(wal[at:at + 4], "big") == 1:
            found = wal[at + 24:at + 24 + page]
    assert found is not None
    return found


def test_a_crashed_recording_whose_file_is_shorter_than_its_header_says_is_read(tmp_path):
    """A crash (or a copy) in the middle of a fold of the -wal into the file leaves the file
    with its new page 1 (SQLite writes pages in order) and not yet its new last pages: the
    file is shorter than its header says, and the -wal holds everything. Such a recording is
    whole, not cut short: it is read (while being recorded too) and folded."""
    import os
    import shutil

    from ratedial._platform.lock import try_lock

    path = tmp_path / "live.ratedial"
    rater = SynthRater(label="client", curve=constant(55), script=(Play(start_s=0, end_s=30),))
    write_recording(path, [rater], media=SynthMedia(duration_s=30.0), rate_hz=SAMPLE_HZ)
    size = path.stat().st_size
    con = sqlite3.connect(path)  # a writer whose last commits stay in its -wal
    con.execute("PRAGMA wal_autocheckpoint = 0")
    con.execute("CREATE TABLE ballast (x)")  # the file grows by 200 pages
    con.execute("INSERT INTO ballast SELECT randomblob(3000) FROM samples LIMIT 200")
    con.execute("UPDATE samples SET rating = 56 WHERE sample_index < 100")
    con.commit()
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    for suffix in ("", "-wal", "-shm"):  # copied as a crash in a fold leaves them
        shutil.copy(f"{path}{suffix}", crashed / f"c.ratedial{suffix}")
    con.close()
    copy = crashed / "c.ratedial"
    with copy.open("r+b") as f:
        f.write(_page_one_of_wal((crashed / "c.ratedial-wal").read_bytes()))
    head = copy.read_bytes()[:100]
    assert int.from_bytes(head[28:32], "big") * 4096 > copy.stat().st_size == size

    def ratings(p):
        (series,) = load([p])
        return set(np.unique(series.values[~np.isnan(series.values)]).tolist())

    fd = try_lock(copy)  # as its recorder would: read, not folded, not called damaged
    assert fd is not None
    try:
        assert ratings(copy) == {55.0, 56.0}
    finally:
        os.close(fd)
    assert (crashed / "c.ratedial-wal").stat().st_size > 0
    assert ratings(copy) == {55.0, 56.0}  # no writer: folded, then read from the file alone
    assert not (crashed / "c.ratedial-wal").exists()
    assert copy.stat().st_size == int.from_bytes(copy.read_bytes()[28:32], "big") * 4096
    con = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
    assert con.execute("SELECT count(*) FROM samples WHERE rating = 56").fetchone() == (100,)
    con.close()


def test_a_crashed_recording_cut_short_beside_its_wal_is_named_damaged(tmp_path):
    """A review (2026-12-05): with a -wal beside it, a file cut short was not size-checked,
    the -wal was folded in (SQLite pads the file to its header's size with zeros) and the
    copy read without a word, a media_s changed and the user's file rewritten. Only pages
    that the -wal's committed frames hold may be missing from the end of the file."""
    import shutil

    path = tmp_path / "live.ratedial"
    rater = SynthRater(label="client", curve=lambda t: 40 + 0.25 * t, uid="c1",
                       script=(Play(start_s=0, end_s=60),))
    write_recording(path, [rater], media=SynthMedia(duration_s=60.0), rate_hz=SAMPLE_HZ)
    con = sqlite3.connect(path)  # a run that crashed: its last commit only in its -wal
    con.execute("PRAGMA wal_autocheckpoint = 0")
    con.execute("INSERT INTO events (host_ns, dial_id, kind, data) VALUES (1, NULL, 'x', '{}')")
    con.commit()
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    for suffix in ("", "-wal"):
        shutil.copy(f"{path}{suffix}", crashed / f"c.ratedial{suffix}")
    con.close()
    copy, wal = crashed / "c.ratedial", crashed / "c.ratedial-wal"
    data, log = copy.read_bytes(), wal.read_bytes()
    pages = int.from_bytes(data[28:32], "big")
    assert len(data) == pages * 4096 and len(log) > 32
    cases = {5: log, 4096: log, 1: log}
    # the last page missing and in the -wal, but in frames of an older log (other salts)
    older = bytearray(log)
    for at in range(32, len(older) - 24 - 4096 + 1, 24 + 4096):
        older[at:at + 4] = pages.to_bytes(4, "big")
    older[16:24] = bytes(8)
    cases[-4096] = bytes(older)
    for k, side in cases.items():
        cut = data[:-abs(k)]
        copy.write_bytes(cut)
        wal.write_bytes(side)
        with pytest.raises(NotARecording, match=(
                rf"c\.ratedial is damaged: an SQLite file cut short \({len(cut)} bytes, where "
                rf"its header says {pages} pages of 4096 bytes; a truncated or partly copied "
                r"file\?\)$")):
            load([copy])
        assert copy.read_bytes() == cut and wal.read_bytes() == side  # neither rewritten
    # the legitimate case, a fold cut off, is read: see the test before this one


def test_bytes_changed_inside_a_recording_that_sqlite_still_reads_are_refused(story, tmp_path):
    """An audit (2026-12-05): three flipped bits left a recording SQLite still read, and export
    wrote a sample's changed host_ns (176,000 extra missing bins) with exit 0. reliability.md:
    a damaged file is refused whole."""
    import random
    import sqlite3

    whole, _ = story
    data = whole.read_bytes()
    bad = tmp_path / "flipped.ratedial"
    rnd = random.Random(6)
    for _ in range(500):  # damage that reading alone does not notice
        b = bytearray(data)
        for _ in range(3):
            b[rnd.randrange(len(b) // 4, len(b))] ^= 0x10
        bad.write_bytes(b)
        con = sqlite3.connect(f"file:{bad}?immutable=1", uri=True)
        try:
            con.execute("SELECT * FROM samples").fetchall()
            con.execute("SELECT * FROM meta").fetchall()
            damaged = con.execute("PRAGMA integrity_check(1)").fetchone()[0] != "ok"
        except sqlite3.Error:
            damaged = False  # SQLite refuses it itself: not the case here
        finally:
            con.close()
        if damaged:
            break
    else:
        pytest.fail("no readable damaged file in 500 tries")
    with pytest.raises(NotARecording, match=r"flipped\.ratedial is damaged: SQLite's "
                                            r"integrity check says: .+; use an intact copy$"):
        load([bad])


# --- the pure core, directly ---------------------------------------------------------------


def test_pass_ids_break_only_on_rewinds():
    mn = np.array([0.0, 1.0, 2.0, 0.5, 1.5, 1.3, 5.0])
    mx = mn + 0.05
    assert pass_ids(mn, mx, tolerance_s=0.5).tolist() == [0, 0, 0, 1, 1, 1, 1]
    assert pass_ids(mn, mx, tolerance_s=0.1, start=4).tolist() == [4, 4, 4, 5, 5, 6, 6]


def test_resolve_weighs_passes_equally_for_mean():
    # bin 0: pass 0 has 9 samples of 10, pass 1 has 1 sample of 40 -> mean of passes 25
    b = resolve(np.array([0, 1]), np.array([0, 0]), np.array([90.0, 40.0]), np.array([9, 1]),
                n_bins=2, rule="mean")
    assert b.values[0] == 25 and b.n_samples[0] == 10 and b.n_passes[0] == 2
    assert np.isnan(b.values[1]) and b.status[1] == MISSING


def test_fill_never_bridges_long_runs_or_ends():
    v = np.array([np.nan, 1, np.nan, np.nan, 4, np.nan, np.nan, np.nan, np.nan, 9, np.nan])
    b = Binned(values=v, status=np.where(np.isnan(v), MISSING, RATED).astype(np.int8),
               n_samples=np.zeros(11, dtype=np.int64), n_passes=np.zeros(11, dtype=np.int64))
    f = fill_short(b, max_fill_bins=3)
    np.testing.assert_allclose(f.values, [np.nan, 1, 2, 3, 4, np.nan, np.nan, np.nan, np.nan, 9,
                                          np.nan])
    assert f.status.tolist() == [0, 1, 2, 2, 1, 0, 0, 0, 0, 1, 0]


def test_parallel_reading_gives_the_same_series(story, monkeypatch):
    from ratedial.analysis import load as load_mod

    path, _ = story
    if load_mod._fork_context() is None:
        pytest.skip("fork is not safe here (another thread is running)")
    monkeypatch.setattr(load_mod, "PARALLEL_MIN_SAMPLES", 0)
    calls = []
    real = load_mod.ProcessPoolExecutor

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(load_mod, "ProcessPoolExecutor", spy)
    (par,) = load_mod.load([path], workers=2)  # two epochs: the dial rebooted
    (seq,) = load_mod.load([path], workers=1)
    assert len(calls) == 1
    np.testing.assert_array_equal(par.values, seq.values)
    assert par.passes == seq.passes and par.excluded == seq.excluded


def test_unlabelled_run_time_recordings_of_one_file_name_are_two_groups(tmp_path):
    """Found by a black-box test: two unlabelled run-time recordings called rec.ratedial in
    two folders were one group ("rater ... appears twice for rec.ratedial")."""
    paths = []
    for folder, level in (("a", 30.0), ("b", 70.0)):
        (tmp_path / folder).mkdir()
        p = tmp_path / folder / "rec.ratedial"
        write_recording(p, [SynthRater(label="client", curve=constant(level),
                                       script=(NoPlayer(seconds=20),))], media=None,
                        rate_hz=SAMPLE_HZ)
        paths.append(p)
    groups = group_series(load(paths, AlignOptions(rate_hz=10)))
    assert len(groups) == 2 and len({g.label for g in groups}) == 2
    assert sorted(float(g.series[0].values.mean()) for g in groups) == [30.0, 70.0]
