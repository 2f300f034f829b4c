"""docs/recording.md is the schema (issue 15).

* The page's tables, turned into SQL by this test (never from ``schema.py``), give a
  database equal to ``schema.DDL`` column for column: names, types, NOT NULL, keys.
* A recording written using only the page (its column lists, meta keys and value codes) is
  read by ``ratedial analyze``, ``export``, ``plot`` and ``review --no-video`` like one of
  ours, and ``analyze --json`` output validates against docs/schemas/analyze.schema.json.
* The media fingerprint, computed by the page's recipe, equals ratedial's, and the page's
  worked examples are right.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ratedial.recording.schema import DDL

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "recording.md"


@dataclass
class DocTable:
    name: str
    columns: list[tuple[str, str]] = field(default_factory=list)  # (name, declared type)
    primary_key: tuple[str, ...] = ()
    unique: list[tuple[str, ...]] = field(default_factory=list)
    without_rowid: bool = False

    def ddl(self) -> str:
        parts = [f"{n} {t}" for n, t in self.columns]
        if self.primary_key:
            parts.append(f"PRIMARY KEY ({', '.join(self.primary_key)})")
        parts += [f"UNIQUE ({', '.join(u)})" for u in self.unique]
        tail = " WITHOUT ROWID" if self.without_rowid else ""
        return f"CREATE TABLE {self.name} (\n  " + ",\n  ".join(parts) + f"\n){tail};"


def _names(text: str) -> tuple[str, ...]:
    return tuple(re.findall(r"\w+", text))


def parse_doc(text: str | None = None) -> dict[str, DocTable]:
    """Every ``### `table``` section of the page's "Tables" part, read from its column table
    (``| column | type | meaning |``) and the *Primary key* / *Unique* / *Without rowid*
    lines under it."""
    text = DOC.read_text(encoding="utf-8") if text is None else text
    part = text[text.index("## Tables"):]
    part = part[:part.index("\n## ", 1)]
    tables: dict[str, DocTable] = {}
    for section in re.split(r"^### ", part, flags=re.M)[1:]:
        head, _, body = section.partition("\n")
        name = head.strip().strip("`")
        t = DocTable(name)
        in_columns = False
        for line in body.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if line.startswith("| column | type |"):
                in_columns = True
                continue
            if in_columns and line.startswith("|"):
                if set(cells[0]) <= {"-"}:
                    continue
                t.columns.append((cells[0].strip("`"), cells[1].strip("`")))
                continue
            in_columns = False
            if m := re.match(r"Primary key: `\(([^)]*)\)`", line):
                t.primary_key = _names(m.group(1))
            for m in re.finditer(r"Unique: `\(([^)]*)\)`", line):
                t.unique.append(_names(m.group(1)))
            if re.search(r"\bWithout rowid\b", line):
                t.without_rowid = True
        tables[name] = t
    return tables


def doc_ddl() -> str:
    return "\n".join(t.ddl() for t in parse_doc().values())


def _shape(con: sqlite3.Connection) -> dict[str, Any]:
    """Everything about the tables that a reader or writer depends on."""
    out: dict[str, Any] = {}
    for (name, sql) in con.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"):
        cols = [(r[1], r[2].upper(), r[3], r[5])
                for r in con.execute(f"PRAGMA table_info({name})")]
        uniques = set()
        for idx in con.execute(f"PRAGMA index_list({name})"):
            if idx[2] and idx[3] == "u":  # unique, from a UNIQUE constraint
                uniques.add(tuple(r[2] for r in con.execute(f"PRAGMA index_info({idx[1]})")))
        out[name] = {"columns": cols, "unique": uniques,
                     "without_rowid": "WITHOUT ROWID" in sql.upper()}
    return out


def test_the_page_lists_every_table_and_column_of_the_schema():
    ours = sqlite3.connect(":memory:")
    ours.executescript(DDL)
    theirs = sqlite3.connect(":memory:")
    theirs.executescript(doc_ddl())
    a, b = _shape(ours), _shape(theirs)
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name] == b[name], name


def test_the_pages_codes_are_the_schemas():
    from ratedial.recording.schema import FORMAT, FORMAT_VERSION, MediaState

    text = DOC.read_text(encoding="utf-8")
    m = re.search(r"^\| `media_state` \| `INTEGER NOT NULL` \| (.*) \|$", text, flags=re.M)
    assert m is not None
    names = {MediaState.NONE: "no player"}
    assert m.group(1) == ", ".join(f"{int(s)} {names.get(s, s.name.lower())}"
                                   for s in MediaState)
    assert f'`"{FORMAT}"`, `{FORMAT_VERSION}`' in text


# --- a recording from the page alone ---------------------------------------------------------

RATE_HZ = 100
DURATION_S = 120.0


def _insert(con: sqlite3.Connection, doc: dict[str, DocTable], table: str,
            **row: Any) -> None:
    """Insert by the page's column names; a name the page does not list fails here."""
    known = {n for n, _ in doc[table].columns}
    assert set(row) <= known, set(row) - known
    names = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    con.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", tuple(row.values()))


