"""Counter checks that run unchanged under CPython and the MicroPython unix port.

Every waveform from ``waveforms`` goes through QuadDecoder, through IrqCounter on two fake
pins (whose IRQ handler runs with the heap locked on MicroPython, so any allocation in the
IRQ path raises MemoryError), and through PcntCounter over a fake machine.Encoder. Expected
counts come from the waveform generator's own bookkeeping. PioCounter's FIFO reading is
checked here against a fake state machine; the PIO program itself runs in tests/test_pio.py.

Each check returns None when it passes and a short reason when it fails. ``main()`` prints one
line per check, ``PASS <label>`` or ``FAIL <label>: <reason>``, and raises at the end if any
failed (so run_mpy fails too).
"""

from array import array

import waveforms
from dial.counter_pcnt import PcntCounter
from dial.counter_pio import PioCounter
from dial.quad import IrqCounter, QuadDecoder

try:
    from micropython import heap_lock, heap_unlock
except ImportError:  # CPython: nothing to lock, the checks still run

    def heap_lock():
        pass

    def heap_unlock():
        pass


SEEDS = (1, 2, 3)


class FakePin:
    """Stands in for machine.Pin: ``value()`` returns the level; ``irq()`` stores the handler.

    ``set(level)`` changes the level and, like a pin IRQ, then runs the handler with the heap
    locked. ``set(level, fire=False)`` only changes the level (an IRQ still pending).
    """

    IRQ_FALLING = 4  # rp2's values
    IRQ_RISING = 8

    def __init__(self, level, hard_ok=True):
        self.level = level
        self.hard_ok = hard_ok
        self.handler = None
        self.trigger = 0
        self.hard = False

    def value(self):
        return self.level

    def irq(self, handler=None, trigger=0, hard=False):
        if hard and not self.hard_ok:
            raise TypeError("unexpected keyword argument 'hard'")
        self.handler = handler
        self.trigger = trigger
        self.hard = hard

    def fire(self):
        handler = self.handler
        heap_lock()
        try:
            handler(self)
        finally:
            heap_unlock()

    def set(self, level, fire=True):
        self.level = level
        if fire:
            self.fire()


def read_locked(counter):
    """counter.value() with the heap locked: it must be callable from a hard IRQ."""
    heap_lock()
    try:
        v = counter.value()
    finally:
        heap_unlock()
    return v


def _levels(start, events):
    """Yield (index_after, a, b, changed_channel) for each event."""
    a, b = start
    for i, (_t, na, nb) in enumerate(events):
        ch = "a" if na != a else "b"
        a, b = na, nb
        yield i + 1, a, b, ch


def check_decoder(name, seed):
    start, events, final, checkpoints = waveforms.generate(name, seed)
    dec = QuadDecoder((start[0] << 1) | start[1])
    counts = [0]
    for _t, a, b in events:
        dec.feed((a << 1) | b)
        counts.append(dec.count)
    for i, want in checkpoints:
        if counts[i] != want:
            return f"after event {i} count {counts[i]}, expected {want}"
    if dec.count != final:
        return f"final {dec.count}, expected {final}"
    if dec.errors:
        return f"{dec.errors} errors on a legal waveform"
    return None


def _irq_wiring(counter, pin_a, pin_b, hard_ok):
    """None if IrqCounter registered its handler as a pin IRQ on both edges of both pins."""
    if counter.name != "irq":
        return f"name {counter.name!r}"
    if pin_a.handler is None or pin_b.handler is None:
        return "IRQ handler not registered on both pins"
    if pin_a.trigger != FakePin.IRQ_RISING | FakePin.IRQ_FALLING:
        return f"trigger is {pin_a.trigger!r}, expected rising|falling"
    if pin_a.hard != hard_ok:
        return f"hard={pin_a.hard!r}, expected {hard_ok!r}"
    return None


def _compare(counter, want_at, i):
    got = read_locked(counter)
    if got != want_at[i]:
        return f"after event {i} count {got}, expected {want_at[i]}"
    return None


