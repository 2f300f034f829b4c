"""Well-formed frames with impossible contents: no single frame can cost a session.

Each test sends an honest dial's stream (tests/hostile.py) through the daemon's real frame
path into a real recording, with one kind of hostile frame in it, and asserts that every
honest sample after it is recorded, that the accounting is exact and that the hostile frame
was rejected with its reason (docs/protocol.md, "What a host does with ...").
"""

from __future__ import annotations

import dataclasses

import pytest

from hostile import PORT, SimDial, World, accounted, gaps, recorded
from ratedial.outputs import SyncOut
from ratedial.wire import Ack, Button, Error, Hello, Samples, Sync, encode_frame

UID_A = bytes.fromhex("a1a2a3a4a5a6a7a8")
UID_B = bytes.fromhex("b1b2b3b4b5b6b7b8")


def stream(world: World, dial: SimDial, n: int, *, hello_every: int = 50,
           first_hello: int | None = 0, inject: dict[int, bytes] | None = None) -> None:
    """``n`` frames of ``dial`` in real time, a HELLO every ``hello_every`` frames from frame
    ``first_hello`` (None: no HELLO), and ``inject[k]`` (bytes) sent in the same read just
    after frame ``k``."""
    for k in range(n):
        announce = first_hello is not None and k >= first_hello and \
            (k - first_hello) % hello_every == 0
        data = encode_frame(dial.hello()) if announce else b""  # made first: a lower seq
        s = dial.frame()
        data += encode_frame(s)
        if inject and k in inject:
            data += inject[k]
        world.send(data, dial.arrival_ns(s))


def rejected(world: World) -> list[tuple[str, str]]:
    return [(e.data["frame"], e.data["reason"]) for e in world.events("frame_rejected")]


@pytest.fixture
def world(tmp_path):
    return World(tmp_path / "r.ratedial")


def owed(dial: SimDial) -> list[int]:
    return sorted({i for s in dial.sent for i in s.indices})


def test_a_replayed_old_frame_is_a_counted_duplicate_and_nothing_stalls(world):
    dial = SimDial(UID_A, boot=7)
    stream(world, dial, 100)
    old = dial.sent[10]  # from 0.9 s earlier
    stream(world, dial, 200, inject={0: encode_frame(old), 50: encode_frame(old)})
    con = world.close()
    assert recorded(con) == {(UID_A.hex(), 7): owed(dial)}
    assert gaps(con) == {}
    core = world.daemon.cores[UID_A.hex()]
    assert core.epoch is not None and core.epoch.ledger.duplicates == 20
    assert not core.held.frames and not core.needs_hello


def test_a_duplicate_with_device_time_far_ahead_is_rejected_and_the_clock_untouched(tmp_path):
    def run(name: str, hostile: bool) -> tuple[World, SimDial]:
        world = World(tmp_path / name)
        dial = SimDial(UID_A, boot=7, drift_ppm=200)
        stream(world, dial, 100)
        last = dial.sent[-1]
        bogus = dataclasses.replace(last, times_us=tuple(t + 2**40 for t in last.times_us))
        stream(world, dial, 300, inject={5: encode_frame(bogus)} if hostile else None)
        return world, dial

    world, dial = run("hostile.ratedial", True)
    control, _ = run("control.ratedial", False)
    con, con0 = world.close(), control.close()
    assert recorded(con) == {(UID_A.hex(), 7): owed(dial)}
    assert gaps(con) == {}
    assert rejected(world) == [("SAMPLES", "time_jump")]
    # The clock never saw it: every sample maps exactly as without the bogus frame.
    q = "SELECT sample_index, device_us, host_ns FROM samples ORDER BY 1"
    assert con.execute(q).fetchall() == con0.execute(q).fetchall()


def test_a_frame_whose_index_is_far_ahead_opens_no_gap(world):
    dial = SimDial(UID_A, boot=7)
    stream(world, dial, 100)
    nxt = dial.next_index + 10  # it follows the next honest frame
    bogus = Samples(seq=1, first_index=nxt + 2**31, period_us=1000, counts=(0,) * 10,
                    times_us=tuple(dial.t_us(nxt) + k * 1000 for k in range(10)),
                    flags=(0,) * 10)
    stream(world, dial, 200, inject={0: encode_frame(bogus)})
    con = world.close()
    assert recorded(con) == {(UID_A.hex(), 7): owed(dial)}
    assert gaps(con) == {}
    assert rejected(world) == [("SAMPLES", "index_jump")]


