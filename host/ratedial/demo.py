"""``make demo``: two virtual dials (client and therapist) through the daemon.

The real firmware runs twice under MicroPython with simulated encoders, drifting clocks
and seeded random-walk raters, behind pseudo-terminals; ``ratedial run`` records them
with an embedded MQTT broker, shows the live view, and ends by saying where the recording
is and what it holds.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from rich.console import Console

from .config import MqttConfig, RunConfig
from .daemon.app import print_summary, serve

TABLES = ("dials", "epochs", "samples", "gaps", "events", "sync_obs", "arrivals",
          "clock_models")


def describe(path: Path) -> list[str]:
    """One line per table with its row count, and per rater the rating range."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        lines = [f"  {t:13s} {con.execute(f'SELECT count(*) FROM {t}').fetchone()[0]:>9,} rows"
                 for t in TABLES]
        for rater, n, lo, hi, mean in con.execute(
                "SELECT d.rater, count(*), min(rating), max(rating), avg(rating) "
                "FROM samples s JOIN dials d USING (dial_id) GROUP BY s.dial_id"):
            lines.append(f"  {rater or '-'}: {n:,} samples, rating {lo:.0f}-{hi:.0f}, "
                         f"mean {mean:.1f}")
        return lines
    finally:
        con.close()


def run_demo(*, seconds: float, seed: int) -> None:
    from .virtual import VirtualDial

    console = Console()
    console.print("starting two virtual dials (the real firmware under MicroPython)…",
                  highlight=False)
    path = Path("recordings") / time.strftime("demo-%Y%m%d-%H%M%S.ratedial")
    # Each virtual dial runs in its own processes, as a real dial is its own device.
    with VirtualDial(seed=seed, drift_ppm=80.0, subprocess=True) as client, \
            VirtualDial(seed=seed + 1, drift_ppm=-40.0, subprocess=True) as therapist:
        cfg = RunConfig(
            ports=(client.port, therapist.port),
            raters={"client": client.port, "therapist": therapist.port},
            record=str(path), duration_s=seconds, scan=False,
            session={"demo": True}, mqtt=MqttConfig(broker="embedded"))
        summary = serve(cfg, console=console, argv=["ratedial", "demo"])
    print_summary(console, summary)
    console.print("what the recording holds:", highlight=False)
    for line in describe(summary.path):
        console.print(line, highlight=False)
