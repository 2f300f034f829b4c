"""Pairing recordings into dyads, and the one-row-per-dyad table over 18 synthetic dyads."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats as sps

from jsonschemas import analyze_json
from ratedial.analysis.errors import PairingError, UsageError
from ratedial.analysis.groups import PairingOptions, group_series
from ratedial.analysis.load import load, parse_rater_overrides
from ratedial.analysis.notes import annotate
from ratedial.analysis.synth import SynthMedia, constant, simple_rater, write_dyad, write_recording
from ratedial.cli import cli

N_DYADS = 18


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    d = tmp_path_factory.mktemp("study")
    paths = []
    for i in range(N_DYADS):
        agreement = 0.15 + 0.8 * i / (N_DYADS - 1)
        c, t = write_dyad(d, f"D{i + 1}", duration_s=240, seed=100 + i, rate_hz=50,
                          agreement=agreement, lag_s=0.0,
                          annotations=({"srs": 30 + i}, {"wai": 40 + i}))
        paths += [c, t]
    return d, paths


def test_eighteen_dyads_one_table(study, tmp_path):
    _, paths = study
    sidecar = tmp_path / "scores.csv"
    sidecar.write_text("dyad,alliance\n" + "".join(f"D{i + 1},{3 + i % 4}\n"
                                                     for i in range(N_DYADS)))
    table = tmp_path / "table.csv"
    res = CliRunner().invoke(cli, ["analyze", *map(str, paths), "--table", str(table),
                                   "--annotations", str(sidecar), "--bootstrap", "200",
                                   "--brief"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(table.open()))
    assert [r["dyad"] for r in rows] == [f"D{i + 1}" for i in range(N_DYADS)]  # D2 before D10
    for i, r in enumerate(rows):
        assert r["rater_a"] == "client" and r["rater_b"] == "therapist"
        assert r["paired_by"] == "roles"
        assert int(r["client_ann_srs"]) == 30 + i and int(r["therapist_ann_wai"]) == 40 + i
        assert int(r["alliance"]) == 3 + i % 4
        assert float(r["pearson_r_ci_low"]) <= float(r["pearson_r"]) <= float(
            r["pearson_r_ci_high"])
        assert 0 <= float(r["pearson_p"]) <= 1
        assert float(r["client_coverage"]) == 1.0
        for col in ("icc2_1", "icc3_1", "kappa", "spearman_rho", "best_lag_s", "n_eff_pearson",
                    "client_top1_start_s", "therapist_bottom1_mean", "divergent1_start_s",
                    "share_client_neutral_therapist_hindering",
                    "client_top_rated_helpful_by_therapist"):
            assert r[col] != "", col
    r_values = [float(r["pearson_r"]) for r in rows]
    # the synthetic agreement rises from dyad 1 to 18: so must the correlation, on the whole
    assert sps.spearmanr(np.arange(N_DYADS), r_values).statistic > 0.8
    assert "D18" in res.output and "client/therapist" in res.output


def test_table_numbers_equal_direct_computation(study):
    _, paths = study
    series = load(paths[:2])
    a, b = (s.values for s in series)
    res = CliRunner().invoke(cli, ["analyze", *map(str, paths[:2]), "--json",
                                   "--bootstrap", "200"], catch_exceptions=False)
    out = analyze_json(res.output)["dyads"][0]
    assert out["pair"]["pearson"]["value"] == pytest.approx(sps.pearsonr(a, b).statistic,
                                                            abs=1e-6)
    assert out["raters"][0]["mean"] == pytest.approx(a.mean(), abs=1e-6)
    assert out["options"]["rerate"] == "last" and out["options"]["rate_hz"] == 10


def _rec(path, label, *, dyad=None, fingerprint="rdfp1:v", uid="aa", path_name="v.mp4",
         value=50.0):
    write_recording(path, [simple_rater(label, constant(value), 60, uid=uid)],
                    media=SynthMedia(duration_s=60.0, fingerprint=fingerprint, path=path_name),
                    rate_hz=20, session={} if dyad is None else {"dyad": dyad})
    return path


def test_unlabelled_recording_joins_the_labelled_dyad_of_its_video(tmp_path):
    c = _rec(tmp_path / "c.ratedial", "client", dyad="D07")
    t = _rec(tmp_path / "t.ratedial", "therapist")
    (g,) = group_series(load([c, t]))
    assert g.label == "D07" and g.pair is not None


def test_ambiguous_dyad_is_an_error_with_the_fix(tmp_path):
    paths = [_rec(tmp_path / "a.ratedial", "client", dyad="D1"),
             _rec(tmp_path / "b.ratedial", "client", dyad="D2"),
             _rec(tmp_path / "c.ratedial", "therapist")]
    with pytest.raises(PairingError, match="--dyad RECORDING=LABEL"):
        group_series(load(paths))
    groups = group_series(load(paths), PairingOptions(dyads={"c.ratedial": "D2"}))
    assert [(g.label, g.pair is not None) for g in groups] == [("D1", False), ("D2", True)]


def test_same_rater_twice_is_an_error(tmp_path):
    paths = [_rec(tmp_path / "a.ratedial", "client"), _rec(tmp_path / "b.ratedial", "client")]
    with pytest.raises(PairingError, match="appears twice"):
        group_series(load(paths))
    ok = group_series(load(paths, raters={"b.ratedial": "client-2"}))
    assert ok[0].paired_by == "label order"


def test_videos_are_matched_by_fingerprint_not_name(tmp_path):
    paths = [_rec(tmp_path / "a.ratedial", "client", fingerprint="rdfp1:one", path_name="x.mp4"),
             _rec(tmp_path / "b.ratedial", "therapist", fingerprint="rdfp1:two",
                  path_name="x.mp4")]
    assert len(group_series(load(paths))) == 2
    assert len(group_series(load(paths), PairingOptions(match="path"))) == 1


def test_roles_can_be_renamed(tmp_path):
    paths = [_rec(tmp_path / "a.ratedial", "patient", dyad="D1", value=70),
             _rec(tmp_path / "b.ratedial", "clinician", dyad="D1", value=30),
             _rec(tmp_path / "c.ratedial", "observer", dyad="D1")]
    (g,) = group_series(load(paths), PairingOptions(roles=("patient", "clinician")))
    assert g.pair is not None and [s.rater for s in g.pair] == ["patient", "clinician"]
    assert [s.rater for s in g.series] == ["patient", "clinician", "observer"]
    (no_pair,) = group_series(load(paths))
    assert no_pair.pair is None


def test_annotations_written_with_annotate_reach_the_table(tmp_path):
    c = _rec(tmp_path / "c.ratedial", "client", dyad="D1")
    t = _rec(tmp_path / "t.ratedial", "therapist", dyad="D1", uid="bb")
    annotate(c, {"wai": 52, "comment": "late start"})
    annotate(c, {"wai": 54}, remove=["comment"])
    table = tmp_path / "t.csv"
    res = CliRunner().invoke(cli, ["analyze", str(c), str(t), "--table", str(table),
                                   "--bootstrap", "100"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    row = next(csv.DictReader(table.open()))
    assert row["client_ann_wai"] == "54" and "client_ann_comment" not in row


def test_known_lag_end_to_end(tmp_path):
    from ratedial.analysis.synth import shifted, smooth_random

    media = SynthMedia(duration_s=300.0, fingerprint="rdfp1:lag")
    client = smooth_random(9, 320, knot_s=6)
    paths = [tmp_path / "c.ratedial", tmp_path / "t.ratedial"]
    for p, label, curve in ((paths[0], "client", client),
                            (paths[1], "therapist", shifted(client, 2.0))):
        write_recording(p, [simple_rater(label, curve, 300)], media=media, rate_hz=50,
                        session={"dyad": "L1"})
    res = CliRunner().invoke(cli, ["analyze", *map(str, paths), "--json", "--bootstrap", "200"],
                             catch_exceptions=False)
    pair = analyze_json(res.output)["dyads"][0]["pair"]
    assert pair["best_lag_s"] == 2.0 and pair["best_lag_r"] > 0.99
    assert pair["pearson"]["value"] < pair["best_lag_r"]


def test_the_overview_columns_fit_long_dyad_names(tmp_path):
    """Found by a black-box test: a dyad name longer than 12 characters ran into the pair
    column ("D07 session07.mp4client/therapist")."""
    from ratedial.analysis.synth import write_dyad

    paths = write_dyad(tmp_path, "D07-a-rather-long-dyad-label", duration_s=60.0, seed=3)
    res = CliRunner().invoke(cli, ["analyze", *map(str, paths), "--brief", "--bootstrap",
                                   "200", "--no-truth-bias"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("dyad"))
    col = lines[head].index("pair")
    row = lines[head + 1]
    assert row.startswith("D07-a-rather-long-dyad-label ")
    assert row[col:].startswith("client/therapist")


@pytest.mark.parametrize(("a", "b"), [("d01", "D01"), ("D01", "D01 "), (" D01", "D01"),
                                  ("\u00dc03", "U\u030803")])  # Ü03 in NFC and in NFD
def test_labels_differing_only_in_case_space_or_unicode_form_are_one_dyad(tmp_path, a, b):
    """Found by a black-box audit: such labels split a dyad into two "(no pair)" rows that
    looked alike in the overview; they are one dyad, shown as first seen (stripped), and a
    note names the other spelling."""
    c = _rec(tmp_path / "c.ratedial", "client", dyad=a)
    t = _rec(tmp_path / "t.ratedial", "therapist", dyad=b, uid="bb")
    (g,) = group_series(load([c, t]))
    assert g.pair is not None and g.paired_by == "roles"
    other = tuple(x for x in (a, b) if x != a.strip())
    assert g.label == a.strip() and g.spellings == other
    res = CliRunner().invoke(cli, ["analyze", str(c), str(t), "--brief", "--no-truth-bias",
                                   "--bootstrap", "100"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    notes = [ln for ln in res.stderr.splitlines() if "also written" in ln]
    shown = {"D01 ": "'D01 '", " D01": "' D01'",
             "U\u030803": "U\u030803 (another Unicode form, NFD)"}.get(other[0], other[0])
    assert notes == [f"ratedial: note: dyad {a.strip()}: also written {shown} (labels that "
                     "differ only in case, Unicode form or surrounding spaces are one dyad)"]
    rows = [ln for ln in res.stdout.splitlines() if ln.startswith(a.strip())]
    assert len(rows) == 1 and "client/therapist" in rows[0]


def test_a_dyad_label_given_with_dyad_is_shown_and_different_labels_stay_apart(tmp_path):
    paths = [_rec(tmp_path / "c1.ratedial", "client", dyad="d01"),
             _rec(tmp_path / "t1.ratedial", "therapist", dyad="D01", uid="bb"),
             _rec(tmp_path / "c2.ratedial", "client", dyad="D02", uid="cc"),
             _rec(tmp_path / "t2.ratedial", "therapist", dyad="D2", uid="dd")]
    groups = group_series(load(paths), PairingOptions(dyads={"t1.ratedial": "D01"}))
    assert [(g.label, g.spellings, g.pair is not None) for g in groups] == [
        ("D01", ("d01",), True), ("D02", (), False), ("D2", (), False)]


def test_a_file_name_that_names_several_recordings_is_refused(tmp_path):
    """Found by a black-box audit: in a folder-per-dyad study (S00/client.ratedial,
    S01/client.ratedial, ...) `--dyad client.ratedial=S01` moved every client into S01, exit
    0. Refused in one line naming the recordings; a longer trailing path names one."""
    for d in ("S00", "S01", "S02"):
        (tmp_path / d).mkdir()
        _rec(tmp_path / d / "client.ratedial", "client", dyad="X" + d)
        _rec(tmp_path / d / "therapist.ratedial", "therapist", uid="bb",
             dyad="XS0l" if d == "S01" else "X" + d)  # a typo in S01
    base = ["study", str(tmp_path), "-o", str(tmp_path / "out") + "/"]
    for opt in ("--dyad", "--rater"):
        res = subprocess.run([sys.executable, "-m", "ratedial", *base, opt,
                              "client.ratedial=S01"], capture_output=True, text=True,
                             timeout=120, check=False)
        assert res.returncode == 2, res.stderr
        assert res.stderr.strip().splitlines() == [
            f"ratedial: error: {opt} client.ratedial=S01: 'client.ratedial' names 3 recordings "
            "(S00/client.ratedial, S01/client.ratedial, S02/client.ratedial); give a longer "
            "path that names one"]
        assert not (tmp_path / "out").exists()
    fix = "S01/therapist.ratedial"
    res = CliRunner().invoke(cli, [*base, "--bootstrap", "100", "--dyad", f"{fix}=XS01"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("6 recordings, 3 dyads (3 with both raters)")
    groups = group_series(load(sorted(tmp_path.rglob("*.ratedial"))),
                          PairingOptions(dyads={fix: "XS01"}))
    assert [(g.label, g.pair is not None) for g in groups] == [
        ("XS00", True), ("XS01", True), ("XS02", True)]


def test_the_same_rater_twice_names_files_that_can_be_told_apart(tmp_path):
    """Found by a black-box audit: a backup copy in a subfolder gave "client
    (S01-client.ratedial) and client (S01-client.ratedial)"."""
    (tmp_path / "backup").mkdir()
    paths = [_rec(tmp_path / "S01-client.ratedial", "client", dyad="S01"),
             _rec(tmp_path / "S01-therapist.ratedial", "therapist", dyad="S01", uid="bb"),
             _rec(tmp_path / "backup" / "S01-client.ratedial", "client", dyad="S01")]
    with pytest.raises(PairingError) as err:
        group_series(load(paths))
    assert str(err.value) == (
        f"rater 'client' appears twice for S01 (client ({tmp_path.name}/S01-client.ratedial) "
        "and client (backup/S01-client.ratedial)); relabel one with --rater "
        "RECORDING[:DIAL]=LABEL or leave it out")
    two = tmp_path / "two.ratedial"  # two dials of one recording: told apart by dial
    write_recording(two, [simple_rater("client", constant(50.0), 60, uid="c1"),
                          simple_rater("client", constant(60.0), 60, uid="c2")],
                    media=SynthMedia(duration_s=60.0, fingerprint="rdfp1:w"), rate_hz=20)
    with pytest.raises(PairingError, match=r"\(client \(dial c1 in two.ratedial\) and "
                                           r"client \(dial c2 in two.ratedial\)\)"):
        group_series(load([two]))


