"""Analysis of a long session: 60 minutes at 1 kHz, two raters (7.2 million sample rows).

Measured, each in a fresh process so that peak memory (``ru_maxrss``) belongs to one job:

* ``ours``: :func:`ratedial.analysis.load.load` (SQLite aggregates the samples of each epoch
  into grid-bin groups, streamed out in chunks; epochs read by forked workers when that is
  safe) + pairing + every figure of ``ratedial analyze`` (bootstrap CIs, lag search, ...).
* ``ours_sequential``: the same with one process (``workers=1``): the single-core figure,
  and the honest peak memory (with workers, each worker holds about half of it).
* ``baseline``: the naive way: ``pandas.read_sql`` of the whole samples table, then a
  ``groupby`` onto the same 10 Hz grid (mean of all samples per bin; no passes, no gaps
  accounting). Only loading and aligning: the analysis after it would cost the same.

The ratios compare load+align of the baseline with load+align+analyse of ours, on the same
file in the same run. The machine may be shared (other jobs running): compare ratios, not
absolute times, across runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DURATION_S = 3600.0
RATE_HZ = 1000.0

# Peak memory is /proc/self/status VmHWM (the peak resident set of this process); ru_maxrss
# would not do: Linux carries it over from the parent across fork and exec.
HWM = r"""
def vm(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0
"""

OURS = HWM + r"""
import json, sys, time
from ratedial.analysis.load import load
from ratedial.analysis.groups import group_series
from ratedial.analysis.analyse import analyse_group
import numpy, scipy.stats, scipy.signal  # imports are not part of the measurement
rss0 = vm("VmRSS")
t0 = time.perf_counter()
series = load([sys.argv[1]], workers=int(sys.argv[2]))
t1 = time.perf_counter()
(group,) = group_series(series)
result = analyse_group(group)
t2 = time.perf_counter()
numpy.save(sys.argv[3], numpy.vstack([s.values for s in group.series]))
print(json.dumps({"load_align_s": t1 - t0, "analyse_s": t2 - t1, "total_s": t2 - t0,
                  "rss_before_kb": rss0, "peak_rss_kb": vm("VmHWM"),
                  "r": result.pair.agreement.pearson.value}))
"""

BASELINE = HWM + r"""
import json, sqlite3, sys, time
import numpy, pandas as pd
rss0 = vm("VmRSS")
t0 = time.perf_counter()
con = sqlite3.connect(sys.argv[1])
df = pd.read_sql("SELECT dial_id, sample_index, media_s, media_state, rating FROM samples", con)
df = df[(df.media_state == 1) & df.media_s.notna()]
df["bin"] = numpy.floor(df.media_s * 10 + 1e-9).astype("int64")
grid = df.groupby(["dial_id", "bin"]).rating.mean().unstack(0).sort_index()
t1 = time.perf_counter()
numpy.save(sys.argv[2], grid.to_numpy().T)
print(json.dumps({"load_align_s": t1 - t0, "rss_before_kb": rss0,
                  "peak_rss_kb": vm("VmHWM")}))
"""


def _child(code: str, *args: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         check=True, timeout=900)
    res: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return res


def _mb(kb: float) -> float:
    return round(kb / 1024, 1)


def run() -> dict[str, object]:
    import numpy as np

    from ratedial.analysis.synth import (
        SynthMedia,
        mixed,
        shifted,
        simple_rater,
        smooth_random,
        write_recording,
    )

    with tempfile.TemporaryDirectory(prefix="ratedial-bench-") as tmp:
        d = Path(tmp)
        path = d / "long.ratedial"
        t0 = time.perf_counter()
        client = smooth_random(1, DURATION_S + 20)
        therapist = mixed(shifted(client, 1.0), smooth_random(2, DURATION_S + 20), 0.6)
        written = write_recording(
            path, [simple_rater("client", client, DURATION_S, uid="aa"),
                   simple_rater("therapist", therapist, DURATION_S, uid="bb")],
            media=SynthMedia(duration_s=DURATION_S), rate_hz=RATE_HZ, session={"dyad": "D01"})
        write_s = time.perf_counter() - t0
        ours = _child(OURS, str(path), "0", str(d / "ours.npy"))
        seq = _child(OURS, str(path), "1", str(d / "seq.npy"))
        base = _child(BASELINE, str(path), str(d / "base.npy"))
        a, b = np.load(d / "ours.npy"), np.load(d / "base.npy")
        diff = float(np.nanmax(np.abs(a[:, : b.shape[1]] - b)))
        return {
            "session": f"{DURATION_S / 60:.0f} min at {RATE_HZ:.0f} Hz, 2 raters",
            "sample_rows": written.samples,
            "file_mb": round(path.stat().st_size / 1e6, 1),
            "synth_write_s": round(write_s, 2),
            "ours_load_align_s": round(ours["load_align_s"], 2),
            "ours_analyse_s": round(ours["analyse_s"], 2),
            "ours_total_s": round(ours["total_s"], 2),
            "ours_peak_rss_mb": _mb(ours["peak_rss_kb"]),
            "ours_rss_growth_mb": _mb(ours["peak_rss_kb"] - ours["rss_before_kb"]),
            "ours_sequential_total_s": round(seq["total_s"], 2),
            "ours_sequential_peak_rss_mb": _mb(seq["peak_rss_kb"]),
            "ours_sequential_rss_growth_mb": _mb(seq["peak_rss_kb"] - seq["rss_before_kb"]),
            "baseline_load_align_s": round(base["load_align_s"], 2),
            "baseline_peak_rss_mb": _mb(base["peak_rss_kb"]),
            "baseline_rss_growth_mb": _mb(base["peak_rss_kb"] - base["rss_before_kb"]),
            "time_ratio_baseline_over_ours": round(base["load_align_s"] / ours["total_s"], 2),
            "time_ratio_baseline_over_ours_sequential": round(
                base["load_align_s"] / seq["total_s"], 2),
            "memory_growth_ratio_baseline_over_ours": round(
                (base["peak_rss_kb"] - base["rss_before_kb"])
                / max(1.0, seq["peak_rss_kb"] - seq["rss_before_kb"]), 1),
            "max_abs_diff_vs_baseline": diff,
            "pearson_r": round(ours["r"], 4),
        }


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
