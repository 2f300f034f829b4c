"""The packer: samples from the sampler's ring into SAMPLES frames, button events into
BUTTON frames, both handed to the writer's queue.

Invariants:
- Every sample index is, exactly once, either in a SAMPLES frame handed to the queue or in
  a drop range (ring overflow gap, ``TxQueue.push_gap``); the queue keeps that exact
  through its evictions.
- ``rd`` is the absolute index of the next sample to read, ``_rd_lo`` its low 30 bits (the
  ring's write counter ``w`` is 30-bit); ``n`` records are in the open frame, which starts
  at sample ``_first`` (raw tick ``_t0``, count ``_c0``) and runs at ``_fperiod``.
- A frame never spans a period change (``period_change``) and ends early when a record
  does not fit (dcount past i8, jitter past i16): the next frame restarts from exact values.
- Runs in the main loop only, never in an interrupt; reads the ring without locking by
  re-checking ``w`` after each read (a sample overwritten meanwhile is counted lost).

Cost on the RP2040 (emulated, cycle-counted, tests/rp2emu/profile.py): the per-sample path
is native (dial.fast.pack_run: opening the frame and appending records), because the first
bytecode version (pack_record + ticks_diff per sample) took ~330 us per sample, a third of
the CPU at 1 kHz and more than all of it at 2 kHz. The bytecode path below is its twin
(same bytes, tests/test_firmware_fast.py) and handles the rare cases.
"""

from array import array

try:
    from micropython import const
except ImportError:  # CPython (tools only)

    def const(x):
        return x


from . import fast, protocol
from .sampler import EVENTS, M30, RING, S_EV_W, S_WAKE_AT

_HALF30 = const(0x20000000)
RECORDS = const(29)  # protocol.SAMPLES_RECORDS: offset of record 0 in a SAMPLES body
T_FIRST = const(12)  # offset of t_first_us in a SAMPLES body (header 4, first_index 8)
PACK_MAX = const(256)  # samples packed per call before yielding to the writer
MAX_BATCH = const(100)


