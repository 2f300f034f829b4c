"""The bench's scripted dial (bench/diy/feeder.py) keeps the protocol a firmware dial keeps,
even when its loop runs late on a loaded machine: what it sends is recorded whole."""

from __future__ import annotations

import os
import select
import sys
from pathlib import Path

import pytest

from ratedial.clock import DeviceClock
from ratedial.daemon.core import DialCore
from ratedial.outputs import SamplesOut
from ratedial.scale import RatingScale
from ratedial.wire import FrameDecoder, Hello, Samples

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench" / "diy"))

import feeder


class Clock:
    """The feeder's ``time`` module, on a clock the test moves."""

    def __init__(self, us: int) -> None:
        self.us = us

    def monotonic_ns(self) -> int:
        return self.us * 1000


@pytest.mark.parametrize("late_ms", [0, 420])
def test_a_late_feeder_loop_sends_nothing_the_daemon_rejects(monkeypatch, late_ms):
    """A capacity step of 24 dials on a loaded 2-core machine (2026-12-05): each dial's first
    37 frames rejected (time_backwards, "... whose HELLO came after it (replay)"). The
    feeder's loop woke 420 ms late when it read the first INFO: it answered with a HELLO of
    "now" but started its samples on the tick it had meant to run, 420 ms before, and sent
    them after that HELLO; the daemon held the first frames as ending more than 50 ms
    before the HELLO (docs/protocol.md, a boot's first frame) and rejected them at the next
    HELLO. A late INFO answer or periodic HELLO must not pass frames already due either."""
    clock = Clock(50_000_000)
    monkeypatch.setattr(feeder, "time", clock)
    d = feeder.Dial(0, "frames", 1000, 3000, 10, 1)
    core = DialCore(d.uid.hex(), scale=RatingScale(), clock_factory=DeviceClock)
    decoder = FrameDecoder()  # a port just opened: the first frame is cut
    outs = []
    hellos: list[int] = []
    try:
        def loop(tick_us: int, host: bytes = b"") -> None:
            """One round of the feeder's loop woken at the clock, meant for ``tick_us``;
            what it wrote reaches the core 1 ms later."""
            if host:
                os.write(d.slave, host)
                select.select([d.master], [], [], 5)  # the pty hands it on
            d.host_input(tick_us)
            d.produce(clock.us)
            before = len(d.pending)
            d.flush(clock.us)
            data = b""
            while len(data) < before - len(d.pending):
                data += os.read(d.slave, 1 << 20)
            for f in decoder.feed(data):
                if isinstance(f, Hello):
                    hellos.append(f.time_us)
                    outs.extend(core.hello(f, (clock.us + 1000) * 1000))
                else:
                    assert isinstance(f, Samples)
                    # a dial queues a frame when its last sample is taken: one sent after a
                    # HELLO was made after it
                    assert not hellos or f.times_us[-1] > hellos[-1]
                    outs.extend(core.samples(f, (clock.us + 1000) * 1000))

        t = clock.us
        loop(t - late_ms * 1000, b"INFO\n")  # the daemon's first INFO, read late
        while clock.us < t + 3_000_000:
            clock.us += 1000
            if clock.us % 500_000 == 0:  # a late round that reads an INFO
                clock.us += late_ms * 1000
                loop(clock.us - late_ms * 1000, b"INFO\n")
            else:
                loop(clock.us)
        outs.extend(core.expire(clock.us * 1000 + 10**10))  # what was held: rejected
    finally:
        os.close(d.master)
        os.close(d.slave)
    assert core.rejected == {}
    indices = [i for o in outs if isinstance(o, SamplesOut)
               for i in range(o.first_index, o.first_index + len(o.counts))]
    assert indices == list(range(d.sent)) and d.sent >= 2900
    assert core.total_missing == 0
