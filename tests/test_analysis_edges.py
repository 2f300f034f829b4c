"""The analysis commands against what a careful user tries: options that name nothing, a
rater who never moves, a scores sheet that clashes, output where it cannot go, files over
old copies, a recording on read-only media. Each answer is a value or one line on stderr."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ratedial.analysis.synth import (
    NoPlayer,
    Play,
    SynthMedia,
    SynthRater,
    constant,
    piecewise,
    simple_rater,
    write_recording,
)


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ratedial", *args], text=True,
                          capture_output=True, timeout=120, check=False, cwd=cwd)


def one_line_error(res: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert res.returncode == code, (res.returncode, res.stdout, res.stderr)
    err = res.stderr.strip()
    assert "Traceback" not in err and err.count("\n") == 0, err
    for w in words:
        assert w in err, err


def option_error(res: subprocess.CompletedProcess[str], *words: str) -> None:
    """The refusal of an option value: one line naming it, and where the help is."""
    one_line_error(res, 2, *words)
    assert res.stderr.startswith("ratedial: error: ") and "--help" in res.stderr, res.stderr


def dyad(path: Path, *, label: str = "D01", client=None, therapist=None) -> Path:
    write_recording(path, [
        simple_rater("client", client or piecewise([20, 40], [30, 70, 50]), 60, uid="aa"),
        simple_rater("therapist", therapist or piecewise([25, 45], [40, 80, 45]), 60,
                     uid="bb")],
        rate_hz=50, media=SynthMedia(duration_s=60.0), session={"dyad": label})
    return path


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return dyad(tmp_path_factory.mktemp("edges") / "D01.ratedial")


def test_a_rater_is_never_compared_with_itself(rec: Path) -> None:
    one_line_error(run("analyze", str(rec), "--roles", "client,client"), 2,
                   "--roles", "different")


def test_a_constant_rater_has_no_pearson_r(tmp_path: Path) -> None:
    path = dyad(tmp_path / "c.ratedial", client=constant(50))
    res = run("analyze", str(path), "--json", "--no-truth-bias", "--bootstrap", "200")
    assert res.returncode == 0, res.stderr
    pair = json.loads(res.stdout)["dyads"][0]["pair"]
    for name in ("pearson", "spearman"):
        assert pair[name]["value"] is None and pair[name]["ci_low"] is None, pair[name]
        assert pair[name]["undefined_resamples"] == 200
    assert pair["pearson_p"] is None
    # the report says why (an audit, 2026-12-05: only "2000 bootstrap resamples undefined"),
    # and an ICC of 0 up to rounding is 0.00, not -0.00
    text = run("analyze", str(path), "--no-truth-bias", "--bootstrap", "200")
    assert text.returncode == 0, text.stderr
    assert ("note: client's rating is constant (50.0 throughout): Pearson r and Spearman "
            "rho are undefined, the ICCs are 0") in text.stdout, text.stdout
    assert "therapist's rating is constant" not in text.stdout
    icc = [ln for ln in text.stdout.splitlines() if ln.strip().startswith("ICC(")]
    assert len(icc) == 2 and all("-0.00" not in ln and " 0.00" in ln for ln in icc), icc


def test_number_options_must_be_finite(rec: Path, tmp_path: Path) -> None:
    option_error(run("analyze", str(rec), "--window", "inf"), "--window", "finite")
    option_error(run("export", str(rec), "-o", str(tmp_path / "x"), "--max-fill", "nan"),
                 "--max-fill", "finite")


def test_overrides_that_name_nothing_are_refused(rec: Path, tmp_path: Path) -> None:
    one_line_error(run("analyze", str(rec), "--rater", "typo.ratedial:aa=x", "--brief"), 2,
                   "--rater", "typo.ratedial")
    one_line_error(run("analyze", str(rec), "--rater", f"{rec}:ffff=x", "--brief"), 2,
                   "--rater")
    one_line_error(run("analyze", str(rec), "--dyad", "typo.ratedial=D9", "--brief"), 2,
                   "--dyad")
    # any path to the file names it: absolute, relative with ./, or the bare name
    res = run("analyze", f"./{rec.name}", "--rater", f"{rec.resolve()}:aa=patient",
              "--roles", "patient,therapist", "--json", "--no-truth-bias", cwd=rec.parent)
    assert res.returncode == 0, res.stderr
    pair = json.loads(res.stdout)["dyads"][0]["pair"]
    assert (pair["a"], pair["b"]) == ("patient", "therapist")


def test_a_scores_sheet_never_overwrites_a_figure(rec: Path, tmp_path: Path) -> None:
    sheet = tmp_path / "s.csv"
    sheet.write_text("dyad,pearson_r\nD01,0.99\n")
    one_line_error(run("analyze", str(rec), "--annotations", str(sheet), "--table",
                       str(tmp_path / "t.csv"), "--brief", "--no-truth-bias"), 2, "pearson_r")
    sheet.write_text("dyad,wai\nD01,50\nD01,52\n")
    one_line_error(run("analyze", str(rec), "--annotations", str(sheet), "--brief",
                       "--no-truth-bias"), 2, "two rows")
    sheet.write_bytes(b"dyad,wai\nD01,\xff50\n")  # an audit: the error named no file
    one_line_error(run("analyze", str(rec), "--annotations", str(sheet), "--brief",
                       "--no-truth-bias"), 2, str(sheet), "UTF-8")
    sheet.write_text("dyad,,wai\nD01,1,50\n")  # an empty header cell made a column ''
    one_line_error(run("analyze", str(rec), "--annotations", str(sheet), "--brief",
                       "--no-truth-bias"), 2, "no name")
    sheet.write_text("dyad,wai\nD01,50\nD99,52\n")
    table = tmp_path / "t.csv"
    res = run("analyze", str(rec), "--annotations", str(sheet), "--table", str(table),
              "--brief", "--no-truth-bias")
    assert res.returncode == 0, res.stderr
    assert "D99" in res.stderr and "not in these recordings" in res.stderr
    header, row = table.read_text().splitlines()[:2]
    assert row.split(",")[header.split(",").index("wai")] == "50"


def test_annotate_keeps_codes_and_refuses_what_json_cannot_hold(tmp_path: Path) -> None:
    path = dyad(tmp_path / "a.ratedial")
    one_line_error(run("annotate", str(path), "x=nan"), 2, "NaN")
    one_line_error(run("annotate", str(path), "x=-inf"), 2)
    # an audit (2026-12-04): 1e999 was kept as text, a key given twice kept the last value
    one_line_error(run("annotate", str(path), "x=1e999"), 2, "too large")
    one_line_error(run("annotate", str(path), "x=1", "x=2"), 2, "x is given twice")
    # an audit (2026-12-05): a Latin-1 byte was stored as a lone surrogate ("\\udce9")
    one_line_error(run("annotate", str(path), "w\udce9=1"), 2, "not UTF-8")
    one_line_error(run("annotate", str(path), "wai=kl\udce9"), 2, "not UTF-8")
    res = run("annotate", str(path), "code=007", "score=4.5", "n=12", "flag=true", "none=",
              "answer=None")
    assert res.returncode == 0, res.stderr
    con = sqlite3.connect(path)
    (text,) = con.execute("SELECT value FROM meta WHERE key = 'annotations'").fetchone()
    con.close()
    assert json.loads(text) == {"code": "007", "score": 4.5, "n": 12, "flag": True,
                                "none": None, "answer": "None"}


def test_outputs_are_private_also_over_old_copies(rec: Path, tmp_path: Path) -> None:
    out = tmp_path / "exp"
    out.mkdir()
    old = [out / f"x.{s}" for s in ("long.csv", "wide.csv", "json", "xdf", "sav")]
    for p in old:
        p.write_text("last week's copy")
        os.chmod(p, 0o644)
    res = run("export", str(rec), "-o", str(out / "x"),
              "--format", "csv-long,csv-wide,xdf,sav")
    assert res.returncode == 0, res.stderr
    for p in old:
        assert p.read_text(errors="replace") != "last week's copy", p
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p


def test_output_where_it_cannot_go_is_one_line(rec: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for args in (("export", str(rec), "-o", str(blocker / "sub" / "x")),
                 ("plot", str(rec), "-o", str(blocker / "plots")),
                 ("analyze", str(rec), "--table", str(blocker / "t.csv"), "--brief",
                  "--no-truth-bias")):
        one_line_error(run(*args), 1, str(blocker))
    # XDF alone creates its folder like every other format
    res = run("export", str(rec), "-o", str(tmp_path / "new" / "sub" / "x"), "--format", "xdf")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "new" / "sub" / "x.xdf").read_bytes()[:4] == b"XDF:"


def test_dyads_whose_labels_make_one_file_name_get_two_files(tmp_path: Path) -> None:
    a = dyad(tmp_path / "a.ratedial", label="A/B")
    b = dyad(tmp_path / "b.ratedial", label="A_B")
    res = run("export", str(a), str(b), "-o", str(tmp_path / "out" / "x"), "--format", "eaf",
              "--match", "path")
    assert res.returncode == 0, res.stderr
    eafs = sorted(p.name for p in (tmp_path / "out").glob("*.eaf"))
    assert eafs == ["x.A_B-2.eaf", "x.A_B.eaf"], eafs


def test_another_programs_sqlite_file_is_not_called_damaged(tmp_path: Path) -> None:
    other = tmp_path / "o.ratedial"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE foo (x)")
    con.commit()
    con.close()
    one_line_error(run("analyze", str(other)), 1, "not a ratedial recording")


def test_a_recording_on_read_only_media_is_read(rec: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "D01.ratedial").write_bytes(rec.read_bytes())
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "--bind", str(src), str(ro)], check=False,
                                           capture_output=True).returncode != 0:
        pytest.skip("a read-only bind mount needs root and mount(8)")
    try:
        if subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], check=False,
                          capture_output=True).returncode != 0:
            pytest.skip("this machine cannot remount read-only")
        res = run("analyze", str(ro / "D01.ratedial"), "--json", "--no-truth-bias")
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["dyads"][0]["pair"]["a"] == "client"
        # a -wal with contents there cannot be read: said in one line, not "damaged"
        subprocess.run(["umount", str(ro)], check=True)
        (src / "D01.ratedial-wal").write_bytes(b"x" * 100)
        subprocess.run(["mount", "--bind", str(src), str(ro)], check=True)
        subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], check=True)
        one_line_error(run("analyze", str(ro / "D01.ratedial")), 1, "-wal", "writable folder")
    finally:
        subprocess.run(["umount", str(ro)], check=False, capture_output=True)


def test_a_rater_paused_throughout_is_reported_not_dropped(tmp_path: Path) -> None:
    path = dyad(tmp_path / "p.ratedial")
    con = sqlite3.connect(path)
    (dial_id,) = con.execute("SELECT dial_id FROM dials WHERE rater = 'therapist'").fetchone()
    con.execute("UPDATE samples SET media_state = 2 WHERE dial_id = ?", (dial_id,))
    con.commit()
    con.close()
    res = run("analyze", str(path), "--json", "--no-truth-bias")
    assert res.returncode == 0, res.stderr
    raters = {r["rater"]: r for r in json.loads(res.stdout)["dyads"][0]["raters"]}
    assert raters["therapist"]["coverage"] == 0 and raters["therapist"]["mean"] is None
    assert raters["therapist"]["samples_excluded"] == {"paused": 3000}
    assert raters["client"]["coverage"] == 1
    pair = json.loads(res.stdout)["dyads"][0]["pair"]  # nothing rated by both: no lag, not 0
    assert pair["best_lag_r"] is None and pair["best_lag_s"] is None, pair["best_lag_s"]
    res = run("export", str(path), "-o", str(tmp_path / "x"))
    assert res.returncode == 0, res.stderr
    rows = [line.split(",") for line in (tmp_path / "x.long.csv").read_text().splitlines()]
    col = {name: i for i, name in enumerate(rows[0])}
    therapist = [r for r in rows[1:] if r[col["rater"]] == "therapist"]
    assert len(therapist) == 600 and {r[col["status"]] for r in therapist} == {"missing"}


def test_study_reads_a_file_named_twice_once(rec: Path, tmp_path: Path) -> None:
    res = run("study", str(rec), str(rec.parent), "-o", str(tmp_path / "study"))
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("1 recording, 1 dyad "), res.stdout


@pytest.mark.parametrize("command", ["analyze", "export"])
def test_analyze_and_export_read_a_file_named_twice_once(rec: Path, tmp_path: Path,
                                                        command: str) -> None:
    """Overlapping shell patterns name a file twice: it is one recording, as in study (it
    was 'rater client appears twice for D01')."""
    twice = [str(rec), str(rec.parent / "." / rec.name)]
    out_opt = "--table" if command == "analyze" else "-o"
    ext = ".csv" if command == "analyze" else ""
    res = run(command, *twice, out_opt, str(tmp_path / f"twice{ext}"))
    once = run(command, str(rec), out_opt, str(tmp_path / f"once{ext}"))
    assert res.returncode == 0 == once.returncode, res.stderr
    out = {p.name.removeprefix("twice"): p.read_bytes() for p in tmp_path.glob("twice*")
           if p.is_file() and p.suffix in (".csv", ".json")}
    ref = {p.name.removeprefix("once"): p.read_bytes() for p in tmp_path.glob("once*")
           if p.is_file() and p.suffix in (".csv", ".json")}
    assert out and out.keys() == ref.keys()
    for name, data in out.items():
        if name.endswith(".csv"):
            assert data == ref[name], name


def test_a_folder_as_output_prefix_writes_inside_it(rec: Path, tmp_path: Path) -> None:
    """``-o results/`` (or an existing folder) puts the files in the folder, named after the
    recording (export) or ``study``, instead of beside it as ``results.long.csv``."""
    existing = tmp_path / "existing"
    existing.mkdir()
    res = run("export", str(rec), "-o", str(existing), "--format", "csv-long")
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in existing.iterdir()) == ["D01.json", "D01.long.csv"]
    assert not (tmp_path / "existing.long.csv").exists()
    new = tmp_path / "new"
    other = dyad(tmp_path / "D02.ratedial", label="D02")
    res = run("export", str(rec), str(other), "-o", f"{new}{os.sep}", "--format", "csv-wide")
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in new.iterdir()) == ["export.json", "export.wide.csv"]
    assert stat.S_IMODE(new.stat().st_mode) == 0o700
    res = run("study", str(rec), "-o", f"{tmp_path / 'tables'}/")
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "tables").iterdir()) == ["study.csv", "study.sav"]


def test_a_window_longer_than_the_video_finds_no_segments(tmp_path: Path) -> None:
    """``--window 100`` on a 60 s video used to report '100 s windows' with T1 00:00-01:00, a
    window shortened to the video; a segment is never shorter than its window."""
    rec = dyad(tmp_path / "D01.ratedial")
    res = run("analyze", str(rec), "--window", "100", "--no-truth-bias")
    assert res.returncode == 0, res.stderr
    assert "client: none (the video is shorter than one 100 s window)" in res.stdout
    assert " T1 " not in res.stdout and " B1 " not in res.stdout
    assert " T1 " in run("analyze", str(rec), "--window", "20", "--no-truth-bias").stdout
    one_line_error(run("analyze", str(rec), "--band", "nan:nan"), 2, "finite")


def test_no_output_writes_over_an_input(tmp_path: Path) -> None:
    """An audit (2026-12-04): ``analyze --table`` named as an input recording (or its
    ``-wal`` file), ``study -o P`` with ``P.csv`` a recording, ``export -o P`` with
    ``P.json`` a recording each wrote over the recording, exit 0. Now one line, exit 2,
    the recording untouched; an existing SQLite file that is not an input is refused too."""
    import hashlib
    import shutil

    rec = dyad(tmp_path / "D01.ratedial")
    digest = hashlib.sha256(rec.read_bytes()).hexdigest()
    sheet = tmp_path / "scores.csv"
    sheet.write_text("dyad,wai\nD01,50\n")
    one_line_error(run("analyze", str(rec), "--brief", "--no-truth-bias", "--table",
                       str(rec)), 2, "--table", "is the recording")
    one_line_error(run("analyze", str(rec), "--brief", "--no-truth-bias", "--table",
                       f"{rec}-wal"), 2, "its wal file")
    one_line_error(run("analyze", str(rec), "--brief", "--no-truth-bias", "--annotations",
                       str(sheet), "--table", str(sheet)), 2, "is the input")
    other = tmp_path / "old.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    one_line_error(run("analyze", str(rec), "--brief", "--no-truth-bias", "--table",
                       str(other)), 2, "SQLite database")
    as_csv = tmp_path / "st.csv"  # a recording whose name is what study writes
    shutil.copy(rec, as_csv)
    one_line_error(run("study", str(as_csv), "-o", str(tmp_path / "st")), 2, "study",
                   "is the recording")
    as_json = tmp_path / "q.json"  # ... and what export writes
    shutil.copy(rec, as_json)
    one_line_error(run("export", str(as_json), "-o", str(tmp_path / "q")), 2, "export",
                   "is the recording")
    for path in (rec, as_csv, as_json):
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert sheet.read_text() == "dyad,wai\nD01,50\n"
    assert not (tmp_path / "q.long.csv").exists()  # refused before anything was written
    # the -wal of a crashed recording that is not an input holds its last commits too
    other_rec = dyad(tmp_path / "K01.ratedial")
    con = sqlite3.connect(other_rec)
    con.execute("PRAGMA wal_autocheckpoint = 0")
    con.execute("UPDATE samples SET rating = 1 WHERE sample_index < 10")
    con.commit()
    wal = Path(f"{other_rec}-wal")
    shutil.copy(wal, tmp_path / "left.ratedial-wal")
    con.close()
    before = (tmp_path / "left.ratedial-wal").read_bytes()
    one_line_error(run("analyze", str(rec), "--brief", "--no-truth-bias", "--table",
                       str(tmp_path / "left.ratedial-wal")), 2, "write-ahead log")
    assert (tmp_path / "left.ratedial-wal").read_bytes() == before


def test_a_rater_who_lost_every_sample_is_still_a_rater(tmp_path: Path) -> None:
    """An audit (2026-12-04): a therapist recording whose every sample is in a gap, given
    with the client's, was dropped without a word: the client alone, no pair. Now it is a
    rater with every bin missing (docs/analysis.md §1), in the report and the exports."""
    client = tmp_path / "c.ratedial"
    write_recording(client, [simple_rater("client", piecewise([20, 40], [30, 70, 50]), 60,
                                          uid="aa")],
                    rate_hz=50, media=SynthMedia(duration_s=60.0), session={"dyad": "S1"})
    therapist = tmp_path / "t.ratedial"
    write_recording(therapist, [simple_rater("therapist", constant(60), 60, uid="bb")],
                    rate_hz=50, media=SynthMedia(duration_s=60.0), session={"dyad": "S1"})
    con = sqlite3.connect(therapist)
    with con:
        (epoch, dial, n), = con.execute("SELECT epoch_id, dial_id, COUNT(*) FROM samples")
        con.execute("DELETE FROM samples")
        con.execute("INSERT INTO gaps (epoch_id, dial_id, first_index, end_index, reason) "
                    "VALUES (?, ?, 0, ?, 'link')", (epoch, dial, n))
    con.close()
    res = run("analyze", str(client), str(therapist), "--json", "--no-truth-bias",
              "--bootstrap", "200")
    assert res.returncode == 0, res.stderr
    (d,) = json.loads(res.stdout)["dyads"]
    raters = {s["rater"]: s for s in d["raters"]}
    assert set(raters) == {"client", "therapist"}, raters.keys()
    t = raters["therapist"]
    assert (t["samples_used"], t["coverage"], t["mean"]) == (0, 0, None)
    assert t["missing_samples"] == 3000 and t["gaps"]


def test_a_recording_that_did_not_end_cleanly_is_named(tmp_path: Path) -> None:
    """An audit (2026-12-04): a crashed run's recording (or one copied without the end of
    its -wal) was analysed without a word about what may be missing."""
    path = dyad(tmp_path / "k.ratedial")
    con = sqlite3.connect(path)
    with con:
        con.execute("DELETE FROM meta WHERE key = 'ended_wall_ns'")
    con.close()
    res = run("analyze", str(path), "--brief", "--no-truth-bias", "--bootstrap", "200")
    assert res.returncode == 0, res.stderr
    assert f"{path} did not end cleanly" in res.stderr and res.stderr.count("\n") == 1
    # annotate reads it too, and said nothing (an audit, 2026-12-06)
    res = run("annotate", str(path))
    assert res.returncode == 0 and res.stdout.strip() == "{}", res.stderr
    assert res.stderr == (f"ratedial: note: {path} did not end cleanly (no end time): its "
                          "last seconds may be missing, and a copy made after a crash needs "
                          "its -wal file beside it\n")
    ok = dyad(tmp_path / "ok.ratedial")
    res = run("analyze", str(ok), "--brief", "--no-truth-bias", "--bootstrap", "200")
    assert res.returncode == 0 and "did not end cleanly" not in res.stderr, res.stderr
    res = run("annotate", str(ok))
    assert res.returncode == 0 and res.stderr == "", res.stderr


def test_without_the_research_extra_spss_and_elan_are_one_line(tmp_path: Path) -> None:
    """An audit (2026-12-04): with only the analysis extra (README's Windows and macOS
    install), study, export --format sav|eaf and analyze --table X.sav stopped with a
    traceback and left part of their output behind."""
    rec = dyad(tmp_path / "D01.ratedial")
    blocked = ("import sys\nfor m in ('pyreadstat', 'pympi'):\n    sys.modules[m] = None\n"
               "from ratedial.cli import main\nsys.argv = ['ratedial'] + sys.argv[1:]\nmain()\n")

    def without(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", blocked, *args], text=True,
                              capture_output=True, timeout=120, check=False, cwd=tmp_path)

    for args in (("export", str(rec), "-o", "x", "--format", "csv-long,sav"),
                 ("export", str(rec), "-o", "x", "--format", "eaf"),
                 ("analyze", str(rec), "--brief", "--no-truth-bias", "--table", "t.sav")):
        res = without(*args)
        one_line_error(res, 1, "research extra")
        assert not list(tmp_path.glob("x*")) and not (tmp_path / "t.sav").exists()
    res = without("study", str(rec), "-o", "st")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "st.csv").exists() and not (tmp_path / "st.sav").exists()
    assert "st.sav not written" in res.stderr and "Traceback" not in res.stderr


def test_samples_at_the_very_end_are_in_the_last_bin(tmp_path: Path) -> None:
    """A player at its end shows the last frame, and the recorded position is clamped to
    the length (60.0 of a 60 s video): those samples made a bin [60.0, 60.1) past the end,
    a 601st bin in every export, a duration of 60.1 s and segments ending at 01:00.1."""
    path = dyad(tmp_path / "end.ratedial")
    con = sqlite3.connect(path)
    con.execute("UPDATE samples SET media_s = 60.0 WHERE media_s >= 59.96")
    (n_end,) = con.execute("SELECT count(*) FROM samples WHERE media_s = 60.0").fetchone()
    con.commit()
    con.close()
    assert n_end >= 2
    res = run("analyze", str(path), "--json", "--no-truth-bias")
    assert res.returncode == 0, res.stderr
    raters = json.loads(res.stdout)["dyads"][0]["raters"]
    assert [r["n_bins"] for r in raters] == [600, 600]
    assert [r["duration_s"] for r in raters] == [60.0, 60.0]
    assert all(s["end_s"] <= 60.0 for r in raters for s in r["segments"]), raters
    res = run("export", str(path), "-o", str(tmp_path / "x"))
    assert res.returncode == 0, res.stderr
    rows = (tmp_path / "x.long.csv").read_text().splitlines()
    col = rows[0].split(",").index("t_s")
    times = [float(r.split(",")[col]) for r in rows[1:]]
    assert len(times) == 1200 and max(times) == pytest.approx(59.9)


def test_reading_a_crashed_recording_folds_its_wal_into_the_file(tmp_path: Path) -> None:
    """docs/recording.md: keep FILE-wal beside FILE "until a reader has opened it once, which
    folds the rest in". The analysis readers opened read-only and never folded: a copy of
    the file alone, made after analysing it, still lacked the crashed run's last seconds."""
    import shutil

    path = dyad(tmp_path / "live.ratedial")
    con = sqlite3.connect(path)  # a writer that never closes: its last commits stay in -wal
    con.execute("PRAGMA wal_autocheckpoint = 0")
    con.execute("UPDATE samples SET rating = 99 WHERE sample_index < 500")
    con.commit()
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    for suffix in ("", "-wal", "-shm"):  # copied as a crash leaves them
        shutil.copy(f"{path}{suffix}", crashed / f"c.ratedial{suffix}")
    con.close()
    copy = crashed / "c.ratedial"
    assert (crashed / "c.ratedial-wal").stat().st_size > 0
    res = run("analyze", str(copy), "--brief", "--no-truth-bias")
    assert res.returncode == 0, res.stderr
    # folded and tidied up: an empty -wal and a -shm stayed beside it for good (an audit,
    # 2026-12-06), which readers and users took for a crash's
    assert sorted(p.name for p in crashed.iterdir()) == ["c.ratedial"]
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(copy, alone / "c.ratedial")  # the file alone now holds everything
    con = sqlite3.connect(f"file:{alone / 'c.ratedial'}?mode=ro", uri=True)
    assert con.execute("SELECT count(*) FROM samples WHERE rating = 99").fetchone() == (1000,)
    con.close()