def test_a_sync_that_ends_before_it_starts_is_rejected_and_its_read_recorded(world):
    dial = SimDial(UID_A, boot=7)
    stream(world, dial, 20)
    world.daemon._pings[(PORT, 99)] = dial.host_ns(dial.t_us(dial.next_index)) - 3_000_000
    s = dial.frame()
    bad = Sync(seq=1, token=99, t_rx_us=s.times_us[0], t_tx_us=s.times_us[0] - 5)
    world.send(encode_frame(bad) + encode_frame(s), dial.arrival_ns(s))
    stream(world, dial, 20)
    con = world.close()
    assert recorded(con) == {(UID_A.hex(), 7): owed(dial)}
    assert rejected(world) == [("SYNC", "field")]


def test_another_dial_on_the_same_port_is_a_second_dial_and_the_run_goes_on(world):
    a = SimDial(UID_A, boot=1)
    b = SimDial(UID_B, boot=2, t0_us=9_000_000)
    stream(world, a, 60)
    b.host0_ns = a.arrival_ns(a.sent[-1])  # B is plugged in where A was
    stream(world, b, 88)
    a.next_index += 880  # A was away as long, its samples never came
    a_sent_before = set(owed(a))
    stream(world, a, 60)  # A back on the port: its HELLO first
    stream(world, b, 10)  # and B once more: a second HELLO of B's boot must not fail
    con = world.close()
    rec = recorded(con)
    assert rec[(UID_A.hex(), 1)] == owed(a)
    assert rec[(UID_B.hex(), 2)] == owed(b)
    assert set(rec) == {(UID_A.hex(), 1), (UID_B.hex(), 2)}
    assert gaps(con)[(UID_A.hex(), 1)] == [(600, 1480, "unplugged")]
    assert max(a_sent_before) == 599
    causes = [e.data["cause"] for e in world.events("dial_lost")]
    assert causes == ["replaced", "replaced", "replaced"]
    accounted(con)


@pytest.mark.parametrize("splits", [(), "each_frame", "every_byte"])
def test_gap_reasons_do_not_depend_on_read_boundaries(world, splits):
    dial = SimDial(UID_A, boot=7)
    stream(world, dial, 5)
    good = dial.frame()
    damaged = bytearray(encode_frame(dial.frame()))
    damaged[9] ^= 0x10  # a bit error inside the frame: the CRC no longer matches
    after = dial.frame()
    data = encode_frame(good) + bytes(damaged) + encode_frame(after)
    cuts: tuple[int, ...] = ()
    if splits == "each_frame":
        cuts = (len(encode_frame(good)), len(encode_frame(good)) + len(damaged))
    elif splits == "every_byte":
        cuts = tuple(range(1, len(data)))
    world.send(data, dial.arrival_ns(after), splits=cuts)
    con = world.close()
    assert gaps(con) == {(UID_A.hex(), 7): [(60, 70, "crc")]}


@pytest.mark.parametrize(("frame", "what"), [
    (Button(seq=1, pressed=True, index=2**64 - 1, t_us=2_000_000, t_edge_us=1_990_000),
     "BUTTON"),
    (Button(seq=1, pressed=7, index=55, t_us=1_055_000, t_edge_us=1_050_000), "BUTTON"),
    (Button(seq=1, pressed=True, index=2**40, t_us=1_055_000, t_edge_us=1_050_000),
     "BUTTON"),
    (Error(seq=1, code=2, text="\x00\x01\x02binary\xff"), "ERROR"),
    (Ack(seq=1, command=9, index=100, value=0), "ACK"),
    (Ack(seq=1, command=1, index=100, value=70_000), "ACK"),
    (Samples(seq=1, first_index=50, period_us=0, counts=(0,), times_us=(1_050_000,),
             flags=(0,)), "SAMPLES"),
    (Samples(seq=1, first_index=50, period_us=1000, counts=(0, 0), times_us=(1_050_000,) * 2,
             flags=(0x80, 0)), "SAMPLES"),
    (Hello(seq=1, boot_id=7, time_us=0, period_us=1000, rate_hz=0, batch=10, tick_bits=30,
           flags=0, debounce_ms=5, uid=UID_A, board="test", firmware="0.1.0",
           backend="irq"), "HELLO"),
])
def test_impossible_values_are_rejected_never_recorded(world, frame, what):
    dial = SimDial(UID_A, boot=7)
    stream(world, dial, 10, inject={5: encode_frame(frame)})
    con = world.close()
    assert rejected(world) == [(what, "field")]
    assert recorded(con) == {(UID_A.hex(), 7): owed(dial)}
    kinds = {k for (k,) in con.execute("SELECT DISTINCT kind FROM events")}
    assert not kinds & {"button", "dial_error", "dial_ack"}
    (n,) = con.execute("SELECT count(*) FROM events WHERE kind = 'frame_rejected'").fetchone()
    assert n == 1


