"""A minimal fake of the HW object (firmware/README.md) for unit tests under MicroPython.

Everything is manual and deterministic:
- the clock: ``now`` raw ticks, wrapping at 2**30 like rp2/esp32 (it starts just before
  the wrap so every test crosses it); ``advance(us)`` moves it;
- the timer: ``step(n, late_us=0)`` advances one period (+ late_us) and fires the sampling
  callback, n times. The callback runs under ``micropython.heap_lock()``: any allocation in
  the interrupt path raises MemoryError and fails the test;
- the encoder: ``counter.pos`` is the physical position, ``counter.err`` the error count;
- the button: ``button.pressed`` (1/0);
- the link: ``tx_write`` takes at most ``chunk`` bytes per call and, when ``room`` is an
  int, only that many bytes in total until the test gives more (``room = None``: the host
  reads everything). What was taken is in ``out``;
- rx: tests feed command bytes through ``App.rx_bytes``; ``rx`` may be set to a real file
  (select.poll on the unix port needs a file descriptor) for the asyncio shell.
"""

from array import array

import micropython

MASK = (1 << 30) - 1
HALF = 1 << 29


class FakeCounter:
    name = "fake"

    def __init__(self):
        self.pos = 0
        self.err = 0
        self.offset = 0
        self.zeroed = 0
        self.deinited = False

    def value(self):
        return self.pos - self.offset

    def zero(self):
        self.offset = self.pos
        self.zeroed += 1

    def errors(self):
        return self.err

    def deinit(self):
        self.deinited = True


class FakeButton:
    def __init__(self):
        self.pressed = 0

    def value(self):
        return self.pressed


class FakeHW:
    tick_bits = 30

    def __init__(self, t0=(1 << 30) - 2500, button=True, board="fake",
                 uid=b"\xe6\x60\x38\xb7\x13\x2f\x4a\x2c", boot=0x5EED1234):
        self.board = board
        self.t0 = t0
        self.now = t0
        self.elapsed = 0  # us advanced since t0, unwrapped: device time = t0 + elapsed
        self.fired = 0  # timer interrupts so far = the next sample index
        self.auto = None  # see start_timer
        self.auto_lock = (-1, 0)  # see _auto
        self.counter = FakeCounter()
        self.button = FakeButton() if button else None
        self.uid = uid
        self.boot = boot
        self.period = 0
        self.callback = None
        self.timer_starts = []  # every start_timer period, in order
        self.irq_off = 0
        self.out = bytearray()
        self.room = None
        self.chunk = 64
        self.writes = 0
        self.rx = None
        self.mem = 123456

    # -- the HW contract

    def ticks_us(self):
        return self.now

    def ticks_diff(self, a, b):
        return ((a - b + HALF) & MASK) - HALF

    def unique_id(self):
        return self.uid

    def boot_id(self):
        return self.boot

    def start_timer(self, period_us, callback):
        self.period = period_us
        self.callback = callback
        self.timer_starts.append(period_us)
        if self.auto is not None:
            # For tests of the asyncio shell: a task fires the timer about every 1 ms
            # and ends the run with KeyboardInterrupt (Ctrl-C) after ``auto`` samples.
            import asyncio

            asyncio.create_task(self._auto(self.auto))

    async def _auto(self, n):
        import asyncio

        lock_at, lock_n = self.auto_lock  # samples run with the heap locked (steady state)
        for i in range(n):
            # The first period passes before the first sample, as on a board: the app's
            # other tasks run their first round before any sample exists.
            await asyncio.sleep_ms(1)
            if i == lock_at:
                micropython.heap_lock()
            elif i == lock_at + lock_n:
                micropython.heap_unlock()
            self.step()
        raise KeyboardInterrupt

    def stop_timer(self):
        self.callback = None

    def disable_irq(self):
        self.irq_off += 1
        return self.irq_off - 1

    def enable_irq(self, state):
        self.irq_off = state

    def tx_write(self, buf):
        self.writes += 1
        n = len(buf)
        if n > self.chunk:
            n = self.chunk
        if self.room is not None:
            if n > self.room:
                n = self.room
            self.room -= n
        if n:
            self.out += bytes(buf[:n])
        return n

    def mem_free(self):
        return self.mem

    # -- test drivers

    def advance(self, us):
        self.now = (self.now + us) & MASK
        self.elapsed += us

    def device_time(self):
        return self.t0 + self.elapsed

    def fire(self):
        """One timer interrupt now, with the heap locked."""
        assert self.callback is not None, "timer not running"
        assert not self.irq_off, "timer fired inside a critical section"
        cb = self.callback
        micropython.heap_lock()
        try:
            cb(self)
        finally:
            micropython.heap_unlock()
        self.fired += 1

    def step(self, n=1, late_us=0):
        """n timer periods: advance one period (+ late_us each) and fire."""
        for _ in range(n):
            self.advance(self.period + late_us)
            self.fire()

    def take(self):
        """Bytes written since the last take()."""
        b = bytes(self.out)
        self.out = bytearray()
        return b


class SinkHW(FakeHW):
    """FakeHW whose link also offers ``tx_write_at`` and keeps what it took in a
    preallocated buffer: writing allocates nothing, so a run can hold the heap locked."""

    def __init__(self, size=1 << 17, **kw):
        super().__init__(**kw)
        self.sink = bytearray(size)
        self.n_out = 0
        self.write_fired = array("i", [-1] * 16)  # samples taken at each of the first writes
        self.n_writes = 0

    def tx_write_at(self, buf, off, n):
        self.writes += 1
        if self.n_writes < 16:
            self.write_fired[self.n_writes] = self.fired
            self.n_writes += 1
        if n > self.chunk:
            n = self.chunk
        if self.room is not None:
            if n > self.room:
                n = self.room
            self.room -= n
        o = self.n_out
        sink = self.sink
        for j in range(n):
            sink[o + j] = buf[off + j]
        self.n_out = o + n
        return n

    def tx_write(self, buf):
        return self.tx_write_at(buf, 0, len(buf))

    def take(self):
        b = bytes(self.sink[: self.n_out])
        self.n_out = 0
        return b
