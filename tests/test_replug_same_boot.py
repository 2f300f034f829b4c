"""Unplug and replug of the same boot: the frames a reopened port brings before its HELLO.

After a replug the daemon does not know which dial is on the port until a HELLO comes (it
asks with INFO every half second), so the SAMPLES that come first wait, unjudged, in the
port's :class:`~ratedial.daemon.epoch.Held` and are handed to the dial's core with that HELLO.
When the HELLO names the boot that was already current (the same boot goes on: nothing but
the cable moved), those frames are honest and must be recorded; the only gap is the
unplugged span, ``[last received + 1, first received after)`` (docs/reliability.md, Unplug
row; docs/protocol.md: "HELLO of the current boot ... places what was held"). Found by a
black-box run (``virtual-dial --fault unplug@5:1.5``): ~48 honest frames were rejected as
``no_hello`` "not of the boot its HELLO named" and the gap grew by their 0.5 s.

What does not fit the boot is still turned away when the HELLO places it.
"""

from __future__ import annotations

import dataclasses

from hostile import PORT, SimDial, World, accounted, gaps, recorded
from ratedial.clock import DeviceClock
from ratedial.daemon.core import DialCore
from ratedial.daemon.epoch import Held
from ratedial.integrity import GapReason
from ratedial.outputs import EventOut, GapOut, SamplesOut
from ratedial.scale import RatingScale
from ratedial.wire import encode_frame

UID = bytes.fromhex("c1c2c3c4c5c6c7c8")
HOLD_NS = 6 * 10**9


def _core() -> DialCore:
    return DialCore(UID.hex(), scale=RatingScale(), clock_factory=DeviceClock)


def _of(outs, kind):
    return [o for o in outs if isinstance(o, kind)]


def _rejections(outs) -> list[EventOut]:
    return [o for o in outs if isinstance(o, EventOut) and o.kind == "frame_rejected"]


def _unplug(dial: SimDial, seconds: float) -> None:
    """The dial goes on sampling while nobody reads it; those frames never arrive."""
    n = int(seconds * 1e6) // dial.period_us // dial.batch
    for _ in range(n):
        dial.frame()
        dial.sent.pop()


def test_core_places_frames_that_came_before_the_hello_of_the_same_boot():
    """Sans-I/O: the core, the port's Held handed over with the HELLO as run.py does."""
    c = _core()
    dial = SimDial(UID, boot=7)
    c.hello(dial.hello(), dial.host0_ns)
    for _ in range(100):
        s = dial.frame()
        c.samples(s, dial.arrival_ns(s))
    last = dial.next_index
    c.unplugged(dial.arrival_ns(dial.sent[-1]) + 10**6, PORT)
    _unplug(dial, 1.5)
    first_after = dial.next_index
    # the reopened port: 0.5 s of frames before its HELLO (the INFO reply) comes
    early = Held(HOLD_NS)
    after = [dial.frame() for _ in range(50)]
    for s in after:
        early.add(s, dial.arrival_ns(s), "no_hello")
    h = dial.hello()
    c.held.merge(early)
    outs = c.hello(h, dial.arrival_ns(after[-1]) + 10**6)
    assert not _rejections(outs), _rejections(outs)[0].data
    assert [o.first_index for o in _of(outs, SamplesOut)] == [s.first_index for s in after]
    (gap,) = _of(outs, GapOut)
    assert (gap.gap.first_index, gap.gap.end_index, gap.gap.reason) == (
        last, first_after, GapReason.UNPLUGGED)
    assert not c.held.frames and not c.needs_hello
    # and the boot goes on
    s = dial.frame()
    (o,) = _of(c.samples(s, dial.arrival_ns(s)), SamplesOut)
    assert o.first_index == s.first_index
    assert c.rejected == {}


def test_core_still_rejects_what_does_not_fit_among_the_frames_before_the_hello():
    c = _core()
    dial = SimDial(UID, boot=7)
    c.hello(dial.hello(), dial.host0_ns)
    for _ in range(100):
        s = dial.frame()
        c.samples(s, dial.arrival_ns(s))
    old = dial.sent[40]
    c.unplugged(dial.arrival_ns(dial.sent[-1]) + 10**6, PORT)
    _unplug(dial, 1.5)
    early = Held(HOLD_NS)
    honest = []
    for k in range(20):
        s = dial.frame()
        honest.append(s)
        t = dial.arrival_ns(s)
        early.add(s, t, "no_hello")
        if k == 3:  # far in the future
            early.add(dataclasses.replace(s, first_index=s.first_index + 10,
                                          times_us=tuple(x + 2**40 for x in s.times_us)),
                      t, "no_hello")
        if k == 6:  # old indices with other device times
            early.add(dataclasses.replace(old, times_us=tuple(x + 7 for x in old.times_us)),
                      t, "no_hello")
        if k == 9:  # an honest duplicate: counted, not recorded twice
            early.add(old, t, "no_hello")
    h = dial.hello()
    # created after the HELLO, yet before it in the stream: not an honest dial's frame
    late = dataclasses.replace(dial.frame(), seq=(h.seq + 5) & 0xFFFF)
    dial.sent.pop()
    early.add(late, dial.arrival_ns(late), "no_hello")
    c.held.merge(early)
    outs = c.hello(h, dial.arrival_ns(late) + 10**6)
    assert [o.first_index for o in _of(outs, SamplesOut)] == [s.first_index for s in honest]
    assert len(_rejections(outs)) == 3
    assert c.rejected == {"no_hello": 3}
    assert c.epoch is not None and c.epoch.ledger.duplicates == len(old)


def test_daemon_replug_of_the_same_boot_records_every_honest_frame(tmp_path):
    """Through the daemon's own frame path (run.py): the port loses its dial, is read again,
    frames come before the HELLO that answers INFO."""
    world = World(tmp_path / "r.ratedial")
    dial = SimDial(UID, boot=7)

    def send(with_hello: bool = False) -> None:
        data = encode_frame(dial.hello()) if with_hello else b""  # made first: a lower seq
        s = dial.frame()
        data += encode_frame(s)
        world.send(data, dial.arrival_ns(s))

    send(with_hello=True)
    for _ in range(299):
        send()
    for _ in range(2):
        world.daemon._lose(PORT, UID.hex(), "unplugged")  # what _port_task does
        _unplug(dial, 1.5)
        for k in range(250):
            send(with_hello=k == 50)  # 0.5 s of frames, then the HELLO answering INFO
    con = world.close()
    owed = sorted(i for s in dial.sent for i in s.indices)
    assert recorded(con) == {(UID.hex(), 7): owed}
    assert gaps(con) == {(UID.hex(), 7): [(3000, 4500, "unplugged"),
                                          (7000, 8500, "unplugged")]}
    accounted(con)
    assert not world.events("frame_rejected")


def test_a_ports_frames_merged_into_a_dials_keep_the_order_of_arrival():
    """A replugged dial may still hold frames from before the unplug: the port's frames go
    after them, so the older ones expire first and a HELLO places them in arrival order."""
    dial = SimDial(UID, boot=7)
    old, a, b = dial.frame(), dial.frame(), dial.frame()
    mine, port = Held(HOLD_NS), Held(HOLD_NS)
    mine.add(old, 1_000, "time_jump")
    port.add(a, 2_000, "no_hello")
    port.add(b, 3_000, "no_hello")
    mine.merge(port)
    assert [f[0] for f in mine.frames] == [old, a, b]
    assert [f[0] for f in mine.expire(1_500 + HOLD_NS)] == [old]
