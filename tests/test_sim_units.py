"""Unit tests of the virtual dial's parts: the rater and its edges, the simulated hardware,
the link model, fault and script parsing, the ground-truth mapping, the options.

``firmware/sim/rater.py`` runs unchanged under CPython, so most edge properties are checked
here directly; one test checks MicroPython produces the very same events.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from mpy import FIRMWARE, run_mpy
from ratedial.errors import UsageError
from ratedial.virtual import faults as F
from ratedial.virtual.command import options_from_cli, virtual_dial
from ratedial.virtual.linkmodel import BitErrors, LinkParams, LinkSchedule
from ratedial.virtual.options import DialOptions
from ratedial.virtual.script import MAX_COUNTS_PER_S, ScriptError, count_of, parse_script
from ratedial.virtual.truth import BootTruth


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


rater = _load("sim_rater", FIRMWARE / "sim" / "rater.py")
quad = _load("sim_quad", FIRMWARE / "dial" / "quad.py")

A, B, BTN = rater.PIN_A, rater.PIN_B, rater.PIN_BUTTON


def _events(make_knots, seed: int, until_us: int, t_start: int = 0):
    r = rater.Rater(make_knots, seed, t_start)
    t: list[int] = []
    c: list[int] = []
    # Several takes, as the simulator refills every 100 ms.
    for h in range(t_start + 100_000, until_us + 100_000, 100_000):
        r.take(min(h, until_us), t, c)
    return r, list(zip(t, c, strict=True))


def _walk(seed: int = 1, range_mc: int = 50_000):
    return lambda: rater.walk_knots(seed, range_mc)


def _decode(r, events, checkpoints=()):
    """Feed events to the reference quadrature decoder; count at each checkpoint time."""
    ab = r.ab0()
    dec = quad.QuadDecoder(ab)
    at = {}
    cps = sorted(checkpoints)
    j = 0
    for t, code in events:
        while j < len(cps) and cps[j] < t:
            at[cps[j]] = dec.count
            j += 1
        pin, level = divmod(code, 2)
        if pin == A:
            ab = (ab & 1) | (level << 1)
        elif pin == B:
            ab = (ab & 2) | level
        else:
            continue
        dec.feed(ab)
    for cp in cps[j:]:
        at[cp] = dec.count
    return dec, at


# --- rater: curves and edges ---------------------------------------------------------------


def test_count_of_is_the_same_on_host_and_device() -> None:
    for x in range(-5000, 5001, 7):
        assert count_of(x) == rater.count_of(x)
    assert [count_of(x) for x in (499, 500, -499, -500, 1500, -1500)] == [0, 1, 0, -1, 2, -2]


def test_gray_code_matches_the_firmware_direction() -> None:
    dec = quad.QuadDecoder(rater.GRAY[0])
    for c in range(1, 9):
        assert dec.feed(rater.GRAY[c & 3]) == 1  # counting up: A leads B
    for c in range(7, -3, -1):
        assert dec.feed(rater.GRAY[c & 3]) == -1


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_walk_counts_are_exact_at_every_knot(seed: int) -> None:
    until = 120_000_000
    knots = list(itertools.takewhile(lambda k: k[0] < until, rater.walk_knots(seed, 50_000)))
    r, ev = _events(_walk(seed), seed, until)
    dec, at = _decode(r, ev, [k[0] for k in knots])
    assert dec.errors == 0
    for t, x, _b in knots:
        assert at[t] == count_of(x) - r.count0, f"seed {seed}: knot at {t} us"
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(ev))


@pytest.mark.parametrize("seed", [1, 7, 99])
def test_walk_behaves_like_a_person(seed: int) -> None:
    knots = list(itertools.takewhile(lambda k: k[0] < 600_000_000,
                                     rater.walk_knots(seed, 50_000)))
    xs = [x for _t, x, _b in knots]
    assert min(xs) >= -50_000 and max(xs) <= 50_000
    speeds = []
    rests = 0
    reversals = 0
    last_dir = 0
    for (t0, x0, _), (t1, x1, _) in itertools.pairwise(knots):
        v = abs(x1 - x0) * 1000 / (t1 - t0)  # counts/s
        assert v <= MAX_COUNTS_PER_S
        if x1 == x0:
            rests += 1
            continue
        speeds.append(v)
        d = 1 if x1 > x0 else -1
        reversals += last_dir not in (d, 0)
        last_dir = d
    assert rests > 50 and reversals > 20
    assert min(speeds) < 20 and max(speeds) > 80  # slow and quick turns
    assert any(b for _t, _x, b in knots)  # now and then the button


@pytest.mark.parametrize("seed", [3, 4])
def test_bounce_is_bounded_and_never_reaches_the_next_transition(seed: int) -> None:
    until = 120_000_000
    r, ev = _events(_walk(seed), seed, until)
    knob = [(t, code) for t, code in ev if code // 2 != BTN]
    trans = list(itertools.takewhile(
        lambda tc: tc[0] < until, rater._Segments(_walk(seed)(), 0).transitions()))
    assert len(trans) > 500
    i = 0
    bounced = 0
    for k, (t, count) in enumerate(trans):
        # The transition itself: the channel that differs between the Gray states.
        prev = rater.GRAY[(trans[k - 1][1] if k else r.count0) & 3]
        new = rater.GRAY[count & 3]
        pin = A if (prev ^ new) == 2 else B
        level = (new >> 1) if pin == A else (new & 1)
        assert knob[i] == (t, pin * 2 + level)
        i += 1
        # Its bounce: toggles of the same channel only, ending on the new level, within
        # 1.5 ms and 40 % of the time to the next transition (of either channel).
        gap = trans[k + 1][0] - t if k + 1 < len(trans) else 1 << 40
        burst = []
        while i < len(knob) and (k + 1 == len(trans) or knob[i][0] < trans[k + 1][0]):
            burst.append(knob[i])
            i += 1
        if k + 1 < len(trans):
            assert not (i < len(knob) and knob[i][0] < trans[k + 1][0])
        assert len(burst) in (0, 2, 4, 6)
        assert all(code // 2 == pin for _t, code in burst)
        assert [code & 1 for _t, code in burst] == [level ^ 1, level] * (len(burst) // 2)
        if burst:
            bounced += 1
            span = burst[-1][0] - t
            assert 0 < span <= min(rater.BOUNCE_MAX_US, gap * rater.BOUNCE_FRACTION_PCT // 100)
    assert i == len(knob)
    assert 0.5 < bounced / len(trans) < 0.9  # most transitions bounce


def test_bursts_from_the_generator_directly() -> None:
    """The same properties from the burst generator, over many gaps."""
    for gap in (3, 10, 100, 1000, 2000, 3750, 5208, 10_000, 1 << 40):
        for h in range(0, 5000, 7):
            out: list[tuple[int, int]] = []
            rater._bounced(out, 1000, A, 1, gap, rater._mix(h, gap))
            assert out[0] == (1000, A * 2 + 1)
            toggles = out[1:]
            assert len(toggles) in (0, 2, 4, 6)
            assert all(code // 2 == A for _t, code in toggles)  # the same channel only
            if toggles:
                assert toggles[-1][1] == A * 2 + 1  # ends on the transition's level
                span = toggles[-1][0] - 1000
                assert 0 < span <= min(rater.BOUNCE_MAX_US, gap * 40 // 100)


def test_script_rests_are_exact_and_button_follows(tmp_path: Path) -> None:
    text = "t_s,value,button\n0,50\n1,50\n1.5,61.6\n2,61.6\n2.4,30,1\n3,30,0\n3.2,30.4\n"
    script = parse_script(text)
    knots = [(k.t_us, k.x_mc, k.button) for k in script.knots]
    r, ev = _events(lambda: rater.script_knots(knots), 5, 5_000_000)
    rests = script.rests()
    assert [x.target for x in rests] == [0, 12, -20, -20]
    checkpoints = [x.t_start_us + 2000 for x in rests] + [4_900_000]
    _dec, at = _decode(r, ev, checkpoints)
    for rest in rests:
        assert at[rest.t_start_us + 2000] == rest.target
    assert at[4_900_000] == -20
    btn = [(t, code & 1) for t, code in ev if code // 2 == BTN]
    settled = [lvl for t, lvl in btn if t < 2_400_000 + 1600]
    assert btn[0] == (2_400_000, 1) and settled[-1] == 1
    assert [lvl for t, lvl in btn if t >= 3_000_000][-1] == 0


def test_rater_started_late_continues_the_same_curve() -> None:
    """After a reboot the simulator starts the rater mid-curve: same events from there on."""
    full_r, full = _events(_walk(11), 11, 60_000_000)
    for start in (1_234_567, 17_000_000, 33_333_333):
        late_r, late = _events(_walk(11), 11, 60_000_000, t_start=start)
        # The knob is where the full run has it (count relative to the full run's start).
        _dec, at = _decode(full_r, full, [start])
        assert late_r.count0 - full_r.count0 == at[start]
        # Events strictly after the first transition past start are identical.
        first_t = late[0][0]
        assert late == [e for e in full if e[0] >= first_t]


def test_press_injection_is_merged_in_time_order() -> None:
    r = rater.Rater(_walk(2), 2, 0)
    t: list[int] = []
    c: list[int] = []
    r.take(1_000_000, t, c)
    early = r.press(900_000, 200_000, 1_000_000)
    assert early and all(e[0] < 1_000_000 for e in early)
    t2: list[int] = []
    c2: list[int] = []
    r.take(2_000_000, t2, c2)
    assert (1_100_000, BTN * 2) in zip(t2, c2, strict=True)  # the release, later
    assert t2 == sorted(t2)


def test_rater_is_identical_under_micropython() -> None:
    code = (
        "from sim import rater\n"
        "r = rater.Rater(lambda: rater.walk_knots(5, 50000), 5, 0)\n"
        "t = []; c = []\n"
        "for h in range(100000, 30000001, 100000):\n"
        "    r.take(h, t, c)\n"
        "print(len(t), sum(t) % 1000000007, sum(i * x for i, x in enumerate(c)) % 1000000007)\n"
    )
    out = run_mpy(code, paths=[FIRMWARE]).split()
    r = rater.Rater(_walk(5), 5, 0)
    t: list[int] = []
    c: list[int] = []
    for h in range(100_000, 30_000_001, 100_000):
        r.take(h, t, c)
    want = [len(t), sum(t) % 1000000007, sum(i * x for i, x in enumerate(c)) % 1000000007]
    assert [int(x) for x in out] == want


# --- the simulated hardware (under MicroPython) -----------------------------------------------

SIMHW = """
import sys, time
sys.path.append('.frozen')
from sim import rater
from sim.hw import SimHW
class Counter:
    name = 'fake'
    def __init__(self, a, b):
        self.a = a; self.b = b; self.calls = 0; self.levels = []
        a.irq(self._irq, a.IRQ_RISING | a.IRQ_FALLING, hard=True)
        b.irq(self._irq, b.IRQ_RISING | b.IRQ_FALLING, hard=True)
    def _irq(self, pin):
        self.calls += 1
    def value(self): return 0
    def errors(self): return 0
    def zero(self): pass
    def deinit(self): pass