def test_the_neutral_band_follows_the_recordings_scale(tmp_path: Path) -> None:
    """A 1-7 scale was analysed with the band 45-55 of a 0-100 one: every moment "below
    the band" (hindering), kappa and the category shares meaningless, and nothing said."""
    path = tmp_path / "likert.ratedial"
    write_recording(path, [
        simple_rater("client", piecewise([20, 40], [3, 6, 4]), 60, uid="aa"),
        simple_rater("therapist", piecewise([25, 45], [2, 6, 4]), 60, uid="bb")],
        rate_hz=50, media=SynthMedia(duration_s=60.0), session={"dyad": "L01"},
        scale={"minimum": 1, "maximum": 7, "start": 4})
    res = run("analyze", str(path), "--json", "--no-truth-bias", "--bootstrap", "100")
    assert res.returncode == 0, res.stderr
    d = json.loads(res.stdout)["dyads"][0]
    assert d["options"]["neutral_band"] == pytest.approx([3.7, 4.3])
    shares = {r["rater"]: (r["share_below"], r["share_within"], r["share_above"])
              for r in d["raters"]}
    assert shares["client"] == pytest.approx((20 / 60, 20 / 60, 20 / 60), abs=0.01)
    # --band as given still wins; a 0-100 recording keeps 45:55
    res = run("analyze", str(path), "--json", "--no-truth-bias", "--bootstrap", "100",
              "--band", "3:5")
    assert json.loads(res.stdout)["dyads"][0]["options"]["neutral_band"] == [3.0, 5.0]
    res = run("analyze", str(dyad(tmp_path / "d.ratedial")), "--json", "--no-truth-bias",
              "--bootstrap", "100")
    assert json.loads(res.stdout)["dyads"][0]["options"]["neutral_band"] == [45.0, 55.0]


