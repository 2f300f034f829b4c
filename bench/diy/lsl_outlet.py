"""An LSL outlet carrying a scripted 1 kHz dial stream (the sequence ``feeder.py`` sends).

Waits for a consumer, then pushes sample ``k`` at ``t0 + k * period`` with ``push_sample``
(channels: generation time in µs of ``CLOCK_MONOTONIC``, count; LSL timestamp: the same
time in s, since ``pylsl.local_clock`` is ``CLOCK_MONOTONIC`` on Linux). Prints
``{"pushed": n}`` when done and keeps the outlet open until stdin closes.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time

import pylsl


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source-id", required=True)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--seconds", type=float, required=True)
    a = ap.parse_args(argv)
    info = pylsl.StreamInfo("bench-dial", "Rating", 2, a.rate, "double64", a.source_id)
    outlet = pylsl.StreamOutlet(info)
    print(json.dumps({"ready": True}), flush=True)
    if not outlet.wait_for_consumers(60):
        print(json.dumps({"error": "no consumer"}), flush=True)
        return 1
    period_us = round(1e6 / a.rate)
    n_total = round(a.rate * a.seconds)
    rng = random.Random(1000)  # dial 0 of feeder.py --seed 1
    count = 0
    t0_us = time.monotonic_ns() // 1000 + 1000
    sent = 0
    while sent < n_total:
        now_us = time.monotonic_ns() // 1000
        due = min(n_total, (now_us - t0_us) // period_us + 1)
        for i in range(sent, due):
            count += rng.choice((-1, 0, 0, 0, 1))
            t_us = t0_us + i * period_us
            outlet.push_sample([float(t_us), float(count)], t_us / 1e6)
        sent = max(sent, due)
        next_us = t0_us + sent * period_us
        wait_s = (next_us - time.monotonic_ns() // 1000) / 1e6
        if wait_s > 0:
            time.sleep(wait_s)  # pacing the stream
    print(json.dumps({"pushed": sent}), flush=True)
    sys.stdin.read()  # keep the outlet until the bench is done
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
