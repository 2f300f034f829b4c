"""Bounded atheris runs for `make test` (tests/fuzz/): the same inputs every run, and a
failure that shows what crashed.

A fixed seed and a bounded number of runs make the search reproducible: a test run fails
only when the code changed, never because this run's random walk found something an earlier
one missed (``make fuzz`` searches with fresh seeds, at length). libFuzzer prints the
target's traceback on stdout and writes the crashing input beside it; both go into the
assertion message, so a CI log alone is enough to add the input to the corpus.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

SEED = 20261205
RUNS = 20_000


def run_target(script: Path, corpus: Path, cwd: Path, *, env: dict[str, str] | None = None,
               extra: tuple[str, ...] = ()) -> None:
    """Run ``script`` over ``corpus``; assert it finishes its runs without a crash."""
    proc = subprocess.run(
        [sys.executable, str(script), str(corpus), f"-seed={SEED}", f"-runs={RUNS}",
         "-max_total_time=60", "-timeout=5", "-rss_limit_mb=1024", *extra],
        capture_output=True, text=True, timeout=240, check=False, cwd=cwd,
        env=env if env is not None else dict(os.environ),
    )
    if proc.returncode != 0:
        found = [f"{p.name}: {p.read_bytes()[:2000]!r} (base64 "
                 f"{base64.b64encode(p.read_bytes()).decode()[:4000]})"
                 for p in sorted(cwd.glob("crash-*")) + sorted(cwd.glob("timeout-*"))
                 + sorted(cwd.glob("oom-*"))]
        raise AssertionError(
            f"{script.name} exited {proc.returncode}\n--- target output (traceback) ---\n"
            f"{proc.stdout[-4000:]}\n--- libFuzzer ---\n{proc.stderr[-1500:]}\n"
            f"--- inputs written ---\n" + "\n".join(found))
    assert "Done" in proc.stderr or "DONE" in proc.stderr, proc.stderr[-2000:]
