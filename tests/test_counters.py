"""Encoder counting backends: the Gray-code table, the pin-IRQ counter and the esp32 wrapper.

The checks live in tests/firmware/quad_checks.py so that the same code runs here under
CPython and, through run_mpy, under the real MicroPython unix port (where the IRQ handler and
value() run with the heap locked). Expected counts come from tests/firmware/waveforms.py,
which tracks the true position itself.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest

from mpy import run_mpy

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT / "firmware", ROOT / "tests" / "firmware"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import quad_checks  # noqa: E402
import waveforms  # noqa: E402
from dial import counter_pcnt, quad  # noqa: E402

CHECKS = quad_checks.all_checks()


@pytest.mark.parametrize(("label", "fn", "args"), CHECKS, ids=[c[0] for c in CHECKS])
def test_check_under_cpython(label, fn, args):
    assert fn(*args) is None, label


def test_checks_under_micropython():
    out = run_mpy("import quad_checks\nquad_checks.main()\n")
    lines = [line for line in out.splitlines() if line.startswith(("PASS ", "FAIL "))]
    assert [line for line in lines if line.startswith("FAIL ")] == []
    # every check ran, none was skipped
    assert sorted(line[5:] for line in lines) == sorted(label for label, _, _ in CHECKS)


# --- the checks can fail ---------------------------------------------------------------------


def _mutants():
    for index in range(16):
        for value in (-1, 0, 1):
            if value != quad.TABLE[index]:
                yield index, value


@pytest.mark.parametrize(("index", "value"), list(_mutants()))
def test_every_wrong_table_entry_is_caught(monkeypatch, index, value):
    table = list(quad.TABLE)
    table[index] = value
    monkeypatch.setattr(quad, "TABLE", tuple(table))
    results = [
        quad_checks.check_decoder("reversals", 1),
        quad_checks.check_irq("reversals", 1),
        quad_checks.check_irq("reversals", 1, True),
        quad_checks.check_illegal(),
        quad_checks.check_no_change(),
    ]
    assert any(r is not None for r in results)


@pytest.mark.parametrize("mode", ["missed", "phantom"])
def test_a_missed_or_phantom_count_is_caught(monkeypatch, mode):
    """An IRQ counter that drops one edge in 97, or adds one count in 500, fails the checks.
    (Dropping a single IRQ is often harmless: the next handler reads both pins and catches
    up, unless the other channel moved in between.)"""
    real = quad.IrqCounter._irq
    calls = [0]

    def faulty(self, pin):
        calls[0] += 1
        if mode == "missed" and calls[0] % 97 == 0:
            return
        real(self, pin)
        if mode == "phantom" and calls[0] % 500 == 0:
            self._s[1] += 1

    monkeypatch.setattr(quad.IrqCounter, "_irq", faulty)
    assert quad_checks.check_irq("long_mixed", 1) is not None


def test_an_allocating_handler_fails_under_micropython():
    """The heap lock in the fake pins is real: a handler that allocates makes the run fail."""
    code = (
        "import quad_checks\n"
        "from dial import quad\n"
        "real = quad.IrqCounter._irq\n"
        "def leaky(self, pin):\n"
        "    real(self, pin)\n"
        "    self.last = [pin]\n"
        "quad.IrqCounter._irq = leaky\n"
        "print(quad_checks.check_irq('slow_bounce', 1))\n"
    )
    with pytest.raises(AssertionError, match="MemoryError"):
        run_mpy(code)


# --- the waveforms ---------------------------------------------------------------------------


def _digest(name, seed):
    start, events, final, checkpoints = waveforms.generate(name, seed)
    h = 0
    for t, a, b in events:
        h = (h * 31 + t * 4 + a * 2 + b) % 1_000_000_007
    return [start[0], start[1], len(events), final, len(checkpoints), h]


def test_waveforms_identical_under_both_interpreters():
    here = [_digest(name, seed) for name in waveforms.scenarios() for seed in (1, 2, 3)]
    code = (
        "import waveforms\n"
        "for name in waveforms.scenarios():\n"
        "    for seed in (1, 2, 3):\n"
        "        s, ev, final, cps = waveforms.generate(name, seed)\n"
        "        h = 0\n"
        "        for t, a, b in ev:\n"
        "            h = (h * 31 + t * 4 + a * 2 + b) % 1000000007\n"
        "        print(s[0], s[1], len(ev), final, len(cps), h)\n"
    )
    there = [[int(x) for x in line.split()] for line in run_mpy(code).splitlines()]
    assert there == here


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("name", waveforms.scenarios())
def test_waveform_shape(name, seed):
    """One channel per event, time moves on, and every bounce burst stays in its window:
    at most 2 ms and 40 % of the gap to the next real edge."""
    start, events, final, checkpoints = waveforms.generate(name, seed)
    a, b, t = start[0], start[1], -1
    for t_next, na, nb in events:
        assert t_next > t
        assert (na != a) + (nb != b) == 1
        a, b, t = na, nb, t_next
    bounds = [i for i, _ in checkpoints]
    assert bounds[0] == 0
    assert bounds[-1] == len(events)
    bursts = list(itertools.pairwise(bounds))
    for (lo, hi), (nlo, _) in itertools.pairwise(bursts):
        first, last, nxt = events[lo][0], events[hi - 1][0], events[nlo][0]
        assert last - first <= min(waveforms.BOUNCE_MAX_US, (nxt - first) * 40 // 100)
        assert (hi - lo) % 2 == 1  # the edge plus bounce pairs: the channel ends moved
    assert checkpoints[-1][1] == final
    # the mix has bounce, reversals and more than a few hundred steps in all
    sizes = [hi - lo for lo, hi in bursts]
    assert max(sizes) >= 5
    assert len(bursts) >= 60


def test_fast_waveform_speed():
    """The fast turns run at 1-3 rev/s of a 96-step dial: 3.4-10.5 ms per quarter-step."""
    _start, events, _final, checkpoints = waveforms.generate("fast", 1)
    firsts = [events[i][0] for i, _ in checkpoints[:-1]]
    gaps = sorted(b - a for a, b in itertools.pairwise(firsts))
    assert 3400 <= gaps[len(gaps) // 10] <= 11000


# --- esp32 factory ---------------------------------------------------------------------------


class _FakeEncoder:
    def __init__(self, unit, a, b, *, filter_ns, phases):
        self.args = (unit, a, b, filter_ns, phases)
        self.v = 7

    def value(self, value=None):
        v = self.v
        if value is not None:
            self.v = value
        return v

    def deinit(self):
        self.v = None


class _FakePin:
    IN = 1
    PULL_UP = 2

    def __init__(self, pin_id, mode, pull):
        self.spec = (pin_id, mode, pull)


class _FakeMachine:
    Pin = _FakePin
    Encoder = _FakeEncoder


def test_make_pcnt_counter_wires_encoder(monkeypatch):
    monkeypatch.setitem(sys.modules, "machine", _FakeMachine)
    counter = counter_pcnt.make_pcnt_counter(2, 25, 26, filter_ns=5000)
    unit, a, b, filter_ns, phases = counter._enc.args
    assert (unit, filter_ns, phases) == (2, 5000, 4)
    assert a.spec == (25, _FakePin.IN, _FakePin.PULL_UP)
    assert b.spec == (26, _FakePin.IN, _FakePin.PULL_UP)
    assert counter.value() == 0  # zeroed on construction
    assert counter.name == "pcnt"
    counter.deinit()
    assert counter._enc.v is None
