"""`ratedial study FOLDER -o PREFIX`: the one-row-per-dyad study table as CSV and SPSS .sav,
read back with csv and pyreadstat."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest

from ratedial.analysis.synth import write_dyad

pyreadstat = pytest.importorskip("pyreadstat")


def test_study_table_from_a_folder(tmp_path):
    folder = tmp_path / "recordings" / "site1"
    folder.mkdir(parents=True)
    for i in range(3):
        write_dyad(folder, f"D{i + 1:02d}", duration_s=180, seed=i, rate_hz=50,
                   agreement=0.7, annotations=({"srs": 30 + i, "wai": 50 + i}, {"srs": 40 - i}))
    res = subprocess.run([sys.executable, "-m", "ratedial", "study", str(tmp_path / "recordings"),
                          "-o", str(tmp_path / "study"), "--bootstrap", "200", "--window", "15"],
                         capture_output=True, text=True, timeout=180, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("6 recordings, 3 dyads (3 with both raters)")
    assert "Truth and Bias (therapist judging client; 3 dyads" in res.stdout
    with (tmp_path / "study.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["dyad"] for r in rows] == ["D01", "D02", "D03"]
    df, meta = pyreadstat.read_sav(str(tmp_path / "study.sav"))
    assert list(df["dyad"]) == ["D01", "D02", "D03"]
    for col in ("client_mean", "therapist_mean", "client_share_within", "pearson_r",
                "icc2_1", "kappa", "best_lag_s", "tb_truth_force", "tb_dyad_truth_force",
                "tb_dyad_directional_bias", "client_ann_srs", "client_ann_wai",
                "therapist_ann_srs"):
        assert col in rows[0] and col in meta.column_names, col
        assert list(df[col]) == pytest.approx([float(r[col]) for r in rows]), col
    assert list(df["client_ann_srs"]) == [30, 31, 32]
    assert list(df["therapist_ann_srs"]) == [40, 39, 38]
    assert 0.3 < float(rows[0]["tb_truth_force"]) < 0.9


def test_the_guess_score_reaches_the_study_table_and_the_json(tmp_path):
    """The guess test's score (the study's "four of six") was only in the recording's notes:
    a study had to dig it out of SQLite for every dyad."""
    import io
    import json as _json
    import random

    from click.testing import CliRunner

    from ratedial.analysis.load import load
    from ratedial.analysis.review import NoVideo, Prompter, order_segments, run_guess
    from ratedial.analysis.segments import SegmentOptions, find_segments
    from ratedial.analysis.synth import write_dyad
    from ratedial.cli import cli

    c, t = write_dyad(tmp_path, "D1", duration_s=240.0, seed=5)
    (s,) = [x for x in load([c]) if x.rater == "client"]
    segs = find_segments(s.values, s.rate_hz, SegmentOptions())
    shown = order_segments(segs, "random", random.Random(3))
    answers = ["+" if x.kind == "top" else "-" for x in shown]
    answers[0] = "-" if answers[0] == "+" else "+"  # one wrong
    run_guess(c, "client", segs, player=NoVideo(), seed=3, answerer="therapist",
              prompter=Prompter(io.StringIO("\n".join(answers) + "\n"), io.StringIO()))
    table = tmp_path / "t.csv"
    res = CliRunner().invoke(cli, ["analyze", str(c), str(t), "--table", str(table),
                                   "--json", "--bootstrap", "200", "--no-truth-bias"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    (row,) = list(csv.DictReader(table.open()))
    n = len(segs)
    assert (row["client_guess_answered_by"], row["client_guess_score"], row["client_guess_n"]) \
        == ("therapist", str(n - 1), str(n))
    assert "therapist_guess_score" not in row  # nobody guessed the therapist's
    raters = {r["rater"]: r for r in _json.loads(res.output)["dyads"][0]["raters"]}
    assert raters["client"]["guess"]["score"] == n - 1 and raters["client"]["guess"]["seed"] == 3
    assert raters["therapist"]["guess"] is None


def test_a_guess_made_on_other_segments_is_said_to_be(tmp_path):
    """An audit (2026-12-05): a guess test saved with 5 s segments was reported beside the
    30 s segments of a default analyze, with nothing to say its score was about others."""
    import io
    import json as _json
    import random

    from click.testing import CliRunner

    from ratedial.analysis.analyse import AnalysisOptions
    from ratedial.analysis.load import load
    from ratedial.analysis.results import segment_params
    from ratedial.analysis.review import NoVideo, Prompter, order_segments, run_guess
    from ratedial.analysis.segments import SegmentOptions, find_segments
    from ratedial.analysis.synth import write_dyad
    from ratedial.cli import cli

    c, t = write_dyad(tmp_path, "D1", duration_s=240.0, seed=5)
    (s,) = [x for x in load([c]) if x.rater == "client"]

    def guess(window_s: float) -> None:
        opt = AnalysisOptions(segments=SegmentOptions(window_s=window_s))
        segs = find_segments(s.values, s.rate_hz, opt.segments)
        shown = order_segments(segs, "random", random.Random(3))
        answers = ["+" if x.kind == "top" else "-" for x in shown]
        run_guess(c, "client", segs, player=NoVideo(), seed=3, answerer="therapist",
                  prompter=Prompter(io.StringIO("\n".join(answers) + "\n"), io.StringIO()),
                  params=segment_params(s, opt))

    def analyze() -> tuple[dict, str, dict]:
        table = tmp_path / "t.csv"
        res = CliRunner().invoke(cli, ["analyze", str(c), str(t), "--table", str(table),
                                       "--json", "--bootstrap", "200", "--no-truth-bias"],
                                 catch_exceptions=False)
        text = CliRunner().invoke(cli, ["analyze", str(c), str(t), "--bootstrap", "200",
                                        "--no-truth-bias"], catch_exceptions=False).output
        (row,) = list(csv.DictReader(table.open()))
        g = {r["rater"]: r for r in _json.loads(res.output)["dyads"][0]["raters"]}["client"]
        return g["guess"], text, row

    guess(5.0)
    g, text, row = analyze()
    assert g["same_segments"] is False and g["params"]["window_s"] == 5.0
    assert row["client_guess_same_segments"] == "False"
    assert "client     guess test: therapist" in text
    assert "made on other segments (window_s 5.0 (here 30.0)), not the ones above" in text
    guess(30.0)  # the newest guess counts: now of the analysis's own segments
    g, text, row = analyze()
    assert g["same_segments"] is True and row["client_guess_same_segments"] == "True"
    assert "made on other segments" not in text and "guess test: therapist" in text


def test_every_dyad_has_the_same_columns_in_the_same_order(tmp_path):
    """An audit (2026-12-05): a first dyad too short for a third divergent window put the
    divergent3_* columns after the Truth-and-Bias columns, so the column order of the study
    table depended on which dyad came first."""
    folder = tmp_path / "recordings"
    folder.mkdir()
    for i, seconds in enumerate((40, 180)):  # 15 s windows: two fit in D01, three in D02
        write_dyad(folder, f"D{i + 1:02d}", duration_s=seconds, seed=i, rate_hz=50,
                   agreement=0.7)
    res = subprocess.run([sys.executable, "-m", "ratedial", "study", str(folder),
                          "-o", str(tmp_path / "study"), "--bootstrap", "100", "--window", "15"],
                         capture_output=True, text=True, timeout=180, check=False)
    assert res.returncode == 0, res.stderr
    with (tmp_path / "study.csv").open() as fh:
        header = next(csv.reader(fh))
    with (tmp_path / "study.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    div = [c for c in header if c.startswith("divergent")]
    assert div == [f"divergent{k}_{f}" for k in (1, 2, 3)
                   for f in ("start_s", "end_s", "mean_abs_diff")]
    assert header.index(div[-1]) < header.index("tb_truth_force")
    assert rows[0]["divergent3_start_s"] == "" and rows[1]["divergent3_start_s"] != ""


def test_a_guess_note_saved_before_the_counts_per_kind_gets_them_from_its_answers():
    """The table's R_guess_helpful_n and R_guess_hindering_n (an audit, 2026-12-05: "0 of 0
    hindering" read as "0 right"); a note saved before they were has its answers' truths."""
    from ratedial.analysis.results import _guess

    old = {"answered_by": "therapist", "score": 1, "n": 2, "helpful_correct": 1,
           "hindering_correct": 0, "seed": 1,
           "answers": [{"segment": "T1", "answer": "helpful", "truth": "helpful",
                        "correct": True},
                       {"segment": "T2", "answer": "hindering", "truth": "helpful",
                        "correct": False}]}
    g = _guess(old, {})
    assert g is not None and (g["helpful_n"], g["hindering_n"]) == (2, 0)
    g = _guess({**old, "helpful_n": 1, "hindering_n": 1}, {})  # saved: as saved
    assert g is not None and (g["helpful_n"], g["hindering_n"]) == (1, 1)
    g = _guess({k: v for k, v in old.items() if k != "answers"}, {})
    assert g is not None and (g["helpful_n"], g["hindering_n"]) == (None, None)


