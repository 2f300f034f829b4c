"""Transmit queue: fixed slots of encoded frames, drop-oldest with exact drop accounting.

Invariants:
- ``capacity`` slots, each a preallocated ``bytearray`` big enough for the largest frame.
  An entry is a wire-ready frame (COBS + 0x00) with the sample range it carries
  (``first``, ``nsamp``; nsamp 0 for non-sample frames), or a *gap*: ``length`` 0, a range
  of samples that never made it into a frame (the sample ring overflowed).
- Entries are in creation order, and sample ranges in index order: evicting the oldest
  therefore always extends the pending drop range contiguously.
- When full, ``reserve`` evicts the OLDEST entry not yet started. The head, once
  ``start``-ed (partly written to the link), stays until ``pop``: a frame is never cut.
  So the capacity must be at least 2.
- Every evicted frame and every gap lands in ONE pending drop range
  (``pend_first``, ``pend_n``, ``pend_frames``) kept outside the slots, so a DROP notice
  can always be sent: the writer takes it with ``take_drop`` before starting any later
  entry. Totals since start: ``frames_dropped``, ``samples_dropped`` (gaps count when
  pushed, frames when evicted).
"""

from array import array


class TxQueue:
    def __init__(self, capacity, slot_size):
        if capacity < 2:
            raise ValueError("need at least 2 slots")
        self.capacity = capacity
        self.slot_size = slot_size
        self.buf = [bytearray(slot_size) for _ in range(capacity)]
        self.mv = [memoryview(b) for b in self.buf]
        self.length = array("H", [0] * capacity)
        self.nsamp = array("H", [0] * capacity)
        self.first = [0] * capacity  # absolute sample index (may exceed a small int)
        # _order is a permutation of slot ids: positions head .. head+count-1 (mod capacity)
        # hold the queued entries oldest first, the other positions the free slots.
        self._order = array("H", range(capacity))
        self._head = 0
        self.count = 0
        self.started = False
        self.pend_first = 0
        self.pend_n = 0
        self.pend_frames = 0
        self.frames_dropped = 0
        self.samples_dropped = 0

    # -- producer side

    def reserve(self):
        """Slot id for a new entry (evicting the oldest unstarted one when full). Fill
        ``buf[sid]`` and call ``commit`` before anything else touches the queue."""
        if self.count == self.capacity:
            self._evict()
        return self._order[(self._head + self.count) % self.capacity]

    def commit(self, sid, length, first=0, nsamp=0):
        self.length[sid] = length
        self.first[sid] = first
        self.nsamp[sid] = nsamp
        self.count += 1

    def push_gap(self, first, n):
        """Record ``n`` samples from ``first`` that were lost before framing."""
        self.samples_dropped += n
        self.commit(self.reserve(), 0, first, n)

    def lost_frame(self):
        """A frame created outside the queue (SYNC) could not be sent."""
        self.frames_dropped += 1
        self.pend_frames += 1

    # -- writer side

    def head(self):
        return self._order[self._head] if self.count else -1

    def start(self):
        """Mark the head as being written and return its slot id (-1 if empty)."""
        if not self.count:
            return -1
        self.started = True
        return self._order[self._head]

    def pop(self):
        """Remove the head (fully written, or a gap moved into the pending range)."""
        self._head = (self._head + 1) % self.capacity
        self.count -= 1
        self.started = False

    def next_entry(self):
        """What the writer sends next: -2 a DROP notice first (``take_drop``), -1 nothing,
        else the head's slot id, marked started (``start``). Gap entries at the head join
        the pending drop range first (``absorb_gaps``). One call per frame written."""
        if self.count and not self.started and not self.length[self._order[self._head]]:
            self.absorb_gaps()
        if self.pend_n or self.pend_frames:
            return -2
        if not self.count:
            return -1
        self.started = True
        return self._order[self._head]

    def absorb_gaps(self):
        """Move gap entries at the (unstarted) head into the pending drop range: they are
        reported by the next DROP frame, merged with any frames evicted just before them."""
        while self.count and not self.started:
            sid = self._order[self._head]
            if self.length[sid]:
                return
            self._pend(self.first[sid], self.nsamp[sid], 0)
            self.pop()

    def has_drop(self):
        return self.pend_n or self.pend_frames

    def take_drop(self):
        """Return and clear the pending (first_index, n_samples, n_frames)."""
        r = (self.pend_first, self.pend_n, self.pend_frames)
        self.pend_first = 0
        self.pend_n = 0
        self.pend_frames = 0
        return r

    # -- internals

    def _pend(self, first, n, frames):
        if n:
            if not self.pend_n:
                self.pend_first = first
                self.pend_n = n
            else:
                # Always contiguous: entries leave in index order, and the writer takes the
                # pending range before it starts any later entry.
                self.pend_n = first + n - self.pend_first
        self.pend_frames += frames

    def _evict(self):
        cap = self.capacity
        h = self._head
        pos = (h + 1) % cap if self.started else h
        sid = self._order[pos]
        n = self.nsamp[sid]
        if self.length[sid]:
            self.frames_dropped += 1
            self.samples_dropped += n
            self._pend(self.first[sid], n, 1)
        else:
            self._pend(self.first[sid], n, 0)  # a gap: its samples were counted when pushed
        if pos != h:
            # Keep the started head in front: it moves into the evicted entry's position.
            self._order[pos] = self._order[h]
            self._order[h] = sid
        self._head = (h + 1) % cap
        self.count -= 1