def test_a_hello_of_another_protocol_version_mid_stream_is_said_once(world):
    dial = SimDial(UID_A, boot=7)
    v2 = encode_frame(dial.hello(), version=2)
    stream(world, dial, 60, inject={10: v2, 20: v2, 30: v2})
    con = world.close()
    (said,) = world.said
    assert "dial speaks protocol v2, this host speaks v1" in said and PORT in said
    assert recorded(con) == {(UID_A.hex(), 7): owed(dial)}


def test_a_reboot_without_its_hello_is_held_then_taken_in_by_the_hello(world):
    dial = SimDial(UID_A, boot=1)
    stream(world, dial, 100)
    dial.reboot(2, at_host_ns=dial.arrival_ns(dial.sent[-1]) + 50_000_000)
    first_new = len(dial.sent)
    stream(world, dial, 100, first_hello=80)  # the HELLO of boot 2 comes after 0.8 s
    con = world.close()
    rec = recorded(con)
    assert rec[(UID_A.hex(), 2)] == list(range(0, 1000))
    assert rec[(UID_A.hex(), 1)] == list(range(0, 1000))
    assert len(dial.sent) - first_new == 100
    assert rejected(world) == []


def test_a_boot_whose_hello_never_comes_in_time_becomes_a_no_hello_gap(world):
    dial = SimDial(UID_A, boot=1)
    stream(world, dial, 100)
    dial.reboot(2, at_host_ns=dial.arrival_ns(dial.sent[-1]) + 50_000_000)
    stream(world, dial, 800, first_hello=None)  # 8 s of boot 2 without its HELLO
    view = world.daemon.views[UID_A.hex()]
    assert view.missing == 0 and world.events("frame_rejected")  # rejected, and said so
    core = world.daemon.cores[UID_A.hex()]
    assert core.needs_hello and core.held.frames
    stream(world, dial, 50)  # now the HELLO comes
    con = world.close()
    rec = recorded(con)[(UID_A.hex(), 2)]
    (gap,) = gaps(con)[(UID_A.hex(), 2)]
    assert gap[0] == 0 and gap[2] == "no_hello"
    assert rec == list(range(gap[1], dial.next_index))  # the rest, after the gap, recorded
    assert gap[1] > 1000  # about 2 s of boot 2 waited too long (6 s is the limit)
    assert view.missing == gap[1]
    accounted(con)


def test_a_dial_clock_far_too_slow_is_said_once_and_its_times_left_unknown(world):
    """The emulated Pico's clock runs ~7x slow against the host: after 10 s of host time the
    boot is judged, one event and one line say so, and host times are NULL from then on."""
    dial = SimDial(UID_A, boot=7, drift_ppm=-860_000)  # 1 device µs per 7.1 host µs
    stream(world, dial, 200)  # 2 s of device time: 14 s of host time
    con = world.close()
    (event,) = world.events("clock_rate_implausible")
    assert 0.13 < event.data["ratio"] < 0.15 and event.data["boot_id"] == 7
    (said,) = [m for m in world.said if "clock ran" in m]
    assert "without host times" in said
    rows = con.execute("SELECT host_ns IS NULL FROM samples ORDER BY sample_index").fetchall()
    assert recorded(con) == {(UID_A.hex(), 7): owed(dial)}
    nulls = [n for (n,) in rows]
    k = nulls.index(1)  # from the judgement on, no host time
    assert 1000 < k < 2000 and all(nulls[k:]) and not any(nulls[10:k])


def test_a_dial_clock_within_a_crystal_is_never_judged(world):
    dial = SimDial(UID_A, boot=7, drift_ppm=900)
    stream(world, dial, 1500)  # 15 s
    world.close()
    assert world.events("clock_rate_implausible") == []


