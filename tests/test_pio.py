"""The real firmware PIO program (firmware/dial/counter_pio.py) on an emulated RP2040 PIO.

The program body goes through a fake of MicroPython's rp2.asm_pio (tests/pio_dsl.py) into
pioasm text, is assembled by adafruit_pioasm and runs on rp2040-pio-emulator. The firmware's
own make_pio_counter() and PioCounter drive it through a fake rp2.StateMachine whose RX FIFO
is the emulator's, so value() drains the FIFO exactly as on the board.

Time: waveforms from tests/firmware/waveforms.py keep their order, but each level is held
for a few SM cycles instead of microseconds (at 125 MHz one slow turn would be millions of
cycles). What matters to the program is that every level lasts at least its worst-case loop
of LOOP_CYCLES: the default runs hold 10-32 cycles, and the FAST runs hold exactly 10, the
documented maximum rate (sysclk / 10). Below that it must miss steps, and a test shows it.
"""

import sys
from array import array
from bisect import bisect_right
from pathlib import Path

import pioemu
import pytest
from pioemu.state import State

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT / "firmware", ROOT / "tests" / "firmware", ROOT / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import waveforms  # noqa: E402
from dial import counter_pio, quad  # noqa: E402

import pio_dsl  # noqa: E402

LOOP = counter_pio.LOOP_CYCLES
LEAD_IN = 200  # cycles before the first event: the counter starts and zeroes in this time
# The long mixed run costs ~2 s of emulation per seed (pioemu runs ~70k cycles/s); the
# CPython and MicroPython checks in test_counters.py cover more seeds cheaply.
RUNS = [(name, seed) for name in waveforms.scenarios() for seed in (1, 2)][:-1]


# --- fakes of the board ------------------------------------------------------------------


class Schedule:
    """Pin levels over SM clock cycles: A on GPIO 0 (in_base), B on GPIO 1 (in_base + 1)."""

    def __init__(self, start):
        self.clocks = [0]
        self.values = [start[0] | (start[1] << 1)]

    def add(self, clock, a, b):
        assert clock > self.clocks[-1]
        self.clocks.append(clock)
        self.values.append(a | (b << 1))

    def at(self, clock: int) -> int:
        return self.values[bisect_right(self.clocks, clock) - 1]


class EmulatedStateMachine:
    """rp2.StateMachine over pioemu: rx_fifo(), get(buf), active(). The SM only runs while
    the test advances it (run_until) or while get() waits for a word, like the real one."""

    def __init__(self, sm_id, program, schedule, freq=None, in_base=None):
        self.sm_id = sm_id
        self.program = program
        self.freq = freq
        self.in_base = in_base
        self.running = False
        assembled = program.assemble()
        self.opcodes = list(assembled.assembled)
        kw = assembled.pio_kwargs
        self.wrap_target = kw.get("wrap_target", 0)
        self.wrap_top = kw.get("wrap", len(self.opcodes) - 1)
        self.state = State()
        self._steps = pioemu.emulate(
            self.opcodes,
            stop_when=lambda _op, _state: False,
            input_source=schedule.at,
            shift_isr_right=program.shift_isr_right,
            shift_osr_right=program.shift_osr_right,
            wrap_target=self.wrap_target,
            wrap_top=self.wrap_top,
        )

    def active(self, on=None):
        if on is not None:
            self.running = bool(on)
        return self.running

    def step(self):
        assert self.running, "state machine not started"
        _, self.state = next(self._steps)

    def run_until(self, clock):
        while self.state.clock < clock:
            self.step()

    def rx_fifo(self):
        return len(self.state.receive_fifo)

    def get(self, buf):
        # Blocks while the FIFO is empty; one 32-bit word into each item of buf, as
        # MicroPython's StateMachine.get(buf) does (an 'i' array sees it signed).
        for k in range(len(buf)):
            while not self.state.receive_fifo:
                self.step()
            word = self.state.receive_fifo.popleft()
            buf[k] = word - (1 << 32) if word & 0x8000_0000 else word
        return buf


class FakePin:
    IN = 1
    PULL_UP = 1

    made: list  # (id, mode, pull) of every Pin constructed

    def __init__(self, pin_id, mode=None, pull=None):
        self.id = pin_id
        FakePin.made.append((pin_id, mode, pull))


class FakeRp2:
    """Stands in for the rp2 module: asm_pio is the DSL fake, StateMachine the emulator."""

    class PIO:
        SHIFT_LEFT = pio_dsl.SHIFT_LEFT
        SHIFT_RIGHT = pio_dsl.SHIFT_RIGHT

    asm_pio = staticmethod(pio_dsl.asm_pio)

    def __init__(self, schedule):
        self.schedule = schedule
        self.machines = []

    def StateMachine(self, sm_id, program, **kw):  # rp2's class name
        sm = EmulatedStateMachine(sm_id, program, self.schedule, **kw)
        self.machines.append(sm)
        return sm


class FakeMachine:
    Pin = FakePin