def test_a_valid_annotation_name_keeps_its_spss_name_beside_near_duplicates(tmp_path):
    """Found by a black-box audit: annotations `wai sr`, `wai-sr`, `wai_sr` gave the .sav's
    `client_ann_wai_sr` the value of `wai sr` (3), and the annotation really named `wai_sr`
    became `client_ann_wai_sr_3`. A valid name is kept; the others get _2, _3 in column
    order."""
    write_dyad(tmp_path, "D01", duration_s=60, seed=1, rate_hz=20,
               annotations=({"wai sr": 3, "wai-sr": 1, "wai_sr": 2}, {}))
    res = subprocess.run([sys.executable, "-m", "ratedial", "study", str(tmp_path),
                          "-o", str(tmp_path / "study"), "--bootstrap", "100"],
                         capture_output=True, text=True, timeout=180, check=False)
    assert res.returncode == 0, res.stderr
    df, meta = pyreadstat.read_sav(str(tmp_path / "study.sav"))
    got = {c: (float(df[c][0]), meta.column_names_to_labels[c]) for c in df.columns
           if c.startswith("client_ann_")}
    assert got == {"client_ann_wai_sr": (2.0, "client_ann_wai_sr"),
                   "client_ann_wai_sr_2": (3.0, "client_ann_wai sr"),
                   "client_ann_wai_sr_3": (1.0, "client_ann_wai-sr")}
    from ratedial.analysis.spss import spss_names

    assert spss_names(["x-y", "X_y", "x_Y", "1st"]) == {
        "x-y": "x_y_2", "X_y": "X_y", "x_Y": "x_Y_3", "1st": "v_1st"}