def test_an_unlabelled_run_time_recording_never_joins_another_runs_dyad(tmp_path: Path) -> None:
    """All recordings without a video shared one "video" (run time), so an unlabelled run
    joined any labelled run's dyad and was paired with it, though their time zeros have
    nothing to do with each other."""
    labelled, lone = tmp_path / "R01.ratedial", tmp_path / "U01.ratedial"
    for path, session in ((labelled, {"dyad": "R01"}), (lone, {})):
        write_recording(path, [
            SynthRater(label="client", curve=piecewise([20, 40], [30, 70, 50]), uid="aa",
                       script=(NoPlayer(seconds=60),)),
            SynthRater(label="therapist", curve=piecewise([25, 45], [40, 80, 45]), uid="bb",
                       script=(NoPlayer(seconds=60),))],
            rate_hz=50, media=None, session=session)
    res = run("analyze", str(labelled), str(lone), "--json", "--no-truth-bias",
              "--bootstrap", "100")
    assert res.returncode == 0, res.stderr
    dyads = {d["dyad"]: [r["recording"] for r in d["raters"]]
             for d in json.loads(res.stdout)["dyads"]}
    assert dyads == {"R01": [str(labelled)] * 2, "U01.ratedial": [str(lone)] * 2}, dyads


def test_a_recording_still_being_recorded_is_not_called_crashed(tmp_path: Path) -> None:
    """Analysed while its run goes on (the writer's lock held), it was said to have "not
    ended cleanly ... after a crash"."""
    from ratedial._platform.lock import try_lock

    path = dyad(tmp_path / "live.ratedial")
    con = sqlite3.connect(path)
    with con:
        con.execute("DELETE FROM meta WHERE key = 'ended_wall_ns'")
    con.close()
    fd = try_lock(path)  # as the recorder holds it
    assert fd is not None
    try:
        res = run("analyze", str(path), "--brief", "--no-truth-bias", "--bootstrap", "200")
    finally:
        os.close(fd)
    assert res.returncode == 0, res.stderr
    assert f"{path} is still being recorded" in res.stderr, res.stderr
    assert "did not end cleanly" not in res.stderr


