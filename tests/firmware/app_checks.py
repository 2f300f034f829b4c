"""MicroPython-side checks of dial.sampler + dial.app + dial.txqueue with fakehw.

Each ``check_*`` drives the app by hand (manual clock, manual timer, manual link),
decodes what reached the link with refdecode and asserts on exact values. The timer
callback always runs with the heap locked (fakehw.FakeHW.fire). tests/test_firmware_app.py
runs each check in a fresh interpreter.
"""

from dial import app as dial_app
from dial import sampler as dial_sampler
from dial.app import App
from dial.writer import SYNC_WAIT_US
from fakehw import FakeHW
from refdecode import decode_stream, samples

CFG = {"rate_hz": 1000, "batch": 10, "debounce_ms": 5, "queue_frames": 64}


def make(cfg=None, **kw):
    hw = FakeHW(**kw)
    c = dict(CFG)
    if cfg:
        c.update(cfg)
    a = App(hw, c)
    a.start()
    return hw, a


def drive(hw, a, n, every=3, motion=None, late=None, truth=None):
    """n timer periods; app.step() every ``every`` samples. Records the truth per index:
    (count as the counter reported it, device time)."""
    for i in range(n):
        if motion is not None:
            hw.counter.pos = motion(hw.fired)
        hw.step(1, 0 if late is None else late(hw.fired))
        if truth is not None:
            truth.append((hw.counter.value(), hw.device_time()))
        if every and (i + 1) % every == 0:
            a.step()


def flush(hw, a):
    a.drain()
    a.step()
    a.step()
    data = hw.take()
    frames, rejected = decode_stream(data)
    assert rejected == 0, rejected
    return data, frames


def of_type(frames, t):
    return [f for f in frames if f["type"] == t]


def lcg(seed):
    """Deterministic pseudo-random ints 0..65535."""
    x = [seed]

    def nxt():
        x[0] = (x[0] * 1103515245 + 12345) & 0x7FFFFFFF
        return x[0] >> 15

    return nxt


def assert_exact(recv, truth, upto):
    """SAMPLES reconstruct exactly: contiguous indices 0..upto-1, counts and times."""
    assert len(recv) == upto, (len(recv), upto)
    for k in range(upto):
        idx, c, t, _fl = recv[k]
        assert idx == k, (k, idx)
        assert c == truth[k][0], (k, c, truth[k][0])
        assert t == truth[k][1], (k, t, truth[k][1])


def packed_upto(a):
    """Indices below this are in closed frames (or dropped); the open frame is not."""
    return a.packer.rd - a.packer.n


# ---------------------------------------------------------------------------------------


def check_stream_exact():
    hw, a = make()
    rnd = lcg(7)
    truth = []
    pos = [0]

    def motion(i):
        pos[0] += (rnd() % 7) - 3
        return pos[0]

    # jitter: -300..+300 us per interval (never an overrun); crosses the 2**30 tick wrap
    drive(hw, a, 2345, every=7, motion=motion, late=lambda i: (rnd() % 601) - 300,
          truth=truth)
    data, frames = flush(hw, a)
    assert data[:1] == b"\x00"
    assert frames[0]["type"] == "HELLO"
    h = frames[0]
    assert (h["rate_hz"], h["period_us"], h["batch"], h["debounce_ms"]) == (1000, 1000, 10, 5)
    assert h["boot_id"] == 0x5EED1234 and h["uid_hex"] == "e66038b7132f4a2c"
    assert (h["board"], h["backend"], h["firmware"], h["flags"]) == ("fake", "fake", "0.1.0", 1)
    assert h["time_us"] == hw.t0 and h["tick_bits"] == 30
    assert [f["seq"] for f in frames] == list(range(len(frames)))  # no drop, no gap
    recv = samples(frames)
    assert_exact(recv, truth, packed_upto(a))
    assert packed_upto(a) >= 2340
    sf = of_type(frames, "SAMPLES")
    assert all(len(f["records"]) == 10 for f in sf)  # nothing forced an early end
    assert all(f["period_us"] == 1000 for f in sf)
    st = of_type(frames, "STATUS")
    assert len(st) == 2, len(st)  # at >= 1 s and >= 2 s of device time
    for s in st:
        assert s["frames_dropped"] == 0 and s["samples_dropped"] == 0 and s["overruns"] == 0
        assert 0 < s["jitter_max_us"] <= 300
        assert s["queue_capacity"] == 64 and s["mem_free"] == 123456
    # samples_taken = the next index at the STATUS's time: the ring is read before it
    assert st[0]["samples_taken"] > 990 and st[0]["time_us"] >= hw.t0 + 1_000_000
    print("samples", len(recv), "frames", len(frames))