@pytest.mark.parametrize("opt", ["--dyad", "--rater"])
def test_two_overrides_of_one_recording_with_different_labels_are_refused(tmp_path, opt):
    """Found by a code review: `--dyad client.ratedial=A --dyad S01/client.ratedial=B` (or
    --rater) was taken, and which label won depended on PYTHONHASHSEED (the order of a set
    of names). Refused in one line, exit 2; the same label twice is harmless."""
    (tmp_path / "S01").mkdir()
    c = _rec(tmp_path / "S01" / "client.ratedial", "client", dyad="S01")
    t = _rec(tmp_path / "S01" / "therapist.ratedial", "therapist", dyad="S01", uid="bb")
    second = "S01/client.ratedial:aa" if opt == "--rater" else "S01/client.ratedial"
    for seed in ("0", "1", "2", "3"):
        res = subprocess.run([sys.executable, "-m", "ratedial", "analyze", str(c), str(t),
                              "--brief", opt, "client.ratedial=A", opt, f"{second}=B"],
                             capture_output=True, text=True, timeout=120, check=False,
                             env={**os.environ, "PYTHONHASHSEED": seed})
        assert res.returncode == 2, res.stderr
        what = "dial aa of client.ratedial" if opt == "--rater" else "client.ratedial"
        assert res.stderr.strip().splitlines() == [
            f"ratedial: error: {opt} client.ratedial=A and {second}=B both name {what}; "
            "give one label"]
    same = parse_rater_overrides(["client.ratedial=A", f"{second}=A"])
    kw = {"raters": same} if opt == "--rater" else {"dyads": same}
    series = load([c, t], **kw)
    groups = group_series(series, PairingOptions(dyads=kw.get("dyads", {})))
    if opt == "--rater":
        assert sorted(s.rater for s in series) == ["A", "therapist"]
    else:
        assert sorted(g.label for g in groups) == ["A", "S01"]


