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
import time

import pytest
import serial
from cobs import cobs

from ratedial.virtual import VirtualDial
from ratedial.virtual.usb import HOLD_BYTES
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

        # Stream with no host until several kilobytes (many FIFOs' worth) were written.
        deadline = time.monotonic() + 30
        while dial.status()["bytes_from_device"] < 8 * HOLD_BYTES:
            assert time.monotonic() < deadline, "the dial wrote too little"
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

        # The first bytes received were written before the open: the newest <= 256 of them
        # (more were written between the open and the bridge noticing it, overwriting older).
        start = bytes(written).find(bytes(got[:512]))
        assert start >= 0, "the bytes received are not one piece of the device's stream"
        assert before_open - HOLD_BYTES <= start < before_open
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
