"""The link side of the dial: sequence numbers, the transmit queue and the frame in flight.

Invariants:
- ``seq`` is assigned when a frame is created (``next_seq``), whether it is later sent,
  evicted from the queue or lost at the link: the host counts gaps from it.
- On the wire: first a lone 0x00 (``begin``), then whole frames. A DROP notice goes out
  before any entry queued after the loss; a SYNC reply (``send_now``) bypasses the queue
  but never cuts a frame in half (``flush_for_sync`` first).
- A PING's SYNC (``sync_reply``) waits for the next queued frame to be handed to the link
  and follows it at once, its ``t_tx_us`` read immediately before its own write: a reply
  sent the moment the PING is read always leaves just after a USB OUT transfer, the worst
  phase of the 1 ms frame for the IN transfer that carries it (docs/timing.md). It waits
  no longer than the next PING (which sends it first) or ``SYNC_WAIT_US`` (``sync_overdue``,
  from the app's housekeeping).
- Nothing here waits for the host: ``write`` hands bytes to ``hw.tx_write`` until it takes
  no more and returns False; the caller tries again later. With ``hw.tx_write_at(buf, off,
  n)`` a write needs no memoryview slice, so steady streaming allocates nothing.
- ``signal``: the writer task's wake-up (dial.aio.Signal) once the asyncio shell runs;
  ``queue`` sets it unless ``quiet`` (the frame task writes what it queues itself).
"""

from . import fast, protocol
from .txqueue import TxQueue

SYNC_WAIT_US = 20_000  # a SYNC waits this long for a frame to follow (sync_overdue)

_finish = fast.finish if fast.NATIVE else protocol.finish


class Writer:
    def __init__(self, hw, queue_frames, slot, scratch):
        self.q = TxQueue(queue_frames, slot)
        self.seq = 0
        self.signal = None
        self.quiet = False
        self._scratch = scratch  # DROP bodies are built here (shared with the app: no await)
        self._tx = hw.tx_write
        self._txa = getattr(hw, "tx_write_at", None)
        self._sync_wire = memoryview(bytearray(protocol.wire_size(32)))
        self._drop_wire = memoryview(bytearray(protocol.wire_size(32)))
        self._zero_wire = memoryview(bytearray(1))
        # The frame being written: a queue slot, the DROP or SYNC buffer, or the lone 0x00.
        self._cur = None
        self._cur_off = 0
        self._cur_len = 0
        self._cur_q = False
        # The SYNC waiting for the next frame (sync_reply); ``clock`` (dial.clock.Clock) reads
        # its t_tx_us.
        self.clock = None
        self._sync_due = 0
        self._sync_token = 0
        self._sync_rx = 0

    def next_seq(self):
        s = self.seq
        self.seq = (s + 1) & 0xFFFF
        return s

    def begin(self):
        """The lone 0x00 that goes before the first frame."""
        self._set_cur(self._zero_wire, 1, False)

    def queue(self, body, end, first=0, nsamp=0):
        """Seal ``body[:end]`` into a queue slot (a SAMPLES frame carries ``nsamp`` samples
        from ``first``)."""
        q = self.q
        sid = q.reserve()
        q.commit(sid, _finish(body, end, q.buf[sid], 0), first, nsamp)
        sig = self.signal
        if sig is not None and not self.quiet:
            sig.set()

    def wake(self):
        if self.signal is not None:
            self.signal.set()

    def _set_cur(self, mv, n, from_queue):
        self._cur = mv
        self._cur_off = 0
        self._cur_len = n
        self._cur_q = from_queue

    def _push(self):
        """Write the current frame on; True when it is completely written."""
        n = self._cur_len
        mv = self._cur
        txa = self._txa
        off = self._cur_off
        while off < n:
            k = self._tx(mv[off:n]) if txa is None else txa(mv, off, n - off)
            if not k:
                self._cur_off = off
                return False
            off += k
        self._cur_off = off
        if self._cur_q:
            self.q.pop()
        self._cur = None
        self._cur_len = 0
        return True

    def _build_drop(self):
        first, n, frames = self.q.take_drop()
        body = self._scratch
        end = protocol.pack_drop(body, self.next_seq(), first, n, frames)
        self._set_cur(self._drop_wire, _finish(body, end, self._drop_wire, 0), False)

    def write(self):
        """Hand frames to the link until it takes no more. True when all is written."""
        q = self.q
        sent = False
        while True:
            if self._cur_len:
                was_q = self._cur_q
                if not self._push():
                    return False
                sent = sent or was_q
            sid = q.next_entry()
            if sid < 0:
                if sid == -1:
                    if sent and self._sync_due:
                        self._send_sync()
                        return not self._cur_len
                    return True
                self._build_drop()
                continue
            self._set_cur(q.mv[sid], q.length[sid], True)

    def sync_reply(self, token, t_rx):
        """A PING was read at device time ``t_rx``: its SYNC follows the next queued frame
        (``write``). A reply still waiting goes first, now; if the link cannot take it, it
        is lost, counted like any dropped frame."""
        if self._sync_due and not self._send_sync():
            self.next_seq()
            self.q.lost_frame()
        self._sync_token = token
        self._sync_rx = t_rx
        self._sync_due = 1

    def sync_overdue(self):
        """Send the waiting SYNC if no frame came to follow it within ``SYNC_WAIT_US``
        (sampling stopped, long frames); ``clock`` has just been read."""
        if self._sync_due and self.clock.base - self._sync_rx > SYNC_WAIT_US:
            self._send_sync()

    def _send_sync(self):
        """Send the waiting SYNC now, ``t_tx_us`` read immediately before it is written.
        False (and still waiting) when the frame in flight cannot be finished first."""
        if not self.flush_for_sync():
            return False
        self._sync_due = 0
        clock = self.clock
        clock.now()
        body = self._scratch
        self.send_now(body, protocol.pack_sync(body, self.next_seq(), self._sync_token,
                                               self._sync_rx, clock.base))
        return True

    def flush_for_sync(self):
        """Finish the frame in flight and any DROP notice: both precede a SYNC."""
        if self._cur_len and not self._push():
            return False
        self.q.absorb_gaps()
        if self.q.has_drop():
            self._build_drop()
            return self._push()
        return True

    def send_now(self, body, end):
        """Seal and write a frame past the queue (after ``flush_for_sync`` returned True);
        what the link does not take now is written first by the next ``write``. A frame the
        link takes nothing of is lost, counted like any dropped frame."""
        wire = self._sync_wire
        n = _finish(body, end, wire, 0)
        txa = self._txa
        k = self._tx(wire[:n]) if txa is None else txa(wire, 0, n)
        if k == n:
            return
        if k:
            self._set_cur(wire, n, False)
            self._cur_off = k
            return
        self.q.lost_frame()

    def send_fault(self, body, end):
        """Best effort, straight to the link: a lone 0x00 first ends any frame cut short, so
        the host rejects that fragment alone. Allocates (only after a failure)."""
        wire = bytearray(protocol.wire_size(end + protocol.CRC) + 1)
        n = protocol.finish(body, end, wire, 1)  # wire[0] stays 0x00
        off = 0
        while off < n:
            k = self._tx(memoryview(wire)[off:n])
            if not k:
                break
            off += k
