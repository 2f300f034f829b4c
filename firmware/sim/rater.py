"""The simulated person and encoder: rating curve -> knob position -> pin edges with bounce.

Runs unchanged under MicroPython (inside the virtual dial) and CPython (unit tests), so it
uses integers only and its own hash-based random numbers (MicroPython's ``random`` has no
``Random`` class, and floats differ between builds).

Invariants:
- Time is integer microseconds of *rating time*: 0 is when the first boot's simulated
  hardware started. The curve continues across reboots (the person keeps turning), so a
  rater built with ``t_start`` > 0 reproduces exactly the events of one built at 0.
- The knob position ``x`` is in milli-counts (1000 = one quarter-step). The count it shows
  is ``count_of(x)``: x / 1000 rounded half away from zero. The quadrature state of count
  ``c`` is ``GRAY[c & 3]`` with ``ab = (A << 1) | B``: A leads B when counting up
  (00 -> 10 -> 11 -> 01), the convention of ``dial/quad.py``.
- Along a straight segment of the curve the count moves one step at a time from
  ``count_of(x0)`` to ``count_of(x1)``, so at every knot the count is exact.
- Every transition of A or B may be followed by a bounce burst: 2, 4 or 6 extra toggles of
  the same channel within ``min(BOUNCE_MAX_US, 40% of the time to the next transition)``.
  A burst never reaches the next transition (of either channel) and ends on the level of
  its transition. The button bounces the same way on press and release.
- Events come out in non-decreasing time order: ``(t_us, code)`` with
  ``code = pin * 2 + level``.
"""

PIN_A = 0
PIN_B = 1
PIN_BUTTON = 2

GRAY = (0, 2, 3, 1)  # ab of count & 3: 00, 10, 11, 01

BOUNCE_MAX_US = 1500  # bursts last up to 1.5 ms (Bourns-class encoders at human speed)
BOUNCE_FRACTION_PCT = 40  # ... and at most 40% of the time to the next transition
BOUNCE_PROB_PCT = 70  # share of transitions that bounce at all
BUTTON_BOUNCE_MAX_US = 1500

MAX_COUNTS_PER_S = 192  # 2 rev/s at 96 quarter-steps/rev: faster than a person turns

_M32 = 0xFFFFFFFF
_FAR = 1 << 40  # "no next transition" (12 days), a small int everywhere