@pytest.mark.parametrize(("first", "second", "names"), [
    ("D01", "D01", ["D01 v1.mp4", "D01 v2.mp4"]), ("D01", "d01 ", ["D01 v1.mp4", "d01 v2.mp4"]),
    ("\u00dc01", "U\u030801", ["\u00dc01 v1.mp4", "U\u030801 v2.mp4"]),
    ("D01", "D1", ["D01", "D1"]), ("d01", "D02", ["d01", "D02"])])
def test_one_dyad_on_two_videos_is_told_apart_whatever_the_spelling(tmp_path, first, second,
                                                                    names):
    """Found by a code review: the suffix naming the video counted labels exactly, so
    D01/D01 gave 'D01 v1.mp4' and 'D01 v2.mp4' but D01/'d01 ' (one dyad) gave 'D01' and
    'd01', two rows that look like two dyads. Rows are in the order of their labels as
    compared (d01 before D02)."""
    def two(n, label, fp, video, uid):
        return [_rec(tmp_path / f"c{n}.ratedial", "client", dyad=label, uid=uid + "c",
                     fingerprint=fp, path_name=video),
                _rec(tmp_path / f"t{n}.ratedial", "therapist", dyad=label, uid=uid + "t",
                     fingerprint=fp, path_name=video)]
    paths = two(1, first, "rdfp1:v1", "v1.mp4", "a") + two(2, second, "rdfp1:v2", "v2.mp4", "b")
    assert [g.label for g in group_series(load(paths))] == names
    same_name = two(3, "D01", "rdfp1:w1", "w.mp4", "c") + two(4, "d01", "rdfp1:w2", "w.mp4", "d")
    assert [g.label for g in group_series(load(same_name))] == ["D01 w.mp4", "d01 w.mp4 (2)"]


