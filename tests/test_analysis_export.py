"""Exported files read back: CSV long and wide, Parquet, the JSON sidecar."""

from __future__ import annotations

import csv
import json
import stat

import numpy as np
import pytest
from click.testing import CliRunner

from ratedial.analysis.synth import Play, SynthMedia, SynthRater, constant, write_recording
from ratedial.cli import cli

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("export")
    media = SynthMedia(duration_s=30.0, fingerprint="rdfp1:feed",
                       path="/home/clinic/Videos/Jane Doe 2026-11-30/s.mp4")
    client = SynthRater(label="client", curve=constant(70), uid="c1", script=(
        Play(start_s=0, end_s=30, gaps=((10, 12, "device_drop"), (20, 20.2, "crc"))),))
    therapist = SynthRater(label="therapist", curve=constant(40), uid="t1", firmware="0.2.0",
                           script=(Play(start_s=0, end_s=25),))
    a, b = d / "c.ratedial", d / "t.ratedial"
    write_recording(a, [client], media=media, rate_hz=100, session={"dyad": "D3"},
                    annotations={"srs": 31})
    write_recording(b, [therapist], media=media, rate_hz=100, session={"dyad": "D3"})
    res = CliRunner().invoke(cli, ["export", str(a), str(b), "-o", str(d / "out" / "study")],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return d / "out"


def test_long_csv(exported):
    rows = list(csv.DictReader((exported / "study.long.csv").open()))
    assert list(rows[0]) == ["dyad", "media", "rater", "recording", "dial", "t_s", "rating",
                             "status", "n_samples", "n_passes"]
    assert len(rows) == 2 * 300
    client = [r for r in rows if r["rater"] == "client"]
    assert client[0]["t_s"] == "0.0" and client[1]["t_s"] == "0.1"
    assert client[0]["rating"] == "70.0" and client[0]["n_samples"] == "10"
    lost = client[100:120]
    assert all(r["rating"] == "" and r["status"] == "missing" for r in lost)
    assert all(r["status"] == "filled" and r["rating"] == "70.0" for r in client[200:202])
    therapist = [r for r in rows if r["rater"] == "therapist"]
    assert therapist[249]["rating"] == "40.0" and therapist[250]["rating"] == ""
    assert {r["dyad"] for r in rows} == {"D3"} and {r["media"] for r in rows} == {"rdfp1:feed"}


def test_wide_csv_matches_long(exported):
    wide = list(csv.DictReader((exported / "study.wide.csv").open()))
    assert list(wide[0]) == ["dyad", "media", "t_s", "client", "therapist"]
    assert len(wide) == 300
    assert wide[105]["client"] == "" and wide[105]["therapist"] == "40.0"
    assert wide[260]["client"] == "70.0" and wide[260]["therapist"] == ""


def test_parquet_has_nulls_not_numbers(exported):
    df = pd.read_parquet(exported / "study.parquet")
    assert len(df) == 600
    c = df[df["rater"] == "client"].reset_index(drop=True)
    assert c["rating"].isna().sum() == 20
    assert c.loc[100, "status"] == "missing" and pd.isna(c.loc[100, "rating"])
    assert c["t_s"].iloc[299] == pytest.approx(29.9)
    assert np.allclose(c["rating"].dropna().astype(float), 70)


def test_sidecar_describes_everything(exported):
    meta = json.loads((exported / "study.json").read_text())
    assert meta["format"] == "ratedial-export"
    assert meta["grid"]["rate_hz"] == 10 and meta["rules"]["rerate"] == "last"
    assert meta["scale"]["anchors"] == {"0": "hindering", "50": "neutral", "100": "helpful"}
    assert set(meta["columns"]["long"]) >= {"t_s", "rating", "status"}
    (dyad,) = meta["dyads"]
    assert dyad["dyad"] == "D3" and dyad["pair"] == ["client", "therapist"]
    c, t = dyad["series"]
    assert c["annotations"] == {"srs": 31} and c["session"] == {"dyad": "D3"}
    # docs/recording.md: its file name, as in the CSV (it was the path as typed)
    names = set(pd.read_csv(exported / "study.long.csv")["recording"])
    assert {c["recording"], t["recording"]} == names and "/" not in c["recording"]
    assert [(g["reason"], g["n_missing"]) for g in c["gaps"]] == [("device_drop", 200),
                                                                  ("crc", 20)]
    assert c["gaps"][0]["seconds"] == pytest.approx(2.0)
    assert c["gaps"][0]["media_from_s"] == pytest.approx(9.99)
    assert c["clock"][0]["uncertainty_us_max"] == pytest.approx(180.0)
    assert t["dial"]["firmware"] == "0.2.0" and t["media"]["fingerprint"] == "rdfp1:feed"
    # the video's file name, not the folders on the recording computer (an audit,
    # 2026-12-06: they often name the client, and exports are what leaves the clinic)
    assert c["media"]["path"] == t["media"]["path"] == "s.mp4"
    assert "Jane Doe" not in (exported / "study.json").read_text()
    assert meta["files"] == {"csv-long": "study.long.csv", "csv-wide": "study.wide.csv",
                             "parquet": "study.parquet"}


def test_exported_files_are_private(exported):
    for p in exported.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p


def test_two_exports_to_one_prefix_keep_every_file_in_the_sidecar(tmp_path):
    """Found by a black-box test: README's two export lines (CSV and Parquet, then SPSS,
    ELAN and XDF) to one prefix left the sidecar listing only the second's files; one with
    other rules (another grid) describes its own files alone."""
    media = SynthMedia(duration_s=10.0, fingerprint="rdfp1:two", path="s.mp4")
    rec = tmp_path / "c.ratedial"
    write_recording(rec, [SynthRater(label="client", curve=constant(70), uid="c1",
                                     script=(Play(start_s=0, end_s=10),))], media=media,
                    rate_hz=100, session={"dyad": "D1"})
    out = tmp_path / "out" / "D1"

    def export(*args: str) -> dict:
        res = CliRunner().invoke(cli, ["export", str(rec), "-o", str(out), *args],
                                 catch_exceptions=False)
        assert res.exit_code == 0, res.output
        return json.loads((tmp_path / "out" / "D1.json").read_text())

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "D1.json").write_text("[" * 100_000)  # not ours: replaced, no traceback
    export("--format", "csv-long,parquet")
    assert set(export("--format", "csv-wide")["files"]) == {"csv-long", "parquet", "csv-wide"}
    assert set(export("--format", "csv-wide", "--rate", "5")["files"]) == {"csv-wide"}


@pytest.mark.parametrize(("path", "name"), [
    ("/home/clinic/Jane Doe/s.mp4", "s.mp4"), ("C:\\Users\\clinic\\Jane Doe\\s.mp4", "s.mp4"),
    ("s.mp4", "s.mp4"), (None, None)])
def test_a_videos_file_name_leaves_its_folders_out(path, name):
    from ratedial.analysis.read import Media

    media = Media(media_id=1, path=path, duration_s=None, fps=None, fingerprint=None)
    assert media.file_name == name