def check_end_early_dcount():
    hw, a = make()
    steps = {3: 127, 4: 128, 7: -128, 9: -129}
    truth = []
    pos = [0]

    def motion(i):
        pos[0] += steps.get(i, 1)
        return pos[0]

    drive(hw, a, 40, every=5, motion=motion, truth=truth)
    _, frames = flush(hw, a)
    sf = of_type(frames, "SAMPLES")
    starts = [f["first_index"] for f in sf]
    # 127 fits (index 3 stays in frame 0); 128 does not (frame ends before 4); -128 fits;
    # -129 does not (new frame at 9); then full frames of 10 again.
    assert starts[:5] == [0, 4, 9, 19, 29], starts
    assert [len(f["records"]) for f in sf[:4]] == [4, 5, 10, 10]
    assert sf[0]["records"][3][1] == 127 and sf[1]["records"][3][1] == -128
    assert sf[1]["count_first"] == truth[4][0] and sf[2]["count_first"] == truth[9][0]
    assert_exact(samples(frames), truth, packed_upto(a))


def check_end_early_jitter():
    # 50 Hz: period 20000 us. Each interval 29000 us: 9000 late, under the 1.5-period
    # overrun limit, so jitter in the frame grows 0, 9000, 18000, 27000, 36000 (> i16).
    hw, a = make({"rate_hz": 50, "batch": 10})
    truth = []
    drive(hw, a, 13, every=1, late=lambda i: 9000, truth=truth)
    _, frames = flush(hw, a)
    sf = of_type(frames, "SAMPLES")
    assert [len(f["records"]) for f in sf[:3]] == [4, 4, 4], [len(f["records"]) for f in sf]
    assert [r[2] for r in sf[0]["records"]] == [0, 9000, 18000, 27000]
    assert all(r[0] & 2 == 0 for f in sf for r in f["records"])  # no overrun flags
    assert_exact(samples(frames), truth, packed_upto(a))


def check_overrun():
    hw, a = make()
    truth = []
    lates = {5: 500, 8: 501, 15: 40_000}  # 1.5 periods is not an overrun; 1.501 is
    drive(hw, a, 40, every=4, late=lambda i: lates.get(i, 0), truth=truth)
    hw.advance(1_000_000)
    data, frames = flush(hw, a)
    recv = samples(frames)
    flagged = [idx for idx, _c, _t, fl in recv if fl & 2]
    assert flagged == [8, 15], flagged
    sf = of_type(frames, "SAMPLES")
    # the 40 ms late sample does not fit the jitter field: a new frame starts there
    assert 15 in [f["first_index"] for f in sf]
    st = of_type(frames, "STATUS")[-1]
    assert st["overruns"] == 2
    assert st["jitter_max_us"] == 40_000
    assert_exact(recv, truth, packed_upto(a))


def check_counter_errors_flag():
    hw, a = make()

    def motion(i):
        if i in (6, 13):
            hw.counter.err += 1
        return i

    drive(hw, a, 30, motion=motion)
    _, frames = flush(hw, a)
    flagged = [idx for idx, _c, _t, fl in samples(frames) if fl & 4]
    assert flagged == [6, 13], flagged