def check_irq(name, seed, late=False, hard_ok=True):
    """IrqCounter on fake pins. ``late``: within a settled-to-settled span, edges are taken
    in pairs and both handlers run after the second edge (IRQ latency during bounce), so
    the handlers see "no change" and must count nothing."""
    start, events, final, checkpoints = waveforms.generate(name, seed)
    pin_a = FakePin(start[0], hard_ok)
    pin_b = FakePin(start[1], hard_ok)
    counter = IrqCounter(pin_a, pin_b)
    why = _irq_wiring(counter, pin_a, pin_b, hard_ok)
    pins = {"a": pin_a, "b": pin_b}
    want_at = {}
    for i, want in checkpoints:
        want_at[i] = want
    why = why or _compare(counter, want_at, 0)
    held = None  # pin whose IRQ is still pending (late mode)
    for i, a, b, ch in _levels(start, events):
        if why:
            return why
        pin = pins[ch]
        level = a if ch == "a" else b
        if late and held is None and i not in want_at:
            pin.set(level, fire=False)
            held = pin
        elif held is not None:
            pin.set(level, fire=False)
            held.fire()
            pin.fire()
            held = None
        else:
            pin.set(level)
        if i in want_at:
            why = _compare(counter, want_at, i)
    if why:
        return why
    got = read_locked(counter)
    if got != final:
        return f"final {got}, expected {final}"
    if counter.errors():
        return f"{counter.errors()} errors on a legal waveform"
    counter.deinit()
    if pin_a.handler is not None or pin_b.handler is not None:
        return "deinit left an IRQ handler"
    return None


def check_illegal():
    """Both channels changing at once counts nothing and one error; decoding then goes on
    from the new state. All four illegal pairs, on both QuadDecoder and IrqCounter."""
    for s in range(4):
        dec = QuadDecoder(s)
        if dec.feed(s ^ 3) != 0 or dec.count != 0 or dec.errors != 1:
            return f"decoder {s} -> {s ^ 3}: count {dec.count} errors {dec.errors}"
        pin_a = FakePin(s >> 1)
        pin_b = FakePin(s & 1)
        counter = IrqCounter(pin_a, pin_b)
        t = s ^ 3
        pin_a.set(t >> 1, fire=False)  # both change before the handler runs
        pin_b.set(t & 1, fire=False)
        pin_a.fire()
        pin_b.fire()  # the second pending IRQ sees no change
        if read_locked(counter) != 0 or counter.errors() != 1:
            return f"irq {s} -> {t}: count {counter.value()} errors {counter.errors()}"
        # one legal forward step from the new state: A leads B = +1
        fwd = waveforms.FORWARD
        nxt = fwd[(fwd.index(t) + 1) % 4]
        if (nxt >> 1) != pin_a.level:
            pin_a.set(nxt >> 1)
        else:
            pin_b.set(nxt & 1)
        if read_locked(counter) != 1 or counter.errors() != 1:
            return f"irq after illegal: count {counter.value()} errors {counter.errors()}"
    return None


def check_no_change():
    """A handler that finds the pins unchanged (bounce already went back) counts nothing."""
    for s in range(4):
        dec = QuadDecoder(s)
        if dec.feed(s) != 0 or dec.errors:
            return f"decoder {s} -> {s} counted"
        pin_a = FakePin(s >> 1)
        pin_b = FakePin(s & 1)
        counter = IrqCounter(pin_a, pin_b)
        pin_a.fire()
        pin_b.fire()
        if read_locked(counter) != 0 or counter.errors():
            return f"irq {s} spurious: count {counter.value()} errors {counter.errors()}"
    return None


def check_zero():
    """zero() makes the current position 0; later steps count from there."""
    pin_a = FakePin(0)
    pin_b = FakePin(0)
    counter = IrqCounter(pin_a, pin_b)
    for ab in (2, 3, 1, 0, 2):  # five forward steps from 00
        if (ab >> 1) != pin_a.level:
            pin_a.set(ab >> 1)
        else:
            pin_b.set(ab & 1)
    if read_locked(counter) != 5:
        return f"5 forward steps read {counter.value()}"
    counter.zero()
    if read_locked(counter) != 0:
        return f"after zero() read {counter.value()}"
    pin_a.set(0)  # 10 -> 00: one step back
    if read_locked(counter) != -1:
        return f"one step back after zero() read {counter.value()}"
    return None


# --- esp32: a fake machine.Encoder -------------------------------------------------------


