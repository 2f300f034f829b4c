"""Deterministic quadrature waveforms with contact bounce, for CPython and MicroPython alike.

A waveform is a list of pin-level changes ``(t_us, a, b)``; exactly one channel changes per
event and times strictly increase. The generator moves a true position one quarter-step at a
time (A leads B = +1: AB = 00 -> 10 -> 11 -> 01 -> 00) and keeps its own count, so the
expected counts never come from the decoder under test.

Bounce model (mechanical-encoder datasheets; the notes cite bursts of 7 edges in 2 ms): each
real edge is followed by 1-3 bounce pairs of the SAME channel (2-6 extra toggles, 3-7 edges
in all), inside ``min(2 ms, 40 % of the time to the next real edge)``, so a burst always
ends before the next real edge, also when that edge is a reversal of the same channel.

    generate(name, seed) -> (start, events, final, checkpoints)

``start`` is the (a, b) levels before the first event, ``final`` the expected count after
all events, ``checkpoints`` a list of ``(i, count)``: the expected count once events[:i]
have happened, taken after every burst has settled. Integer arithmetic only; the PRNG is a
32-bit xorshift so both interpreters produce identical lists.
"""

_MASK = 0xFFFFFFFF
# ab = (A << 1) | B for position p is FORWARD[p % 4].
FORWARD = (0, 2, 3, 1)
STEPS_PER_REV = 96
BOUNCE_MAX_US = 2000
BOUNCE_SHARE_PCT = 40


class Rng:
    """xorshift32 (Marsaglia 2003): tiny, integer-only, same results everywhere."""

    def __init__(self, seed):
        self.s = ((seed * 2654435761) + 0x9E3779B9) & _MASK or 1

    def next(self):
        s = self.s
        s ^= (s << 13) & _MASK
        s ^= s >> 17
        s ^= (s << 5) & _MASK
        self.s = s
        return s

    def between(self, lo, hi):
        """Integer in [lo, hi]."""
        return lo + self.next() % (hi - lo + 1)


def _interval_us(rev_per_s_x100):
    """Time between quarter-steps for a speed given in hundredths of rev/s."""
    return 100000000 // (rev_per_s_x100 * STEPS_PER_REV)


class _Builder:
    def __init__(self, rng, start_pos):
        self.rng = rng
        self.start_pos = start_pos
        self.pos = start_pos
        self.t = 0
        self.events = []
        self.checkpoints = [(0, 0)]
        self.pending = None  # direction of the queued real edge, emitted once its gap is known

    def step(self, direction, gap_us):
        """Queue a real quarter-step ``gap_us`` after the previous one."""
        self._flush(gap_us)
        self.t += gap_us
        self.pending = direction

    def finish(self, tail_us=5000):
        self._flush(tail_us)

    def _flush(self, gap_to_next_us):
        # Emits the pending edge now that the time to the following edge is known.
        if self.pending is None:
            return
        prev_ab = FORWARD[self.pos % 4]
        self.pos += self.pending
        self.pending = None
        ab = FORWARD[self.pos % 4]
        changed = ab ^ prev_ab  # one bit: the channel that moved
        self.events.append((self.t, ab >> 1, ab & 1))
        window = min(BOUNCE_MAX_US, gap_to_next_us * BOUNCE_SHARE_PCT // 100)
        pairs = self.rng.between(1, 3)
        while pairs and window < 2 * pairs:
            pairs -= 1
        if pairs:
            offsets = []
            while len(offsets) < 2 * pairs:
                off = self.rng.between(1, window)
                if off not in offsets:
                    offsets.append(off)
            offsets.sort()
            level = ab
            for off in offsets:
                level ^= changed  # the same channel toggles back, then forth
                self.events.append((self.t + off, level >> 1, level & 1))
        self.checkpoints.append((len(self.events), self.pos - self.start_pos))

    def result(self):
        ab = FORWARD[self.start_pos % 4]
        return (ab >> 1, ab & 1), self.events, self.pos - self.start_pos, self.checkpoints


def _slow(b, rng, steps):
    # 0.10-0.50 rev/s (12-62 ms per quarter-step), turns of 3-24 steps, pauses between.
    direction = 1
    while steps > 0:
        run = min(steps, rng.between(3, 24))
        steps -= run
        gap = _interval_us(rng.between(10, 50))
        b.step(direction, rng.between(100000, 400000))  # pause before a turn
        for _ in range(run - 1):
            b.step(direction, gap + rng.between(0, gap // 4))
        if rng.between(0, 2) == 0:
            direction = -direction


def _fast(b, rng, steps):
    # 1-3 rev/s (3.5-10.4 ms per quarter-step), long runs one way.
    direction = 1
    while steps > 0:
        run = min(steps, rng.between(48, 192))
        steps -= run
        gap = _interval_us(rng.between(100, 300))
        b.step(direction, rng.between(20000, 80000))
        for _ in range(run - 1):
            b.step(direction, gap + rng.between(0, gap // 10))
        direction = -direction


def _reversals(b, rng, steps):
    # Direction changes every 1-4 steps at 0.3-3 rev/s, plus rocking across one edge
    # (reversal after every step: the same channel changes back, bounce right at it).
    direction = 1
    while steps > 0:
        if rng.between(0, 3) == 0:
            rocks = min(steps, rng.between(2, 8))
            steps -= rocks
            for _ in range(rocks):
                b.step(direction, rng.between(300, 20000))
                direction = -direction
        else:
            run = min(steps, rng.between(1, 4))
            steps -= run
            gap = _interval_us(rng.between(30, 300))
            for _ in range(run):
                b.step(direction, gap + rng.between(0, gap // 3))
            direction = -direction


_KINDS = {"slow_bounce": _slow, "fast": _fast, "reversals": _reversals}
_SIZES = {"slow_bounce": 60, "fast": 400, "reversals": 300}


def scenarios():
    return ["slow_bounce", "fast", "reversals", "long_mixed"]


def generate(name, seed=1):
    rng = Rng(seed)
    b = _Builder(rng, rng.between(0, 3))
    if name == "long_mixed":
        kinds = sorted(_KINDS)
        for _ in range(12):
            kind = kinds[rng.between(0, len(kinds) - 1)]
            _KINDS[kind](b, rng, rng.between(20, 150))
    elif name in _KINDS:
        _KINDS[name](b, rng, _SIZES[name])
    else:
        raise ValueError("unknown scenario " + name)
    b.finish()
    return b.result()
