"""The two serial readers side by side: ``asyncio`` (the event loop waits on the port; Linux
and macOS default) and ``thread`` (a thread blocked in ``Serial.read``; Windows default).

One run, the same virtual dial settings and seed for both (100 ppm drift, a 30-bit tick that
wraps during the run, the jittery USB link model), recorded by ``ratedial run --serial-io
...`` one after the other; from each recording the clock error after 30 s against the
simulator's ground truth (bench_daemon's figures: the online model, arrival stamping and an
LSL-style min-RTT offset on the same data) and the daemon's CPU time per second.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from bench_daemon import WARMUP_S, _clock_figures, _cpu_seconds  # noqa: E402
from ratedial.virtual import VirtualDial  # noqa: E402

RUN_S = 45
SEED = 100


def _record(io: str, workdir: Path) -> dict[str, Any]:
    with VirtualDial(seed=SEED, drift_ppm=100.0, wrap_bits=30,
                     tick_start_us=(1 << 30) - 10_000_000, subprocess=True) as dial:
        path = workdir / f"serial-{io}.ratedial"
        proc = subprocess.Popen(
            [sys.executable, "-m", "ratedial", "run", "--no-scan", "--broker", "none",
             "--serial-io", io, "--port", dial.port, "--record", str(path),
             "--duration", str(RUN_S), "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        cpu = 0.0
        while proc.poll() is None:
            try:
                cpu = _cpu_seconds(proc.pid)
            except (OSError, IndexError):
                break
            time.sleep(0.5)  # sampling the CPU counter, not synchronising
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"ratedial run --serial-io {io} failed: {err[-500:]}")
        truths = {t.uid: t for t in dial.truth()}
    figures = _clock_figures(path, truths)
    figures["cpu_percent"] = round(100 * cpu / RUN_S, 1)
    return figures


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        results = {io: _record(io, Path(tmp)) for io in ("asyncio", "thread")}
    a, t = results["asyncio"]["ratedial"]["rms_us"], results["thread"]["ratedial"]["rms_us"]
    return {
        "what": f"virtual dial seed {SEED}, 100 ppm drift, tick wrap, jittery USB link model; "
                f"{RUN_S} s per reader, errors after {WARMUP_S} s; --broker none",
        "readers": results,
        "ratio_rms_thread_vs_asyncio": round(t / a, 2),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1))
