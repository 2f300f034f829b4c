"""The dial's main program: sampler -> SAMPLES frames -> transmit queue -> link, and commands.

Invariants:
- Only the timer interrupt (dial.sampler) touches the hardware clock and counter at sample
  rate. Everything here runs in the main loop: extending ticks to 64-bit device time,
  packing, writing, commands. Nothing here waits for the host.
- ``App`` is the whole logic as plain step methods (``pack``, ``write``, ``housekeeping``,
  ``rx_byte``) that tests and the virtual dial can drive with a manual clock; ``App.main``
  is a thin asyncio shell that calls them. ``run(hw, cfg)`` runs that shell until
  KeyboardInterrupt and then stops the timer and releases the counter.
- Every sample index is, exactly once, either in a SAMPLES frame handed to the queue or in
  a drop range (ring overflow gap); the queue keeps that exact through its evictions.
- ``seq`` is assigned when a frame is created (built). On the wire: first a lone 0x00, then
  frames; a DROP notice goes out before any entry queued after the loss, a SYNC reply
  bypasses the queue but never cuts a frame in half.

The HW object contract is in firmware/README.md; cfg keys are the board config keys.
"""

import sys
from array import array

import asyncio

try:
    from micropython import const
except ImportError:  # CPython (tools only)

    def const(x):
        return x


from . import commands, fast, protocol
from .sampler import EVENTS, M30, RING, S_JMAX, S_OVERRUNS, S_W, Sampler, debounce_samples
from .txqueue import TxQueue
from .version import FIRMWARE_VERSION

_HALF30 = const(0x20000000)
RECORDS = const(29)  # protocol.SAMPLES_RECORDS: offset of record 0 in a SAMPLES body
U32 = const(0xFFFFFFFF)

STATUS_US = const(1_000_000)
HELLO_US = const(5_000_000)
PACK_MS = const(4)  # packer period: a 1 kHz/batch 10 frame waits at most 4 ms extra
# With a wake flag the sampler wakes the packer when a frame is full, so the poll is only a
# safety net: every asyncio round costs ~270 us on an RP2040 (measured, emulated), and a
# 4 ms poll alone took 7 % of the CPU.
PACK_SAFETY_MS = const(50)
MEM_EVERY = const(10)  # STATUS reads gc.mem_free() every 10th time (10 s): see _mem_free
PACK_MAX = const(256)  # samples packed per call before yielding to the writer
MAX_BATCH = const(100)

# Defaults when no dial_board.py is installed; the same values as boards/pico.py and
# boards/esp32_devkitc.py (tests/test_firmware_app.py checks that they agree).
FALLBACK = {
    "rp2": {
        "board": "pico",
        "backend": "pio",
        "pin_a": 2,
        "pin_b": 3,
        "pin_button": 4,
        "button_active_low": True,
        "pull_up": True,
        "rate_hz": 1000,
        "batch": 10,
        "debounce_ms": 5,
        "queue_frames": 64,
        "pio_sm": 0,
        "timer_sm": 4,
    },
    "esp32": {
        "board": "esp32-devkitc",
        "backend": "pcnt",
        "pin_a": 25,
        "pin_b": 26,
        "pin_button": 27,
        "button_active_low": True,
        "pull_up": True,
        "rate_hz": 500,
        "batch": 20,
        "debounce_ms": 5,
        "queue_frames": 64,
        "pcnt_unit": 0,
        "filter_ns": 1000,
        "timer_id": 0,
    },
}


def period_for(rate_hz):
    """round(1e6 / rate_hz) in integers, halves to even like Python's round (128 Hz and
    640 Hz are exact halves: 7812 and 1562 us). No float: rp2 floats are single precision."""
    q, r = divmod(1_000_000, rate_hz)
    if 2 * r > rate_hz or (2 * r == rate_hz and q & 1):
        q += 1
    return q


