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