@pytest.mark.parametrize(("client", "therapist"), [
    ("client ", "Therapist"), ("CLIENT", " therapist"),
    ("Kli\u0065\u0301nt", "Th\u00e9rapeut")])  # NFD client, NFC therapist
def test_rater_roles_are_compared_like_dyad_labels(tmp_path, client, therapist):
    """Found by a code review: roles were only lower-cased, so a client dial labelled
    'client ' (a TOML config's trailing space) beside 'Therapist' was paired by label order,
    a = Therapist: truth and judge swapped in Truth and Bias; nor was it a duplicate of
    'client'. Roles compare by label_key, as dyad labels do."""
    roles = ("kli\u00e9nt", "th\u00e9rapeut") if "\u0301" in client else ("client", "therapist")
    c = _rec(tmp_path / "c.ratedial", client, dyad="D01", value=70)
    t = _rec(tmp_path / "t.ratedial", therapist, dyad="d01 ", uid="bb", value=30)
    (g,) = group_series(load([c, t]), PairingOptions(roles=roles))
    assert g.paired_by == "roles" and g.pair is not None
    assert [s.rater for s in g.pair] == [client, therapist]
    assert [float(np.nanmean(s.values)) for s in g.pair] == [70.0, 30.0]
    again = _rec(tmp_path / "c2.ratedial", roles[0], dyad="D01", uid="cc")
    with pytest.raises(PairingError, match="appears twice for D01"):
        group_series(load([c, t, again]), PairingOptions(roles=roles))
    other = [_rec(tmp_path / "o1.ratedial", "observer ", dyad="D02", uid="o1"),
             _rec(tmp_path / "o2.ratedial", "Coder", dyad="D02", uid="o2")]
    (o,) = group_series(load(other))
    assert o.paired_by == "label order" and [s.rater for s in o.series] == ["Coder",
                                                                            "observer "]
    res = subprocess.run([sys.executable, "-m", "ratedial", "analyze", str(c), str(t),
                          "--roles", "client,Client"], capture_output=True, text=True,
                         timeout=120, check=False)
    assert res.returncode == 2 and res.stderr.startswith(
        "ratedial: error: --roles needs two different labels (got 'client' and 'Client')")


