"""Ground truth for the emulated Pico: quadrature waveforms as pin changes on the emulated
clock, the count they imply at every instant, and the comparison with the device's samples.

Invariants:
- A waveform (tests/firmware/waveforms.py) is ``(t_us, a, b)`` levels; exactly one channel
  changes per event. ``pin_changes`` turns it into ``(t_ns, pin, level)`` for the harness and
  ``steps``: ``(t_ns, count)`` after every change, from a Gray-code decode done here (each
  toggle, bounce included, is one quarter-step: a perfect counter follows all of them).
- Sample ``k``'s tick is read first in the sampling interrupt and its count a little later
  (``READ_WINDOW_US``), so its count must equal the truth at some instant of
  ``[t_k, t_k + READ_WINDOW_US]``; device microseconds equal emulated ns / 1000 (the RP2040
  timer counts the emulated clock).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ratedial.wire import Samples

FORWARD = (0, 2, 3, 1)  # ab = (A << 1) | B at quarter-step position p % 4 (A leads B = +1)
READ_WINDOW_US = 400


def _delta(prev_ab: int, ab: int) -> int:
    p, n = FORWARD.index(prev_ab), FORWARD.index(ab)
    if n == (p + 1) % 4:
        return 1
    if n == (p - 1) % 4:
        return -1
    if n == p:
        return 0
    raise ValueError("two channels changed at once")


@dataclass
class Wave:
    changes: list[tuple[int, int, int]]  # (t_ns from the wave's start, pin, level)
    times: list[int]  # t_ns of each quarter-step, from the start
    counts: list[int]  # count after it (relative to before the wave)
    transitions: int  # quarter-steps in all (bounce toggles included)

    @property
    def end_ns(self) -> int:
        return self.changes[-1][0] if self.changes else 0

    @property
    def final(self) -> int:
        return self.counts[-1] if self.counts else 0


def pin_changes(start: tuple[int, int], events: Sequence[tuple[int, int, int]], *,
                pin_a: int, pin_b: int, levels: tuple[int, int] = (1, 1),
                lead_us: int = 2000) -> Wave:
    """The waveform as pin changes. ``levels`` are the pins' levels now; the wave first moves
    them to ``start`` (one channel at a time, counted like any step), then plays ``events``
    shifted by ``lead_us``."""
    changes: list[tuple[int, int, int]] = []
    times: list[int] = []
    counts: list[int] = []
    a, b = levels
    count = 0
    n = 0

    def move(t_us: int, na: int, nb: int) -> None:
        nonlocal a, b, count, n
        for pin, old, new, which in ((pin_a, a, na, 0), (pin_b, b, nb, 1)):
            if old == new:
                continue
            prev = (a << 1) | b
            if which == 0:
                a = new
            else:
                b = new
            d = _delta(prev, (a << 1) | b)
            count += d
            n += abs(d)
            changes.append((t_us * 1000, pin, new))
            times.append(t_us * 1000)
            counts.append(count)

    move(0, start[0], levels[1])
    move(lead_us // 2, start[0], start[1])
    for t, na, nb in events:
        move(lead_us + t, na, nb)
    return Wave(changes, times, counts, n)


def concat(*parts: tuple[tuple[int, int], list[tuple[int, int, int]]],
           gap_us: int = 20_000) -> tuple[tuple[int, int], list[tuple[int, int, int]]]:
    """Waveforms one after another; each next part starts from the levels the last ended on
    by relabelling positions (its events are shifted in phase so the levels continue)."""
    start = parts[0][0]
    out: list[tuple[int, int, int]] = []
    t_off = 0
    ab = (start[0] << 1) | start[1]
    for p_start, events in parts:
        # rotate the part's Gray positions so its start equals the current level
        shift = (FORWARD.index(ab) - FORWARD.index((p_start[0] << 1) | p_start[1])) % 4
        for t, a, b in events:
            q = FORWARD[(FORWARD.index((a << 1) | b) + shift) % 4]
            out.append((t_off + t, q >> 1, q & 1))
        if out:
            ab = (out[-1][1] << 1) | out[-1][2]
            t_off = out[-1][0] + gap_us
    return start, out


@dataclass
class CountCheck:
    samples: int
    mismatched: int
    missed: int
    phantom: int
    first_bad: tuple[int, int, list[int]] | None  # (index, count, allowed)


def check_counts(frames: Sequence[Samples], wave: Wave, t0_ns: int, base: int) -> CountCheck:
    """Compare every sample against the truth. ``base`` is the device count before the wave.
    missed/phantom: quarter-steps the device count fell behind/ran ahead of the truth, summed
    over every change of that error (both 0 for an exact counter)."""
    times = [t0_ns + t for t in wave.times]
    total = mismatched = missed = phantom = 0
    err_prev = 0
    first_bad = None
    for f in frames:
        for idx, t_us, c in zip(f.indices, f.times_us, f.counts, strict=True):
            lo = bisect.bisect_right(times, t_us * 1000)
            hi = bisect.bisect_right(times, (t_us + READ_WINDOW_US) * 1000)
            allowed = [wave.counts[i - 1] if i else 0 for i in range(lo, hi + 1)]
            got = c - base
            total += 1
            if got in allowed:
                err = 0
            else:
                mismatched += 1
                err = got - allowed[-1]
                if first_bad is None:
                    first_bad = (idx, got, allowed)
            d = err - err_prev
            if d > 0:
                phantom += d
            else:
                missed -= d
            err_prev = err
    return CountCheck(total, mismatched, missed, phantom, first_bad)


def scenario(names: Sequence[str], seed: int = 1) -> tuple[tuple[int, int],
                                                            list[tuple[int, int, int]]]:
    """tests/firmware/waveforms.py scenarios played one after another."""
    import sys
    from pathlib import Path

    fw_tests = str(Path(__file__).resolve().parent.parent / "firmware")
    if fw_tests not in sys.path:
        sys.path.insert(0, fw_tests)
    import waveforms

    parts = []
    for name in names:
        start, events, _final, _cp = waveforms.generate(name, seed)
        parts.append((start, events))
    return concat(*parts)


def check_settled(frames: Sequence[Samples], wave: Wave, t0_ns: int, base: int, *,
                  quiet_us: int = 3000) -> tuple[int, list[tuple[int, int, int]]]:
    """Compare only the samples taken when the pins had been quiet for ``quiet_us`` (every
    bounce burst settled): a counter that may miss toggles INSIDE a burst must still be
    exact there. Returns (samples compared, [(index, got, want)] that differ)."""
    times = [t0_ns + t for t in wave.times]
    compared = 0
    bad: list[tuple[int, int, int]] = []
    for f in frames:
        for idx, t_us, c in zip(f.indices, f.times_us, f.counts, strict=True):
            lo = bisect.bisect_right(times, (t_us - quiet_us) * 1000)
            hi = bisect.bisect_right(times, (t_us + READ_WINDOW_US) * 1000)
            if hi != lo:
                continue  # a change within quiet_us before or during the read
            want = wave.counts[hi - 1] if hi else 0
            compared += 1
            if c - base != want:
                bad.append((idx, c - base, want))
    return compared, bad


def rater_script(path: Path, until_us: int, *, seed: int = 1) -> tuple[
        tuple[int, int], list[tuple[int, int, int]], list[tuple[int, int, int]]]:
    """A virtual-dial rating script (``t_s,value[,button]`` CSV) through the virtual dial's own
    simulated person and encoder (firmware/sim/rater.py: bounce included), up to ``until_us``.
    Returns the encoder's start levels, its changes as ``(t_us, a, b)`` and the script's rests
    as ``(t_from_us, t_to_us, count)``."""
    import sys

    from ratedial.virtual.script import count_of, load_script

    fw = str(Path(__file__).resolve().parent.parent.parent / "firmware")
    if fw not in sys.path:
        sys.path.insert(0, fw)
    from sim import rater  # the virtual dial's person and encoder, run here under CPython

    script = load_script(path)
    knots = [(k.t_us, k.x_mc, k.button) for k in script.knots]
    person = rater.Rater(lambda: rater.script_knots(knots), seed)
    ab = person.ab0()
    start = (ab >> 1, ab & 1)
    times: list[int] = []
    codes: list[int] = []
    person.take(until_us, times, codes)
    a, b = start
    events = []
    for t, code in zip(times, codes, strict=True):
        pin, level = code >> 1, code & 1
        if pin == rater.PIN_A:
            a = level
        elif pin == rater.PIN_B:
            b = level
        else:
            continue  # the button: not part of this check
        events.append((t, a, b))
    rests = [(r.t_start_us, r.t_end_us, r.target - count_of(knots[0][1]))
             for r in script.rests() if r.t_end_us is not None and r.t_end_us <= until_us]
    return start, events, rests