class Clock:
    """64-bit device time from the raw wrapping ticks. ``now()`` must run more often than
    every 2**29 us (9 min); the packer calls it every few ms. Device time starts at the raw
    tick value at start, as docs/protocol.md says."""

    def __init__(self, hw):
        self._ticks = hw.ticks_us
        self._diff = hw.ticks_diff
        self._raw = self._ticks()
        self.base = self._raw

    def now(self):
        raw = self._ticks()
        self.base += self._diff(raw, self._raw)
        self._raw = raw
        return self.base

    def extend(self, raw):
        """Device time of a raw tick within 2**29 us of the last ``now()``."""
        return self.base + self._diff(raw, self._raw)


class App:
    def __init__(self, hw, cfg):
        if hw.tick_bits > 30:
            raise ValueError("ticks must be small ints: tick_bits <= 30")
        self.hw = hw
        self.cfg = cfg
        self.rate = cfg.get("rate_hz", 1000)
        self.period = period_for(self.rate)
        self.batch = cfg.get("batch", 10)
        self.debounce_ms = cfg.get("debounce_ms", 5)
        if not (50 <= self.rate <= 2000 and 1 <= self.batch <= MAX_BATCH):
            raise ValueError("config: rate_hz must be 50-2000 and batch 1-100")
        self.board = getattr(hw, "board", None) or cfg.get("board", "?")
        self.backend = hw.counter.name
        self.uid = hw.unique_id()
        self.boot = hw.boot_id() & U32
        self.events_lost = 0  # button events overwritten before they were framed

        self.clock = Clock(hw)
        self.sampler = Sampler(hw, RING, EVENTS)
        self._diff = hw.ticks_diff
        self._tmask = (1 << hw.tick_bits) - 1  # ticks_diff inlined in pack()
        self._thalf = 1 << (hw.tick_bits - 1)
        self._tx = hw.tx_write

        # Frame buffers. ``body`` holds the open SAMPLES frame while it fills; other frames
        # are built in ``scratch`` and finished at once. Slot size = the largest frame:
        # SAMPLES with 100 records is a 433-byte body, 437 bytes on the wire.
        self.body = bytearray(protocol.samples_body_size(MAX_BATCH))
        self.scratch = bytearray(protocol.MAX_BODY)
        hello_len = self._hello_body(0) + protocol.CRC
        slot = protocol.wire_size(max(protocol.samples_body_size(MAX_BATCH), hello_len))
        self.q = TxQueue(cfg.get("queue_frames", 64), slot)
        self._sync_wire = memoryview(bytearray(protocol.wire_size(32)))
        self._drop_wire = memoryview(bytearray(protocol.wire_size(32)))
        self._zero_wire = memoryview(bytearray(1))
        self.lines = commands.LineAssembler()
        self._handlers = {
            commands.PING: self._cmd_ping,
            commands.INFO: self._cmd_info,
            commands.RATE: self._cmd_rate,
            commands.BATCH: self._cmd_batch,
            commands.ZERO: self._cmd_zero,
        }
        self.seq = 0

        # Frame being written to the link: a queue slot, the DROP or SYNC buffer, or 0x00.
        self._cur = None
        self._cur_off = 0
        self._cur_len = 0
        self._cur_q = False
        self._wake_ev = None  # asyncio.Event of the writer task, when running
        self._quiet = False  # True while _frame_done packs: it writes itself (see there)

        # Packer: next sample to read (absolute index and its low 30 bits) and open frame.
        self._rd = 0
        self._rd_lo = 0
        self._n = 0  # records in the open frame
        self._first = 0
        self._t0 = 0  # raw tick of the open frame's first sample
        self._c0 = 0
        self._prev_c = 0
        self._fperiod = self.period  # period of the open frame
        self._pcur = self.period  # period of the samples being read
        self._pchange_at = -1  # sample index where _pnext takes over (-1: none)
        self._pnext = self.period
        self._ev_rd = 0
        # dial.fast.pack_run's state: rd_lo, n, t0, prev_c, fperiod, batch, -, tmask, thalf,
        # ring mask, ring size (copied in and out around each call, once per frame).
        self._ps = array("i", [0] * 11)
        self._ps[7] = self._tmask
        self._ps[8] = self._thalf
        self._ps[9] = RING - 1
        self._ps[10] = RING
        self._pack_run = fast.pack_run

        self._next_status = 0
        self._next_hello = 0
        self._mem_k = 0  # STATUS frames until mem_free is read again (see _mem_free)
        self._mem_last = 0
        self.started = False

    # ------------------------------------------------------------------ lifecycle

    def start(self):
        """Lone 0x00 first, then HELLO, then start sampling."""
        self._set_cur(self._zero_wire, 1, False)
        now = self.clock.now()
        self._next_status = now + STATUS_US
        self._next_hello = now + HELLO_US
        self.sampler.configure(self.period, debounce_samples(self.debounce_ms, self.rate))
        self._hello()
        self.hw.start_timer(self.period, self.sampler.irq)
        self.started = True

    def stop(self):
        """Stop sampling and release the counter (each step even if another fails)."""
        self.started = False
        try:
            self.hw.stop_timer()
        finally:
            self.hw.counter.deinit()

    # ------------------------------------------------------------------ frames

    def _next_seq(self):
        s = self.seq
        self.seq = (s + 1) & 0xFFFF
        return s

    def _wake(self):
        if self._wake_ev is not None and not self._quiet:
            self._wake_ev.set()

    def _queue(self, body, end, first=0, nsamp=0):
        q = self.q
        sid = q.reserve()
        q.commit(sid, protocol.finish(body, end, q.buf[sid]), first, nsamp)
        self._wake()

    def _abs(self, lo):
        """Absolute sample index from its low 30 bits (near the read position)."""
        return self._rd + (((lo - self._rd_lo + _HALF30) & M30) - _HALF30)

    def _hello_body(self, seq):
        flags = 0 if self.hw.button is None else 1
        return protocol.pack_hello(
            self.scratch, seq, self.boot, self.clock.base, self.period, self.rate,
            self.batch, self.hw.tick_bits, flags, self.debounce_ms, self.uid, self.board,
            FIRMWARE_VERSION, self.backend)

    def _hello(self):
        self.clock.now()
        self._queue(self.scratch, self._hello_body(self._next_seq()))

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
        end = protocol.pack_status(
            self.scratch, self._next_seq(), self.clock.now(), self._abs(lo),
            q.frames_dropped & U32, q.samples_dropped & U32, overruns, jmax,
            self._mem_free(), q.count, q.capacity)
        self._queue(self.scratch, end)

    def _mem_free(self):
        """Free heap for STATUS, read every MEM_EVERY-th STATUS: gc.mem_free() walks the whole
        heap (~8 ms on an RP2040, a pause every frame behind it waits for), so the value may
        be up to MEM_EVERY seconds old."""
        k = self._mem_k
        if k <= 0:
            self._mem_last = self.hw.mem_free() & U32
            k = MEM_EVERY
        self._mem_k = k - 1
        return self._mem_last

    def _ack(self, command, index, value):
        end = protocol.pack_ack(self.scratch, self._next_seq(), command, index, value)
        self._queue(self.scratch, end)

    def error(self, code, text):
        end = protocol.pack_error(self.scratch, self._next_seq(), code, text)
        self._queue(self.scratch, end)

    # ------------------------------------------------------------------ packer

    def drain(self):
        """Pack everything the ring holds now, writing as it goes so a backlog does not
        overrun the queue (commands use it before changing settings)."""
        while self.pack() >= PACK_MAX:
            self.write()

    def pack(self):
        """Move new samples from the ring into SAMPLES frames, and button events into
        BUTTON frames. Returns the number of samples read.

        Cost on the RP2040 (emulated, cycle-counted): the per-sample path below is written
        with locals and direct byte stores (no struct, no method call for a record in the
        open frame) because the first version (pack_record + ticks_diff per sample) took
        ~330 us per sample, a third of the CPU at 1 kHz and more than all of it at 2 kHz."""
        s = self.sampler
        sst = s.st  # sst[0] is s.w (dial.sampler.S_W) without a property call
        self.clock.now()
        done = 0
        tick = s.tick
        count = s.count
        flags = s.flags
        body = self.body
        tmask = self._tmask
        thalf = self._thalf
        run = self._pack_run
        while done < PACK_MAX:
            n = self._n
            if run is not None and n and n < self.batch and self._pchange_at < 0:
                # The common case in native code: records into the open frame.
                ps = self._ps
                ps[0] = self._rd_lo
                ps[1] = n
                ps[2] = self._t0
                ps[3] = self._prev_c
                ps[4] = self._fperiod
                ps[5] = self.batch
                k = run(ps, s, body)
                if k:
                    self._rd += k
                    self._rd_lo = ps[0]
                    self._prev_c = ps[3]
                    n = self._n = ps[1]
                    done += k
                    if n >= self.batch:
                        self._close()
                    continue
            rd_lo = self._rd_lo
            ahead = (sst[0] - rd_lo) & M30
            if not ahead:
                break
            if ahead > RING:
                self._lost(ahead - RING)
                continue
            i = rd_lo & (RING - 1)
            t = tick[i]
            c = count[i]
            f = flags[i]
            if ((sst[0] - rd_lo) & M30) > RING:
                continue  # overwritten while we read it: the next round counts it lost
            n = self._n
            if n and self._pchange_at < 0:
                # The common case inlined: one more record in the open frame.
                dc = c - self._prev_c
                jit = ((t - self._t0 + thalf) & tmask) - thalf - n * self._fperiod
                if -128 <= dc <= 127 and -32768 <= jit <= 32767:
                    o = RECORDS + 4 * n
                    body[o] = f
                    body[o + 1] = dc & 0xFF
                    body[o + 2] = jit & 0xFF
                    body[o + 3] = (jit >> 8) & 0xFF
                    self._prev_c = c
                    n += 1
                    self._n = n
                    if n >= self.batch:
                        self._close()
                else:
                    self._add(t, c, f)
            else:
                self._add(t, c, f)
            self._rd += 1
            self._rd_lo = (rd_lo + 1) & M30
            done += 1
        self._events()
        return done

    def _add(self, t, c, f):
        if self._pchange_at >= 0 and self._rd >= self._pchange_at:
            self._close()  # frames never span a period change
            self._pcur = self._pnext
            self._pchange_at = -1
        n = self._n
        if n:
            dc = c - self._prev_c
            jit = self._diff(t, self._t0) - n * self._fperiod
            if -128 <= dc <= 127 and -32768 <= jit <= 32767:
                protocol.pack_record(self.body, n, f, dc, jit)
                self._prev_c = c
                n += 1
                self._n = n
                if n >= self.batch:
                    self._close()
                return
            self._close()  # ends early: the next frame restarts from exact values
        self._first = self._rd
        self._t0 = t
        self._c0 = c
        self._prev_c = c
        self._fperiod = self._pcur
        protocol.pack_record(self.body, 0, f, 0, 0)
        self._n = 1
        if self.sampler.wake is not None:
            self.sampler.wake_at = (self._rd + self.batch - 1) & M30
        if self.batch <= 1:
            self._close()

    def _close(self):
        n = self._n
        if not n:
            return
        self._n = 0
        if self.sampler.wake is not None:  # the frame after this one, if none opens first
            self.sampler.wake_at = (self._first + n + self.batch - 1) & M30
        end = protocol.pack_samples_head(
            self.body, self._next_seq(), self._first, self.clock.extend(self._t0),
            self._fperiod, self._c0, n)
        self._queue(self.body, end, self._first, n)

    def _lost(self, k):
        """The ring overflowed: samples _rd .. _rd+k-1 were overwritten unread."""
        self._close()
        self.q.push_gap(self._rd, k)
        self._rd += k
        self._rd_lo = (self._rd_lo + k) & M30

    def _events(self):
        s = self.sampler
        sst = s.st  # sst[12] is s.ev_w (dial.sampler.S_EV_W) without a property call
        while True:
            w = sst[12]
            if w == self._ev_rd:
                return  # the common case: no button event
            ahead = (w - self._ev_rd) & M30
            if not ahead:
                return
            if ahead > EVENTS:
                self.events_lost += ahead - EVENTS
                self._ev_rd = (w - EVENTS) & M30
                continue
            j = self._ev_rd & (EVENTS - 1)
            pressed = s.ev_state[j]
            lo = s.ev_idx[j]
            t = s.ev_tick[j]
            te = s.ev_edge[j]
            if ((sst[12] - self._ev_rd) & M30) > EVENTS:
                continue
            self._ev_rd = (self._ev_rd + 1) & M30
            end = protocol.pack_button(
                self.scratch, self._next_seq(), pressed, self._abs(lo),
                self.clock.extend(t), self.clock.extend(te))
            self._queue(self.scratch, end)

    # ------------------------------------------------------------------ writer

    def _set_cur(self, mv, n, from_queue):
        self._cur = mv
        self._cur_off = 0
        self._cur_len = n
        self._cur_q = from_queue

    def _push(self):
        """Write the current frame on; True when it is completely written."""
        n = self._cur_len
        mv = self._cur
        while self._cur_off < n:
            k = self._tx(mv[self._cur_off : n])
            if not k:
                return False
            self._cur_off += k
        if self._cur_q:
            self.q.pop()
        self._cur = None
        self._cur_len = 0
        return True

    def _build_drop(self):
        first, n, frames = self.q.take_drop()
        body = self.scratch
        end = protocol.pack_drop(body, self._next_seq(), first, n, frames)
        self._set_cur(self._drop_wire, protocol.finish(body, end, self._drop_wire), False)

    def write(self):
        """Hand frames to the link until it takes no more. True when all is written."""
        q = self.q
        while True:
            if self._cur_len and not self._push():
                return False
            q.absorb_gaps()
            if q.has_drop():
                self._build_drop()
                continue
            sid = q.start()
            if sid < 0:
                return True
            self._set_cur(q.mv[sid], q.length[sid], True)

    def _flush_for_sync(self):
        """Finish the frame in flight and any DROP notice: both precede a SYNC."""
        if self._cur_len and not self._push():
            return False
        self.q.absorb_gaps()
        if self.q.has_drop():
            self._build_drop()
            return self._push()
        return True

    # ------------------------------------------------------------------ commands

    def rx_byte(self, c):
        """One byte from the host."""
        t_rx = self.clock.now() if c == 10 else 0
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
        seq = self._next_seq()
        if self._flush_for_sync():
            body = self.scratch
            end = protocol.pack_sync(body, seq, token, t_rx, self.clock.now())
            n = protocol.finish(body, end, self._sync_wire)
            k = self._tx(self._sync_wire[:n])
            if k == n:
                return
            if k:
                self._set_cur(self._sync_wire, n, False)
                self._cur_off = k
                return
        self.q.lost_frame()  # the link could not take it: counted like any dropped frame

    def _cmd_info(self, _arg, _t):
        self._hello()

    def _cmd_rate(self, hz, _t):
        period = period_for(hz)
        self.drain()  # samples so far are packed at the old period
        hw = self.hw
        hw.stop_timer()
        st = hw.disable_irq()
        try:
            lo = self.sampler.st[S_W]
            self.sampler.configure(period, debounce_samples(self.debounce_ms, hz))
        finally:
            hw.enable_irq(st)
        index = self._abs(lo)
        self._pchange_at = index
        self._pnext = period
        self.rate = hz
        self.period = period
        hw.start_timer(period, self.sampler.irq)
        self._ack(protocol.ACK_RATE, index, hz)
        self._hello()

    def _cmd_batch(self, n, _t):
        self.drain()
        self._close()  # the open frame ends: frames from the next sample use the new batch
        self.batch = n
        self._ack(protocol.ACK_BATCH, self._rd, n)
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
        self._ack(protocol.ACK_ZERO, self._abs(lo), 0)

    # ------------------------------------------------------------------ periodic

    def housekeeping(self):
        """STATUS every second, HELLO every 5 s (device time)."""
        now = self.clock.now()
        if now >= self._next_status:
            self._status()
            self._next_status += STATUS_US
            if self._next_status <= now:
                self._next_status = now + STATUS_US
        if now >= self._next_hello:
            self._hello()
            self._next_hello += HELLO_US
            if self._next_hello <= now:
                self._next_hello = now + HELLO_US

    def step(self):
        """One round of the main loop without asyncio (tests, simple hosts)."""
        self.pack()
        self.housekeeping()
        return self.write()

    # ------------------------------------------------------------------ asyncio shell

    async def _packer(self, period_ms):
        while True:
            self.pack()
            await asyncio.sleep_ms(period_ms)

    async def _frame_done(self, flag):
        """Pack the moment the sampler stores the last sample of the open frame, and write
        it in the same round: waking the writer task instead would cost a second asyncio
        round per frame (~220 us on an RP2040). The writer is woken only if the link did not
        take everything."""
        while True:
            await flag.wait()
            self._quiet = True
            try:
                self.pack()
            finally:
                self._quiet = False
            if not self.write():
                self._wake()

    async def _housekeeper(self):
        while True:
            self.housekeeping()
            await asyncio.sleep_ms(50)

    async def _writer(self):
        ev = self._wake_ev
        while True:
            if self.write():
                ev.clear()  # no await between write() and here: no wake-up is lost
                await ev.wait()
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
        while True:
            b = await sreader.read(1)  # wakes the moment a byte arrives
            if not b:
                return  # end of input: keep streaming, stop reading commands
            self.rx_byte(b[0])
            while poller.poll(0):  # drain the rest of the line without a loop round
                b = rx.read(1)
                if not b:
                    return
                self.rx_byte(b[0])

    async def main(self):
        self._wake_ev = asyncio.Event()
        make_flag = getattr(self.hw, "wake_flag", None)
        flag = None if make_flag is None else make_flag()
        self.sampler.wake = flag
        self.start()
        tasks = [asyncio.create_task(self._packer(PACK_MS if flag is None else PACK_SAFETY_MS))]
        if flag is not None:
            tasks.append(asyncio.create_task(self._frame_done(flag)))
        await asyncio.gather(
            *tasks,
            asyncio.create_task(self._writer()),
            asyncio.create_task(self._reader()),
            asyncio.create_task(self._housekeeper()),
        )

    def fault(self, exc):
        """Best effort ERROR 4 straight to the link after an unexpected exception: a lone
        0x00 first ends any frame cut short, so the host rejects that fragment alone."""
        try:
            body = self.scratch
            end = protocol.pack_error(body, self._next_seq(), protocol.E_INTERNAL,
                                      repr(exc)[: protocol.ERROR_TEXT_MAX])
            wire = bytearray(protocol.wire_size(end + protocol.CRC) + 1)
            n = protocol.finish(body, end, wire, 1)  # wire[0] stays 0x00
            off = 0
            while off < n:
                k = self._tx(memoryview(wire)[off:n])
                if not k:
                    break
                off += k
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


def load_config():
    """dial_board.CONFIG if installed, else the fallback for this platform."""
    try:
        import dial_board

        return dict(dial_board.CONFIG)
    except ImportError:
        cfg = FALLBACK.get(sys.platform)
        if cfg is None:
            raise
        return dict(cfg)


def make_hw(cfg):
    if sys.platform == "rp2":
        from . import hw_rp2

        return hw_rp2.HW(cfg)
    if sys.platform == "esp32":
        from . import hw_esp32

        return hw_esp32.HW(cfg)
    raise OSError("no dial hardware for platform " + sys.platform)


def main():
    cfg = load_config()
    run(make_hw(cfg), cfg)