def check_button_debounce():
    # 1 kHz, debounce_ms 5: a change is confirmed by a run of unchanged readings that spans
    # 5 ms, i.e. 6 samples (the first that reads the new level and 5 ms more)
    hw, a = make({"debounce_ms": 5})
    truth = []
    # sample index -> raw button reading
    plan = [0] * 10 + [1] * 5 + [0, 0, 1, 0] + [1] * 12 + [0, 1] + [0] * 10
    for i in range(len(plan)):
        hw.button.pressed = plan[i]
        hw.step()
        truth.append((hw.counter.value(), hw.device_time()))
        if i % 3 == 2:
            a.step()
    _, frames = flush(hw, a)
    bf = of_type(frames, "BUTTON")
    # Bounces are ignored: 5 samples pressed at 10-14 (4 ms: short of 5 ms), single samples
    # at 17 and 32. The stable press run starts at index 19 and its 6th sample, 24,
    # confirms it; the release run starts at 33 and is confirmed at 38.
    assert len(bf) == 2, bf
    p, r = bf
    assert (p["pressed"], p["index"]) == (1, 24), p
    assert p["t_us"] == truth[24][1] and p["t_edge_us"] == truth[19][1]
    assert p["t_us"] - p["t_edge_us"] == 5000  # the run spans debounce_ms, as documented
    assert (r["pressed"], r["index"]) == (0, 38), r
    assert r["t_us"] == truth[38][1] and r["t_edge_us"] == truth[33][1]
    fl = [f & 1 for _i, _c, _t, f in samples(frames)]
    assert fl == [0] * 24 + [1] * 14 + [0] * (len(fl) - 38), fl


