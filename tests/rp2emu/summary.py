"""Print the one-line summary of ``make rp2emu`` from the figures the tests wrote
(RATEDIAL_RP2EMU_SUMMARY, see tests/test_rp2emu.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def line(fig: dict) -> str:
    try:
        g = fig["rate_1000"]
        exact = "exact" if abs(g["slope_ppm"]) < 0.1 else f"off by {g['slope_ppm']:.3f} ppm"
        return (f"rp2emu: steps injected {fig['injected']} counted {fig['counted']} "
                f"missed {fig['missed']} phantom {fig['phantom']}; 1000 Hz period_us {exact} "
                f"over {g['span_us'] / 1e6:.1f} s; CPU {fig['cpu_1000']['busy_pct']:.0f}% at 1 kHz"
                + _two_khz(fig))
    except KeyError as e:
        return f"rp2emu: incomplete run (no figure {e.args[0]!r}: see the test output above)"


def _two_khz(fig: dict) -> str:
    g, cpu = fig.get("rate_2000"), fig.get("cpu_2000")
    if not g or not cpu:
        return "; 2 kHz case did not run"
    return (f"; 2 kHz over {g['span_us'] / 1e6:.1f} s: {g['dropped']} samples dropped, "
            f"CPU {cpu['busy_pct']:.0f}%")


if __name__ == "__main__":
    p = Path(sys.argv[1])
    print(line(json.loads(p.read_text())) if p.exists() else
          "rp2emu: no figures (the emulated-Pico tests were skipped or did not start)")