def test_a_read_handed_over_after_the_run_ended_is_neither_recorded_nor_published(world):
    """CI (2026-12-05, the thread serial reader, two dials): a run's last 10 samples were
    recorded but never reached the MQTT subscriber. A read the reader thread handed over
    after the run ended was taken in while the publisher was already stopping. After the
    end, a port's reads are dropped: the run ended there, in every output alike."""
    from ratedial.outputs import SamplesOut

    dial = SimDial(UID_A, boot=7)
    stream(world, dial, 20)
    world.daemon.finish()  # the run ends
    before = len(world.outs)
    stream(world, dial, 3, first_hello=None)  # the reader thread's last chunks
    assert not [o for o in world.outs[before:] if isinstance(o, SamplesOut)]
    (n,) = world.close().execute("SELECT count(*) FROM samples").fetchone()
    assert n == 20 * dial.batch


@pytest.mark.parametrize(("kind", "old_frames", "late_frames"), [
    ("soft", 100, 300), ("hard", 100, 300), ("soft", 100, 800),
    ("soft", 1, 150), ("hard", 1, 150), ("hard_earlier", 1, 150)])
def test_a_reboot_whose_hello_is_later_than_the_old_boot_ran_never_mixes_the_boots(
        world, kind, old_frames, late_frames):
    """An audit (2026-12): a soft reboot (device time goes on) whose HELLO came 5 s late,
    after an old boot of 3 s. Once the new boot's indices reached the old boot's next one,
    its frames fitted the old boot as a 3 s sampler stall: 400 samples were recorded in the
    old boot behind an invented dial_stalled event, and were a link gap of the new boot.
    So for a hard reboot whose device time starts later than the old boot's did, and for
    a HELLO so late (8 s) that the new boot's first frames expired waiting for it. And (the
    property test, after that fix) when the old boot sent one frame only (a brown-out
    loop): the new boot's frames replaced that unconfirmed first frame, also after a hard
    reboot whose device time starts earlier than the old boot's."""
    dial = SimDial(UID_A, boot=1, t0_us=300_000)
    stream(world, dial, old_frames)
    at = dial.arrival_ns(dial.sent[-1]) + 50_000_000
    t0 = {"soft": dial.t_us(dial.next_index) + 50_000, "hard": 400_000,
          "hard_earlier": 200_000}[kind]
    dial.reboot(2, t0_us=t0, at_host_ns=at)
    stream(world, dial, late_frames, first_hello=None)  # boot 2 passes boot 1's indices
    stream(world, dial, 20)  # now its HELLO
    con = world.close()
    rec = recorded(con)
    assert rec[(UID_A.hex(), 1)] == list(range(10 * old_frames))
    assert not world.events("dial_stalled")
    if late_frames * 10 < 6000:  # all held for the HELLO
        assert rec[(UID_A.hex(), 2)] == list(range(dial.next_index))
        assert gaps(con) == {}
    else:  # the first ones waited longer than 6 s: a no_hello gap of boot 2
        ((first, end, reason),) = gaps(con)[(UID_A.hex(), 2)]
        assert (first, reason) == (0, "no_hello") and 1000 < end < 3000
        assert rec[(UID_A.hex(), 2)] == list(range(end, dial.next_index))
        # rejected as they expired: of no boot a HELLO named (not boot 1's, which they
        # did not fit)
        events = world.events("frame_rejected")
        assert events and all(e.data["boot_id"] is None for e in events)
        assert events[0].data["detail"] == \
            "it did not fit boot 1, and no HELLO named its boot within 6 s"
    accounted(con)


@pytest.mark.parametrize("hostile", ["time_jump", "time_backwards", "index_jump", "replay"])
@pytest.mark.parametrize("hello_first", [False, True])
def test_a_gap_after_a_held_frame_is_rejected_whenever_its_hello_comes(world, hostile,
                                                                        hello_first):
    """An audit (2026-12): a frame that does not fit the boot (held for a HELLO), then a
    lost frame. When the HELLO that answers INFO came before the frame after the loss, the
    gap was `rejected`; when it came after (the same frames in one read), `link`. A held
    frame now counts for the next gap when it comes, whatever its HELLO later makes of
    it."""
    dial = SimDial(UID_A, boot=7)
    stream(world, dial, 30)
    i, t = dial.next_index, dial.t_us(dial.next_index)
    first, t0 = {"time_jump": (i, t + 2**40), "time_backwards": (i, t - 200_000),
                 "index_jump": (i + 100_000, t), "replay": (i - 10, t - 9_999)}[hostile]
    bad = Samples(seq=1, first_index=first, period_us=1000, counts=(0,) * 10,
                  times_us=tuple(t0 + 1000 * k for k in range(10)), flags=(0,) * 10)
    lost = dial.frame()
    world.send(encode_frame(bad), dial.arrival_ns(lost))
    if hello_first:  # the dial's answer to INFO
        world.send(encode_frame(dial.hello()), dial.arrival_ns(lost) + 1_000_000)
    stream(world, dial, 10, first_hello=None)
    stream(world, dial, 10)  # its periodic HELLO, if the answer did not come first
    con = world.close()
    assert gaps(con) == {(UID_A.hex(), 7): [(lost.first_index, lost.end_index, "rejected")]}
    assert rejected(world) == [("SAMPLES", hostile)]
    (event,) = world.events("frame_rejected")
    assert event.data["boot_id"] == 7
    assert event.data["detail"].startswith("does not fit boot 7, whose HELLO came after it")