def test_a_recording_without_samples_among_others_is_named(tmp_path: Path) -> None:
    """Alone it is an error; among others `study` dropped it without a word ("2 recordings,
    1 dyads")."""
    from ratedial.recording.writer import Recorder

    dyad(tmp_path / "D01.ratedial")
    empty = tmp_path / "nodial.ratedial"
    rec = Recorder(empty, meta={"ended_wall_ns": 1})
    rec.close()
    res = run("study", str(tmp_path), "-o", str(tmp_path / "out" / "study"))
    assert res.returncode == 0, res.stderr
    assert f"{empty} holds no samples to analyse" in res.stderr, res.stderr


def test_a_rater_label_that_is_a_wide_column_name_is_refused(rec: Path, tmp_path: Path) -> None:
    """Labels ``t_s`` and ``dyad`` gave the header ``dyad,media,t_s,dyad,t_s``."""
    res = run("export", str(rec), "-o", str(tmp_path / "x"), "--rater",
              f"{rec}:client=t_s")
    one_line_error(res, 2, "rater label 't_s' is a column of the wide table")
    assert list(tmp_path.iterdir()) == []


def test_a_role_label_with_a_capital_is_the_role(tmp_path: Path) -> None:
    """``--rater REC=Therapist`` paired the dyad by label order (Therapist before client),
    and Truth and Bias took the therapist as the truth of that dyad."""
    path = dyad(tmp_path / "D01.ratedial")
    res = run("analyze", str(path), "--json", "--no-truth-bias", "--bootstrap", "100",
              "--rater", f"{path}:bb=Therapist")
    assert res.returncode == 0, res.stderr
    pair = json.loads(res.stdout)["dyads"][0]["pair"]
    assert (pair["a"], pair["b"], pair["paired_by"]) == ("client", "Therapist", "roles")