def write_from_doc(path: Path, *, rater: str, curve: Any, fingerprint: str) -> None:
    doc = parse_doc()
    con = sqlite3.connect(path)
    con.executescript(doc_ddl())
    meta = {"format": "ratedial-recording", "format_version": 1,
            "session": {"dyad": "X01"},
            "scale": {"minimum": 0, "maximum": 100, "start": 50, "counts_per_point": 1,
                      "anchors": {"0": "hindering", "50": "neutral", "100": "helpful"}}}
    for k, v in meta.items():
        _insert(con, doc, "meta", key=k, value=json.dumps(v))
    _insert(con, doc, "dials", dial_id=1, uid=f"{abs(hash(rater)) % 16**16:016x}",
            rater=rater, board="converted", firmware="n/a", backend="n/a")
    hello = {"rate_hz": RATE_HZ, "period_us": 10_000, "boot_id": 7}
    _insert(con, doc, "epochs", epoch_id=1, dial_id=1, boot_id=7, first_host_ns=0,
            hello=json.dumps(hello))
    _insert(con, doc, "media", media_id=1, path="X01.mp4", duration_s=DURATION_S, fps=25.0,
            fingerprint=fingerprint)
    _insert(con, doc, "events", host_ns=0, dial_id=None, kind="media_load",
            data=json.dumps({"media_id": 1, "path": "X01.mp4", "duration_s": DURATION_S}))
    gap = range(3000, 3050)  # half a second lost on the link
    n = int(DURATION_S * RATE_HZ)
    for i in range(n):
        if i in gap:
            continue
        t = i / RATE_HZ
        _insert(con, doc, "samples", epoch_id=1, sample_index=i, dial_id=1,
                device_us=i * 10_000, host_ns=i * 10_000_000, count=0,
                rating=float(curve(t)), flags=0, media_id=1, media_s=t, media_state=1)
    _insert(con, doc, "gaps", epoch_id=1, dial_id=1, first_index=gap.start,
            end_index=gap.stop, reason="link", first_host_ns=gap.start * 10_000_000,
            end_host_ns=gap.stop * 10_000_000)
    _insert(con, doc, "clock_models", epoch_id=1, host_ns=1_000_000_000, ref_device_us=0,
            ref_host_ns=0, skew_ppm=0.0, uncertainty_ns=50_000, n_obs=10,
            skew_uncertainty_ppm=1.0)
    _insert(con, doc, "wall_anchors", host_ns=0, wall_ns=1_790_000_000_000_000_000)
    con.commit()
    con.close()


def _run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ratedial", *args], input=stdin, text=True,
                          capture_output=True, timeout=180, check=False)


