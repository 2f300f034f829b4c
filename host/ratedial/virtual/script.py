"""Rating scripts for the virtual dial: a CSV rating curve in, the knob's knots out (pure).

A script is CSV ``t_s,value[,button]``: time in seconds, the rating on 0..100 (50 is where
the knob starts) and optionally the button (1 held, 0 released). The value is piecewise
linear in time between rows; the button holds its value from its row until the next row.
A header row, blank lines and ``#`` comments are allowed.

Invariants:
- Numbers are parsed exactly (``Fraction``); the knob position is quantised to 1/1000 of a
  count: ``x_mc = round((value - 50) * counts_per_point * 1000)``. The count the firmware
  must show is ``count_of(x_mc)``: ``x_mc / 1000`` rounded half away from zero. This is
  the same function as ``firmware/sim/rater.py``'s, which moves the simulated knob.
- Rows start at t = 0 with the value 50 (the firmware counts from the knob's position at its
  start: a first row elsewhere would be recorded as 50), times strictly increase, values
  stay in 0..100 and no segment turns
  the knob faster than ``MAX_COUNTS_PER_S`` (2 rev/s of a 96 quarter-step encoder): a person
  cannot, and the encoder model (bounce within 40% of the time between edges) assumes it.
- A *rest* is a run of rows with the same value, and the time after the last row: there the
  firmware's count equals the rest's ``target`` exactly.
"""

from __future__ import annotations

import csv
import io
import itertools
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from ..errors import UsageError

MAX_COUNTS_PER_S = 192  # 2 rev/s x 96 quarter-steps/rev
SCALE_MIN = 0
SCALE_MAX = 100
SCALE_START = 50


class ScriptError(UsageError):
    """The rating script cannot be used (one line: file, row and what is wrong)."""


def count_of(x_mc: int) -> int:
    """The count a knob at ``x_mc`` milli-counts shows: x/1000 rounded half away from zero."""
    if x_mc >= 0:
        return (x_mc + 500) // 1000
    return -((500 - x_mc) // 1000)


def _round_half_away(q: Fraction) -> int:
    n = (abs(q.numerator) * 2 + q.denominator) // (2 * q.denominator)
    return n if q >= 0 else -n


@dataclass(frozen=True, slots=True)
class Knot:
    t_us: int
    value: Fraction
    x_mc: int
    button: int


@dataclass(frozen=True, slots=True)
class Rest:
    """The knob stands still from ``t_start_us`` to ``t_end_us`` (None: for ever)."""

    t_start_us: int
    t_end_us: int | None
    value: Fraction
    target: int


@dataclass(frozen=True, slots=True)
class Script:
    knots: tuple[Knot, ...]
    counts_per_point: Fraction

    @property
    def duration_us(self) -> int:
        return self.knots[-1].t_us

    def x_at(self, t_us: int) -> int:
        """Knob position (milli-counts) at ``t_us``, linear between knots."""
        ks = self.knots
        if t_us <= 0:
            return ks[0].x_mc
        for a, b in itertools.pairwise(ks):
            if t_us <= b.t_us:
                return a.x_mc + (b.x_mc - a.x_mc) * (t_us - a.t_us) // (b.t_us - a.t_us)
        return ks[-1].x_mc

    def rests(self) -> list[Rest]:
        out: list[Rest] = []
        ks = self.knots
        i = 0
        while i < len(ks):
            j = i
            while j + 1 < len(ks) and ks[j + 1].x_mc == ks[i].x_mc:
                j += 1
            end = ks[j].t_us if j + 1 < len(ks) else None
            if j > i or end is None:
                out.append(Rest(ks[i].t_us, end, ks[i].value, count_of(ks[i].x_mc)))
            i = j + 1
        return out

    def sim_text(self) -> str:
        """The knot file ``firmware/sim/run.py`` reads: ``t_us x_mc button`` per line."""
        return "".join(f"{k.t_us} {k.x_mc} {k.button}\n" for k in self.knots)


def parse_script(
    text: str, *, counts_per_point: float | Fraction = 1, name: str = "script"
) -> Script:
    """Parse and check a rating script; raise ScriptError with the row at fault."""
    cpp = Fraction(str(counts_per_point)) if isinstance(counts_per_point, float) else Fraction(
        counts_per_point
    )
    if cpp <= 0:
        raise ScriptError(f"{name}: counts per point must be positive")
    knots: list[Knot] = []
    header_allowed = True
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [c.strip() for c in row]
        if not cells or not cells[0] or cells[0].startswith("#"):
            continue
        where = f"{name}:{lineno}"
        try:
            t = Fraction(cells[0])
        except ValueError:
            if header_allowed:
                header_allowed = False
                continue  # a header row
            raise ScriptError(f"{where}: time {cells[0]!r} is not a number") from None
        header_allowed = False
        knot = _parse_row(cells, t, cpp, where)
        _check_step(knots[-1] if knots else None, knot, cells[0], where)
        knots.append(knot)
    if not knots:
        raise ScriptError(f"{name}: no rows")
    return Script(tuple(knots), cpp)


def _parse_row(cells: list[str], t: Fraction, cpp: Fraction, where: str) -> Knot:
    if len(cells) not in (2, 3):
        raise ScriptError(f"{where}: expected t_s,value[,button], got {len(cells)} columns")
    try:
        v = Fraction(cells[1])
    except ValueError:
        raise ScriptError(f"{where}: value {cells[1]!r} is not a number") from None
    button = 0
    if len(cells) == 3:
        if cells[2] not in ("0", "1"):
            raise ScriptError(f"{where}: button must be 0 or 1, got {cells[2]!r}")
        button = int(cells[2])
    if not SCALE_MIN <= v <= SCALE_MAX:
        raise ScriptError(f"{where}: value {cells[1]} is outside {SCALE_MIN}..{SCALE_MAX}")
    x_mc = _round_half_away((v - SCALE_START) * cpp * 1000)
    return Knot(_round_half_away(t * 1_000_000), v, x_mc, button)


def _check_step(prev: Knot | None, knot: Knot, t_text: str, where: str) -> None:
    if prev is None:
        if knot.t_us != 0:
            raise ScriptError(f"{where}: the first row must be at t=0")
        if knot.value != SCALE_START:  # the dial counts from where the knob is at its start
            raise ScriptError(
                f"{where}: the first row must be {SCALE_START} (the knob's position when the "
                f"dial starts); to begin elsewhere, turn there from {SCALE_START}, e.g. "
                f"0,{SCALE_START} then 1,{knot.value}")
        return
    dt = knot.t_us - prev.t_us
    if dt <= 0:
        raise ScriptError(f"{where}: time {t_text} does not increase")
    if abs(knot.x_mc - prev.x_mc) * 1000 > MAX_COUNTS_PER_S * dt:
        counts = abs(knot.x_mc - prev.x_mc) / 1000
        raise ScriptError(
            f"{where}: turning {counts:g} counts in {dt / 1e6:g} s is faster than a hand "
            f"turns ({MAX_COUNTS_PER_S} counts/s = 2 rev/s); spread it over more time"
        )


def load_script(path: Path, *, counts_per_point: float | Fraction = 1) -> Script:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScriptError(f"cannot read script {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ScriptError(f"script {path} is not UTF-8 text") from None
    return parse_script(text, counts_per_point=counts_per_point, name=str(path))
