"""The dial's main program: sampler -> packer -> writer -> link, commands and housekeeping.

Invariants:
- Only the timer interrupt (dial.sampler) touches the hardware clock and counter at sample
  rate. Everything else runs in the main loop: packing (dial.packer), writing
  (dial.writer), commands and the periodic STATUS/HELLO (here). Nothing waits for the host.
- ``App`` is the whole logic as plain step methods (``pack``, ``write``, ``housekeeping``,
  ``rx_byte``) that tests and the virtual dial can drive with a manual clock; ``App.main``
  is a thin asyncio shell that calls them. ``run(hw, cfg)`` runs that shell until
  KeyboardInterrupt and then stops the timer and releases the counter.
- Steady streaming allocates nothing (no garbage collection): frames are written without
  slices, and the wake-ups (dial.aio) need no generator per wait.
- When the sampler has filled a frame it wakes the main loop, which packs and writes it at
  once. Where the HW object says ``wake_scheduled`` (the boards), that is a job that
  MicroPython's scheduler runs between two bytecodes (dial.aio.Scheduled): no asyncio round.
  The job never meets half-done work: the main loop's own work on the packer and writer
  (ticker, writer task, commands) runs between ``_hold()`` and ``_release()``; a job due
  meanwhile is deferred (``_pending``) and run by ``_release()``. Otherwise (the virtual
  dial) the HW object's ``wake_flag`` wakes an asyncio task that does the same.
- Commands change settings between samples: RATE and BATCH drain the ring first, so every
  sample is packed with the settings it was taken with.

The HW object contract is in firmware/README.md; cfg keys are the board config keys.
"""

import asyncio

try:
    from micropython import const
except ImportError:  # CPython (tools only)

    def const(x):
        return x


from . import aio, commands, protocol
from .board import FALLBACK, load_config, make_hw  # noqa: F401 - the entry points' names
from .clock import Clock, period_for
from .packer import MAX_BATCH, Packer
from .sampler import (EVENTS, M30, RING, S_JMAX, S_OVERRUNS, S_W, S_WAKE_AT, Sampler,
                      debounce_samples)
from .version import FIRMWARE_VERSION
from .writer import Writer

U32 = const(0xFFFFFFFF)
STATUS_TIME = const(4)  # offset of time_us in a STATUS body
HELLO_TIME = const(8)  # offset of time_us in a HELLO body

STATUS_US = const(1_000_000)
HELLO_US = const(5_000_000)
PACK_MS = const(4)  # packer period: a 1 kHz/batch 10 frame waits at most 4 ms extra
# With a wake flag the sampler wakes the packer when a frame is full, so the poll is only a
# safety net that also runs the housekeeping: every asyncio round costs ~220 us on an
# RP2040 (measured, emulated), a 4 ms poll alone took 7 % of the CPU. The frame task runs
# the housekeeping too once it is due, so STATUS is late by at most one frame at high rates.
PACK_SAFETY_MS = const(100)
MEM_EVERY = const(10)  # STATUS reads gc.mem_free() every 10th time (10 s): see _mem_free
# Longest a command waits for room in the transmit queue for its replies (see _reader)
WAIT_ROOM_MS = const(50)

def _u32(x):
    """x mod 2**32 for a u32 field; without an int op when x is a small int already (an op
    with 0xFFFFFFFF, a bigint on rp2/esp32, allocates)."""
    return x if 0 <= x and not x >> 30 else x & U32


