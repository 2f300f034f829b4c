"""bench/report.py's machine section: a module run again after the full run says so."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import report


def test_a_module_run_after_the_full_run_is_named_with_its_commit():
    res = {"machine": {"cpu": "x", "cores": 2, "commit": "aaaa111", "date": "D0"},
           "codec": {"ran": {"commit": "aaaa111", "date": "D0"}},
           "peers": {"ran": {"commit": "bbbb222", "date": "D1"}},
           "clock": {}}  # from before modules were stamped: taken as the full run's
    text = "\n".join(report._machine(res))
    assert "peers (commit bbbb222, D1)" in text
    assert "codec (commit" not in text and "clock (commit" not in text
    assert "Run again after the full run" in text
    res["peers"]["ran"]["commit"] = "aaaa111"
    assert "Run again" not in "\n".join(report._machine(res))
