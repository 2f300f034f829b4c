"""What a host gets when it opens the port of a dial that has been streaming with no host.

A Pico (MicroPython on rp2, TinyUSB) keeps writing into its 256-byte TX FIFO while no program
has the port open, overwriting the oldest bytes, and sends what it holds once the port is
opened (docs/protocol.md, "After opening the port"). The virtual dial does the same: the
first bytes are the last <= 256 bytes the firmware wrote before the open, starting at an
arbitrary point inside a frame, then whole frames, in order, with no seq gap.

An observer on the bridge's ``from_device`` records every byte the firmware wrote and how
many it had written when the port was opened, so the bytes received are placed exactly in
the device's stream.
"""

from __future__ import annotations

import itertools
import os
import select
import time
from pathlib import Path

import pytest
import serial
from cobs import cobs

from ratedial.virtual import VirtualDial
from ratedial.virtual.options import DialOptions
from ratedial.virtual.usb import HOLD_BYTES, UsbLink
from ratedial.wire import FrameDecoder, Samples

pytestmark = pytest.mark.timeout(120)


def _seq(encoded: bytes) -> int:
    """The seq of one COBS-encoded frame (header: version u8, type u8, seq u16)."""
    body = cobs.decode(encoded)
    return int.from_bytes(body[2:4], "little")


def test_opening_the_port_delivers_the_cut_tail_written_before_the_open() -> None:
    with VirtualDial(seed=11, rate_hz=1000) as dial:
        bridge = dial._bridge
        assert bridge is not None
        usb = bridge._usb
        written = bytearray()
        real = usb.from_device

        def observe(now: int, data: bytes) -> None:
            written.extend(data)
            real(now, data)

        usb.from_device = observe  # type: ignore[method-assign]
        # how much the dial had written when the bridge noticed the host open the port: the
        # kept bytes are the newest HOLD_BYTES of those (however long the noticing took)
        noticed: list[int] = []
        real_check = usb.check_host

        def check(now: int) -> None:
            was = usb.host_open
            real_check(now)
            if usb.host_open and not was:
                noticed.append(len(written))

        usb.check_host = check  # type: ignore[method-assign]

        # Stream with no host until several kilobytes (many FIFOs' worth) were written.
        deadline = time.monotonic() + 30
        while dial.status()["bytes_from_device"] < 8 * HOLD_BYTES:
            assert time.monotonic() < deadline, "the dial wrote too little"
            time.sleep(0.005)  # polling a condition, not standing in for one
        before_open = len(written)
        st = dial.status()
        assert st["bytes_to_host"] == 0
        assert not st["host_open"]

        got = bytearray()
        with serial.Serial(dial.port, timeout=0.5) as ser:
            end = time.monotonic() + 10
            while len(got) < 2048 and time.monotonic() < end:
                got += ser.read(2048 - len(got))
        assert len(got) >= 2048

        # The first bytes received were written before the bridge noticed the open: exactly
        # the newest HOLD_BYTES of them (the FIFO overwrites older ones).
        assert len(noticed) == 1 and noticed[0] >= before_open
        start = bytes(written).find(bytes(got[:512]))
        assert start >= 0, "the bytes received are not one piece of the device's stream"
        assert start == noticed[0] - HOLD_BYTES
        assert bytes(written[start : start + len(got)]) == bytes(got)  # in order, none lost

        # They start at an arbitrary point inside a frame: the cut tail of a real frame ...
        cut = got.index(0)
        assert cut < HOLD_BYTES
        frame_start = bytes(written).rfind(b"\x00", 0, start) + 1
        assert 0 < frame_start <= start, "the first byte received is not inside a frame"
        whole_cut = bytes(written[frame_start : start + cut])
        assert whole_cut.endswith(bytes(got[:cut]))
        cut_seq = _seq(whole_cut)  # it is the end of a frame that decodes (valid COBS)

        # ... then whole frames: every chunk decodes, seq goes on from the cut frame.
        dec = FrameDecoder()
        frames = dec.feed(bytes(got))
        assert dec.stats.partial_start == (1 if cut else 0)
        assert dec.stats.rejected == 0
        assert len(frames) >= 10
        seqs = [f.seq for f in frames]
        assert seqs[0] == (cut_seq + 1) & 0xFFFF
        assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))
        assert any(isinstance(f, Samples) for f in frames)

        st = dial.status()
        assert st["bytes_discarded"] >= before_open - HOLD_BYTES


def _read_all(fd: int) -> bytes:
    out = b""
    while True:
        try:
            d = os.read(fd, 4096)
        except BlockingIOError:
            return out
        if not d:
            return out
        out += d


def test_the_link_keeps_the_newest_bytes_over_a_close_and_drops_them_when_unplugged(
        tmp_path: Path) -> None:
    """The bridge's rules alone (a real pty, no firmware, no link model): the newest 256
    bytes are kept while no host has the port open, undelivered bytes stay kept over a close,
    an unplug drops them, and every byte is delivered, discarded or held."""
    usb = UsbLink(DialOptions(link_model=False), link=tmp_path / "dial0", origin_ns=0,
                  on_flips=lambda: None)
    usb.plug()
    assert usb.port is not None
    stream = bytes(i % 251 + 1 for i in range(1000))  # no 0x00, so every offset is known
    usb.from_device(1, stream[:300])
    assert usb.held_bytes() == HOLD_BYTES
    assert usb.stats.bytes_discarded == 300 - HOLD_BYTES

    def accounted() -> None:
        s = usb.stats
        assert s.bytes_from_device == s.bytes_to_host + s.bytes_discarded + usb.held_bytes()

    accounted()
    host = os.open(usb.port.slave_name, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        usb.check_host(2)
        assert usb.host_open
        usb.from_device(3, stream[300:400])
        usb.deliver_to_host(4)
        assert _read_all(host) == stream[300 - HOLD_BYTES : 400]  # kept first, then live
        usb.from_device(5, stream[400:450])  # on the link, not delivered yet
        accounted()
    finally:
        os.close(host)
    for _fd, ev in select_poll(usb.port.master):
        usb.on_master(ev, 6)
    assert not usb.host_open
    assert usb.held_bytes() == 50  # what was on the link stays, as the oldest kept
    usb.from_device(7, stream[450:600])
    accounted()
    host = os.open(usb.port.slave_name, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        usb.check_host(usb._next_host_check)
        usb.deliver_to_host(usb._next_host_check)
        assert _read_all(host) == stream[400:600]
    finally:
        os.close(host)
    for _fd, ev in select_poll(usb.port.master):
        usb.on_master(ev, 8)
    usb.from_device(9, stream[600:700])
    usb.unplug()
    assert usb.held_bytes() == 0
    usb.from_device(10, stream[700:800])  # unplugged: nothing is kept
    assert usb.held_bytes() == 0
    accounted()
    assert usb.stats.bytes_to_host == 100 + HOLD_BYTES + 200


def select_poll(fd: int) -> list[tuple[int, int]]:
    p = select.poll()
    p.register(fd, select.POLLIN)
    return p.poll(1000)