class FakePcnt:
    """One esp32 PCNT unit as machine.Encoder(phases=4) configures it (MicroPython
    ports/esp32/modules/machine.py): channel 0 counts A edges (falling +1, rising -1, reversed
    while B is low), channel 1 counts B edges (rising +1, falling -1, reversed while A is
    low). The counter has limits +-``limit``; reaching one resets it to 0 and raises a flag
    for the overflow IRQ, which is soft: it runs when the scheduler gets to it, or when
    value() flushes it."""

    IRQ_MIN = 8
    IRQ_MAX = 16

    def __init__(self, a, b, limit):
        self.a = a
        self.b = b
        self.limit = limit
        self.count = 0
        self.flags = 0
        self.handler = None

    def pins(self, a, b):
        d = 0
        if a != self.a:
            d = 1 if a == 0 else -1
            if self.b == 0:
                d = -d
        elif b != self.b:
            d = 1 if b == 1 else -1
            if self.a == 0:
                d = -d
        self.a = a
        self.b = b
        self.count += d
        if self.count >= self.limit:
            self.count = 0
            self.flags |= self.IRQ_MAX
        elif self.count <= -self.limit:
            self.count = 0
            self.flags |= self.IRQ_MIN

    def run_scheduled(self):
        if self.flags and self.handler is not None:
            self.handler(self)

    def take_flags(self):
        f = self.flags
        self.flags = 0
        return f

    def value(self):
        # esp32.PCNT.value(): flush pending IRQs synchronously, then return the count.
        while True:
            count = self.count
            if self.flags and self.handler is not None:
                self.handler(self)
            else:
                return count


class FakeEncoder:
    """machine.Encoder's Python layer, same algorithm as upstream: count overflows of the
    PCNT in its IRQ, value() = overflows * range + pcnt.value() + offset."""

    def __init__(self, pcnt):
        self._pcnt = pcnt
        self._range = pcnt.limit
        self._overflows = 0
        self._offset = 0
        self.deinited = False
        pcnt.handler = self._overflow

    def _overflow(self, pcnt):
        mask = pcnt.take_flags()
        if mask & pcnt.IRQ_MIN:
            self._overflows -= 1
        elif mask & pcnt.IRQ_MAX:
            self._overflows += 1

    def value(self, value=None):
        if not hasattr(self, "_pcnt"):
            raise RuntimeError("not initialised")
        while True:
            overflows = self._overflows
            current = self._pcnt.value()
            if self._overflows == overflows:
                break
        result = overflows * self._range + current + self._offset
        if value is not None:
            self._overflows -= overflows
            self._offset = value - current
        return result

    def deinit(self):
        self.deinited = True


def check_pcnt(name, seed):
    start, events, final, checkpoints = waveforms.generate(name, seed)
    pcnt = FakePcnt(start[0], start[1], 32000)
    # Counts before the wrapper exists must not show: the wrapper zeroes at construction.
    pcnt.count = 1234
    counter = PcntCounter(FakeEncoder(pcnt))
    if counter.name != "pcnt":
        return f"name {counter.name!r}"
    want_at = {}
    for i, want in checkpoints:
        want_at[i] = want
    for i, a, b, _ch in _levels(start, events):
        pcnt.pins(a, b)
        if i in want_at:
            got = read_locked(counter)
            if got != want_at[i]:
                return f"after event {i} count {got}, expected {want_at[i]}"
    got = read_locked(counter)
    if got != final:
        return f"final {got}, expected {final}"
    if counter.errors() != 0:
        return f"errors() {counter.errors()}"
    counter.deinit()
    return None


def check_pcnt_wrap():
    """Past the 16-bit hardware range both ways: 70000 quarter-steps forward, 150000 back,
    the soft overflow IRQ running every 1000 steps, reads under the heap lock."""
    pcnt = FakePcnt(0, 0, 32000)
    counter = PcntCounter(FakeEncoder(pcnt))
    fwd = waveforms.FORWARD
    pos = 0
    for direction, steps in ((1, 70000), (-1, 150000)):
        for k in range(steps):
            pos += direction
            ab = fwd[pos % 4]
            pcnt.pins(ab >> 1, ab & 1)
            if k % 1000 == 0:
                pcnt.run_scheduled()
            if k % 9973 == 0:  # reads at arbitrary points, some with an IRQ still pending
                got = read_locked(counter)
                if got != pos:
                    return f"at {pos} read {got}"
    got = read_locked(counter)
    if got != pos or pos != -80000:
        return f"end at {pos} read {got}"
    counter.zero()
    if read_locked(counter) != 0:
        return f"after zero() read {counter.value()}"
    return None


