"""`ratedial export --format sav,eaf,xdf` and `analyze --table x.sav`, each read back with an
independent reader: pyreadstat (SPSS), pympi (ELAN) and pyxdf (XDF)."""

from __future__ import annotations

import csv
import math
import os
import sqlite3
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from ratedial.analysis.synth import Pause, Play, SynthMedia, SynthRater, piecewise, write_recording

pympi = pytest.importorskip("pympi")
pyreadstat = pytest.importorskip("pyreadstat")
pyxdf = pytest.importorskip("pyxdf")

DURATION = 60.0


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ratedial", *args], capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def dyad(tmp_path_factory):
    d = tmp_path_factory.mktemp("research")
    video = d / "session07.mp4"
    video.write_bytes(b"not really a video")
    media = SynthMedia(path=str(video), duration_s=DURATION, fingerprint="sha256:x")
    client = SynthRater(label="client", curve=piecewise([20, 40], [80, 20, 60]), script=(
        Play(start_s=0, end_s=30, gaps=((12.0, 13.0, "link"),)),
        Pause(at_s=30, seconds=2), Play(start_s=30, end_s=DURATION)))
    therapist = SynthRater(label="therapist", uid="bb", curve=piecewise([30], [40, 70]),
                           script=(Play(start_s=0, end_s=DURATION),))
    recs = [d / "D07-client.ratedial", d / "D07-therapist.ratedial"]
    write_recording(recs[0], [client], media=media, rate_hz=100, session={"dyad": "D07"},
                    annotations={"srs": 34})
    write_recording(recs[1], [therapist], media=media, rate_hz=100, session={"dyad": "D07"},
                    annotations={"srs": 31})
    res = run("export", *map(str, recs), "-o", str(d / "out" / "D07"), "--format",
              "csv-long,csv-wide,sav,eaf,xdf", "--window", "10")
    assert res.returncode == 0, res.stderr
    return d, recs, res.stdout.split()