def test_a_button_off_its_boots_samples_is_rejected_and_an_honest_one_recorded(world):
    """An audit (2026-12): BUTTON frames with index 0 at the device time of now (sample 0
    was recorded 15 s earlier), with an index 2^40 and with `pressed` 7 were recorded as
    events and published. A BUTTON's sample must lie on the boot's samples: the device time
    recorded for its index (within one period), or on the boot's grid from its newest
    sample for one not among the recent frames."""
    dial = SimDial(UID_A, boot=7)
    stream(world, dial, 100)
    last, nxt = dial.sent[-1], dial.next_index
    now = dial.t_us(nxt)
    honest = [Button(1, 1, 995, dial.t_us(995), dial.t_us(990)),  # a sample recorded
              Button(1, 0, nxt + 3, dial.t_us(nxt + 3), dial.t_us(nxt + 1))]  # one to come
    bad = [Button(1, 1, 0, now, now - 5000),  # sample 0 at the time of now
           Button(1, 1, 995, dial.t_us(995) + 3000, dial.t_us(990)),  # another time
           Button(1, 1, nxt + 500, now, now - 5000)]  # 500 samples ahead in 1 ms
    world.send(b"".join(encode_frame(b) for b in honest + bad), dial.arrival_ns(last))
    stream(world, dial, 10)
    con = world.close()
    assert [(e.data["index"], e.data["pressed"]) for e in world.events("button")] == [
        (995, True), (nxt + 3, False)]
    assert rejected(world) == [("BUTTON", "button")] * 3
    assert recorded(con) == {(UID_A.hex(), 7): owed(dial)}


def test_a_sync_from_before_frames_already_received_is_rejected(world):
    """An audit (2026-12): SYNCs claiming the dial read the PING long before frames that
    had already arrived were taken into the clock model. A SYNC reply is written after the
    frames received before it: its t_tx_us is not before their samples."""
    dial = SimDial(UID_A, boot=7)
    stream(world, dial, 20)
    last = dial.sent[-1]
    arrived = dial.arrival_ns(last)
    world.daemon._pings[(PORT, 98)] = arrived - 3_000_000
    world.daemon._pings[(PORT, 99)] = arrived - 3_000_000
    t = last.times_us[-1]
    world.send(encode_frame(Sync(seq=1, token=98, t_rx_us=t - 10_005, t_tx_us=t - 10_000))
               + encode_frame(Sync(seq=2, token=99, t_rx_us=t + 100, t_tx_us=t + 150)),
               arrived + 1_000_000)
    stream(world, dial, 10)
    world.close()
    assert rejected(world) == [("SYNC", "sync")]
    assert [o.token for o in world.outs if isinstance(o, SyncOut)] == [99]


@pytest.mark.parametrize("time_us", [0, 2**52])
def test_a_hello_of_the_current_boot_with_an_impossible_time_is_rejected(world, time_us):
    """An audit (2026-12): a HELLO of the current boot with time_us 2^52 or 0 was taken
    (its settings too). Its device time must lie between the newest sample received before
    it (less the 50 ms a frame can wait to be queued) and what host time allows."""
    dial = SimDial(UID_A, boot=7)
    stream(world, dial, 20)
    forged = dataclasses.replace(dial.hello(), time_us=time_us, rate_hz=500, period_us=2000)
    stream(world, dial, 20, inject={0: encode_frame(forged)})
    con = world.close()
    assert rejected(world) == [("HELLO", "hello")]
    core = world.daemon.cores[UID_A.hex()]
    assert core.epoch is not None and core.epoch.hello.rate_hz == 1000
    assert recorded(con) == {(UID_A.hex(), 7): owed(dial)}