def make_rater(r0):
    return rater.Rater(lambda: rater.walk_knots(1, 50000), 1, r0)
"""


def test_simhw_clock_wraps_and_drifts() -> None:
    code = SIMHW + (
        "hw = SimHW(uid=b'\\x01', make_rater=make_rater, t0_us=None, tick_bits=24,"
        " tick_start=(1 << 24) - 200000, drift_ppb=100000000, counter_factory=Counter)\n"
        "a = hw.ticks_us()\n"
        "m0 = time.ticks_us()\n"
        "time.sleep_ms(300)\n"
        "b = hw.ticks_us(); m1 = time.ticks_us()\n"
        "print(a, b, hw.ticks_diff(b, a), time.ticks_diff(m1, m0))\n"
        "print(hw.ticks_diff(0, (1 << 24) - 1), hw.ticks_diff((1 << 24) - 1, 0))\n"
    )
    lines = run_mpy(code, paths=[FIRMWARE]).splitlines()
    a, b, d, real = (int(x) for x in lines[0].split())
    assert a > (1 << 24) - 200_000 and b < a  # wrapped
    assert abs(d - real * 1.1) < 2000  # +10 % drift (100000 ppm), within scheduling noise
    assert lines[1] == "1 -1"


def test_simhw_timer_runs_on_the_device_time_grid_and_pins_fire() -> None:
    code = SIMHW + (
        "from array import array\n"
        "hw = SimHW(uid=b'\\x01', make_rater=make_rater, t0_us=None, counter_factory=Counter)\n"
        "T = array('i', [0] * 600); n = array('i', [0])\n"
        "def cb(_t):\n"
        "    i = n[0]\n"
        "    if i < 600:\n"
        "        T[i] = hw.ticks_us()\n"
        "        n[0] = i + 1\n"
        "hw.start()\n"
        "st = hw.disable_irq(); st2 = hw.disable_irq(); hw.enable_irq(st2); hw.enable_irq(st)\n"
        "print(st, st2)\n"
        "hw.start_timer(1000, cb)\n"
        "time.sleep_ms(20000) if False else None\n"
        "while n[0] < 600: time.sleep_ms(10)\n"
        "hw.stop_timer(); hw.stop()\n"
        "d = [hw.ticks_diff(T[i + 1], T[i]) for i in range(599)]\n"
        "print(sum(d) // len(d), max(d), min(d), hw.counter.calls, sorted(d)[299])\n"
    )
    lines = run_mpy(code, paths=[FIRMWARE]).splitlines()
    assert lines[0] == "1 0"  # nested critical sections: only the outer one takes the lock
    mean, _mx, mn, _calls, median = (int(x) for x in lines[1].split())
    # 1 ms apart: the typical interval is the period; a late tick skips (a loaded machine
    # raises the mean, never lowers it below the period: ticks never bunch up)
    assert 990 <= median <= 1010, (median, mean)
    assert mean >= 995, mean
    assert mn > 0


def test_simhw_allocating_interrupt_handler_is_fatal() -> None:
    code = SIMHW + (
        "hw = SimHW(uid=b'\\x01', make_rater=make_rater, t0_us=None, counter_factory=Counter)\n"
        "def cb(_t):\n"
        "    x = [1, 2, 3]\n"
        "hw.start()\n"
        "hw.start_timer(1000, cb)\n"
        "while True:\n"
        "    time.sleep_ms(10)\n"
        "    hw.tx_write(b'')\n"
    )
    with pytest.raises(AssertionError) as info:
        run_mpy(code, paths=[FIRMWARE], timeout=30)
    msg = str(info.value)
    assert "MicroPython exited 3" in msg
    assert "FATAL" in msg and "MemoryError" in msg


# --- link model ------------------------------------------------------------------------------


def test_link_delivers_at_frame_boundaries_plus_bounded_jitter() -> None:
    p = LinkParams(jitter_us=150, stall_per_s=0.0)
    s = LinkSchedule(p, seed=1, origin_ns=0)
    last = 0
    for ready in range(0, 50_000_000, 333_333):
        [(t, n)] = s.to_host(ready, 10)
        assert n == 10
        frame = (ready // 1_000_000 + 1) * 1_000_000
        assert frame <= t <= frame + 150_000
        assert t > ready and t >= last
        last = t
    assert s.to_device(1_500_000) == 2_000_000
    assert s.to_device(2_000_000) == 3_000_000


def test_link_is_deterministic_and_stalls_hold_bytes_back() -> None:
    p = LinkParams(jitter_us=100, stall_per_s=20.0, stall_min_us=5000, stall_max_us=30000)
    a = LinkSchedule(p, seed=9, origin_ns=0)
    b = LinkSchedule(p, seed=9, origin_ns=0)
    ta = [a.to_host(r, 5)[0][0] for r in range(0, 2_000_000_000, 700_000)]
    tb = [b.to_host(r, 5)[0][0] for r in range(0, 2_000_000_000, 700_000)]
    assert ta == tb
    stalls = a.stalls_between(0, 2_000_000_000)
    assert 10 <= len(stalls) <= 80
    for s0, s1 in stalls:
        assert 5_000_000 <= s1 - s0 <= 30_000_000
    for r, t in zip(range(0, 2_000_000_000, 700_000), ta, strict=False):
        assert not any(s0 <= t - a.jitter_ns((t - 1) // 1_000_000) < s1 for s0, s1 in stalls)
        assert t > r
    c = LinkSchedule(p, seed=10, origin_ns=0)
    assert [c.to_host(r, 5)[0][0] for r in range(0, 2_000_000_000, 700_000)] != ta


def test_link_byte_cap_spreads_over_frames() -> None:
    p = LinkParams(jitter_us=0, stall_per_s=0.0, bytes_per_frame=11.52)  # 115200 baud
    s = LinkSchedule(p, seed=1, origin_ns=0)
    pieces = s.to_host(0, 1152)
    assert sum(n for _t, n in pieces) == 1152
    assert len(pieces) == 100  # exactly 11.52 bytes per ms on average
    assert all(n in (11, 12) for _t, n in pieces)
    assert [t for t, _n in pieces] == [k * 1_000_000 for k in range(1, 101)]


def test_bit_errors_corrupt_exactly_and_ber_rate() -> None:
    be = BitErrors(ber=0.0, seed=3)
    be.corrupt(5)
    data = bytearray(3)
    assert be.apply(data) == 3
    assert all(bin(x).count("1") == 1 for x in data) and be.pending == 2
    data = bytearray(10)
    assert be.apply(data) == 2 and sum(bin(x).count("1") for x in data) == 2
    assert be.flipped == be.forced == 5
    ber = BitErrors(ber=1e-3, seed=4)
    total = 0
    for _ in range(200):
        buf = bytearray(500)
        ber.apply(buf)
        total += sum(bin(x).count("1") for x in buf)
    assert 600 <= total <= 1000  # 800 expected in 800,000 bits


# --- faults, script, truth, options -------------------------------------------------------------


def test_parse_fault_and_command() -> None:
    assert F.parse_fault("reboot@5") == F.FaultSpec(5.0, F.Command("reboot"))
    assert F.parse_fault("unplug@10:1.5") == F.FaultSpec(10.0, F.Command("unplug", 1.5))
    assert F.parse_fault("unplug@10") == F.FaultSpec(10.0, F.Command("unplug"))
    assert F.parse_fault("corrupt@4:8") == F.FaultSpec(4.0, F.Command("corrupt", 8))
    assert str(F.parse_fault("stall@3:2")) == "stall@3:2"
    assert F.parse_command("status") == F.Command("status")
    assert F.parse_command("  button 0.25 ") == F.Command("button", 0.25)
    for bad, msg in [
        ("reboot", "expected KIND@SECONDS"),
        ("explode@1", "unknown fault"),
        ("status@1", "unknown fault"),
        ("reboot@x", "not a number"),
        ("reboot@-1", "zero or more"),
        ("reboot@1:2", "takes no argument"),
        ("corrupt@1", "needs an argument"),
        ("corrupt@1:1.5", "whole number"),
        ("button@1:0", "positive"),
        ("stall@1:nan", "positive"),
    ]:
        with pytest.raises(F.FaultError, match=msg):
            F.parse_fault(bad)
    for bad, msg in [("", "empty"), ("dance", "unknown command"), ("unplug 1 2", "too many"),
                     ("corrupt", "needs")]:
        with pytest.raises(F.FaultError, match=msg):
            F.parse_command(bad)


def test_script_parsing_and_errors() -> None:
    s = parse_script("# comment\n\nt_s,value\n0,50\n0.5,55.5\n2,55.5\n", counts_per_point=2)
    assert [k.t_us for k in s.knots] == [0, 500_000, 2_000_000]
    assert [k.x_mc for k in s.knots] == [0, 11_000, 11_000]
    assert s.counts_per_point == 2
    assert [(r.t_start_us, r.t_end_us, r.target) for r in s.rests()] == [(500_000, None, 11)]
    assert s.x_at(250_000) == 5_500
    assert s.sim_text() == "0 0 0\n500000 11000 0\n2000000 11000 0\n"
    assert parse_script("0,50\n1,49.9995\n").knots[1].x_mc == -1  # half away from zero
    for text, msg in [
        ("", "no rows"),
        ("1,50\n", "first row must be at t=0"),
        ("0,30\n1,30\n2,40\n", "first row must be 50 .*0,50 then 1,30"),  # was read as 50
        ("0,50\n0,50\n", "does not increase"),
        ("0,50\n1,101\n", "outside 0..100"),
        ("0,50\n1,x\n", "not a number"),
        ("0,50,2\n", "button must be 0 or 1"),
        ("0,50\n0.1,100\n", "faster than a hand"),
        ("0,50,1,1\n", "columns"),
        ("t,v\nx,y\n", "time 'x' is not a number"),
    ]:
        with pytest.raises(ScriptError, match=msg):
            parse_script(text)
    # 192 counts/s is allowed, more is not.
    parse_script("0,50\n0.25,98\n")
    with pytest.raises(ScriptError):
        parse_script("0,50\n0.25,98.1\n")
    assert isinstance(parse_script("0,50\n").counts_per_point, Fraction)


@pytest.mark.parametrize("ppb", [0, 50_000, -123_456, 999_999])
def test_truth_maps_device_time_back_exactly(ppb: int) -> None:
    b = BootTruth(uid="01", boot_id=1, mono0_ns=5_000_000_000_000, t0_ns=0, drift_ppb=ppb,
                  tick_start=(1 << 30) - 3_000_000, wrap_bits=30)
    for e in [0, 1, 999, 1_000_000, 2_999_999, 3_000_000, 123_456_789, 4_000_000_000]:
        host = b.mono0_ns + e * 1000
        dev = b.device_us(host)
        back = b.host_ns(dev, near_ns=host + 20_000_000)
        # Exact to the tick: the host time is the first µs that reads this device time.
        assert b.device_us(back) == dev
        assert back <= host
        assert b.device_us(back - 1000) < dev or back == b.mono0_ns


def test_truth_when_the_counter_wrapped_before_the_firmware_started() -> None:
    b = BootTruth(uid="01", boot_id=1, mono0_ns=10**12, t0_ns=0, drift_ppb=0,
                  tick_start=(1 << 30) - 100, wrap_bits=30)
    # The firmware's first reading came 500 µs after boot: raw 400, device time 400.
    assert b.host_ns(400, near_ns=10**12 + 10**6) == 10**12 + 500_000
    assert b.host_ns(400) == 10**12 + 500_000


def test_options_validate_and_round_trip_through_the_cli() -> None:
    for kw, msg in [
        ({"rate_hz": 10}, "--rate"),
        ({"batch": 0}, "--batch"),
        ({"wrap_bits": 31}, "--wrap-bits"),
        ({"tick_start_us": 1 << 30}, "--tick-start-us"),
        ({"drift_ppm": 5000.0}, "--drift-ppm"),
        ({"uid": "xyz"}, "not hex"),
        ({"counts_per_point": 0.0}, "--counts-per-point"),
        ({"ber": 1.0}, "--ber"),
    ]:
        with pytest.raises(UsageError, match=msg):
            DialOptions(**kw)
    opts = DialOptions(
        rate_hz=500, batch=20, seed=4, drift_ppm=-12.5, wrap_bits=28, tick_start_us=1000,
        uid="a1b2", counts_per_point=2.5, link_model=False, ber=1e-6, native_usb=True,
        faults=(F.parse_fault("reboot@3"), F.parse_fault("unplug@5:1")),
        link=LinkParams(jitter_us=50, stall_per_s=0.5, stall_min_us=1000, stall_max_us=2000,
                        bytes_per_frame=11.52),
        realtime=False, spin_us=20, heap_kb=256,
    )
    ctx = virtual_dial.make_context("virtual-dial", opts.to_argv())
    kw = dict(ctx.params)
    assert options_from_cli(kw) == opts
    assert opts.uid_bytes == b"\xa1\xb2"
    assert DialOptions(seed=3).uid_bytes == DialOptions(seed=3).uid_bytes != DialOptions().uid_bytes
    args = DialOptions(seed=3).sim_args(knots=None, t0_us=None, truth=None, ctl=None)
    assert "range_mc=50000" in args and not any(a.startswith("t0=") for a in args)


def test_uid_is_stable() -> None:
    u = DialOptions(seed=1).uid_bytes
    assert u == hashlib.sha256(b"ratedial-virtual:1").digest()[:8]