def check_host_not_reading():
    hw, a = make({"queue_frames": 8})
    hw.room = 0  # the host stops reading before the first byte
    truth = []
    drive(hw, a, 1500, every=4, motion=lambda i: i // 3, truth=truth)
    assert a.q.frames_dropped > 100
    hw.room = None  # the host reads again
    drive(hw, a, 1000, every=4, motion=lambda i: i // 3, truth=truth)
    data, frames = flush(hw, a)
    assert data[:1] == b"\x00"
    drops = of_type(frames, "DROP")
    assert drops, "a DROP notice must follow the stall"
    # The DROP notice comes before every frame built after the loss: the first frame out
    # after the 0x00 is the DROP (everything older was dropped or is that notice).
    assert frames[0]["type"] == "DROP", frames[0]
    recv = samples(frames)
    got = set(i for i, _c, _t, _f in recv)
    assert len(got) == len(recv)  # no index received twice
    dropped = set()
    for d in drops:
        rng = set(range(d["first_index"], d["first_index"] + d["n_samples"]))
        assert not (rng & dropped) and not (rng & got), "an index reported twice"
        dropped |= rng
    assert got | dropped == set(range(packed_upto(a))), "every index exactly once"
    # counts/times of what was received are exact
    for i, c, t, _f in recv:
        assert (c, t) == truth[i], (i, c, t, truth[i])
    # seq gaps are exactly the frames the device dropped
    seqs = [f["seq"] for f in frames]
    assert len(set(seqs)) == len(seqs)
    gaps = max(seqs) + 1 - len(seqs)  # every seq from 0 was created; missing = dropped
    assert gaps == sum(d["n_frames"] for d in drops), (gaps, drops)
    assert a.q.frames_dropped == sum(d["n_frames"] for d in drops)
    assert a.q.samples_dropped == len(dropped)
    st = of_type(frames, "STATUS")[-1]
    assert st["frames_dropped"] == a.q.frames_dropped
    assert st["samples_dropped"] == a.q.samples_dropped
    print("dropped frames", a.q.frames_dropped, "samples", len(dropped))


def check_partial_writes_never_cut():
    hw, a = make({"queue_frames": 4})
    hw.chunk = 7
    rnd = lcg(3)
    for i in range(3000):
        hw.counter.pos = i
        hw.step()
        if i % 5 == 0:
            hw.room = rnd() % 40 if rnd() % 3 else 0  # dribbles and stalls
            a.step()
    hw.room = None
    data, frames = flush(hw, a)  # asserts no frame was rejected (never cut)
    drops = of_type(frames, "DROP")
    assert drops
    got = set(i for i, _c, _t, _f in samples(frames))
    dropped = set()
    for d in drops:
        dropped |= set(range(d["first_index"], d["first_index"] + d["n_samples"]))
    assert not (got & dropped)
    assert got | dropped == set(range(packed_upto(a)))


def check_ring_overflow():
    hw, a = make()
    a.step()  # HELLO out
    truth = []
    drive(hw, a, 3000, every=0, motion=lambda i: i, truth=truth)  # main loop stalled
    hw.advance(1_000_000)
    data, frames = flush(hw, a)
    drops = of_type(frames, "DROP")
    assert len(drops) == 1
    d = drops[0]
    assert (d["first_index"], d["n_samples"], d["n_frames"]) == (0, 3000 - 1024, 0), d
    recv = samples(frames)
    assert recv[0][0] == 3000 - 1024
    for i, c, t, _f in recv:
        assert (c, t) == truth[i]
    st = of_type(frames, "STATUS")[-1]
    assert st["samples_dropped"] == 3000 - 1024 and st["frames_dropped"] == 0
    assert st["samples_taken"] == 3000
    # DROP precedes the samples built after the loss
    types = [f["type"] for f in frames]
    assert types.index("DROP") < types.index("SAMPLES")


def check_rate_change():
    hw, a = make()
    drive(hw, a, 23, every=4)
    a.rx_bytes(b"RATE 500\n")
    index = hw.fired  # the next sample is the first at the new period
    drive(hw, a, 30, every=4)
    a.rx_bytes(b"RATE 128\r\n")
    index2 = hw.fired
    drive(hw, a, 25, every=4)
    _, frames = flush(hw, a)
    acks = of_type(frames, "ACK")
    assert [(k["command"], k["index"], k["value"]) for k in acks] == [
        (1, index, 500), (1, index2, 128)], acks
    assert hw.timer_starts == [1000, 2000, 7812]  # 1e6/128 = 7812.5 rounds half to even
    hellos = of_type(frames, "HELLO")
    assert [(h["rate_hz"], h["period_us"]) for h in hellos] == [
        (1000, 1000), (500, 2000), (128, 7812)]
    for f in of_type(frames, "SAMPLES"):
        last = f["first_index"] + len(f["records"]) - 1
        want = 1000 if last < index else (2000 if last < index2 else 7812)
        assert f["period_us"] == want, (f["first_index"], f["period_us"])
        assert not (f["first_index"] < index <= last) and not (f["first_index"] < index2 <= last)
    assert index in [f["first_index"] for f in of_type(frames, "SAMPLES")]
    recv = samples(frames)
    assert [r[0] for r in recv] == list(range(packed_upto(a)))
    # debounce follows the rate: at 128 Hz, 5 ms is the next sample: a run of 2 readings
    assert a.sampler._need == 2


def check_batch_change():
    hw, a = make()
    drive(hw, a, 27, every=4)
    a.rx_bytes(b"BATCH 25\n")
    drive(hw, a, 80, every=4)
    _, frames = flush(hw, a)
    ack = of_type(frames, "ACK")[0]
    assert (ack["command"], ack["value"]) == (2, 25)
    sf = of_type(frames, "SAMPLES")
    starts = [f["first_index"] for f in sf]
    assert ack["index"] in starts
    assert ack["index"] >= 27 - 4 and ack["index"] <= 27  # from the next unpacked sample
    k = starts.index(ack["index"])
    assert all(len(f["records"]) == 10 for f in sf[: k - 1])
    assert len(sf[k - 1]["records"]) == ack["index"] % 10  # ended early at the change
    assert all(len(f["records"]) == 25 for f in sf[k:]), [len(f["records"]) for f in sf[k:]]
    assert of_type(frames, "HELLO")[-1]["batch"] == 25
    assert [r[0] for r in samples(frames)] == list(range(packed_upto(a)))


def check_zero():
    hw, a = make()
    hw.counter.pos = 100
    drive(hw, a, 15, every=4)
    a.rx_bytes(b"ZERO\n")
    index = hw.fired
    drive(hw, a, 5, every=4)
    hw.counter.pos = 103
    drive(hw, a, 20, every=4)
    _, frames = flush(hw, a)
    ack = of_type(frames, "ACK")[0]
    assert (ack["command"], ack["index"], ack["value"]) == (3, index, 0)
    counts = {i: c for i, c, _t, _f in samples(frames)}
    assert counts[index - 1] == 100 and counts[index] == 0 and counts[index + 5] == 3
    assert hw.counter.zeroed == 1


def check_bad_commands():
    hw, a = make()
    drive(hw, a, 10, every=5)
    bad = (b"RATE 49\n" b"FOO\n" b"BATCH 0\n" b"PING 1" + b"1" * 40 + b"\n"
           b"PING x\n" b"RATE 100\r\r\n" b"RATE\x07 100\n" b"\n" b"ZERO 1\n" b"rate 100\n")
    a.rx_bytes(bad)
    drive(hw, a, 10, every=5)
    a.rx_bytes(b"PING 7\n")
    drive(hw, a, 10, every=5)  # the SYNC follows the next frame
    _, frames = flush(hw, a)
    errs = of_type(frames, "ERROR")
    assert [e["code"] for e in errs] == [2, 1, 2, 3, 2, 3, 3, 1, 2, 1], errs
    assert errs[0]["text"] == "RATE needs 50-2000"
    assert all(len(e["text"]) <= 60 for e in errs)
    assert not of_type(frames, "ACK")
    assert hw.timer_starts == [1000] and a.rate == 1000 and a.batch == 10
    assert hw.counter.zeroed == 0
    assert [s["token"] for s in of_type(frames, "SYNC")] == [7]
    assert [r[0] for r in samples(frames)] == list(range(packed_upto(a)))


def check_ping_sync():
    hw, a = make()
    drive(hw, a, 35, every=0)
    a.pack()  # three SAMPLES frames queued, not yet written
    t = hw.device_time()
    a.rx_bytes(b"PING 4294967295\n")
    assert not hw.take().strip(b"\x00")  # the reply waits for the next frame to be written
    hw.advance(300)
    a.writer.write()
    frames, rej = decode_stream(hw.take())
    assert rej == 0
    # the queued frames went first, the SYNC right after them, stamped as it was written
    assert [f["type"] for f in frames] == ["HELLO", "SAMPLES", "SAMPLES", "SAMPLES", "SYNC"]
    s = frames[-1]
    assert (s["token"], s["t_rx_us"], s["t_tx_us"]) == (4294967295, t, t + 300)
    assert [f["seq"] for f in frames] == [0, 1, 2, 3, 4]

    # link busy with a frame half written: the SYNC follows its end, never cuts it
    hw2, b = make()
    drive(hw2, b, 20, every=0)
    hw2.room = 40
    b.step()
    w = b.writer
    assert w._cur_len and 0 < w._cur_off < w._cur_len  # a frame in flight
    b.rx_bytes(b"PING 5\n")
    hw2.room = None
    b.step()
    frames2, rej2 = decode_stream(hw2.take())
    assert rej2 == 0 and frames2[-1]["type"] == "SYNC" and frames2[-1]["token"] == 5
    assert [f["type"] for f in frames2].count("SYNC") == 1

    # no frame to follow (sampling stopped): the reply goes out after SYNC_WAIT_US
    hw4, e = make()
    drive(hw4, e, 20, every=0)
    flush(hw4, e)
    e.rx_bytes(b"PING 6\n")
    t6 = hw4.device_time()
    hw4.advance(SYNC_WAIT_US)
    e.step()
    assert not of_type(decode_stream(hw4.take())[0], "SYNC")
    hw4.advance(1)
    e.step()
    s6 = of_type(decode_stream(hw4.take())[0], "SYNC")
    assert [(x["token"], x["t_rx_us"], x["t_tx_us"]) for x in s6] == [(6, t6, t6 + SYNC_WAIT_US + 1)]

    # link blocked: a reply waits; when a newer PING comes it is dropped and reported like
    # any dropped frame, and the newer one goes out once the link takes frames again
    hw3, c = make()
    hw3.room = 0
    c.rx_bytes(b"PING 9\n")
    assert c.q.frames_dropped == 0
    c.rx_bytes(b"PING 10\n")
    assert c.q.frames_dropped == 1
    hw3.room = None
    drive(hw3, c, 30, every=5)
    _, frames3 = flush(hw3, c)
    assert [x["token"] for x in of_type(frames3, "SYNC")] == [10]
    d = of_type(frames3, "DROP")
    assert [(x["n_samples"], x["n_frames"]) for x in d] == [(0, 1)], d
    seqs = [f["seq"] for f in frames3]
    # seq 1 was the lost SYNC; the DROP notice (seq 2) goes out first, then HELLO (0)
    assert seqs[:3] == [2, 0, 3], seqs


def check_status_hello_schedule():
    hw, a = make()
    drive(hw, a, 5600, every=10)
    _, frames = flush(hw, a)
    st = of_type(frames, "STATUS")
    he = of_type(frames, "HELLO")
    assert len(st) == 5, len(st)
    assert len(he) == 2, len(he)
    times = [s["time_us"] - hw.t0 for s in st]
    assert all(1_000_000 * (k + 1) <= times[k] < 1_000_000 * (k + 1) + 10_000
               for k in range(5)), times
    assert [s["samples_taken"] for s in st] == [(tm // 1000) for tm in times]


def check_heap_lock_catches_allocation():
    # The guard itself must be able to fail: an allocating callback raises under fire().
    hw = FakeHW()
    junk = []
    hw.start_timer(1000, lambda _t: junk.append([1, 2, 3]))
    try:
        hw.step()
    except MemoryError:
        print("heap lock works")
        return
    raise AssertionError("allocation in the IRQ path was not caught")


def check_sampler_no_alloc_all_paths():
    # Overrun, error flag, button change and event record all inside the locked IRQ.
    hw, a = make({"debounce_ms": 1})
    hw.step(1)
    hw.button.pressed = 1
    hw.counter.err = 1
    hw.step(1, 5000)
    hw.step(3)
    hw.button.pressed = 0
    hw.step(3)
    assert a.sampler.ev_w == 2 and a.sampler.overruns == 1


def check_run_asyncio_shell():
    import os

    path = "/tmp/ratedial_rx_%d" % os.getpid() if hasattr(os, "getpid") else "/tmp/rd_rx"
    with open(path, "wb") as f:
        f.write(b"INFO\nPING 9\n")
    hw = FakeHW()
    hw.rx = open(path, "rb")
    hw.auto = 300  # samples, then Ctrl-C
    a = dial_app.run(hw, dict(CFG))
    os.remove(path)
    assert hw.callback is None and hw.counter.deinited  # timer stopped, counter released
    assert not a.started
    data = hw.take()
    frames, rej = decode_stream(data)
    assert rej == 0 and data[:1] == b"\x00"
    types = [f["type"] for f in frames]
    assert types[0] == "HELLO" and types.count("HELLO") == 2, types
    assert [s["token"] for s in of_type(frames, "SYNC")] == [9]
    recv = samples(frames)
    assert [r[0] for r in recv] == list(range(len(recv))) and len(recv) >= 250, len(recv)


def _sink_hw(mode):
    """A SinkHW whose full frames wake the frame job (``"scheduled"``, as on the boards) or
    an asyncio IrqFlag (``"flag"``)."""
    from fakehw import SinkHW

    hw = SinkHW()
    if mode == "scheduled":
        hw.wake_scheduled = True
    else:
        from dial.aio import IrqFlag

        hw.wake_flag = IrqFlag
    return hw


def _shell_run(hw, n, commands=True):
    """dial.app.run on ``hw`` for ``n`` samples (hw.auto), the reader fed INFO and PING (or
    no command input). Returns the decoded frames after checking the stream is whole."""
    import os

    path = "/tmp/ratedial_rx_%d" % os.getpid() if hasattr(os, "getpid") else "/tmp/rd_rx"
    if commands:
        with open(path, "wb") as f:
            f.write(b"INFO\nPING 9\n")
        hw.rx = open(path, "rb")
    hw.auto = n
    a = dial_app.run(hw, dict(CFG))
    if commands:
        os.remove(path)
    assert hw.callback is None and hw.counter.deinited and not a.started
    data = hw.take()
    frames, rej = decode_stream(data)
    assert rej == 0 and data[:1] == b"\x00"
    assert [s["token"] for s in of_type(frames, "SYNC")] == ([9] if commands else [])
    recv = samples(frames)
    assert [r[0] for r in recv] == list(range(len(recv))), len(recv)
    return a, frames, recv


def check_run_scheduled_shell():
    # The boards' mode: the sampler's "frame full" runs App.frame_job through
    # micropython.schedule (dial.aio.Scheduled), no asyncio task per frame.
    a, frames, recv = _shell_run(_sink_hw("scheduled"), 600)
    assert type(a.sampler.wake).__name__ == "Scheduled"
    assert len(recv) >= 590, len(recv)  # all but the open frame and the last ticks
    assert [f["type"] for f in frames].count("STATUS") == 0  # 0.6 s of device time


def check_first_frame_goes_at_once():
    # The first SAMPLES frame leaves when its 10th sample is taken, in both wake modes (not
    # at the ticker's first round, 100 ms later): the sampler's wake is set at start.
    for mode in ("scheduled", "flag"):
        hw = _sink_hw(mode)
        _shell_run(hw, 60, commands=False)
        fired = [f for f in hw.write_fired[: hw.n_writes] if f > 0]
        assert fired and 10 <= fired[0] <= 11, (mode, list(hw.write_fired))


def check_steady_state_allocates_nothing():
    # 3 s of streaming (STATUS every second included) with the heap locked, in both wake
    # modes: any allocation in the sampler, the packer, the writer, the frame job or the
    # asyncio shell (task wake-ups, the ticker, the writer's Signal) raises MemoryError.
    import gc

    for mode in ("scheduled", "flag"):
        hw = _sink_hw(mode)
        hw.auto_lock = (500, 3000)
        a, frames, recv = _shell_run(hw, 3600)
        assert len(recv) >= 3590, (mode, len(recv))
        assert [f["type"] for f in frames].count("STATUS") == 3, mode
        del hw, a, frames, recv  # free the heap before the next run
        gc.collect()


def check_frame_job_waits_for_main_loop_work():
    # A frame job that lands while the main loop works on the packer/writer (between
    # _hold and _release) is deferred, then run by _release: nothing packed twice or lost.
    hw, a = make()
    drive(hw, a, 25, every=0)
    a._hold()
    a.frame_job()
    assert a._pending and hw.take() == b""  # deferred: the main loop holds the state
    a._release()
    assert not a._pending
    _, frames = flush(hw, a)
    recv = samples(frames)
    assert [r[0] for r in recv] == list(range(20))  # two frames; the open one stays
    assert a.sampler.wake_at == -1 or a.sampler.wake_at == 29


def check_run_fault():
    # A failing link ends the run (the ERROR frame tried first), whether the failure is in
    # an asyncio task or in a scheduled frame job (kept, then raised by the ticker).
    for scheduled in (False, True):
        hw = FakeHW()
        hw.auto = 200
        if scheduled:
            hw.wake_scheduled = True
        calls = [0]

        def bad_write(buf, calls=calls):
            calls[0] += 1
            if calls[0] > 5:  # after the 0x00 and HELLO: in the frame job when scheduled
                raise ValueError("link broke")
            return min(len(buf), 64)

        hw.tx_write = bad_write
        try:
            dial_app.run(hw, dict(CFG))
        except ValueError:
            pass
        else:
            raise AssertionError("a fault must propagate")
        assert hw.counter.deinited and hw.callback is None
        assert calls[0] >= 7  # the failed write, then the best-effort ERROR frame


def check_fallback_configs():
    # dial.app.FALLBACK mirrors boards/pico.py and boards/esp32_devkitc.py
    import sys

    sys.path.insert(0, dial_app.__file__.rsplit("/dial/", 1)[0] + "/boards")
    import esp32_devkitc
    import pico

    assert dial_app.FALLBACK["rp2"] == pico.CONFIG
    assert dial_app.FALLBACK["esp32"] == esp32_devkitc.CONFIG


def check_period_rounding():
    pf = dial_app.period_for
    assert [pf(h) for h in (50, 128, 300, 333, 640, 1000, 1500, 2000)] == [
        20000, 7812, 3333, 3003, 1562, 1000, 667, 500]
    # readings that span debounce_ms: ceil(debounce_ms * rate / 1000) + 1; none when 0
    assert dial_sampler.debounce_samples(5, 1000) == 6
    assert dial_sampler.debounce_samples(5, 333) == 3  # 6 ms
    assert dial_sampler.debounce_samples(5, 200) == 2  # 5 ms (it was 1: no debounce at all)
    assert dial_sampler.debounce_samples(5, 50) == 2  # 20 ms: the next sample
    assert dial_sampler.debounce_samples(0, 1000) == 1


class _Intruder:
    """Stands in for a ring array: reading it lets the timer interrupt the reader."""

    def __init__(self, arr, hw, fires, sampler):
        self.sampler = sampler
        self.arr = arr
        self.hw = hw
        self.fires = fires

    def __getitem__(self, i):
        if self.fires:
            self.fires -= 1
            # An interrupt between reading the tick and the count. The handler writes the
            # real ring (a native handler takes its buffer, which this stand-in has not).
            self.sampler.count = self.arr
            self.hw.step()
            self.sampler.count = self
        return self.arr[i]

    def __setitem__(self, i, v):
        self.arr[i] = v


def check_overwritten_while_reading():
    hw, a = make()
    a.step()
    truth = []
    drive(hw, a, dial_sampler.RING, every=0, motion=lambda i: i * 3, truth=truth)
    s = a.sampler
    a.packer.pack_run = None  # the bytecode reader: native code cannot be interrupted from Python
    s.count = _Intruder(s.count, hw, 1, s)  # the ring is full: this IRQ overwrites sample 0
    a.pack()
    truth.append((hw.counter.value(), hw.device_time()))
    s.count = s.count.arr
    data, frames = flush(hw, a)
    d = of_type(frames, "DROP")
    assert [(x["first_index"], x["n_samples"], x["n_frames"]) for x in d] == [(0, 1, 0)], d
    recv = samples(frames)
    assert recv[0][0] == 1
    for i, c, t, _f in recv:
        assert (c, t) == truth[i], (i, c, t, truth[i])


def check_config_validated():
    for bad in ({"rate_hz": 49}, {"rate_hz": 2001}, {"batch": 0}, {"batch": 101}):
        c = dict(CFG)
        c.update(bad)
        try:
            App(FakeHW(), c)
        except ValueError:
            continue
        raise AssertionError("accepted %r" % (bad,))
    hw, a = make({"rate_hz": 2000, "batch": 1})
    drive(hw, a, 30, every=7)
    _, frames = flush(hw, a)
    sf = of_type(frames, "SAMPLES")
    assert [len(f["records"]) for f in sf] == [1] * 30 and sf[0]["period_us"] == 500


def check_scheduled_survives_a_full_schedule_queue():
    # A stall (a garbage collection, a slow USB write on ESP32) can fill the port's schedule
    # queue (depth 8): set() then finds micropython.schedule raising. The job must stay
    # schedulable: the next set() queues it (before, the armed flag stuck at 1 and the frame
    # job never ran again; on rp2 the exception in the hard interrupt also removed the PIO
    # handler).
    import micropython

    from dial.aio import Scheduled

    ran = []
    s = Scheduled(lambda: ran.append(1))
    raised = []

    def noop(_):
        pass

    def stalled(_):
        # runs as a scheduled job: the queue fills behind it, as while a job or GC runs
        try:
            while True:
                micropython.schedule(noop, None)
        except RuntimeError:
            pass
        try:
            s.set()  # what the sampler does when a frame's last sample is stored
        except Exception as exc:  # noqa: BLE001 - what escaped set() is the finding
            raised.append(exc)

    micropython.schedule(stalled, None)
    for _ in range(20000):  # scheduled jobs run between bytecodes
        pass
    assert not raised, raised
    assert s.armed == 0, s.armed  # the failed set() left it schedulable
    s.set()
    for _ in range(20000):
        pass
    assert ran == [1], ran


def check_ctrl_c_in_the_frame_job_stops_the_run():
    # Ctrl-C (mpremote, ratedial flash) lands in whatever runs: often the frame job, which
    # MicroPython's scheduler runs "protected" (it prints an exception and drops it, even a
    # KeyboardInterrupt). The job keeps it and the ticker raises it in the main loop: the
    # run stops within a ticker period, as from the main loop, instead of streaming on.
    hw = FakeHW()
    hw.auto = 3000  # without the fix the run goes on to here (auto's own KeyboardInterrupt)
    hw.wake_scheduled = True
    calls = [0]

    def write(buf, calls=calls):
        calls[0] += 1
        if calls[0] == 8:  # after the 0x00 and HELLO, inside a frame job
            raise KeyboardInterrupt
        return min(len(buf), 64)

    hw.tx_write = write
    dial_app.run(hw, dict(CFG))
    assert hw.counter.deinited and hw.callback is None  # stopped the clean way
    assert hw.fired < 400, hw.fired  # within the ticker's period (100 ms), not 3000 samples


def check_a_failed_job_deferred_by_the_main_loop_does_not_spin_it():
    # A frame job deferred while the main loop holds the packer (``_pending``), after a job
    # kept an error (a Ctrl-C): _release must return, not run the job forever (a review,
    # 2026-12-04: the early return left _pending set and the dial hung)
    hw, a = make()
    drive(hw, a, 25, every=0)
    a._hold()
    a.frame_job()  # lands while the main loop works: deferred
    assert a._pending
    a.job_error = KeyboardInterrupt()
    a._release()  # returns
    assert not a._pending