def test_spss_reserved_words_are_renamed(tmp_path):
    """Found by a code review: a column named like an SPSS reserved keyword (ALL AND BY EQ
    GE GT LE LT NE NOT OR TO WITH, any case), e.g. from --annotations, kept its name, which
    SPSS does not accept as a variable name. It is renamed by the rule (v_ before it)."""
    from ratedial.analysis.spss import spss_names, valid_spss

    for word in ("ALL", "and", "By", "EQ", "ge", "GT", "le", "LT", "ne", "NOT", "or", "To",
                 "WITH"):
        assert not valid_spss(word)
    assert valid_spss("total") and valid_spss("v_to") and valid_spss("nott")
    assert spss_names(["to", "v_to", "With", "or_", "1to"]) == {
        "to": "v_to_2", "v_to": "v_to", "With": "v_With", "or_": "or_", "1to": "v_1to"}
    write_dyad(tmp_path, "D01", duration_s=60, seed=1, rate_hz=20)
    sidecar = tmp_path / "scores.csv"
    sidecar.write_text("dyad,to,With\nD01,3,4\n")
    res = subprocess.run([sys.executable, "-m", "ratedial", "study", str(tmp_path),
                          "-o", str(tmp_path / "study"), "--bootstrap", "100",
                          "--annotations", str(sidecar)],
                         capture_output=True, text=True, timeout=180, check=False)
    assert res.returncode == 0, res.stderr
    df, meta = pyreadstat.read_sav(str(tmp_path / "study.sav"))
    got = {c: (float(df[c][0]), meta.column_names_to_labels[c]) for c in ("v_to", "v_With")}
    assert got == {"v_to": (3.0, "to"), "v_With": (4.0, "With")}
    assert not {"to", "With"} & set(df.columns)