def test_recordings_are_told_apart_only_when_a_message_needs_it(tmp_path, monkeypatch):
    """Found by a code review: every load told all recordings apart (distinct_names), twice,
    even with no override: O(N^2 x depth), 1.5 s a call for 2000 recordings. Now only the
    recordings a message names, and in time linear in their number."""
    import ratedial.analysis.load as load_mod

    calls: list[list[str]] = []
    real = load_mod.distinct_names

    def spy(paths):
        paths = list(paths)
        calls.append(sorted(str(p.relative_to(tmp_path)) for p in paths))
        return real(paths)

    monkeypatch.setattr(load_mod, "distinct_names", spy)
    for d in ("S00", "S01"):
        (tmp_path / d).mkdir()
        _rec(tmp_path / d / "client.ratedial", "client", dyad=d)
        _rec(tmp_path / d / "therapist.ratedial", "therapist", dyad=d, uid="bb")
    paths = sorted(tmp_path.rglob("*.ratedial"))
    load(paths, raters={"S01/client.ratedial": "client"}, dyads={"S00/therapist.ratedial": "X"})
    assert calls == []
    with pytest.raises(UsageError, match=r"names 2 recordings \(S00/client.ratedial, "
                                         r"S01/client.ratedial\)"):
        load(paths, dyads={"client.ratedial": "X"})
    assert calls == [["S00/client.ratedial", "S01/client.ratedial"]]
    many = [Path(f"/data/study/S{i:04d}/{r}.ratedial") for i in range(2000)
            for r in ("client", "therapist")]
    names = real([*many, Path("/data/backup/S0001/client.ratedial")])
    assert names[many[0]] == "S0000/client.ratedial"
    assert names[many[2]] == "study/S0001/client.ratedial"
    assert names[Path("/data/backup/S0001/client.ratedial")] == "backup/S0001/client.ratedial"