def test_a_recording_written_from_the_page_works_in_every_command(tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    fp = "rdfp1:" + "0" * 64  # a video we do not have: review --no-video never checks it
    client, therapist = tmp_path / "X01-client.ratedial", tmp_path / "X01-therapist.ratedial"

    def client_curve(t: float) -> float:
        return 50 + 40 * math.sin(2 * math.pi * t / 60)

    def therapist_curve(t: float) -> float:
        return 50 + 30 * math.sin(2 * math.pi * (t - 2) / 60)

    write_from_doc(client, rater="client", curve=client_curve, fingerprint=fp)
    write_from_doc(therapist, rater="therapist", curve=therapist_curve, fingerprint=fp)

    res = _run("analyze", str(client), str(therapist), "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    schema = json.loads((ROOT / "docs" / "schemas" / "analyze.schema.json").read_text())
    jsonschema.validate(out, schema)
    (dyad,) = out["dyads"]
    assert dyad["dyad"] == "X01" and dyad["media"]["fingerprint"] == fp
    c, t = dyad["raters"]
    assert (c["rater"], t["rater"]) == ("client", "therapist")
    assert len(c["segments"]) >= 2
    assert c["gaps"] == 1 and c["missing_samples"] == 50
    assert c["mean"] == pytest.approx(50, abs=1.5)
    assert dyad["pair"]["pearson"]["value"] > 0.9
    assert dyad["pair"]["best_lag_s"] == pytest.approx(2.0, abs=0.3)

    res = _run("analyze", str(client), str(therapist))
    assert res.returncode == 0 and "Pearson r" in res.stdout, res.stderr

    res = _run("export", str(client), str(therapist), "-o", str(tmp_path / "x"))
    assert res.returncode == 0, res.stderr
    long = (tmp_path / "x.long.csv").read_text().splitlines()
    assert long[0].startswith("dyad,media,rater")
    assert len(long) == 1 + 2 * int(DURATION_S * 10)

    res = _run("plot", str(client), str(therapist), "-o", str(tmp_path / "fig"),
               "--format", "png")
    assert res.returncode == 0, res.stderr
    assert list((tmp_path / "fig").glob("*.png"))

    res = _run("review", str(client), "--no-video", stdin="".join(
        f"note {i}\n\n" for i in range(1, 7)))
    assert res.returncode == 0, res.stderr + res.stdout
    con = sqlite3.connect(client)
    notes = con.execute("SELECT wall_ns, kind, data FROM notes").fetchall()
    con.close()
    assert [k for _, k, _ in notes] == ["segment_note"] * len(c["segments"])
    assert json.loads(notes[0][2])["text"] == "note 1"


# --- the fingerprint, by the page's recipe ----------------------------------------------------


def _doc_fingerprint(data: bytes) -> str:
    """docs/recording.md, "The media fingerprint", step by step."""
    mib = 1048576
    size = len(data)
    head = data[:min(size, mib)]
    tail = b"" if size <= mib else data[max(mib, size - mib):]
    return "rdfp1:" + hashlib.sha256(size.to_bytes(8, "little") + head + tail).hexdigest()


@pytest.mark.parametrize("size", [0, 26, 1048576, 1048577, 1572864, 3 << 20])
def test_fingerprint_by_the_page_equals_ratedials(tmp_path, size):
    identity = pytest.importorskip("ratedial.players.identity")
    data = bytes((i * 7 + 3) % 256 for i in range(size))
    f = tmp_path / "v.bin"
    f.write_bytes(data)
    assert identity.fingerprint(str(f)) == _doc_fingerprint(data)


def test_the_pages_worked_examples(tmp_path):
    identity = pytest.importorskip("ratedial.players.identity")
    text = DOC.read_text(encoding="utf-8")
    examples = re.findall(r"rdfp1:[0-9a-f]{64}", text)
    assert len(examples) == 2
    letters = tmp_path / "letters"
    letters.write_bytes(b"abcdefghijklmnopqrstuvwxyz")
    big = tmp_path / "big"
    big.write_bytes(bytes(i % 251 for i in range(3 << 20)))
    assert [identity.fingerprint(str(letters)), identity.fingerprint(str(big))] == examples


# --- the virtual dial's ground-truth file ----------------------------------------------------


def _truth_keys() -> dict[str, str]:
    text = DOC.read_text(encoding="utf-8")
    part = text[text.index("## The virtual dial's ground-truth file"):]
    part = part[:part.index("\n## ", 1)]
    rows = re.findall(r"^\| `(\w+)` \| (\w+) \|", part, flags=re.M)
    return dict(rows)


def _doc_host_ns(line: dict[str, Any], device_us: int, near_ns: int) -> int:
    """The page's three steps, written from the page."""
    def host(d: int) -> int:
        e = max(0, d - 1)
        while e + (e * line["drift_ppb"]) // 10**9 < d:
            e += 1
        while e > 0 and (e - 1) + ((e - 1) * line["drift_ppb"]) // 10**9 >= d:
            e -= 1
        return int(line["mono0_ns"] + 1000 * e)

    cands = [device_us - line["tick_start"] + w * 2 ** line["wrap_bits"] for w in (0, 1)]
    return min((host(d) for d in cands if d >= 0), key=lambda h: abs(h - near_ns))


def test_a_virtual_dials_truth_file_is_as_the_page_says(tmp_path):
    from ratedial.virtual.truth import read_truth

    truth = tmp_path / "truth.jsonl"
    subprocess.run([sys.executable, "-m", "ratedial", "virtual-dial", "--duration", "0.5",
                    "--drift-ppm", "150", "--tick-start-us", str(2**30 - 200_000),
                    "--truth", str(truth)], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=60, check=False)
    lines = [json.loads(x) for x in truth.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 1
    (line,) = lines
    types = {"string": str, "integer": int, "number": (int, float)}
    keys = _truth_keys()
    assert set(keys) == set(line)
    for k, t in keys.items():
        assert isinstance(line[k], types[t]), (k, line[k])
    assert line["drift_ppb"] == 150_000 and line["tick_start"] == 2**30 - 200_000
    (boot,) = read_truth(truth)
    assert read_truth(str(truth)) == [boot]  # as the page writes it: read_truth(path)
    for offset_us in (0, 150_000, 199_999, 200_000, 900_000, 10_000_000):
        device_us = line["tick_start"] + offset_us - (2**30 if offset_us >= 200_000 else 0)
        near = line["mono0_ns"] + offset_us * 1000
        assert _doc_host_ns(line, device_us, near) == boot.host_ns(device_us, near_ns=near)


def test_the_pages_pandas_recipe_tells_a_reboots_samples_apart(tmp_path):
    """The page's "Reading a recording" code, run as printed on a recording whose dial
    rebooted (indices start again at 0): every row is one sample, told apart by its
    ``(epoch_id, sample_index)``, and every gap joins its epoch. An audit: the recipe
    selected no epoch_id, so a rater's rows after a reboot repeated indices that could not
    be told apart or joined to ``gaps``."""
    pd = pytest.importorskip("pandas")
    from ratedial.analysis.synth import (
        Play,
        Reboot,
        SynthMedia,
        SynthRater,
        constant,
        write_recording,
    )

    path = tmp_path / "session.ratedial"
    write_recording(path, [SynthRater(label="client", curve=constant(40), script=(
        Play(start_s=0, end_s=10, gaps=((4, 5, "crc"),)), Reboot(),
        Play(start_s=10, end_s=20, gaps=((14, 15, "crc"),))))],
        media=SynthMedia(duration_s=20.0), rate_hz=50)
    text = DOC.read_text(encoding="utf-8")
    part = text[text.index("## Reading a recording"):]
    code = part[part.index("```python\n") + 10:part.index("\n```", part.index("```python"))]
    found: dict[str, Any] = {}
    assert code.count("file:session.ratedial?") == 1
    exec(compile(code.replace("file:session.ratedial?", f"file:{path}?"), "recording.md",
                 "exec"), found)
    samples, gaps = found["samples"], found["gaps"]
    (n,) = sqlite3.connect(path).execute("SELECT count(*) FROM samples").fetchone()
    assert len(samples) == n
    assert {"epoch_id", "dial_id"} <= set(samples.columns)
    assert samples["sample_index"].duplicated().any()  # the reboot: indices start again
    assert not samples.duplicated(["dial_id", "epoch_id", "sample_index"]).any()
    assert samples["epoch_id"].nunique() == 2 and len(gaps) == 2
    # each gap's indices are missing from its own epoch's rows, and only there
    for g in gaps.itertuples():
        mine = samples[samples["epoch_id"] == g.epoch_id]["sample_index"]
        assert not mine.between(g.first_index, g.end_index - 1).any()
        assert mine.min() < g.first_index and mine.max() >= g.end_index
    assert isinstance(samples, pd.DataFrame)