def test_a_gap_belongs_to_the_video_it_happened_in(tmp_path: Path) -> None:
    """A recording of two videos: a gap while A played was credited to B as well (its
    report, its sidecar, its ELAN file and its gap columns)."""
    from ratedial.analysis.synth import Play

    path = tmp_path / "two.ratedial"
    write_recording(path, [SynthRater(label="client", curve=piecewise([10], [30, 70]),
                                      uid="aa", script=(Play(start_s=0, end_s=24,
                                                             gaps=((5, 6, "link"),)),))],
                    rate_hz=50, media=SynthMedia(duration_s=12.0, path="A.mp4",
                                                 fingerprint="sha256:a"),
                    session={"dyad": "D01"})
    con = sqlite3.connect(path)
    with con:  # the second half of the session was video B
        con.execute("INSERT INTO media (media_id, path, duration_s, fps, fingerprint) "
                    "VALUES (2, 'B.mp4', 12.0, 25.0, 'sha256:b')")
        con.execute("UPDATE samples SET media_id = 2, media_s = media_s - 12 "
                    "WHERE media_s >= 12")
    con.close()
    res = run("analyze", str(path), "--json", "--no-truth-bias", "--bootstrap", "100",
              "--window", "3")
    assert res.returncode == 0, res.stderr
    gaps = {d["media"]["path"]: d["raters"][0]["gaps"] for d in json.loads(res.stdout)["dyads"]}
    assert gaps == {"A.mp4": 1, "B.mp4": 0}, gaps


def test_a_long_dyad_label_still_makes_file_names(tmp_path: Path) -> None:
    """A 301-character dyad label: `plot`, `analyze --plots` and `export --format eaf`
    failed with "File name too long", leaving part of their outputs behind."""
    label = "D" + "x" * 300
    path = dyad(tmp_path / "long.ratedial", label=label)
    out = tmp_path / "out"
    res = run("export", str(path), "-o", str(out / "x"), "--format", "eaf", "--format",
              "csv-long")
    assert res.returncode == 0, res.stderr
    res = run("plot", str(path), "-o", str(out / "fig"), "--format", "png")
    assert res.returncode == 0, res.stderr
    names = [p.name for p in out.rglob("*")]
    assert any(n.endswith(".eaf") for n in names) and any(n.endswith(".png") for n in names)
    assert all(len(n.encode()) < 255 for n in names), names


def test_two_dyads_of_one_label_and_video_name_get_two_names(tmp_path: Path) -> None:
    """Two sessions labelled D07, each with its own ``video.mp4`` (other content): both rows
    of the study table were "D07 video.mp4"."""
    for k in (1, 2):
        folder = tmp_path / f"s{k}"
        folder.mkdir()
        write_recording(folder / "D07.ratedial", [
            simple_rater("client", piecewise([20, 40], [30, 70, 50]), 60, uid="aa"),
            simple_rater("therapist", piecewise([25, 45], [40, 80, 45]), 60, uid="bb")],
            rate_hz=50, media=SynthMedia(duration_s=60.0, path=f"/s{k}/video.mp4",
                                         fingerprint=f"sha256:{k}"), session={"dyad": "D07"})
    res = run("analyze", str(tmp_path / "s1" / "D07.ratedial"),
              str(tmp_path / "s2" / "D07.ratedial"), "--json", "--no-truth-bias",
              "--bootstrap", "100")
    assert res.returncode == 0, res.stderr
    names = sorted(d["dyad"] for d in json.loads(res.stdout)["dyads"])
    assert names == ["D07 video.mp4", "D07 video.mp4 (2)"], names