def count_of(x_mc):
    """The count a knob at ``x_mc`` milli-counts shows: round half away from zero."""
    if x_mc >= 0:
        return (x_mc + 500) // 1000
    return -((500 - x_mc) // 1000)


def _ceil_div(a, b):
    return -((-a) // b)


def _mix(a, b):
    """32-bit hash of two small ints (integer ops identical in CPython and MicroPython)."""
    a = (a ^ (a >> 32)) & _M32
    b = (b ^ (b >> 32)) & _M32
    x = (a * 0x9E3779B1 + b * 0x85EBCA77 + 0x165667B1) & _M32
    x ^= x >> 15
    x = (x * 0x2C1B3C6D) & _M32
    x ^= x >> 12
    x = (x * 0x297A2D39) & _M32
    x ^= x >> 15
    return x


class Rng:
    """xorshift32 seeded through ``_mix``: the same sequence under both interpreters."""

    def __init__(self, seed):
        self._s = _mix(seed, 0x5EED) or 1

    def next(self):
        x = self._s
        x ^= (x << 13) & _M32
        x ^= x >> 17
        x ^= (x << 5) & _M32
        self._s = x
        return x

    def below(self, n):
        return self.next() % n

    def between(self, lo, hi):
        return lo + self.next() % (hi - lo + 1)


# --- curves: iterables of knots (t_us, x_mc, button), t strictly increasing -----------------


def script_knots(knots):
    """A scripted curve: the knots as given, then holding the last one forever.

    ``knots`` is a list of (t_us, x_mc, button) with t strictly increasing from 0.
    """
    return iter(knots)


def walk_knots(seed, range_mc):
    """A seeded random-walk rater that behaves like a person, forever.

    It rests (0.2-5 s), turns slowly (5-40 counts/s) or quickly (60-190 counts/s) with a
    gentle start and stop, sometimes corrects with a small turn back, now and then presses
    the button during a rest, and keeps the knob within +-``range_mc`` (the 0..100 scale).
    """
    rng = Rng(seed)
    t = 0
    x = 0
    yield (0, 0, 0)
    while True:
        # Rest, sometimes with a button press in it.
        if rng.below(100) < 60:
            rest = rng.between(200_000, 1_200_000)
        else:
            rest = rng.between(1_500_000, 5_000_000)
        if rest > 600_000 and rng.below(100) < 8:
            press_at = t + rng.between(100_000, rest - 400_000)
            press_len = rng.between(80_000, 300_000)
            yield (press_at, x, 1)
            yield (press_at + press_len, x, 0)
        t += rest
        yield (t, x, 0)
        # Turn.
        if rng.below(100) < 30:
            speed = rng.between(60, 190)
            dist = rng.between(5, 40) * 1000
        else:
            speed = rng.between(5, 40)
            dist = rng.between(2, 25) * 1000
        # Turn up with a probability that falls as the knob nears the top.
        up = rng.below(2 * range_mc + 1) < range_mc - x
        target = x + dist if up else x - dist
        target = max(-range_mc, min(range_mc, target))
        if target == x:
            continue
        for t, x in _ramp(t, x, target, speed):
            yield (t, x, 0)
        # A small correction back, as people overshoot.
        if rng.below(100) < 20:
            back = rng.between(1, 4) * 1000
            target = x - back if up else x + back
            target = max(-range_mc, min(range_mc, target))
            t += rng.between(50_000, 300_000)
            yield (t, x, 0)
            if target != x:
                for t, x in _ramp(t, x, target, rng.between(5, 30)):
                    yield (t, x, 0)


def _ramp(t, x, target, speed):
    """Knots of a turn from x to target at ``speed`` counts/s, half speed in the first and
    last quarter of the way."""
    d = target - x
    q = d // 4 if d > 0 else -((-d) // 4)
    out = []
    for part, v in ((q, speed // 2 or 1), (d - 2 * q, speed), (q, speed // 2 or 1)):
        if part == 0:
            continue
        t += _ceil_div(abs(part) * 1000, v)
        x += part
        out.append((t, x))
    return out


# --- edges -------------------------------------------------------------------------------


class Rater:
    """Pin events of a curve from rating time ``t_start`` on.

    ``make_knots()`` returns a fresh iterator over the curve's knots each time it is called
    (the knob and the button walk the curve separately). ``count0`` and ``button0`` are the
    knob count and button state at ``t_start``: what the pins show when the simulated
    hardware powers up. ``take(until, times, codes)`` appends every event with
    ``t < until`` to the two lists, in time order. ``press(t, dur)`` adds a button press
    (with bounce) at rating time ``t`` lasting ``dur`` µs.
    """

    def __init__(self, make_knots, seed, t_start=0):
        self._seed = seed
        segs = _Segments(make_knots(), t_start)
        self.count0 = segs.count0
        self.button0 = segs.button0
        self._knob = self._knob_events(segs.transitions())
        self._btn = self._button_events(_button_changes(make_knots(), t_start))
        self._extra = []  # injected button events, sorted
        self._hk = next(self._knob, None)
        self._hb = next(self._btn, None)
        self._pressed_until = -1

    def ab0(self):
        return GRAY[self.count0 & 3]

    def press(self, t, dur, horizon):
        """Press the button at rating time ``t`` for ``dur`` µs (ignored while held).

        Returns the press's events earlier than ``horizon`` (the caller has already taken
        events up to there and merges these itself); later ones come out of ``take``.
        """
        if t < self._pressed_until:
            return []
        self._pressed_until = t + dur
        ev = []
        _bounced(ev, t, PIN_BUTTON, 1, dur, _mix(self._seed ^ 0xB077, t))
        _bounced(ev, t + dur, PIN_BUTTON, 0, _FAR, _mix(self._seed ^ 0xB077, t + dur))
        now = [e for e in ev if e[0] < horizon]
        self._extra.extend(e for e in ev if e[0] >= horizon)
        self._extra.sort()
        return now

    def take(self, until, times, codes):
        extra = self._extra
        while True:
            best = None
            src = 0
            hk = self._hk
            hb = self._hb
            if hk is not None and hk[0] < until:
                best = hk
                src = 1
            if hb is not None and hb[0] < until and (best is None or hb[0] < best[0]):
                best = hb
                src = 2
            if extra and extra[0][0] < until and (best is None or extra[0][0] < best[0]):
                best = extra[0]
                src = 3
            if best is None:
                return
            times.append(best[0])
            codes.append(best[1])
            if src == 1:
                self._hk = next(self._knob, None)
            elif src == 2:
                self._hb = next(self._btn, None)
            else:
                extra.pop(0)

    def _knob_events(self, trans):
        seed = self._seed
        cur = next(trans, None)
        count = self.count0
        while cur is not None:
            t, c = cur
            nxt = next(trans, None)
            old = GRAY[count & 3]
            new = GRAY[c & 3]
            count = c
            if (old ^ new) == 2:
                pin = PIN_A
                level = new >> 1
            else:
                pin = PIN_B
                level = new & 1
            gap = nxt[0] - t if nxt is not None else _FAR
            ev = []
            _bounced(ev, t, pin, level, gap, _mix(seed, t * 4 + (c & 3)))
            yield from ev
            cur = nxt

    def _button_events(self, changes):
        seed = self._seed ^ 0xB0
        cur = next(changes, None)
        while cur is not None:
            nxt = next(changes, None)
            t, level = cur
            gap = nxt[0] - t if nxt is not None else _FAR
            ev = []
            _bounced(ev, t, PIN_BUTTON, level, gap, _mix(seed, t))
            yield from ev
            cur = nxt


def _bounced(out, t, pin, level, gap, h):
    """Append the transition and, usually, a bounce burst after it."""
    out.append((t, pin * 2 + level))
    if h % 100 >= BOUNCE_PROB_PCT:
        return
    w = min(BOUNCE_MAX_US, gap * BOUNCE_FRACTION_PCT // 100)
    if w < 2:
        return
    n = 2 * (1 + (h >> 8) % 3)
    offs = sorted(1 + _mix(h, i) % w for i in range(n))
    lv = level
    for off in offs:
        lv ^= 1
        out.append((t + off, pin * 2 + lv))


def _button_changes(knots, t_start):
    """(t, level) of each button change after ``t_start``."""
    level = None
    for t, _x, b in knots:
        if level is None or t <= t_start:
            level = b
            continue
        if b != level:
            level = b
            yield (t, b)


class _Segments:
    """Walks the knots from ``t_start``: the count at start, then every count change."""

    def __init__(self, knots, t_start):
        self._it = knots
        self._t_start = t_start
        prev = next(knots)
        nxt = next(knots, None)
        # Skip whole segments that end at or before t_start.
        while nxt is not None and nxt[0] <= t_start:
            prev = nxt
            nxt = next(knots, None)
        self._prev = prev
        self._nxt = nxt
        self.button0 = prev[2]
        # Count at t_start: the segment's start count plus its transitions up to t_start.
        c = count_of(prev[1])
        if nxt is not None:
            for t, k in _seg_transitions(prev, nxt):
                if t > t_start:
                    break
                c = k
        self.count0 = c

    def transitions(self):
        """(t, new_count) for every count change after t_start, in time order."""
        t_start = self._t_start
        prev = self._prev
        nxt = self._nxt
        while nxt is not None:
            for t, k in _seg_transitions(prev, nxt):
                if t > t_start:
                    yield (t, k)
            prev = nxt
            nxt = next(self._it, None)


def _seg_transitions(k0, k1):
    """(t, count) of each count change on the straight segment k0 -> k1.

    The change into ``k`` happens at the first µs where ``count_of(x(t)) == k``, with the
    exact (rational) ``x(t)``: the thresholds are those of rounding half away from zero, so
    at each knot the count is exactly ``count_of(x)`` and no change falls on the first knot.
    """
    t0, x0, _ = k0
    t1, x1, _ = k1
    c0 = count_of(x0)
    c1 = count_of(x1)
    dt = t1 - t0
    if c1 > c0:
        dx = x1 - x0
        for k in range(c0 + 1, c1 + 1):
            b = k * 1000 - 500 if k > 0 else k * 1000 - 499  # first x (mc) showing k
            t = t0 + _ceil_div((b - x0) * dt, dx)
            yield (min(max(t, t0 + 1), t1), k)
    elif c1 < c0:
        dx = x0 - x1
        for k in range(c0 - 1, c1 - 1, -1):
            b = k * 1000 + 499 if k >= 0 else k * 1000 + 500  # last x (mc) showing k
            t = t0 + _ceil_div((x0 - b) * dt, dx)
            yield (min(max(t, t0 + 1), t1), k)
