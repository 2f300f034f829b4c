"""The live terminal view (rich) and its plain-text twin for logs and pipes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .dialview import DialView


def _bar(rating: float | None, lo: float, hi: float, width: int = 20) -> Text:
    if rating is None:
        return Text("-" * width, style="dim")
    filled = round((rating - lo) / (hi - lo) * width)
    return Text("█" * filled, style="green") + Text("·" * (width - filled), style="dim")


def table(views: list[DialView], *, lo: float, hi: float, broker: str,
          elapsed_s: float, recording: str, player: str = "") -> Table:
    t = Table(title=f"ratedial  {elapsed_s:6.1f} s   broker: {broker}   {player}"
                    f"recording: {recording}",
              title_justify="left", expand=False)
    for col in ("rater", "dial", "link", "rating", "", "samples/s", "received", "missing",
                "rejected", "latency ms", "dial ppm", "± µs"):
        t.add_column(col, justify="right" if col not in ("rater", "dial", "link", "") else "left")
    for v in views:
        state_style = {"connected": "green", "lost": "bold red"}.get(v.state, "yellow")
        t.add_row(
            v.rater or "-", v.uid, Text(v.state, style=state_style),
            "-" if v.rating is None else f"{v.rating:5.1f}", _bar(v.rating, lo, hi),
            f"{v.rate_hz:6.0f}", str(v.received),
            Text(str(v.missing), style="bold red" if v.missing else ""), str(v.rejected),
            _fmt(v.latency_ms, "{:.1f}"), _fmt(dial_ppm(v.skew_ppm), "{:+.1f}"),
            _fmt(v.uncertainty_us, "{:.0f}"))
    if not views:
        t.add_row("waiting for dials…", *[""] * 11)
    return t


def dial_ppm(skew_ppm: float | None) -> float | None:
    """How fast the dial's clock runs against the host's, in ppm (+: fast), from the model's
    ``skew_ppm`` (host ns per device µs above 1000: + means the dial is slow)."""
    return None if skew_ppm is None else (1 / (1 + skew_ppm * 1e-6) - 1) * 1e6


def plain_line(v: DialView) -> str:
    return (f"dial {v.uid} rater={v.rater or '-'} {v.state} rating={_fmt(v.rating, '{:.1f}')} "
            f"rate={v.rate_hz:.0f}/s received={v.received} missing={v.missing} "
            f"rejected={v.rejected} dial={_fmt(dial_ppm(v.skew_ppm), '{:+.1f}')}ppm "
            f"±{_fmt(v.uncertainty_us, '{:.0f}')}us")


def player_line(status: dict[str, object]) -> str:
    """``player: mpv playing 12.34 s`` (empty without a player)."""
    if status.get("player") in (None, "none"):
        return ""
    pos = status.get("media_s")
    where = f" {pos:.2f} s" if isinstance(pos, int | float) else ""
    state = status.get("state") if status.get("connected") else "not connected"
    return f"player: {status.get('player')} {state}{where}   "


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else spec.format(value)


class LiveView:
    """Redraws a table at ``hz`` on a terminal; logs a line per dial every few seconds otherwise."""

    def __init__(self, console: Console, views: Callable[[], list[DialView]],
                 broker: Callable[[], str], *, lo: float, hi: float, recording: str,
                 player: Callable[[], str] = lambda: "") -> None:
        self.console = console
        self.player = player
        self.views = views
        self.broker = broker
        self.lo, self.hi = lo, hi
        self.recording = recording
        self.t0 = time.monotonic()
        self._live: Any = None
        self._gone = False  # the terminal hung up: nothing more is shown
        self._last_plain = 0.0

    def __enter__(self) -> LiveView:
        if self.console.is_terminal:
            from rich.live import Live

            self._live = Live(self._render(), console=self.console, auto_refresh=False,
                              transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            try:
                self._live.update(self._render(), refresh=True)
                self._live.__exit__(None, None, None)
            except OSError:  # the terminal went away (hung up): nothing to show it on
                self._live = None

    def _render(self) -> Table:
        return table(self.views(), lo=self.lo, hi=self.hi, broker=self.broker(),
                     elapsed_s=time.monotonic() - self.t0, recording=self.recording,
                     player=self.player())

    def refresh(self) -> None:
        if self._live is not None:
            try:
                self._live.update(self._render(), refresh=True)
            except OSError:  # the terminal hung up before its SIGHUP was handled
                self._live = None
                self._gone = True
            return
        if self._gone:
            return
        now = time.monotonic()
        if now - self._last_plain >= 5.0:
            self._last_plain = now
            if self.player():
                self.console.print(self.player(), highlight=False, soft_wrap=True)
            for v in self.views():
                self.console.print(plain_line(v), highlight=False, soft_wrap=True)