def test_raters_on_different_scales_are_each_judged_by_their_own_band(tmp_path: Path) -> None:
    """Found by a black-box test: in a dyad of a 0-100 client and a 1-7 therapist, the
    therapist's shares, categories and segment checks used the client's 45-55 band (every
    moment "below": hindering), though alone the file was judged by 3.7-4.3."""
    c, t = tmp_path / "c.ratedial", tmp_path / "t.ratedial"
    media = SynthMedia(duration_s=60.0, fingerprint="rdfp1:mixed")
    write_recording(c, [simple_rater("client", piecewise([20, 40], [30, 70, 50]), 60,
                                     uid="aa")], rate_hz=50, media=media,
                    session={"dyad": "M01"})
    write_recording(t, [simple_rater("therapist", piecewise([20, 40], [2, 6, 4]), 60,
                                     uid="bb")], rate_hz=50, media=media,
                    session={"dyad": "M01"}, scale={"minimum": 1, "maximum": 7, "start": 4})
    res = run("analyze", str(c), str(t), "--json", "--no-truth-bias", "--bootstrap", "100")
    assert res.returncode == 0, res.stderr
    assert "own scale" in res.stderr  # the raters' scales differ: said
    d = json.loads(res.stdout)["dyads"][0]
    shares = {r["rater"]: (r["share_below"], r["share_within"], r["share_above"])
              for r in d["raters"]}
    third = pytest.approx((1 / 3, 1 / 3, 1 / 3), abs=0.01)
    assert shares["therapist"] == third and shares["client"] == third
    # both rate hindering, then helpful, then neutral: the categories agree throughout
    assert d["pair"]["kappa"]["value"] == pytest.approx(1.0)
    alone = json.loads(run("analyze", str(t), "--json", "--no-truth-bias").stdout)["dyads"][0]
    (solo,) = alone["raters"]
    assert (solo["share_below"], solo["share_within"], solo["share_above"]) == third


def test_a_segment_is_never_shorter_than_its_window(tmp_path: Path) -> None:
    """Found by a black-box test: --window 1.05 on a 10 Hz grid gave 1.0 s segments (the
    window was rounded to 10 bins), and --window 20.04 on a 20 s video gave a 20 s one."""
    path = tmp_path / "w.ratedial"
    write_recording(path, [simple_rater("client", piecewise([5, 8], [50, 90, 50]), 20,
                                        uid="aa")],
                    rate_hz=50, media=SynthMedia(duration_s=20.0))
    res = run("analyze", str(path), "--json", "--window", "1.05", "--no-truth-bias")
    assert res.returncode == 0, res.stderr
    segs = json.loads(res.stdout)["dyads"][0]["raters"][0]["segments"]
    assert segs and all(s["end_s"] - s["start_s"] >= 1.05 - 1e-9 for s in segs)
    res = run("analyze", str(path), "--json", "--window", "20.04", "--no-truth-bias")
    assert json.loads(res.stdout)["dyads"][0]["raters"][0]["segments"] == []


def test_a_constant_rater_has_no_effective_n(tmp_path: Path) -> None:
    """Found by a black-box test: with one rater constant, the effective n was 2000 of 2000
    bins (an autocorrelation that does not exist read as none), beside r and p that are
    undefined."""
    path = tmp_path / "k.ratedial"
    write_recording(path, [simple_rater("client", piecewise([20, 40], [30, 70, 50]), 60,
                                        uid="aa"),
                           simple_rater("therapist", constant(50), 60, uid="bb")],
                    rate_hz=50, media=SynthMedia(duration_s=60.0), session={"dyad": "K"})
    res = run("analyze", str(path), "--json", "--no-truth-bias", "--bootstrap", "100")
    assert res.returncode == 0, res.stderr
    pair = json.loads(res.stdout)["dyads"][0]["pair"]
    assert pair["n_eff_pearson"] is None and pair["n_eff_spearman"] is None
    text = run("analyze", str(path), "--no-truth-bias", "--bootstrap", "100").stdout
    assert "effective n - of" in text


def test_a_segment_the_other_barely_rated_is_not_judged(tmp_path: Path) -> None:
    """Found by a black-box test: "therapist there: 49.7 neutral" counted as the therapist
    not rating the client's top segment helpful, though the therapist had rated a third of
    it (segments themselves need --min-coverage)."""
    path = tmp_path / "g.ratedial"
    media = SynthMedia(duration_s=90.0)
    client = simple_rater("client", piecewise([30, 60], [50, 90, 50]), 90, uid="aa")
    therapist = SynthRater(label="therapist", uid="bb", curve=constant(50), script=(
        Play(start_s=0, end_s=90, gaps=((35, 60, "device_drop"),)),))
    write_recording(path, [client, therapist], rate_hz=50, media=media,
                    session={"dyad": "G"})
    res = run("analyze", str(path), "--json", "--no-truth-bias", "--bootstrap", "100",
              "--segments", "1")
    assert res.returncode == 0, res.stderr
    checks = json.loads(res.stdout)["dyads"][0]["pair"]["segment_checks"]
    (t1,) = [c for c in checks if c["owner"] == "client" and c["segment"]["label"] == "T1"]
    assert t1["other_coverage"] == pytest.approx(5 / 30, abs=0.02) and t1["agrees"] is None
    text = run("analyze", str(path), "--no-truth-bias", "--bootstrap", "100",
               "--segments", "1").stdout
    assert "not judged" in text


def test_tiny_p_values_stay_numbers_and_times_add_up_to_the_video(tmp_path: Path) -> None:
    """Found by a black-box test: p = 6.4e-16 was written as 0.0 (rounded to 8 decimals),
    and a 100.05 s video had 100.1 s rated (its last, partial bin counted in full)."""
    from ratedial.analysis.synth import write_dyad

    c, t = write_dyad(tmp_path, "P1", duration_s=240.0, seed=2, agreement=0.95, lag_s=0.0)
    d = json.loads(run("analyze", str(c), str(t), "--json", "--no-truth-bias",
                       "--bootstrap", "100").stdout)["dyads"][0]
    assert 0 < d["pair"]["pearson_p"] < 1e-10  # 4.4e-34 here
    # the naive p (every bin independent) underflowed to 0.0 (an audit, 2026-12-05), and
    # the one-line overview printed "0.000" where the full report says "< 0.001"
    assert 0 < d["pair"]["pearson_p_naive"] <= d["pair"]["pearson_p"]
    brief = run("analyze", str(c), str(t), "--brief", "--no-truth-bias", "--bootstrap", "100")
    assert "< 0.001" in brief.stdout and "0.000" not in brief.stdout, brief.stdout
    path = tmp_path / "e.ratedial"
    write_recording(path, [simple_rater("client", constant(60), 20.05, uid="aa")],
                    rate_hz=100, media=SynthMedia(duration_s=20.05))
    (r,) = json.loads(run("analyze", str(path), "--json", "--no-truth-bias").stdout)[
        "dyads"][0]["raters"]
    assert r["duration_s"] == pytest.approx(20.05)
    assert r["rated_s"] + r["filled_s"] + r["missing_s"] == pytest.approx(20.05)


def test_an_empty_file_is_not_sent_looking_for_a_wal(tmp_path: Path) -> None:
    """An audit (2026-12-05): an empty file was told "its data is in empty.ratedial-wal:
    copy that file beside it too" (the hint for a crashed run's copy, whose file is 4 KiB)."""
    empty = tmp_path / "empty.ratedial"
    empty.touch()
    for cmd in (("analyze", str(empty)), ("export", str(empty), "-o", str(tmp_path / "x"))):
        res = run(*cmd)
        one_line_error(res, 1, "empty.ratedial is not a ratedial recording")
        assert "-wal" not in res.stderr, res.stderr


