"""Backfill is read from the recording; a recording that cannot be read keeps the backlog.

Real mosquitto, real recorder, the real publisher. Samples produced while the broker is down
are backlog; when the broker is back they are republished from the recording file. If that
file cannot be read just then (here: moved away and back, as a user or a sync tool might),
the publisher must not take "could not read" for "does not hold": the backlog stays, its
``mqtt_progress`` still lists it, and it goes out once the file is readable again.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from brokers import Mosquitto, free_port
from ratedial.config import MqttConfig
from ratedial.mqtt.publisher import MqttPublisher
from ratedial.mqtt.topics import Topics
from ratedial.outputs import SamplesOut
from ratedial.recording.writer import Recorder
from subscriber import Subscriber

DIAL = "c0ffee0000000002"
BOOT = 7
N = 100


def frame(first: int, n: int) -> SamplesOut:
    idx = range(first, first + n)
    return SamplesOut(DIAL, BOOT, first, 1000, tuple(1000 * i for i in idx),
                      tuple(10**9 + 10**6 * i for i in idx), tuple(idx),
                      tuple(float(i) for i in idx), (0,) * n)


def record(rec: Recorder, o: SamplesOut) -> None:
    dial = rec.add_dial(DIAL, None, "", "", "")
    epoch = rec.add_epoch(dial, BOOT, 0, {})
    rec.put_many("samples", [
        (epoch, o.first_index + k, dial, o.device_us[k], o.host_ns[k], o.counts[k],
         o.ratings[k], o.flags[k], None, None, 5) for k in range(len(o))])


async def _until(pred: object, timeout: float = 30.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():  # type: ignore[operator]
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.02)  # polling a condition, not synchronising on time
    return True


async def _run(tmp_path: Path, broker: Mosquitto) -> tuple[MqttPublisher, Subscriber]:
    path = tmp_path / "r.ratedial"
    rec = Recorder(path, meta={"daemon_id": "bf", "run_id": "r1"})
    pub = MqttPublisher(MqttConfig(broker=f"mqtt://127.0.0.1:{broker.port}"),
                        topics=Topics("ratedial", "bf"), recorder=rec, run_id="r1",
                        rater_of=lambda _u: None, status_of=dict, wall_offset_ns=0,
                        software_version="test")
    task = asyncio.create_task(pub.run())
    sub = Subscriber(broker.port)
    try:
        o = frame(0, N)
        record(rec, o)
        pub.handle([o])  # the broker is down: all of it is backlog
        assert pub.outbox.backlog == {(DIAL, BOOT): [(0, N)]}
        await asyncio.to_thread(rec.flush)
        away = path.with_name("moved.ratedial")
        path.rename(away)  # the recorder writes on through its open file
        broker.start()
        sub.start()
        # The publisher connects and starts the backfill, which cannot read the file.
        assert await _until(lambda: getattr(pub, "unreadable", 0) >= 1
                            or not pub.outbox.backlog)
        assert pub.outbox.backlog == {(DIAL, BOOT): [(0, N)]}
        assert pub.outbox.snapshot()["epochs"][0]["pending"] == [[0, N]]
        assert pub.replayed_samples == 0
        # The file comes back once the subscriber is subscribed (it got the retained status).
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, sub.wait_for, lambda s: any(
            d.get("state") == "online" for d in s.daemon_status), 30)
        away.rename(path)
        assert await _until(lambda: not pub.outbox.backlog)
        assert await loop.run_in_executor(None, sub.wait_for, lambda s: len(s.seen) >= N, 30)
        await pub.stop()
        await asyncio.wait_for(task, 60)
        rec.close()
        return pub, sub
    finally:
        if not task.done():
            task.cancel()
        sub.stop()


def test_a_recording_that_cannot_be_read_keeps_the_backlog(tmp_path):
    broker = Mosquitto(tmp_path / "broker", port=free_port())  # started later: an outage
    try:
        pub, sub = asyncio.run(_run(tmp_path, broker))
    finally:
        broker.stop()
    assert sub.indices(DIAL) == {BOOT: set(range(N))}
    assert sub.replayed == N and sub.live == 0
    assert pub.unreadable >= 1
    assert not pub.outbox.unconfirmed


def test_republished_rows_keep_the_wall_time_their_run_published(tmp_path):
    """A sample republished by the next run got ``host_ns`` + the *new* run's wall offset:
    ~0.7 µs from what it had live, so subscribers deduplicating by (dial, boot, index) kept
    a different time depending on which copy came first. The recording's first wall anchor
    is the offset its run published with."""
    import sqlite3 as _sqlite3

    from ratedial.analysis.synth import SynthMedia, piecewise, simple_rater, write_recording
    from ratedial.mqtt.archive import Archive

    path = tmp_path / "old.ratedial"
    write_recording(path, [simple_rater("client", piecewise([5], [40, 60]), 10, uid="aa")],
                    rate_hz=100, media=SynthMedia(duration_s=10.0))
    con = _sqlite3.connect(path)
    (offset,) = con.execute("SELECT wall_ns - host_ns FROM wall_anchors ORDER BY rowid "
                            "LIMIT 1").fetchone()
    with con:  # a later anchor (every minute of a run) with a slewed clock: not the one used
        con.execute("INSERT INTO wall_anchors (host_ns, wall_ns) VALUES (?, ?)",
                    (2 * 10**9, 2 * 10**9 + offset + 777))
        con.execute("INSERT INTO events (host_ns, dial_id, kind, data) VALUES (?, NULL, ?, ?)",
                    (3 * 10**9, "run_note", "{}"))
        (event_id,) = con.execute("SELECT max(event_id) FROM events").fetchone()
        uid, boot = con.execute("SELECT uid, boot_id FROM epochs JOIN dials USING (dial_id)"
                                ).fetchone()
    con.close()
    rows = Archive(path).samples((uid, boot), 0, 50)
    assert len(rows) == 50 and all(r[8] == r[2] + offset for r in rows)
    (event,) = Archive(path).events([event_id])
    assert event[5] == 3 * 10**9 + offset