def _long_csv(d: Path) -> list[dict[str, str]]:
    with (d / "out" / "D07.long.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_every_file_is_private(dyad):
    d, _, written = dyad
    names = {Path(p).name for p in written}
    assert {"D07.sav", "D07.xdf", "D07.D07.eaf", "D07.D07.ratings.csv",
            "D07.D07_tsconf.xml", "D07.json"} <= names
    for p in written:
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600, p
    assert not list((d / "out").glob("*.bak"))


def test_sav_holds_the_long_table_with_labels(dyad):
    d, _, _ = dyad
    df, meta = pyreadstat.read_sav(str(d / "out" / "D07.sav"))
    rows = _long_csv(d)
    assert len(df) == len(rows) == 2 * int(DURATION * 10)
    assert list(df["rater"]) == [r["rater"] for r in rows]
    assert np.allclose(df["t_s"], [float(r["t_s"]) for r in rows])
    expected = np.array([float(r["rating"]) if r["rating"] else np.nan for r in rows])
    got = df["rating"].to_numpy(dtype=float)
    assert np.array_equal(np.isnan(got), np.isnan(expected)) and np.isnan(got).sum() >= 8
    assert np.allclose(got[~np.isnan(got)], expected[~np.isnan(expected)])
    labels = dict(zip(meta.column_names, meta.column_labels, strict=True))
    assert labels["rating"].startswith("Mean rating in the bin")
    assert meta.variable_value_labels["rating"] == {0.0: "hindering", 50.0: "neutral",
                                                     100.0: "helpful"}
    assert meta.variable_value_labels["status"] == {0.0: "missing", 1.0: "rated",
                                                     2.0: "filled"}
    status = {"missing": 0, "rated": 1, "filled": 2}
    assert list(df["status"].astype(int)) == [status[r["status"]] for r in rows]


def test_eaf_has_segments_events_video_and_the_curves(dyad):
    d, _, _ = dyad
    eaf = pympi.Elan.Eaf(str(d / "out" / "D07.D07.eaf"))
    assert set(eaf.get_tier_names()) == {"client segments", "therapist segments", "events"}
    (m,) = eaf.media_descriptors
    assert m["MEDIA_URL"].endswith("/session07.mp4") and m["MIME_TYPE"] == "video/mp4"
    assert m["RELATIVE_MEDIA_URL"] == "../session07.mp4"
    client = sorted(eaf.get_annotation_data_for_tier("client segments"))
    # 10 s windows: the client is at 80 over 0-20 s and 20 over 20-40 s.
    tops = [a for a in client if a[2].startswith("T")]
    bottoms = [a for a in client if a[2].startswith("B")]
    assert ("T1 mean 80.0" in {a[2] for a in tops}) and all(a[1] <= 20000 for a in tops[:2])
    assert all(a[0] >= 20000 and a[1] <= 40000 for a in bottoms[:2])
    assert all(a[1] - a[0] == 10000 for a in client)
    events = eaf.get_annotation_data_for_tier("events")
    gap = [e for e in events if e[2].startswith("gap link: 100 samples lost (client)")]
    assert len(gap) == 1 and abs(gap[0][0] - 12000) <= 10 and abs(gap[0][1] - 13000) <= 10
    assert any(e[2].startswith("paused") and abs(e[0] - 30000) <= 10 for e in events)
    # The time series: a tsconf linked to the document, pointing to a CSV with the curves.
    data, conf = eaf.linked_file_descriptors
    assert data["LINK_URL"].endswith("D07.D07.ratings.csv")
    assert conf["LINK_URL"].endswith("D07.D07_tsconf.xml") and conf["MIME_TYPE"] == "text/xml"
    root = ET.parse(d / "out" / "D07.D07_tsconf.xml").getroot()
    src = root.find("tracksource")
    assert src is not None and src.get("time-column") == "0"
    assert [t.get("name") for t in src.findall("track")] == ["client", "therapist"]
    series = Path(src.get("source-url", "").removeprefix("file://"))
    with series.open() as fh:
        table = list(csv.reader(fh))
    assert table[0] == ["t_s", "client", "therapist"] and len(table) == 1 + 600
    with (d / "out" / "D07.wide.csv").open() as fh:
        wide = list(csv.reader(fh))
    assert [r[3:] for r in wide[1:]] == [r[1:] for r in table[1:]]


def test_xdf_round_trip_keeps_the_recorded_timestamps(dyad):
    d, recs, _ = dyad
    streams, _header = pyxdf.load_xdf(str(d / "out" / "D07.xdf"), dejitter_timestamps=False)
    by_name: dict[str, list[dict]] = {}
    for s in streams:
        by_name.setdefault(s["info"]["name"][0], []).append(s)
    assert set(by_name) == {"client rating", "therapist rating", "ratedial events"}
    for name, rec in (("client rating", recs[0]), ("therapist rating", recs[1])):
        (s,) = by_name[name]
        con = sqlite3.connect(rec)
        rows = con.execute("SELECT host_ns, rating, media_s FROM samples ORDER BY epoch_id, "
                           "sample_index").fetchall()
        con.close()
        host = np.array([r[0] for r in rows], dtype=np.int64)
        assert len(s["time_stamps"]) == len(rows)
        assert np.array_equal(s["time_stamps"], host / 1e9)  # equal, not close
        assert np.array_equal(s["time_series"][:, 0], [r[1] for r in rows])
        media = np.array([math.nan if r[2] is None else r[2] for r in rows])
        assert np.allclose(s["time_series"][:, 1], media, equal_nan=True)
        assert list(s["clock_values"]) == [0.0, 0.0]
        assert float(s["info"]["nominal_srate"][0]) == 100
    events = by_name["ratedial events"]
    assert len(events) == 2  # one marker stream per recording
    con = sqlite3.connect(recs[0])
    n_events, first = con.execute("SELECT count(*), min(host_ns) FROM events").fetchone()
    con.close()
    (client_events,) = [e for e in events if "D07-client" in e["info"]["source_id"][0]]
    assert len(client_events["time_series"]) == n_events
    assert client_events["time_stamps"][0] == first / 1e9
    assert any('"kind": "gap"' in m[0] for m in client_events["time_series"])


def test_xdf_streams_take_the_rater_labels_given_with_rater(dyad, tmp_path):
    """``--rater`` relabels a rater in every export format, XDF's stream names included."""
    _, recs, _ = dyad
    res = run("export", *map(str, recs), "-o", str(tmp_path / "R"), "--format", "xdf",
              "--rater", f"{recs[0]}=C07", "--window", "10")
    assert res.returncode == 0, res.stderr
    streams, _header = pyxdf.load_xdf(str(tmp_path / "R.xdf"), dejitter_timestamps=False)
    names = sorted(s["info"]["name"][0] for s in streams)
    assert names == ["C07 rating", "ratedial events", "ratedial events", "therapist rating"]


def test_dyad_table_as_sav(dyad, tmp_path):
    _, recs, _ = dyad
    res = run("analyze", *map(str, recs), "--table", str(tmp_path / "t.csv"), "--brief",
              "--bootstrap", "200", "--window", "10")
    assert res.returncode == 0, res.stderr
    res = run("analyze", *map(str, recs), "--table", str(tmp_path / "t.sav"), "--brief",
              "--bootstrap", "200", "--window", "10")
    assert res.returncode == 0, res.stderr
    df, meta = pyreadstat.read_sav(str(tmp_path / "t.sav"))
    with (tmp_path / "t.csv").open() as fh:
        (row,) = list(csv.DictReader(fh))
    assert len(df) == 1 and df["dyad"][0] == "D07"
    assert df["pearson_r"][0] == pytest.approx(float(row["pearson_r"]))
    assert df["client_mean"][0] == pytest.approx(float(row["client_mean"]))
    assert df["client_ann_srs"][0] == 34 and df["therapist_ann_srs"][0] == 31
    assert set(meta.column_names) == set(row)  # every CSV name is a valid SPSS name


def test_each_videos_elan_events_are_its_own(tmp_path):
    """An audit (2026-12-04): with two videos in one recording, each video's .eaf got the
    player events of both (a 5 s video showed a seek at 25 s)."""
    import json
    import sqlite3
    from types import SimpleNamespace

    from ratedial.analysis.elan import media_events

    path = tmp_path / "two.ratedial"
    con = sqlite3.connect(path)
    from ratedial.recording.schema import DDL, FORMAT, FORMAT_VERSION

    con.executescript(DDL)
    con.executemany("INSERT INTO meta VALUES (?, ?)", [
        ("format", json.dumps(FORMAT)), ("format_version", json.dumps(FORMAT_VERSION))])
    rows = [("media_load", {"media_id": 1}), ("media_seek", {"from_s": 8.0, "to_s": 25.0}),
            ("media_load", {"media_id": 2}), ("media_pause", {"media_s": 3.0}),
            ("media_load", {"media_id": 1}), ("media_play", {"media_s": 20.0})]
    con.executemany("INSERT INTO events VALUES (?, ?, NULL, ?, ?)",
                    [(i, i * 10**9, k, json.dumps(d)) for i, (k, d) in enumerate(rows, 1)])
    con.commit()
    con.close()

    def texts(media_id: int) -> list[str]:
        series = SimpleNamespace(recording=SimpleNamespace(path=path), gaps=[], rater="a",
                                 media=SimpleNamespace(media_id=media_id))
        return [t.split(" (")[0] for _, _, t in media_events(SimpleNamespace(series=[series]))]

    assert texts(1) == ["playing", "seek from 8.0 s"]  # sorted by media time: 20 s, 25 s
    assert texts(2) == ["paused"]


def test_a_sav_of_a_recording_without_video_says_run_time(tmp_path):
    """Its ``t_s`` was labelled "Media time" and the file "a media-time grid": nothing in
    the .sav said the times are seconds since the recording began."""
    from ratedial.analysis.synth import NoPlayer

    rec = tmp_path / "nv.ratedial"
    write_recording(rec, [SynthRater(label="client", curve=piecewise([10], [30, 70]),
                                     script=(NoPlayer(seconds=20),))], media=None, rate_hz=50)
    res = run("export", str(rec), "-o", str(tmp_path / "nv"), "--format", "sav")
    assert res.returncode == 0, res.stderr
    _, meta = pyreadstat.read_sav(str(tmp_path / "nv.sav"))
    labels = dict(zip(meta.column_names, meta.column_labels, strict=True))
    assert labels["t_s"].startswith("Run time of the bin start"), labels["t_s"]
    assert "run-time grid" in meta.file_label


def test_elan_tracks_span_each_raters_scale(tmp_path):
    """An audit (2026-12-05): a 1-7 rater's ELAN track had the range 0-100 (detect-range off),
    so the curve lay flat at the bottom in ELAN."""
    media = SynthMedia(duration_s=30.0, fingerprint="sha256:s")
    one_to_seven = {"minimum": 1.0, "maximum": 7.0, "start": 4.0, "counts_per_point": 1.0,
                    "anchors": {"1": "hindering", "4": "neutral", "7": "helpful"}}
    recs = [tmp_path / "c.ratedial", tmp_path / "t.ratedial"]
    write_recording(recs[0], [SynthRater(label="client", curve=piecewise([15], [2, 6]),
                                         script=(Play(start_s=0, end_s=30),))],
                    media=media, rate_hz=50, session={"dyad": "S1"}, scale=one_to_seven)
    write_recording(recs[1], [SynthRater(label="therapist", uid="bb",
                                         curve=piecewise([15], [30, 70]),
                                         script=(Play(start_s=0, end_s=30),))],
                    media=media, rate_hz=50, session={"dyad": "S1"})
    res = run("export", *map(str, recs), "-o", str(tmp_path / "out" / "S1"), "--format",
              "eaf,sav", "--window", "5")
    assert res.returncode == 0, res.stderr
    # the two scales' anchors differ: no rating value labels rather than one scale's words
    # on the other's numbers (an audit: the 1-7 labels were put on the 0-100 rater), said
    assert "different anchors" in res.stderr
    _df, meta = pyreadstat.read_sav(str(tmp_path / "out" / "S1.sav"))
    assert "rating" not in meta.variable_value_labels or not meta.variable_value_labels["rating"]
    res = run("export", str(recs[0]), "-o", str(tmp_path / "one" / "S1"), "--format", "sav")
    assert res.returncode == 0 and "different anchors" not in res.stderr, res.stderr
    _df, meta = pyreadstat.read_sav(str(tmp_path / "one" / "S1.sav"))
    assert meta.variable_value_labels["rating"] == {1.0: "hindering", 4.0: "neutral",
                                                   7.0: "helpful"}
    (conf,) = (tmp_path / "out").glob("*_tsconf.xml")
    tracks = ET.parse(conf).getroot().find("tracksource").findall("track")
    ranges = {t.get("name"): (t.find("range").get("min"), t.find("range").get("max"))
              for t in tracks}
    assert ranges == {"client": ("1.0", "7.0"), "therapist": ("0.0", "100.0")}


def test_a_sav_is_checked_by_its_last_row_and_one_cut_short_is_refused(tmp_path, monkeypatch):
    """Found by a code review: every .sav was read back in full after writing to catch a
    write pyreadstat did not report (16 % on top of writing 1M rows). Now only its last row
    is read; a file cut short (as on a full disk) is still refused, and nothing is left."""
    import pandas as pd

    from ratedial.analysis import spss
    from ratedial.errors import RatedialError

    real_read, real_write = pyreadstat.read_sav, pyreadstat.write_sav
    rows_read: list[int] = []

    def read(path, **kw):
        df, meta = real_read(path, **kw)
        rows_read.append(len(df))
        return df, meta

    monkeypatch.setattr(pyreadstat, "read_sav", read)
    df = pd.DataFrame({"dyad": ["D01"] * 5000, "t_s": np.arange(5000) / 10.0})
    out = tmp_path / "t.sav"
    spss._write_sav(df, out, file_label="x")
    assert rows_read == [1]
    back, _ = real_read(str(out))
    assert len(back) == 5000 and float(back["t_s"].iloc[-1]) == 499.9
    spss._write_sav(df.iloc[:0], tmp_path / "empty.sav", file_label="x")
    assert rows_read == [1, 0]

    def cut(frame, path, **kw):  # a writer that loses the file's end and says nothing
        real_write(frame, path, **kw)
        data = Path(path).read_bytes()
        Path(path).write_bytes(data[:-3000])

    monkeypatch.setattr(pyreadstat, "write_sav", cut)
    with pytest.raises(RatedialError, match="could not write it whole"):
        spss._write_sav(df, tmp_path / "cut.sav", file_label="x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.sav", "t.sav"]