def test_only_a_copy_made_after_a_crash_is_sent_looking_for_its_wal(tmp_path: Path) -> None:
    """An audit (2026-12-05): a 1-byte file and another program's SQLite file were told
    "if it is a recording copied after a crash, its data is in NAME-wal". That hint is for
    an SQLite file in WAL mode without a table (a run's file before its first fold)."""
    from ratedial.recording.writer import Recorder

    one = tmp_path / "one.ratedial"
    one.write_bytes(b"S")
    other = tmp_path / "other.ratedial"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE moz_places (id INTEGER, url TEXT)")
    con.commit()
    con.close()
    walmode = tmp_path / "walmode.ratedial"
    con = sqlite3.connect(walmode)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("CREATE TABLE moz_places (id INTEGER, url TEXT)")
    con.commit()
    con.close()
    res = run("analyze", str(one))
    one_line_error(res, 1, "one.ratedial is not a ratedial recording (not an SQLite file)")
    for path in (other, walmode):
        res = run("analyze", str(path))
        one_line_error(res, 1, f"{path.name} is not a ratedial recording (an SQLite file "
                               "without ratedial's meta table)")
        assert "-wal" not in res.stderr, res.stderr
    live = tmp_path / "live.ratedial"
    rec = Recorder(live, meta={})  # a run before its first fold, its file copied alone
    try:
        copy = tmp_path / "copy.ratedial"
        copy.write_bytes(live.read_bytes())
    finally:
        rec.close()
    res = run("analyze", str(copy))
    one_line_error(res, 1, "copy.ratedial is not a ratedial recording (an SQLite file "
                           "without ratedial's meta table; if it is a recording copied after "
                           "a crash, its data is in copy.ratedial-wal: copy that file beside "
                           "it too)")


def test_annotating_a_recording_in_a_read_only_folder_says_read_only(tmp_path: Path) -> None:
    """An audit (2026-12-05): a healthy recording in a folder nobody may write (here an
    immutable one, which stops root too) was called "damaged ... a truncated or partly
    copied file?" by annotate, while analyze read it."""
    folder = tmp_path / "archive"
    folder.mkdir()
    path = dyad(folder / "k.ratedial")
    if subprocess.run(["chattr", "+i", str(folder)], check=False,
                      capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not possible here")
    try:
        res = run("annotate", str(path), "srs=37")
        one_line_error(res, 1, "k.ratedial cannot be changed", "read-only")
        assert "damaged" not in res.stderr
        assert run("analyze", str(path), "--brief", "--no-truth-bias",
                   "--bootstrap", "200").returncode == 0
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=False)


def test_annotate_refuses_a_file_that_readers_refuse(tmp_path: Path) -> None:
    """An audit (2026-12-05): annotate wrote into a recording without a samples table and
    exited 0, though every reader refuses that file. Now the same line, nothing written."""
    path = dyad(tmp_path / "nos.ratedial")
    con = sqlite3.connect(path)
    con.execute("DROP TABLE samples")
    con.commit()
    con.close()
    before = path.read_bytes()
    read = run("annotate", str(path))
    one_line_error(read, 1, "nos.ratedial: cannot read the recording: no such table: samples")
    res = run("annotate", str(path), "wai=52")
    one_line_error(res, 1)
    assert res.stderr == read.stderr
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nos.ratedial"]


def test_annotate_shows_text_as_typed(tmp_path: Path) -> None:
    """An audit: annotate showed ``"note": "\\u00fc b"`` (JSON's ASCII escapes)."""
    path = dyad(tmp_path / "u.ratedial")
    res = run("annotate", str(path), "note=ü b", "wai=52")
    assert res.returncode == 0, res.stderr
    assert '"note": "ü b"' in res.stdout and "\\u" not in res.stdout, res.stdout
    res = run("annotate", str(path))
    assert '"note": "ü b"' in res.stdout and json.loads(res.stdout) == {"note": "ü b",
                                                                         "wai": 52}


def test_a_scores_sheet_separated_by_semicolons_is_read(rec: Path, tmp_path: Path) -> None:
    """An audit: Excel's CSV where the decimal mark is a comma separates columns by ``;``;
    such a sheet failed with "needs a 'dyad' column", not saying why. Its header decides:
    ``;`` and no ``,`` there reads the sheet by ``;``; values stay as typed."""
    sheet = tmp_path / "scores.csv"
    sheet.write_bytes("\ufeffdyad;wai;remark\r\nD01;50;4,5 ü\r\n".encode())
    table = tmp_path / "t.csv"
    res = run("analyze", str(rec), "--annotations", str(sheet), "--table", str(table),
              "--brief", "--no-truth-bias")
    assert res.returncode == 0, res.stderr
    import csv

    with table.open(newline="", encoding="utf-8") as fh:
        (row,) = list(csv.DictReader(fh))
    assert (row["wai"], row["remark"]) == ("50", "4,5 ü")
    sheet.write_text("Dyade;wai\nD01;50\n", encoding="utf-8")  # still needs its dyad column
    one_line_error(run("analyze", str(rec), "--annotations", str(sheet), "--brief",
                       "--no-truth-bias"), 2, "needs a 'dyad' column", "separated by ';'")


def test_a_scores_sheet_row_is_matched_as_dyad_labels_are_paired(rec: Path,
                                                                  tmp_path: Path) -> None:
    """Dyad labels that differ only in case, surrounding spaces or Unicode form are one dyad
    (docs/analysis.md, 2); a scores sheet's ``dyad`` cell is matched the same way: its row
    ``d01 `` is dyad D01's (it was named as a dyad not in the recordings, its columns
    empty), and two rows that are one dyad are refused as a dyad given twice."""
    import csv

    sheet = tmp_path / "scores.csv"
    sheet.write_text("dyad,wai\nd01 ,50\n", encoding="utf-8")
    table = tmp_path / "t.csv"
    res = run("analyze", str(rec), "--annotations", str(sheet), "--table", str(table),
              "--brief", "--no-truth-bias")
    assert res.returncode == 0, res.stderr
    assert "not in these recordings" not in res.stderr, res.stderr
    with table.open(newline="", encoding="utf-8") as fh:
        (row,) = list(csv.DictReader(fh))
    assert (row["dyad"], row["wai"]) == ("D01", "50")
    sheet.write_text("dyad,wai\nD01,50\nd01,51\n", encoding="utf-8")
    one_line_error(run("analyze", str(rec), "--annotations", str(sheet), "--brief",
                       "--no-truth-bias"), 2, "'d01' has two rows", "also written 'D01'")


