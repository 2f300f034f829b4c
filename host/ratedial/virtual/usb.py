"""The USB connection of a virtual dial in motion: firmware pipes <-> link model <-> pty.

``UsbLink`` holds the bytes on their way in both directions and hands them on at the link
model's times (``linkmodel``), applying its bit errors; it plugs and unplugs the port
(``port``) and notices a host opening and closing it. The bridge's loop drives it: every
call gets ``now``, and the bridge polls the fds it names.

Invariants:
- Device -> host: bytes are read from the firmware's stdout only while the link holds
  fewer than ``HOLD_BYTES`` (a USB FIFO's worth) and no ``stall`` is on (the bridge's
  part), so a host that does not read fills the 4 KB pipe and the firmware drops frames
  itself, exactly counted. Bytes are delivered at the link model's times, never reordered,
  and only while the host has fewer than ``HOST_BUFFER`` bytes unread (a real tty's buffer).
- While the port is plugged in and no process has it open (POLLHUP on the master), device
  output is read at once and its newest ``HOLD_BYTES`` are kept, older ones overwritten:
  MicroPython on rp2 writes into TinyUSB's 256-byte TX FIFO, overwritable while DTR is low,
  and never blocks. When a host opens the port the kept bytes go onto the link first (the
  cut tail of a frame, then whole frames), then the live stream. Bytes on the link when the
  host closes the port stay, as the oldest kept (MicroPython 1.28, the pinned version; its
  1.29 preview clears the FIFO when DTR drops: the same once 256 more bytes were written).
  Not modelled: the one packet (<= 64 bytes) TinyUSB also leaves armed on its IN endpoint
  while the port is closed, sent before the FIFO's bytes (docs/protocol.md).
- Unplugged, nothing is kept: what was kept or on the link is discarded, and output is
  discarded at once until the port is back (a Pico on USB power is off; the virtual dial's
  firmware runs on, but the port that comes back starts empty, where a Pico powered
  otherwise would keep its FIFO: MicroPython sets tx_persistent). A reboot without
  ``native_usb`` keeps the port and what it holds (the bridge's docstring).
- ``bytes_discarded`` counts device output that no host will get (overwritten while kept,
  dropped by an unplug); ``bytes_from_device`` = ``bytes_to_host`` +
  ``bytes_discarded`` + what is on the link or kept now (``held_bytes()``).
- Host -> device bytes still on the link when the port is unplugged (or the firmware
  reboots: ``lose_to_device``) are lost, and counted.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .linkmodel import BitErrors, LinkSchedule
from .options import DialOptions
from .port import PtyPort

log = logging.getLogger("ratedial.virtual")

HOLD_BYTES = 256  # device -> host bytes held by the bridge (TinyUSB's TX FIFO is 256 bytes)
# and kept while no host has the port open (the FIFO, overwritten oldest first)
HOST_BUFFER = 4096  # unread bytes at the host before the link pushes back (n_tty buffer)
H2D_HOLD = 4096  # host -> device bytes held before the bridge stops reading the pty
HOST_CHECK_NS = 10_000_000  # look for a host opening the port every 10 ms
RETRY_NS = 1_000_000  # retry a blocked write after 1 ms (one USB frame)


@dataclass
class _Chunk:
    t_ns: int
    data: bytearray
    flipped: bool = False  # bit errors already applied


@dataclass
class Stats:
    bytes_from_device: int = 0
    bytes_to_host: int = 0
    bytes_discarded: int = 0  # device output no host will get (overwritten, closed, unplugged)
    bytes_to_device: int = 0
    bytes_lost_to_device: int = 0  # host -> device bytes lost by unplug or reboot


class UsbLink:
    """The port and the bytes on the link. ``on_flips`` is called whenever bit errors were
    applied to a chunk about to be delivered (``bits.forced`` tells how many so far)."""

    def __init__(self, options: DialOptions, *, link: Path, origin_ns: int,
                 on_flips: Callable[[], None]) -> None:
        self.opts = options
        self.link = link
        self.stats = Stats()
        self._on_flips = on_flips

        self.port: PtyPort | None = None
        self.host_open = False
        self._next_host_check = 0
        self._unread = 0  # upper bound of bytes the host has not read
        self.unplug_gen = 0

        self._d2h: deque[_Chunk] = deque()
        self._d2h_bytes = 0
        self._kept = bytearray()  # the newest device output while no host has the port open
        self._h2d: deque[tuple[int, bytes]] = deque()
        self._h2d_bytes = 0
        self._blocked_until = 0

        self._sched = LinkSchedule(options.link, seed=options.seed, origin_ns=origin_ns)
        self.bits = BitErrors(ber=options.ber, seed=options.seed)

    # ------------------------------------------------------------------ port

    def plug(self, gen: int | None = None) -> None:
        if gen is not None and gen != self.unplug_gen:
            return  # a later plug/unplug took over
        if self.port is not None:
            return
        self.unplug_gen += 1
        self.port = PtyPort(self.link)
        self.host_open = False
        self._next_host_check = 0
        log.info("port %s -> %s", self.link, self.port.slave_name)

    def unplug(self) -> None:
        self.unplug_gen += 1
        if self.port is None:
            return
        self.port.close()
        self.port = None
        self.host_open = False
        self._drop_d2h()
        self._drop_kept()
        self.lose_to_device()

    def lose_to_device(self) -> None:
        """Host -> device bytes still on the link are lost (unplug, reboot)."""
        self.stats.bytes_lost_to_device += self._h2d_bytes
        self._h2d.clear()
        self._h2d_bytes = 0

    def _drop_d2h(self) -> None:
        self.stats.bytes_discarded += self._d2h_bytes
        self._d2h.clear()
        self._d2h_bytes = 0

    def _drop_kept(self) -> None:
        self.stats.bytes_discarded += len(self._kept)
        self._kept.clear()

    def held_bytes(self) -> int:
        """Device output on the link or kept for the next host, not yet delivered."""
        return self._d2h_bytes + len(self._kept)

    def check_host(self, now: int) -> None:
        """Notice a host opening the port (while none has, the master shows POLLHUP)."""
        port = self.port
        if port is None or self.host_open or now < self._next_host_check:
            return
        self._next_host_check = now + HOST_CHECK_NS
        if port.host_open():
            self.host_open = True
            self._unread = 0
            log.info("host opened the port (%d bytes kept go first)", len(self._kept))
            if self._kept:
                kept, self._kept = bytes(self._kept), bytearray()
                self._onto_link(now, kept)

    def _host_closed(self) -> None:
        self.host_open = False
        self._next_host_check = time.monotonic_ns() + HOST_CHECK_NS
        # What the link still held stays in the FIFO, the oldest bytes to be kept.
        for c in self._d2h:
            self._kept += c.data
        self._d2h.clear()
        self._d2h_bytes = 0
        if self.port is not None:
            self.port.flush_host_input()
        log.info("host closed the port")

    def _host_room(self, n: int) -> bool:
        if self._unread + n <= HOST_BUFFER:
            return True
        assert self.port is not None
        m = self.port.backlog()
        if m is None:
            return True
        self._unread = m
        return m + n <= HOST_BUFFER

    def connected(self) -> bool:
        return self.port is not None and self.host_open

    # ------------------------------------------------------------------ what to poll

    def takes_device_output(self) -> bool:
        """Whether the firmware's stdout may be read now (a stall aside)."""
        return not self.connected() or self._d2h_bytes < HOLD_BYTES

    def device_room(self) -> int:
        """How many bytes to read from the firmware's stdout at most."""
        return 65536 if not self.connected() else HOLD_BYTES - self._d2h_bytes

    def host_fd(self) -> int | None:
        """The pty master to poll for the host's bytes, or None while it is not read."""
        if self.port is not None and self.host_open and self._h2d_bytes < H2D_HOLD:
            return self.port.master
        return None

    def next_deadline(self, d: int) -> int:
        """``d``, or earlier if bytes on the link or a host check are due before it."""
        if self._d2h:
            d = min(d, max(self._d2h[0].t_ns, self._blocked_until))
        if self._h2d:
            d = min(d, self._h2d[0][0])
        if self.port is not None and not self.host_open:
            d = min(d, self._next_host_check)
        return d

    # ------------------------------------------------------------------ data paths

    def from_device(self, now: int, data: bytes) -> None:
        """Bytes the firmware wrote at ``now``: onto the link; while no host has the port
        open, kept (the newest ``HOLD_BYTES``); unplugged, discarded."""
        self.stats.bytes_from_device += len(data)
        if self.port is None:
            self.stats.bytes_discarded += len(data)
            return
        if not self.host_open:
            self._kept += data
            over = len(self._kept) - HOLD_BYTES
            if over > 0:
                del self._kept[:over]
                self.stats.bytes_discarded += over
            return
        self._onto_link(now, data)

    def _onto_link(self, now: int, data: bytes) -> None:
        if self.opts.link_model:
            off = 0
            for t, n in self._sched.to_host(now, len(data)):
                self._d2h.append(_Chunk(t, bytearray(data[off : off + n])))
                off += n
        else:
            self._d2h.append(_Chunk(now, bytearray(data)))
        self._d2h_bytes += len(data)

    def deliver_to_host(self, now: int) -> None:
        if now < self._blocked_until:
            return
        while self._d2h and self._d2h[0].t_ns <= now:
            port = self.port
            if port is None or not self.host_open:
                self._drop_d2h()
                return
            c = self._d2h[0]
            if not self._host_room(len(c.data)):
                self._blocked_until = now + RETRY_NS
                return
            if not c.flipped:
                c.flipped = True
                if self.bits.apply(c.data):
                    self._on_flips()
            try:
                n = os.write(port.master, c.data)
            except BlockingIOError:
                n = 0
            except OSError as exc:
                if exc.errno != errno.EIO:
                    raise
                self._host_closed()
                return
            self.stats.bytes_to_host += n
            self._unread += n
            self._d2h_bytes -= n
            if n < len(c.data):
                del c.data[:n]
                self._blocked_until = now + RETRY_NS
                return
            self._d2h.popleft()

    def on_master(self, ev: int, now: int) -> None:
        """Poll events on the pty master: the host closed the port, or wrote."""
        if self.port is None:
            return
        if ev & select.POLLHUP:
            self._host_closed()
        elif ev & select.POLLIN:
            self._read_host(now)

    def _read_host(self, now: int) -> None:
        port = self.port
        if port is None:
            return
        try:
            data = os.read(port.master, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            self._host_closed()
            return
        if not data:
            return
        t = self._sched.to_device(now) if self.opts.link_model else now
        self._h2d.append((t, data))
        self._h2d_bytes += len(data)

    def deliver_to_device(self, now: int, in_w: int | None) -> None:
        """Hand due host bytes to the firmware's stdin (``in_w``; None: no firmware)."""
        while self._h2d and self._h2d[0][0] <= now and in_w is not None:
            _t, data = self._h2d[0]
            try:
                n = os.write(in_w, data)
            except BlockingIOError:
                n = 0
            except BrokenPipeError:
                return  # the firmware is gone; its stdout EOF reports it
            self.stats.bytes_to_device += n
            self._h2d_bytes -= n
            if n < len(data):
                self._h2d[0] = (now + RETRY_NS, data[n:])
                return
            self._h2d.popleft()