class App:
    def __init__(self, hw, cfg):
        if hw.tick_bits > 30:
            raise ValueError("ticks must be small ints: tick_bits <= 30")
        self.hw = hw
        self.cfg = cfg
        self.rate = cfg.get("rate_hz", 1000)
        self.period = period_for(self.rate)
        batch = cfg.get("batch", 10)
        self.debounce_ms = cfg.get("debounce_ms", 5)
        if not (50 <= self.rate <= 2000 and 1 <= batch <= MAX_BATCH):
            raise ValueError("config: rate_hz must be 50-2000 and batch 1-100")
        self.board = getattr(hw, "board", None) or cfg.get("board", "?")
        self.backend = hw.counter.name
        self.uid = hw.unique_id()
        self.boot = hw.boot_id() & U32
        # HELLO's strings as bytes once: str.encode() would allocate every 5 s
        self._names = (self.board.encode(), FIRMWARE_VERSION.encode(), self.backend.encode())

        self.clock = Clock(hw)
        self.sampler = Sampler(hw, RING, EVENTS)
        # Frames other than SAMPLES are built in ``scratch`` and sealed at once. Queue slot
        # size = the largest frame: SAMPLES of 100 records or HELLO.
        self.scratch = bytearray(protocol.MAX_BODY)
        hello_len = self._hello_body(0, batch) + protocol.CRC
        slot = protocol.wire_size(max(protocol.samples_body_size(MAX_BATCH), hello_len))
        self.writer = Writer(hw, cfg.get("queue_frames", 64), slot, self.scratch)
        self.writer.clock = self.clock
        self.q = self.writer.q
        self.packer = Packer(hw, self.sampler, self.clock, self.writer, self.scratch,
                             self.period, batch)
        self.lines = commands.LineAssembler()
        self._handlers = {
            commands.PING: self._cmd_ping,
            commands.INFO: self._cmd_info,
            commands.RATE: self._cmd_rate,
            commands.BATCH: self._cmd_batch,
            commands.ZERO: self._cmd_zero,
        }
        # Raw ticks of the next STATUS and HELLO, and the earlier of both: compared with
        # ticks_diff, so no 64-bit int is made (dial.clock).
        self._diff = hw.ticks_diff
        self._tmask = (1 << hw.tick_bits) - 1
        self._status_at = 0
        self._hello_at = 0
        self._due_at = 0
        self._mem_k = 0  # STATUS frames until mem_free is read again (see _mem_free)
        self._mem_last = 0
        self.started = False
        self._busy = 0  # main-loop work on the packer/writer under way (see _hold)
        self._pending = 0  # a scheduled frame job found _busy set: _release runs it
        # An exception in a scheduled job would surface in whatever code the main loop was
        # running; it is kept here and raised by the ticker, ending run() as any fault.
        self.job_error = None

    @property
    def batch(self):
        return self.packer.batch

    @property
    def events_lost(self):
        return self.packer.events_lost

    # ------------------------------------------------------------------ lifecycle

    def start(self):
        """Lone 0x00 first, then HELLO, then start sampling."""
        self.writer.begin()
        c = self.clock
        c.now()
        self._status_at = (c.raw + STATUS_US) & self._tmask
        self._hello_at = (c.raw + HELLO_US) & self._tmask
        self._due_at = self._status_at
        self.sampler.configure(self.period, debounce_samples(self.debounce_ms, self.rate))
        self._wake_at_frame_end()  # the first frame goes at once too, not at the ticker
        self._hello()
        self.hw.start_timer(self.period, self.sampler.irq)
        self.started = True

    def _wake_at_frame_end(self):
        """The sampler wakes the main loop when it stores the open (or next) frame's last
        sample: set where the packer has not set it yet (at start, after BATCH)."""
        if self.sampler.wake is not None:
            self.sampler.st[S_WAKE_AT] = self.packer.wake_index()

    def stop(self):
        """Stop sampling and release the counter (each step even if another fails)."""
        self.started = False
        try:
            self.hw.stop_timer()
        finally:
            self.hw.counter.deinit()

    # ------------------------------------------------------------------ steps

    def pack(self):
        return self.packer.pack()

    def drain(self):
        self.packer.drain()

    def write(self):
        return self.writer.write()

    # ------------------------------------------------------------------ frames

    def _queue(self, end):
        w = self.writer
        w.queue(self.scratch, end)

    def _hello_body(self, seq, batch):
        flags = 0 if self.hw.button is None else 1
        board, firmware, backend = self._names
        end = protocol.pack_hello(
            self.scratch, seq, self.boot, 0, self.period, self.rate, batch,
            self.hw.tick_bits, flags, self.debounce_ms, self.uid, board, firmware, backend)
        self.clock.put_now(self.scratch, HELLO_TIME)
        return end

    def _hello(self):
        self.clock.now()
        self._queue(self._hello_body(self.writer.next_seq(), self.packer.batch))

    def _status(self):
        s = self.sampler
        hw = self.hw
        st = hw.disable_irq()
        try:
            # Straight from the state array: a property call here would keep interrupts
            # off for tens of us (measured: samples up to ~100 us late at 2 kHz).
            sst = s.st
            jmax = sst[S_JMAX]
            sst[S_JMAX] = 0
            overruns = sst[S_OVERRUNS]
            lo = sst[S_W]
        finally:
            hw.enable_irq(st)
        q = self.q
        c = self.clock
        c.now()
        end = protocol.pack_status(
            self.scratch, self.writer.next_seq(), 0, self.packer.abs_index(lo),
            _u32(q.frames_dropped), _u32(q.samples_dropped), overruns, jmax,
            self._mem_free(), q.count, q.capacity)
        c.put_now(self.scratch, STATUS_TIME)
        self._queue(end)

    def _mem_free(self):
        """Free heap for STATUS, read every MEM_EVERY-th STATUS: gc.mem_free() walks the whole
        heap (~8 ms on an RP2040, a pause every frame behind it waits for), so the value may
        be up to MEM_EVERY seconds old."""
        k = self._mem_k
        if k <= 0:
            self._mem_last = _u32(self.hw.mem_free())
            k = MEM_EVERY
        self._mem_k = k - 1
        return self._mem_last

    def _ack(self, command, index, value):
        self._queue(protocol.pack_ack(self.scratch, self.writer.next_seq(), command, index,
                                      value))

    def error(self, code, text):
        self._queue(protocol.pack_error(self.scratch, self.writer.next_seq(), code, text))

    # ------------------------------------------------------------------ commands

    def rx_byte(self, c):
        """One byte from the host."""
        t_rx = 0
        if c == 10:
            self.clock.now()
            t_rx = self.clock.base
        r = self.lines.feed(c)
        if r is None:
            return
        cmd, arg, text = r
        if cmd == commands.ERROR:
            self.error(arg, text)
        else:
            self._handlers[cmd](arg, t_rx)

    def rx_bytes(self, data):
        for c in data:
            self.rx_byte(c)

    def _cmd_ping(self, token, t_rx):
        self.writer.sync_reply(token, t_rx)  # sent right after the next frame (dial.writer)

    def _cmd_info(self, _arg, _t):
        self._hello()

    def _cmd_rate(self, hz, _t):
        period = period_for(hz)
        self.packer.drain()  # samples so far are packed at the old period
        hw = self.hw
        hw.stop_timer()
        st = hw.disable_irq()
        try:
            lo = self.sampler.st[S_W]
            self.sampler.configure(period, debounce_samples(self.debounce_ms, hz))
        finally:
            hw.enable_irq(st)
        index = self.packer.abs_index(lo)
        self.packer.period_change(index, period)
        self.rate = hz
        self.period = period
        hw.start_timer(period, self.sampler.irq)
        self._ack(protocol.ACK_RATE, index, hz)
        self._hello()

    def _cmd_batch(self, n, _t):
        p = self.packer
        p.drain()
        p.close()  # the open frame ends: frames from the next sample use the new batch
        p.batch = n
        self._wake_at_frame_end()
        self._ack(protocol.ACK_BATCH, p.rd, n)
        self._hello()

    def _cmd_zero(self, _arg, _t):
        hw = self.hw
        st = hw.disable_irq()
        try:
            # Zero first, then read the index: even where the "critical section" cannot hold
            # off a scheduled (soft) timer callback, the acknowledged sample and all later
            # ones are relative to the new zero.
            hw.counter.zero()
            lo = self.sampler.st[S_W]
        finally:
            hw.enable_irq(st)
        self._ack(protocol.ACK_ZERO, self.packer.abs_index(lo), 0)

    # ------------------------------------------------------------------ periodic

    def housekeeping(self):
        """STATUS every second, HELLO every 5 s (device time)."""
        c = self.clock
        c.now()
        diff = self._diff
        tm = self._tmask
        if diff(c.raw, self._status_at) >= 0:
            self._status()
            self._status_at = (self._status_at + STATUS_US) & tm
            if diff(c.raw, self._status_at) >= 0:
                self._status_at = (c.raw + STATUS_US) & tm
        if diff(c.raw, self._hello_at) >= 0:
            self._hello()
            self._hello_at = (self._hello_at + HELLO_US) & tm
            if diff(c.raw, self._hello_at) >= 0:
                self._hello_at = (c.raw + HELLO_US) & tm
        sa = self._status_at
        self._due_at = sa if diff(self._hello_at, sa) >= 0 else self._hello_at
        self.writer.sync_overdue()

    def step(self):
        """One round of the main loop without asyncio (tests, simple hosts)."""
        self.packer.pack()
        self.housekeeping()
        return self.writer.write()

    # ------------------------------------------------------------------ the frame job

    def frame_job(self):
        """A frame is full: pack it, run the housekeeping if due, write. Runs as a job of
        MicroPython's scheduler (dial.aio.Scheduled) between two bytecodes of the main
        loop, so it touches no asyncio state (the writer is ``quiet``); when the link takes
        less than all, the sampler wakes it again at the next sample to go on writing."""
        if self._busy:
            self._pending = 1
            return
        if not self.started or self.job_error is not None:
            self._pending = 0  # nothing to run later (_release would loop on it forever)
            return  # stopped (a job left in the queue), or failed: the ticker raises it
        self._busy = 1
        self._pending = 0
        w = self.writer
        w.quiet = True
        sst = self.sampler.st
        try:
            again = True
            while again:
                self.packer.pack()
                if self._diff(self.clock.raw, self._due_at) >= 0:
                    w.write()  # the frame before STATUS (~1.5 ms, 8 ms with mem_free)
                    self.housekeeping()
                if w.write():
                    wake = self.packer.wake_index()
                    sst[S_WAKE_AT] = wake
                    # The open frame may have filled while the link was written: then the
                    # sampler has passed ``wake`` and would not call again. Pack it now.
                    again = 0 < ((sst[S_W] - wake) & M30) <= RING
                else:
                    hw = self.hw
                    st = hw.disable_irq()
                    sst[S_WAKE_AT] = sst[S_W]  # the next sample: go on writing then
                    hw.enable_irq(st)
                    again = False
        except Exception as e:  # noqa: BLE001 - raised again by the ticker (see there)
            self.job_error = e
        except KeyboardInterrupt as e:
            # Ctrl-C landed in the job: the scheduler would print it and drop it (the dial
            # would stream on, the text in the binary stream); the ticker raises it instead
            self.job_error = e
        finally:
            w.quiet = False
            self._busy = 0

    def _hold(self):
        """The main loop starts work on the packer/writer: a frame job waits for it."""
        self._busy = 1

    def _release(self):
        self._busy = 0
        while self._pending:
            self.frame_job()

    # ------------------------------------------------------------------ asyncio shell

    async def _ticker(self, period_ms):
        """Packs (the only packing without a wake flag, a safety net with one) and runs the
        housekeeping: one asyncio round per period for both."""
        packer = self.packer
        while True:
            if self.job_error is not None:
                raise self.job_error
            self._hold()
            try:
                packer.pack()
                self.housekeeping()
            finally:
                self._release()
            await asyncio.sleep_ms(period_ms)

    async def _frame_done(self, flag):
        """Pack the moment the sampler stores the last sample of the open frame, and write
        it in the same round: waking the writer task instead would cost a second asyncio
        round per frame (~220 us on an RP2040). The writer is woken only if the link did not
        take everything. Housekeeping runs here too when it is due (pack() has just read
        the clock), so STATUS need not wait for the ticker."""
        packer = self.packer
        writer = self.writer
        clock = self.clock
        while True:
            await flag.wait()
            writer.quiet = True
            try:
                packer.pack()
                if self._diff(clock.raw, self._due_at) >= 0:
                    writer.write()  # the frame before STATUS (see frame_job)
                    self.housekeeping()
            finally:
                writer.quiet = False
            if not writer.write():
                writer.wake()

    async def _writer(self, signal):
        writer = self.writer
        while True:
            self._hold()
            try:
                done = writer.write()
                if done:
                    signal.clear()  # no await between write() and here: no wake-up is lost
            finally:
                self._release()
            if done:
                await signal.wait()
            else:
                await asyncio.sleep_ms(1)

    async def _reader(self):
        import select

        rx = self.hw.rx
        if rx is None:
            return  # no command input (e.g. a virtual dial without one)
        sreader = asyncio.StreamReader(rx)
        poller = select.poll()
        poller.register(rx, select.POLLIN)
        q = self.q
        # replies (at most 2 frames a command, and a SAMPLES frame meanwhile) never evict
        room = q.capacity - 4 if q.capacity > 8 else q.capacity // 2
        while True:
            b = await sreader.read(1)  # wakes the moment a byte arrives
            if not b:
                return  # end of input: keep streaming, stop reading commands
            self._hold()
            try:
                self.rx_byte(b[0])
                # drain the rest of the line without a loop round; after each whole command,
                # only while the transmit queue has room for the next one's replies
                while poller.poll(0) and not (b[0] == 10 and q.count > room):
                    b = rx.read(1)
                    if not b:
                        return
                    self.rx_byte(b[0])
            finally:
                self._release()
            # A burst of commands (100 in one write) waits in the port's buffer while the
            # writer sends what is queued: their replies would otherwise push queued SAMPLES
            # out (the drop-oldest queue), a loss while the host reads all the time. At most
            # WAIT_ROOM_MS: a link slower than the samples (never room) must still take
            # commands (INFO, a lower RATE), as before.
            waited = 0
            while q.count > room and waited < WAIT_ROOM_MS:
                await asyncio.sleep_ms(1)
                waited += 1

    async def main(self):
        signal = self.writer.signal = aio.Signal()
        flag = None
        if getattr(self.hw, "wake_scheduled", False) and aio.schedule is not None:
            self.sampler.wake = aio.Scheduled(self.frame_job)
        else:
            make_flag = getattr(self.hw, "wake_flag", None)
            flag = None if make_flag is None else make_flag()
            self.sampler.wake = flag
        self.start()
        period = PACK_MS if self.sampler.wake is None else PACK_SAFETY_MS
        tasks = [asyncio.create_task(self._ticker(period)),
                 asyncio.create_task(self._writer(signal)),
                 asyncio.create_task(self._reader())]
        if flag is not None:
            tasks.append(asyncio.create_task(self._frame_done(flag)))
            if hasattr(flag, "pin"):
                tasks.append(asyncio.create_task(flag.pin()))
        await asyncio.gather(*tasks)

    def fault(self, exc):
        """Best effort ERROR 4 straight to the link after an unexpected exception."""
        try:
            end = protocol.pack_error(self.scratch, self.writer.next_seq(), protocol.E_INTERNAL,
                                      repr(exc)[: protocol.ERROR_TEXT_MAX])
            self.writer.send_fault(self.scratch, end)
        except Exception:  # noqa: BLE001 - already failing; the original error is re-raised
            pass


def run(hw, cfg):
    """Run the dial on ``hw`` with config ``cfg`` until KeyboardInterrupt (Ctrl-C), then
    stop the timer and release the counter. Returns the App (for inspection)."""
    try:
        import micropython

        micropython.alloc_emergency_exception_buf(100)
    except (ImportError, AttributeError):
        pass
    app = App(hw, cfg)
    asyncio.new_event_loop()
    try:
        asyncio.run(app.main())
    except KeyboardInterrupt:
        pass
    except Exception as e:
        app.fault(e)
        raise
    finally:
        if app.started:
            app.stop()
        asyncio.new_event_loop()
    return app


def main():
    cfg = load_config()
    run(make_hw(cfg), cfg)  # make_hw looked up here: the virtual board replaces it
