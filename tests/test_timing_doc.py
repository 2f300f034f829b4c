"""timing.md's offline recipe, run as the page gives it, on a closed recording."""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

from ratedial.analysis.synth import Play, SynthMedia, SynthRater, constant, write_recording

DOC = Path(__file__).resolve().parents[1] / "docs" / "timing.md"


def test_the_offline_recipe_leaves_nothing_beside_a_closed_recording(tmp_path, monkeypatch):
    """An audit (2026-12-05): the recipe opened `mode=ro` only, which left an empty
    session.ratedial-wal and a 32 KiB -shm beside a closed recording (recording.md: a
    closed recording has none)."""
    path = tmp_path / "session.ratedial"
    write_recording(path, [SynthRater(label="client", curve=constant(50),
                                      script=(Play(start_s=0, end_s=1),))],
                    media=SynthMedia(duration_s=1.0), rate_hz=100)
    with sqlite3.connect(path) as con:  # as the daemon writes it
        assert con.execute("PRAGMA journal_mode=WAL").fetchone() == ("wal",)
    con.close()
    assert sorted(os.listdir(tmp_path)) == ["session.ratedial"]
    block = DOC.read_text(encoding="utf-8").split("### Recomputing offline", 1)[1]
    code = re.search(r"```python\n(.*?)```", block, re.S)
    assert code is not None
    opening = [ln for ln in code.group(1).splitlines()
               if ln.startswith(("import sqlite3", "db = "))]
    monkeypatch.chdir(tmp_path)
    scope: dict[str, object] = {}
    exec("\n".join(opening), scope)  # the page's own lines
    db = scope["db"]
    assert isinstance(db, sqlite3.Connection)
    assert db.execute("SELECT count(*) FROM sync_obs").fetchone() == (0,)
    db.close()
    assert sorted(os.listdir(tmp_path)) == ["session.ratedial"]
    # the whole recipe runs as printed (an audit: it used an `epoch` it never defined)
    scope = {}
    exec(code.group(1), scope)
    assert isinstance(scope["epoch"], int) and scope["estimate"] is None  # no observations
    scope["db"].close()  # type: ignore[attr-defined]
    assert sorted(os.listdir(tmp_path)) == ["session.ratedial"]