# --- rp2: the PIO reader --------------------------------------------------------------------


class FakeSm:
    """rp2.StateMachine as PioCounter sees it: a 4-word RX FIFO that the program fills with
    Y on every loop (dropping when full). get() with an empty FIFO models one more loop: it
    pushes the current Y. No allocation anywhere, so value() can run under the heap lock."""

    def __init__(self):
        self.y = 0  # the PIO's Y as a 32-bit word
        self.fifo = array("i", [0, 0, 0, 0])
        self.n = 0
        self.gets = 0
        self.running = True

    def push(self):
        if self.n < 4:
            w = self.y & 0xFFFFFFFF
            self.fifo[self.n] = w - 0x100000000 if w & 0x80000000 else w
            self.n += 1

    def rx_fifo(self):
        return self.n

    def get(self, buf):
        # One word into each item of buf, as MicroPython's StateMachine.get(buf) does.
        for k in range(len(buf)):
            if self.n == 0:
                self.push()
            buf[k] = self.fifo[0]
            self.fifo[0] = self.fifo[1]
            self.fifo[1] = self.fifo[2]
            self.fifo[2] = self.fifo[3]
            self.n -= 1
            self.gets += 1
        return buf

    def active(self, on=None):
        if on is not None:
            self.running = bool(on)
        return self.running


def check_pio_reader():
    """PioCounter drains stale words and reads a fresh one, negates (the PIO counts down when
    A leads B), handles Y's two's complement, zeroes in software, allocates nothing."""
    sm = FakeSm()
    sm.y = 5  # counted before the counter existed
    counter = PioCounter(sm)
    if counter.name != "pio" or counter.errors() != 0:
        return f"name {counter.name!r} errors {counter.errors()!r}"
    for y, want in ((5, 0), (4, 1), (-20, 25), (0x3FFFFF00, 5 - 0x3FFFFF00), (2**32 - 3, 8)):
        sm.push()  # stale words from before the move
        sm.push()
        sm.y = y
        sm.gets = 0
        got = read_locked(counter)
        if got != want:
            return f"Y={y} read {got}, expected {want}"
        if sm.gets != 3 or sm.n != 0:
            return f"read {sm.gets} words and left {sm.n}: must drain then read fresh"
    sm.y = -100
    counter.zero()
    sm.y = -101
    if read_locked(counter) != 1:
        return f"after zero() read {counter.value()}"
    counter.deinit()
    if sm.running:
        return "deinit left the state machine running"
    return None


def check_heap_lock_bites():
    """On MicroPython, allocating with the heap locked must raise: else the IRQ checks above
    would prove nothing."""
    import sys

    if sys.implementation.name != "micropython":
        return None
    heap_lock()
    try:
        try:
            junk = [0, 1, 2]
        except MemoryError:
            return None
    finally:
        heap_unlock()
    return f"allocated {junk!r} with the heap locked"


def all_checks(seeds=SEEDS):
    """(label, function, args) for every check."""
    checks = []
    for name in waveforms.scenarios():
        for seed in seeds:
            tag = f"{name}/{seed}"
            checks.append(("decoder " + tag, check_decoder, (name, seed)))
            checks.append(("irq " + tag, check_irq, (name, seed)))
            checks.append(("irq-late " + tag, check_irq, (name, seed, True)))
            checks.append(("pcnt " + tag, check_pcnt, (name, seed)))
        checks.append(("irq-soft " + name, check_irq, (name, 1, False, False)))
    checks.append(("illegal", check_illegal, ()))
    checks.append(("no-change", check_no_change, ()))
    checks.append(("zero", check_zero, ()))
    checks.append(("pcnt-wrap", check_pcnt_wrap, ()))
    checks.append(("pio-reader", check_pio_reader, ()))
    checks.append(("heap-lock", check_heap_lock_bites, ()))
    return checks


def main(seeds=SEEDS):
    failed = 0
    for label, fn, args in all_checks(seeds):
        why = fn(*args)
        if why is None:
            print("PASS " + label)
        else:
            failed += 1
            print(f"FAIL {label}: {why}")
    if failed:
        raise AssertionError(f"{failed} counter checks failed")