def test_a_dial_lost_for_good_is_said_in_the_report_the_json_and_the_export(
        tmp_path: Path) -> None:
    """An audit (2026-12-05): a client's dial died 28 s into a 60 s video and never came
    back; the report said 'gaps 0 (0 samples)', the export's sidecar had no gap and nothing
    told that from a rater who stopped turning. Now the dial's loss is said where it was."""
    path = dyad(tmp_path / "lost.ratedial")
    with sqlite3.connect(path) as con:  # as the daemon leaves it: no sample after, no gap
        (dial,) = con.execute("SELECT dial_id FROM dials WHERE rater = 'client'").fetchone()
        epoch, nxt = con.execute("SELECT epoch_id, min(sample_index) + 1400 FROM samples "
                                 "WHERE dial_id = ?", (dial,)).fetchone()
        media_s, host_ns = con.execute("SELECT media_s, host_ns FROM samples WHERE "
                                       "epoch_id = ? AND sample_index = ?",
                                       (epoch, nxt - 1)).fetchone()
        con.execute("DELETE FROM samples WHERE dial_id = ? AND sample_index >= ?", (dial, nxt))
        (last_id,) = con.execute("SELECT max(event_id) FROM events").fetchone()
        con.execute("INSERT INTO events (event_id, host_ns, dial_id, kind, data) VALUES "
                    "(?, ?, ?, 'dial_lost', ?)", (last_id + 1, host_ns + 5_000_000, dial,
                                                  json.dumps({"port": "/dev/ttyACM0",
                                                              "next_index": nxt,
                                                              "cause": "unplugged"})))
    res = run("analyze", str(path), "--json", "--no-truth-bias", "--bootstrap", "200")
    assert res.returncode == 0, res.stderr
    raters = {r["rater"]: r for r in json.loads(res.stdout)["dyads"][0]["raters"]}
    assert raters["client"]["lost"] == [{"at_s": round(media_s, 3), "back": False,
                                         "cause": "unplugged"}]
    assert raters["therapist"]["lost"] == [] and raters["client"]["gaps"] == 0
    report = run("analyze", str(path), "--no-truth-bias", "--bootstrap", "200")
    (row,) = [ln for ln in report.stdout.splitlines() if ln.strip().startswith("dial lost")]
    assert "(not back)" in row and row.split()[-1] == "-", row  # the therapist's: none
    out = tmp_path / "x"
    assert run("export", str(path), "-o", str(out)).returncode == 0
    sidecar = json.loads((tmp_path / "x.json").read_text())
    lost = {s["rater"]: s["lost"] for s in sidecar["dyads"][0]["series"]}
    assert lost["client"] == [{"at_s": media_s, "back": False, "cause": "unplugged"}]


def test_a_collected_file_with_two_scales_is_said_to_be(tmp_path: Path) -> None:
    """An audit (2026-12-05): a collection of a 1-7 daemon and a 0-100 one kept the first's
    scale and a scale_differs event, and analyze judged both raters by 3.7-4.3 (the 0-100
    therapist 'above band 100%') without a word."""
    path = dyad(tmp_path / "col.ratedial")
    with sqlite3.connect(path) as con:
        (last,) = con.execute("SELECT max(event_id) FROM events").fetchone()
        con.execute("INSERT INTO events (event_id, host_ns, dial_id, kind, data) VALUES "
                    "(?, 1, NULL, 'scale_differs', ?)",
                    (last + 1, json.dumps({"daemon": "dB", "scale": {"minimum": 0.0}})))
    res = run("analyze", str(path), "--no-truth-bias", "--bootstrap", "200")
    assert res.returncode == 0, res.stderr
    assert "col.ratedial holds ratings on more than one scale (scale_differs" in res.stderr
    plain = run("analyze", str(dyad(tmp_path / "plain.ratedial")), "--no-truth-bias",
                "--bootstrap", "200")
    assert "more than one scale" not in plain.stderr


def test_a_dial_that_stalled_is_said_in_the_report_and_the_json(tmp_path: Path) -> None:
    """An audit (2026-12-05): a client whose dial took no samples for 2 s showed 'missing
    00:01.9' with 'gaps 0' and nothing saying why."""
    path = dyad(tmp_path / "stall.ratedial")
    with sqlite3.connect(path) as con:
        (dial,) = con.execute("SELECT dial_id FROM dials WHERE rater = 'client'").fetchone()
        (last,) = con.execute("SELECT max(event_id) FROM events").fetchone()
        for k, seconds in enumerate((2.001, 0.5)):
            con.execute("INSERT INTO events (event_id, host_ns, dial_id, kind, data) VALUES "
                        "(?, 1, ?, 'dial_stalled', ?)", (last + 1 + k, dial, json.dumps(
                            {"boot_id": 1, "index": 100 * k + 50, "seconds": seconds})))
    res = run("analyze", str(path), "--json", "--no-truth-bias", "--bootstrap", "200")
    assert res.returncode == 0, res.stderr
    raters = {r["rater"]: r for r in json.loads(res.stdout)["dyads"][0]["raters"]}
    assert raters["client"]["stalled"] == {"n": 2, "seconds": 2.501}
    assert raters["therapist"]["stalled"] == {"n": 0, "seconds": 0.0}
    report = run("analyze", str(path), "--no-truth-bias", "--bootstrap", "200")
    (row,) = [ln for ln in report.stdout.splitlines() if ln.strip().startswith("dial stalled")]
    assert "2x, 2.5 s" in row and row.split()[-1] == "-", row


def test_a_folder_given_as_a_recording_says_where_its_recordings_go(rec: Path) -> None:
    folder = str(rec.parent)
    res = run("analyze", folder)
    one_line_error(res, 2, "is a folder", f"ratedial study {folder}", "*.ratedial")
    res = run("export", folder, "-o", str(rec.parent / "x"))
    one_line_error(res, 2, "is a folder", "*.ratedial")
    assert "study" not in res.stderr  # export has no folder form to point to


def test_a_best_lag_at_the_edge_of_the_search_is_said_to_be_a_bound(rec: Path) -> None:
    """The therapist follows the client by 5 s (its steps come 5 s later): searched over
    ±10 s that is a peak; over ±3 s the highest r is at the search's edge, a bound."""
    by_max = {}
    for max_lag in ("10", "3"):
        res = run("analyze", str(rec), "--json", "--no-truth-bias", "--max-lag", max_lag)
        assert res.returncode == 0, res.stderr
        pair = json.loads(res.stdout)["dyads"][0]["pair"]
        by_max[max_lag] = (pair["best_lag_s"], pair["best_lag_at_edge"])
    assert by_max == {"10": (5.0, False), "3": (3.0, True)}
    text = run("analyze", str(rec), "--no-truth-bias", "--max-lag", "3").stdout
    assert "at the edge of the search" in text
    text = run("analyze", str(rec), "--no-truth-bias").stdout
    assert "at the edge" not in text
    # 60 s hold one 40 s block (4 x --max-lag): no interval, and the report says why
    assert "no 95% CI: fewer than two 40 s blocks rated by both" in text


def test_a_best_lag_beside_lags_with_no_r_is_no_edge_of_the_search() -> None:
    """Lags whose r is null for too little overlap stay null at any --max-lag: the best lag
    next to them is not flagged (no wider search can find out); ±max_lag is."""
    import numpy as np

    from ratedial.analysis.analyse import _at_edge

    lags = np.arange(-4, 5)
    nan = float("nan")
    r = np.array([nan, nan, 0.9, 0.5, 0.2, 0.1, 0.3, 0.4, 0.6])
    assert not _at_edge(lags, r, -2)  # the outermost lag with an r, not the search's edge
    assert _at_edge(lags, r, 4) and not _at_edge(lags, r, 3) and not _at_edge(lags, r, 0)