@pytest.fixture
def board(monkeypatch):
    """Returns make(schedule) -> (counter, sm): the firmware factory on the fake board."""
    monkeypatch.setattr(counter_pio, "_program", None)
    FakePin.made = []

    def make(schedule, **kw):
        rp2 = FakeRp2(schedule)
        monkeypatch.setitem(sys.modules, "rp2", rp2)
        monkeypatch.setitem(sys.modules, "machine", FakeMachine)
        counter = counter_pio.make_pio_counter(0, 0, **kw)
        return counter, rp2.machines[-1]

    return make


# --- waveforms in SM cycles --------------------------------------------------------------


def compress(start, events, checkpoints, hold_min=LOOP, settle=30):
    """Events in order, each level held hold_min + (0..22) cycles, levels at checkpoints
    held settle + (0..22) so a read fits. Returns (schedule, [(read_clock, expected)]).
    The jitter comes from the waveform's own microsecond gaps, so sampling phase varies."""
    schedule = Schedule(start)
    settled = {i for i, _ in checkpoints}
    clock = LEAD_IN
    clocks = []
    for k, (t_us, a, b) in enumerate(events):
        schedule.add(clock, a, b)
        clocks.append(clock)
        gap_us = events[k + 1][0] - t_us if k + 1 < len(events) else 0
        clock += (settle if (k + 1) in settled else hold_min) + gap_us % 23
    reads = [(clocks[i - 1] + LOOP, want) for i, want in checkpoints if i > 0]
    return schedule, reads


def spin(direction, steps, start_pos=0):
    """A bounce-free run of quarter-steps (A leads B for direction +1)."""
    events = []
    pos = start_pos
    for k in range(steps):
        pos += direction
        ab = waveforms.FORWARD[pos % 4]
        events.append((k + 1, ab >> 1, ab & 1))
    ab0 = waveforms.FORWARD[start_pos % 4]
    return (ab0 >> 1, ab0 & 1), events


def run_held(make, start, events, hold, phase=0):
    """Every level held exactly ``hold`` cycles; returns (count read at the end, sm)."""
    schedule = Schedule(start)
    clock = LEAD_IN + phase
    for _t, a, b in events:
        schedule.add(clock, a, b)
        clock += hold
    counter, sm = make(schedule)
    assert sm.state.clock < LEAD_IN
    sm.run_until(clock + 2 * LOOP)
    return counter.value(), sm


# --- the program itself ------------------------------------------------------------------


def _assembled():
    program = pio_dsl.asm_pio(in_shiftdir=pio_dsl.SHIFT_LEFT, out_shiftdir=pio_dsl.SHIFT_RIGHT)(
        counter_pio.quadrature_program
    )
    return program.assemble()


def test_program_fills_instruction_memory_with_table_at_zero():
    asm = _assembled()
    ops = list(asm.assembled)
    assert len(ops) == 32  # only offset 0 fits
    labels = {"decrement": 14, "update": 15, "increment": 21}
    # 0-13: unconditional jumps (JMP, condition 000) into the three actions
    for addr in range(14):
        assert ops[addr] & 0xE0E0 == 0x0000, f"address {addr} is not a plain jmp"
        assert ops[addr] & 0x1F in labels.values()
    assert ops[14] == 0x0080 | 15  # decrement: jmp y--, update (the next address)
    assert ops[15] == 0xA0C2  # update: mov isr, y
    assert ops[16] == 0x8000  # push noblock
    assert all(op == 0xA042 for op in ops[24:])  # padding: nop
    assert asm.pio_kwargs["wrap_target"] == 15
    assert asm.pio_kwargs["wrap"] == 23


def test_jump_table_is_the_negated_gray_code_table():
    """Entry k of the PIO table is sample (old << 2) | new with A in bit 0; the project
    table dial.quad.TABLE has A in bit 1 and counts the other way round."""
    ops = list(_assembled().assembled)
    action = {14: -1, 15: 0, 21: +1}  # PIO Y change of each jump target
    swap = [0b00, 0b10, 0b01, 0b11]  # two-bit state with A in bit 0 -> A in bit 1
    for k in range(16):
        target = ops[k] & 0x1F if k < 14 else k  # 14 and 15 are the actions themselves
        index = (swap[k >> 2] << 2) | swap[k & 3]
        assert action[target] == -quad.TABLE[index], k


def test_dsl_rejects_tilde_and_foreign_globals():
    # MicroPython's asm_pio encodes ~y as a negative number: the board rejects it, so must we.
    def tilde():
        mov(y, ~y)  # noqa: F821

    with pytest.raises(pio_dsl.PIOASMError):
        pio_dsl.asm_pio()(tilde)
    assert "pytest" in globals()  # globals restored after the failure

    # While the body runs its module globals ARE the DSL: other module names are gone.
    def uses_module_name():
        jmp(LOOP)  # noqa: F821

    with pytest.raises(NameError):
        pio_dsl.asm_pio()(uses_module_name)


