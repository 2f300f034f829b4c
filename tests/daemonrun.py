"""Running ``ratedial run`` as a real subprocess against virtual dials, and reading its file."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def start_daemon(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "ratedial", "run", "--no-scan", "--json",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def query(path: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Read the recording while the daemon writes it (read-only, WAL)."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def wait_until(path: Path, sql: str, predicate: Any, timeout: float = 60.0) -> Any:
    """Poll a query on the recording until ``predicate(value)`` holds; return the value."""
    end = time.monotonic() + timeout
    value = None
    while time.monotonic() < end:
        with contextlib.suppress(sqlite3.Error):
            if path.exists():
                value = query(path, sql)[0][0]
                if value is not None and predicate(value):
                    return value
        time.sleep(0.05)  # polling a condition, not standing in for one
    raise AssertionError(f"timed out waiting on {sql!r}: last value {value!r}")


def finish(proc: subprocess.Popen[str], timeout: float = 120.0) -> tuple[str, str]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    assert "Traceback" not in err + out, err
    return out, err


def epoch_indices(path: Path) -> dict[tuple[str, int], list[int]]:
    """Sorted sample indices per (dial uid, boot id)."""
    out: dict[tuple[str, int], list[int]] = {}
    for uid, boot, idx in query(path, "SELECT d.uid, e.boot_id, s.sample_index FROM samples s "
                                      "JOIN epochs e USING (epoch_id) JOIN dials d "
                                      "ON d.dial_id = s.dial_id ORDER BY 1, 2, 3"):
        out.setdefault((uid, boot), []).append(idx)
    return out


def recorded(path: Path) -> set[tuple[str, int, int]]:
    """Every recorded sample as (dial uid, boot id, index)."""
    return {(u, b, i) for (u, b), idx in epoch_indices(path).items() for i in idx}


def mqtt_progress(path: Path) -> dict[str, object]:
    """The recording's ``mqtt_progress`` meta row (docs/recording.md)."""
    (value,) = query(path, "SELECT value FROM meta WHERE key = 'mqtt_progress'")[0]
    return dict(json.loads(value))


def gap_ranges(path: Path) -> dict[tuple[str, int], list[tuple[int, int, str]]]:
    out: dict[tuple[str, int], list[tuple[int, int, str]]] = {}
    for uid, boot, a, b, reason in query(
            path, "SELECT d.uid, e.boot_id, g.first_index, g.end_index, g.reason FROM gaps g "
                  "JOIN epochs e USING (epoch_id) JOIN dials d ON d.dial_id = g.dial_id "
                  "ORDER BY 1, 2, 3"):
        out.setdefault((uid, boot), []).append((a, b, reason))
    return out


def assert_exact_accounting(path: Path) -> None:
    """Every index from the first received to the last is received or in one gap, once."""
    samples = epoch_indices(path)
    gaps = gap_ranges(path)
    for key, idx in samples.items():
        assert len(idx) == len(set(idx)), f"{key}: duplicate samples"
        covered = set(idx)
        for a, b, _ in gaps.get(key, []):
            span = set(range(a, b))
            assert not span & covered, f"{key}: gap {a}-{b} overlaps samples or another gap"
            covered |= span
        assert covered == set(range(idx[0], idx[-1] + 1)), f"{key}: indices unaccounted for"
