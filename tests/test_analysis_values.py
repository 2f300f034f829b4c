"""Values SQLite accepts but recording.md rules out, inside an otherwise readable file: each
is one line naming the file (exit 1), never a wrong number or numpy's warnings."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ratedial.analysis.synth import Play, SynthMedia, SynthRater, piecewise, write_recording


def _rec(path: Path) -> Path:
    write_recording(path, [SynthRater(label="client", curve=piecewise([5], [50, 80]),
                                      script=(Play(start_s=0, end_s=10),))],
                    media=SynthMedia(duration_s=10.0), rate_hz=100)
    return path


def _analyze(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ratedial", "analyze", str(path),
                           "--no-truth-bias"], text=True, capture_output=True, timeout=120,
                          check=False)


def _one_line(path: Path, *words: str) -> None:
    for args in (["analyze", str(path), "--no-truth-bias"],
                 ["export", str(path), "-o", str(path.with_suffix(""))]):
        res = subprocess.run([sys.executable, "-m", "ratedial", *args], text=True,
                             capture_output=True, timeout=120, check=False)
        assert res.returncode == 1, (args, res.stdout, res.stderr)
        err = res.stderr.strip()
        assert err.count("\n") == 0 and "Traceback" not in err and "Warning" not in err, err
        assert err.startswith(f"ratedial: error: {path}"), err
        for w in words:
            assert w in err, err


@pytest.mark.parametrize(("sql", "words"), [
    # SQLite's SUM counts text as 0: the mean was 69.5 instead of 69.6, min 49.5
    ("UPDATE samples SET rating = 'abc' WHERE sample_index % 100 = 5",
     ["10 samples of epoch 1", "sample 5, rating 'abc'"]),
    ("UPDATE samples SET rating = x'00' WHERE sample_index = 7", ["sample 7, rating b'\\x00'"]),
    # numpy's warnings, 'mean (SD) - (-)' and 'inf' in the CSV
    ("UPDATE samples SET rating = 9e999 WHERE sample_index = 500",
     ["1 sample of epoch 1 has", "rating inf"]),
    ("UPDATE samples SET rating = -9e999 WHERE sample_index = 500", ["rating -inf"]),
    # 'could not convert string to float', exit 2, no file named
    ("UPDATE samples SET media_s = 'x' WHERE sample_index = 300", ["media_s 'x'"]),
    ("UPDATE samples SET media_s = 9e999 WHERE sample_index = 300", ["media_s inf"]),
])
def test_a_sample_that_is_not_a_number_is_named(tmp_path: Path, sql: str, words: list[str]):
    path = _rec(tmp_path / "v.ratedial")
    with sqlite3.connect(path) as con:
        con.execute(sql)
    _one_line(path, "not a finite number", *words)


@pytest.mark.parametrize(("value", "words"), [
    ("{not json", ["meta.scale is not JSON"]),
    ('"0-100"', ["meta.scale is not a JSON object"]),
    ('{"minimum": 7, "maximum": 1}', ["minimum 7 and maximum 1"]),
    ('{"minimum": "a", "maximum": 10}', ["minimum 'a'"]),
    # an integer of 401 digits raised OverflowError in math.isfinite: a traceback
    ('{"minimum": 0, "maximum": 1' + "0" * 400 + '}', ["must be finite numbers"]),
])
def test_a_scale_that_is_not_one_is_named(tmp_path: Path, value: str, words: list[str]):
    """It was read as 0-100 without a word (recording.md says so only when absent)."""
    path = _rec(tmp_path / "s.ratedial")
    with sqlite3.connect(path) as con:
        con.execute("UPDATE meta SET value = ? WHERE key = 'scale'", (value,))
    _one_line(path, *words)


def test_a_scale_left_out_or_null_is_the_assumed_one(tmp_path: Path):
    path = _rec(tmp_path / "n.ratedial")
    with sqlite3.connect(path) as con:
        con.execute("UPDATE meta SET value = 'null' WHERE key = 'scale'")
    res = _analyze(path)
    assert res.returncode == 0 and "neutral band 45 to 55" in res.stdout, res.stderr


@pytest.mark.parametrize(("value", "words"), [
    ("{not json", ["meta.session is not JSON ('{not json')", "is not paired by a guess"]),
    ('"D02"', ['meta.session is not a JSON object ("D02")', 'e.g. {"dyad": "D07"}']),
])
def test_a_session_that_is_not_labels_is_named(tmp_path: Path, value: str, words: list[str]):
    """An audit (2026-12-06): a meta.session that was not JSON was passed over in silence,
    and the recording paired by its video's name instead of its dyad label."""
    path = _rec(tmp_path / "s.ratedial")
    with sqlite3.connect(path) as con:
        con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('session', ?)", (value,))
    _one_line(path, *words)


@pytest.mark.parametrize(("value", "said"), [
    # was: 'has recording format version 1; this ratedial reads version 1'
    ('"1"', 'has meta.format_version "1", which is not a number; this ratedial reads '
            'version 1, written as the JSON number 1'),
    ("true", "has meta.format_version true, which is not a number"),
    ("{bad", "has meta.format_version {bad, which is not a number"),
    ("2", "has recording format version 2; this ratedial reads version 1"),
])
def test_a_format_version_that_is_not_the_number_1_is_named(tmp_path: Path, value: str,
                                                             said: str):
    path = _rec(tmp_path / "f.ratedial")
    with sqlite3.connect(path) as con:
        con.execute("UPDATE meta SET value = ? WHERE key = 'format_version'", (value,))
    _one_line(path, said)


def test_a_format_version_written_as_1_0_is_read(tmp_path: Path):
    path = _rec(tmp_path / "f.ratedial")
    with sqlite3.connect(path) as con:
        con.execute("UPDATE meta SET value = '1.0' WHERE key = 'format_version'")
    res = _analyze(path)
    assert res.returncode == 0, res.stderr
