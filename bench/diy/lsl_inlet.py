"""An LSL inlet that stamps every sample of ``lsl_outlet.py``'s stream when it is pulled.

Prints ``{"received": n, "latency_ms": [...]}`` (generation time to ``pull_sample``
returning, per sample) after ``--samples`` samples or 5 s without one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import pylsl


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source-id", required=True)
    ap.add_argument("--samples", type=int, required=True)
    a = ap.parse_args(argv)
    found = pylsl.resolve_byprop("source_id", a.source_id, timeout=30)
    if not found:
        print(json.dumps({"error": "stream not found"}), flush=True)
        return 1
    inlet = pylsl.StreamInlet(found[0], max_buflen=60)
    inlet.open_stream(timeout=30)
    lat: list[float] = []
    seen: set[int] = set()
    while len(seen) < a.samples:
        sample, _ts = inlet.pull_sample(timeout=5.0)
        now = time.monotonic_ns()
        if sample is None:
            break
        t_us = int(sample[0])
        if t_us not in seen:
            seen.add(t_us)
            lat.append(round((now - t_us * 1000) / 1e6, 4))
    print(json.dumps({"received": len(seen), "latency_ms": lat}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
