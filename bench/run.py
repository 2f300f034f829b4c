"""Run every benchmark and write bench/results/latest.json (and a dated copy).

Each benchmark module ``bench/bench_*.py`` exposes ``run() -> dict``. Comparisons are made
inside one module, in the same process run and on the same data, and reported as ratios.
A full run (no arguments) ends by writing docs/performance.md with ``bench/report.py``.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def machine() -> dict[str, object]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, cwd=HERE, check=False).stdout.strip()
    except OSError:
        commit = ""
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "commit": commit,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(HERE))
    names = argv or sorted(p.stem for p in HERE.glob("bench_*.py"))
    here = machine()
    results: dict[str, object] = {"machine": here}
    for name in names:
        mod = importlib.import_module(name)
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        res = mod.run()
        res["wall_s"] = round(time.perf_counter() - t0, 2)
        # which code and when: a partial run leaves the other modules' figures as they were
        res["ran"] = {"commit": here["commit"], "date": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                      time.gmtime())}
        results[name.removeprefix("bench_")] = res
        print(json.dumps(res, indent=1), flush=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "latest.json"
    if argv and out.exists():  # a partial run updates only the benchmarks it ran
        merged = json.loads(out.read_text())
        results.pop("machine")  # the full run's stays: each module says when it ran
        merged.update(results)
        results = merged
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")
    if not argv:  # a full run also regenerates docs/performance.md and its figures
        import report

        report.main([str(out)])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