class Packer:
    def __init__(self, hw, sampler, clock, writer, scratch, period, batch):
        self.sampler = sampler
        self.clock = clock
        self.writer = writer
        self.scratch = scratch  # BUTTON bodies are built here (shared with the app: no await)
        self.batch = batch
        self.events_lost = 0  # button events overwritten before they were framed
        self._diff = hw.ticks_diff
        self._tmask = (1 << hw.tick_bits) - 1  # ticks_diff inlined in pack()
        self._thalf = 1 << (hw.tick_bits - 1)
        # ``body`` holds the open SAMPLES frame while it fills: 100 records is a 433-byte
        # body, 437 bytes on the wire.
        self.body = bytearray(protocol.samples_body_size(MAX_BATCH))

        self.rd = 0
        self._rd_lo = 0
        self.n = 0
        self._first = 0
        self._t0 = 0
        self._c0 = 0
        self._prev_c = 0
        self._fperiod = period  # period of the open frame
        self._pcur = period  # period of the samples being read
        self._pchange_at = -1  # sample index where _pnext takes over (-1: none)
        self._pnext = period
        self._ev_rd = 0
        # dial.fast.pack_run's state: rd_lo, n, t0, prev_c, fperiod, batch, c0, tmask, thalf,
        # ring mask, ring size (copied in and out around each call, once per frame).
        self._ps = array("i", [0] * 11)
        self._ps[7] = self._tmask
        self._ps[8] = self._thalf
        self._ps[9] = RING - 1
        self._ps[10] = RING
        self.pack_run = fast.pack_run

    def abs_index(self, lo):
        """Absolute sample index from its low 30 bits (near the read position)."""
        return self.rd + (((lo - self._rd_lo + _HALF30) & M30) - _HALF30)

    def period_change(self, index, period):
        """Samples from ``index`` on run at ``period`` (the caller drained the ring)."""
        self._pchange_at = index
        self._pnext = period

    def wake_index(self):
        """Low 30 bits of the index of the sample that fills the open frame (or the next
        frame, when none is open): when the sampler stores it, the frame is full."""
        if self.n:
            return (self._first + self.batch - 1) & M30
        return (self.rd + self.batch - 1) & M30

    def drain(self):
        """Pack everything the ring holds now, writing as it goes so a backlog does not
        overrun the queue (commands use it before changing settings)."""
        while self.pack() >= PACK_MAX:
            self.writer.write()

    def pack(self):
        """Move new samples from the ring into SAMPLES frames, and button events into
        BUTTON frames. Returns the number of samples read."""
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
        run = self.pack_run
        ps = self._ps
        while done < PACK_MAX:
            n = self.n
            if run is not None and self._pchange_at < 0:
                # The common case in native code: open a frame, append records to it.
                ps[0] = self._rd_lo
                ps[1] = n
                ps[2] = self._t0
                ps[3] = self._prev_c
                ps[4] = self._fperiod if n else self._pcur
                ps[5] = self.batch
                k = run(ps, s, body)
                if k:
                    if not n:
                        self._opened(ps[2], ps[6])
                    self.rd += k
                    self._rd_lo = ps[0]
                    self._prev_c = ps[3]
                    n = self.n = ps[1]
                    done += k
                    if n >= self.batch:
                        self.close()
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
                    self.n = n
                    if n >= self.batch:
                        self.close()
                else:
                    self._add(t, c, f)
            else:
                self._add(t, c, f)
            self.rd += 1
            self._rd_lo = (rd_lo + 1) & M30
            done += 1
        if sst[S_EV_W] != self._ev_rd:
            self._events()
        return done

    def _opened(self, t, c):
        """A frame opened at sample ``rd`` (raw tick ``t``, count ``c``)."""
        self._first = self.rd
        self._t0 = t
        self._c0 = c
        self._prev_c = c
        self._fperiod = self._pcur
        if self.sampler.wake is not None:
            self.sampler.st[S_WAKE_AT] = (self.rd + self.batch - 1) & M30

    def _add(self, t, c, f):
        if self._pchange_at >= 0 and self.rd >= self._pchange_at:
            self.close()  # frames never span a period change
            self._pcur = self._pnext
            self._pchange_at = -1
        n = self.n
        if n:
            dc = c - self._prev_c
            jit = self._diff(t, self._t0) - n * self._fperiod
            if -128 <= dc <= 127 and -32768 <= jit <= 32767:
                protocol.pack_record(self.body, n, f, dc, jit)
                self._prev_c = c
                n += 1
                self.n = n
                if n >= self.batch:
                    self.close()
                return
            self.close()  # ends early: the next frame restarts from exact values
        self._opened(t, c)
        protocol.pack_record(self.body, 0, f, 0, 0)
        self.n = 1
        if self.batch <= 1:
            self.close()

    def close(self):
        """Hand the open frame (if any) to the writer."""
        n = self.n
        if not n:
            return
        self.n = 0
        if self.sampler.wake is not None:  # the frame after this one, if none opens first
            self.sampler.st[S_WAKE_AT] = (self._first + n + self.batch - 1) & M30
        w = self.writer
        body = self.body
        end = protocol.pack_samples_head(body, w.next_seq(), self._first, 0, self._fperiod,
                                         self._c0, n)
        self.clock.put(body, T_FIRST, self._t0)  # 64-bit time, no bigint (dial.clock)
        w.queue(body, end, self._first, n)

    def _lost(self, k):
        """The ring overflowed: samples rd .. rd+k-1 were overwritten unread."""
        self.close()
        self.writer.q.push_gap(self.rd, k)
        self.rd += k
        self._rd_lo = (self._rd_lo + k) & M30

    def _events(self):
        s = self.sampler
        sst = s.st
        while True:
            w = sst[S_EV_W]
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
            if ((sst[S_EV_W] - self._ev_rd) & M30) > EVENTS:
                continue
            self._ev_rd = (self._ev_rd + 1) & M30
            wr = self.writer
            end = protocol.pack_button(
                self.scratch, wr.next_seq(), pressed, self.abs_index(lo),
                self.clock.extend(t), self.clock.extend(te))
            wr.queue(self.scratch, end)