# --- counting ------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "seed"), RUNS)
def test_counts_every_waveform_exactly(board, name, seed):
    start, events, final, checkpoints = waveforms.generate(name, seed)
    schedule, reads = compress(start, events, checkpoints)
    counter, sm = board(schedule)
    assert sm.state.clock < LEAD_IN
    assert counter.value() == 0
    for clock, want in reads:
        sm.run_until(clock)
        got = counter.value()
        assert got == want, f"{name}/{seed}: read {got} at cycle {clock}, expected {want}"
    sm.run_until(schedule.clocks[-1] + 3 * LOOP)
    assert counter.value() == final
    assert counter.errors() == 0
    assert counter.name == "pio"


@pytest.mark.parametrize("phase", range(LOOP))
@pytest.mark.parametrize("direction", [1, -1])
def test_fast_at_documented_max_rate(board, direction, phase):
    """sysclk / 10 quarter-steps per second: every level held exactly LOOP_CYCLES, every
    sampling phase; -1 takes the PIO's 10-cycle increment path."""
    start, events = spin(direction, 300, start_pos=phase)
    got, _sm = run_held(board, start, events, LOOP, phase)
    assert got == direction * 300


@pytest.mark.parametrize("name", ["fast", "reversals"])
def test_fast_bouncing_waveforms_at_max_rate(board, name):
    """Bounce toggles and reversals too, each level held exactly LOOP_CYCLES."""
    start, events, final, _ = waveforms.generate(name, 4)
    got, _sm = run_held(board, start, events, LOOP)
    assert got == final


def test_too_fast_misses_steps(board):
    """One cycle under the documented rate the increment path falls behind: the check
    above can fail."""
    start, events = spin(-1, 300)
    got, _sm = run_held(board, start, events, LOOP - 1)
    assert got != -300


def test_illegal_double_change_is_not_counted(board):
    schedule = Schedule((0, 0))
    schedule.add(LEAD_IN, 1, 1)  # both channels at once
    schedule.add(LEAD_IN + 40, 0, 1)  # then a legal forward step 11 -> 01
    counter, sm = board(schedule)
    sm.run_until(LEAD_IN + 30)
    assert counter.value() == 0
    sm.run_until(LEAD_IN + 80)
    assert counter.value() == 1


def test_wrong_shift_direction_is_caught(board, monkeypatch):
    """asm_pio's default OUT shift (left) breaks the table index: the emulated counts go
    wrong, so the firmware's explicit out_shiftdir matters and is tested."""
    real = pio_dsl.asm_pio

    def default_shift(**_options):
        return real()

    monkeypatch.setattr(FakeRp2, "asm_pio", staticmethod(default_shift))
    start, events = spin(1, 40)
    got, _sm = run_held(board, start, events, 20)
    assert got != 40


@pytest.mark.parametrize("start_pos", range(4))
def test_starts_at_zero_in_any_state(board, start_pos):
    """The OSR's power-on 00 may count one phantom step to the real pin state: the
    counter's start-up reads absorb it, whichever state the dial rests in."""
    ab = waveforms.FORWARD[start_pos]
    counter, sm = board(Schedule((ab >> 1, ab & 1)))
    assert counter.value() == 0
    sm.run_until(LEAD_IN * 2)
    assert counter.value() == 0


def test_zero_and_signed_count(board):
    """zero() is a software offset; the count goes through Y's two's complement (the PIO
    decrements Y when A leads B)."""
    start, events = spin(1, 50)
    schedule = Schedule(start)
    for k, (_t, a, b) in enumerate(events):
        schedule.add(LEAD_IN + 40 * k, a, b)
    counter, sm = board(schedule)
    sm.run_until(LEAD_IN + 40 * 24 + LOOP)  # step 25 sampled, step 26 still 30 cycles away
    assert counter.value() == 25
    counter.zero()
    assert counter.value() == 0
    sm.run_until(LEAD_IN + 40 * 49 + LOOP)
    assert counter.value() == 25
    # Y itself went below zero: the raw word is two's complement
    assert sm.state.y_register > 0x8000_0000


def test_factory_wiring(board):
    counter, sm = board(Schedule((1, 1)), freq=2_000_000)
    assert sm.sm_id == 0
    assert sm.freq == 2_000_000
    assert sm.in_base.id == 0
    assert sm.running
    assert (0, FakePin.IN, FakePin.PULL_UP) in FakePin.made
    assert (1, FakePin.IN, FakePin.PULL_UP) in FakePin.made  # pin B = pin A + 1
    assert sm.program.options["in_shiftdir"] == pio_dsl.SHIFT_LEFT
    assert sm.program.options["out_shiftdir"] == pio_dsl.SHIFT_RIGHT
    counter.deinit()
    assert not sm.running


def test_value_reads_into_preallocated_word(board):
    counter, sm = board(Schedule((0, 0)))
    bufs = list(counter._bufs)  # one per FIFO level: level n drains n stale words + 1 fresh
    assert [len(b) for b in bufs] == [1, 2, 3, 4, 5]
    assert all(isinstance(b, array) and b.typecode == "i" for b in bufs)
    sm.run_until(LEAD_IN)
    assert len(sm.state.receive_fifo) == 4  # full of stale words between reads
    counter.value()
    assert all(a is b for a, b in zip(counter._bufs, bufs, strict=True))
