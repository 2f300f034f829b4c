"""`make demo` runs `ratedial demo`: two virtual dials, the daemon, an embedded broker."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys


def test_demo_records_both_raters_and_says_where(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ratedial", "demo", "--seconds", "6"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "embedded MQTT broker on mqtt://127.0.0.1:" in proc.stdout
    assert "what the recording holds:" in proc.stdout
    (path,) = (tmp_path / "recordings").glob("demo-*.ratedial")
    assert str(path.name) in proc.stdout
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    con = sqlite3.connect(path)
    per_rater = dict(con.execute(
        "SELECT d.rater, count(*) FROM samples s JOIN dials d USING (dial_id) GROUP BY d.rater"))
    con.close()
    assert set(per_rater) == {"client", "therapist"}
    assert all(n > 3000 for n in per_rater.values()), per_rater  # about 6 s at 1 kHz each
    for rater, n in per_rater.items():
        assert f"{rater}: {n:,} samples" in proc.stdout
