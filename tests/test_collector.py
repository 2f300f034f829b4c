"""The collector's bookkeeping (pure): exactly once per sample, holes, replay requests, gaps."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from typing import Any

import pytest

from ratedial.mqtt.collect_ranges import MAX_RANGES, RangeSet
from ratedial.mqtt.collect_state import TAIL_SPAN
from ratedial.mqtt.collect_store import RecorderStore, read_resume_state
from ratedial.mqtt.collector import ABSENT, Collector
from ratedial.mqtt.topics import event_payload, samples_payload
from ratedial.recording.writer import Recorder

P = "ratedial"
DIAL = "0123456789abcdef"
OFFSET = 1_700_000_000_000_000_000


class MemoryStore:
    def __init__(self) -> None:
        self.dials: list[tuple[Any, ...]] = []
        self.epochs: list[tuple[Any, ...]] = []
        self.media: list[str] = []
        self.rows: list[tuple[Any, ...]] = []
        self.gaps: list[tuple[int, int, int, int, str]] = []
        self.events: list[tuple[int, int | None, str, dict[str, Any]]] = []
        self.meta_kv: dict[str, Any] = {}
        self.hellos = 0  # epoch rows' hellos updated

    def add_dial(self, uid: str, rater: str | None, board: str, firmware: str,
                 backend: str) -> int:
        self.dials.append((uid, rater, board, firmware, backend))
        return len(self.dials)

    def dial_info(self, dial_id: int, rater: str | None, board: str, firmware: str,
                  backend: str) -> None:
        self.dials[dial_id - 1] = (self.dials[dial_id - 1][0], rater, board, firmware, backend)

    def add_epoch(self, dial_id: int, boot: int, first_host_ns: int,
                  hello: dict[str, Any]) -> int:
        self.epochs.append((dial_id, boot, first_host_ns, hello))
        return len(self.epochs)

    def epoch_hello(self, epoch_id: int, hello: dict[str, Any]) -> None:
        self.epochs[epoch_id - 1] = (*self.epochs[epoch_id - 1][:3], hello)
        self.hellos += 1

    def add_media(self, daemon: str) -> int:
        self.media.append(daemon)
        return len(self.media)

    def samples(self, rows: list[tuple[Any, ...]]) -> None:
        self.rows += rows

    def gap(self, epoch_id: int, dial_id: int, first: int, end: int, reason: str) -> None:
        self.gaps.append((epoch_id, dial_id, first, end, reason))

    def gap_reason(self, epoch_id: int, first: int, end: int, reason: str) -> None:
        self.gaps = [(e, d, f, t, reason if (e, f, t) == (epoch_id, first, end) else r)
                     for e, d, f, t, r in self.gaps]

    def uncollected(self, rows: list[tuple[int, int, int, int]]) -> None:
        self.gaps = [g for g in self.gaps if g[4] != "uncollected"] + [
            (e, d, a, b, "uncollected") for e, d, a, b in rows]

    def event(self, host_ns: int, dial_id: int | None, kind: str, data: dict[str, Any]) -> None:
        self.events.append((host_ns, dial_id, kind, data))

    def meta(self, key: str, value: Any) -> None:
        self.meta_kv[key] = value

    def indices(self, epoch_id: int = 1) -> list[int]:
        return sorted(r[1] for r in self.rows if r[0] == epoch_id)


def batch(first: int, n: int, *, boot: int = 7, dial: str = DIAL, daemon: str = "room1",
          replay: bool = False, media: bool = False) -> tuple[str, bytes]:
    idx = range(first, first + n)
    payload = samples_payload(
        uid=dial, rater="client", daemon=daemon, boot_id=boot, first_index=first,
        period_us=0 if replay else 1000, device_us=[1000 * i for i in idx],
        host_ns=[10**6 * i for i in idx], wall_ns=[OFFSET + 10**6 * i for i in idx],
        count=list(idx), rating=[50.0 + i % 10 for i in idx], flags=[0] * n,
        media_s=[i / 1000 for i in idx] if media else [None] * n,
        media_state=[1 if media else 5] * n, replay=replay)
    return f"{P}/v1/dials/{dial}/{'backfill' if replay else 'samples'}", payload


def status(next_index: int | None, *, boot: int | None = 7, dial: str = DIAL,
           daemon: str = "room1") -> tuple[str, bytes]:
    return f"{P}/v1/dials/{dial}/status", json.dumps({
        "v": 1, "dial": dial, "rater": "client", "daemon": daemon, "state": "connected",
        "board": "pico", "firmware": "0.1.0", "received": 0, "missing": 0, "rejected": 0,
        "rate_hz": 1000.0, "rating": 50.0,
        "clock": {"latency_ms": None, "skew_ppm": None, "uncertainty_us": None},
        "wall_ns": OFFSET, "boot": boot, "next_index": next_index}).encode()


def gap_event(event_id: int, a: int, b: int, reason: str = "device_drop", *, boot: int = 7,
              daemon: str = "room1") -> tuple[str, bytes]:
    return f"{P}/v1/dials/{DIAL}/events", event_payload(
        event_id=event_id, kind="gap", host_ns=5, wall_ns=OFFSET + 5, dial=DIAL, daemon=daemon,
        data={"boot_id": boot, "first_index": a, "end_index": b, "reason": reason})


def answer(ranges: list[list[int]], absent: list[list[int]], *, boot: int = 7,
           daemon: str = "room1") -> tuple[str, bytes]:
    return f"{P}/v1/daemons/{daemon}/replayed", json.dumps({
        "v": 1, "dial": DIAL, "boot": boot, "ranges": ranges, "absent": absent}).encode()


def make() -> tuple[Collector, MemoryStore]:
    store = MemoryStore()
    return Collector(P, store, wall_offset_ns=OFFSET, settle_s=2.0,
                     request_timeout_s=10.0), store


def feed(c: Collector, msg: tuple[str, bytes], now: float = 0.0) -> None:
    c.feed(msg[0], msg[1], now)


def test_rangeset_merges_and_reports_missing_parts():
    r = RangeSet([(10, 20), (30, 40)])
    r.add(20, 25)
    assert r.ranges == [(10, 25), (30, 40)]
    r.add(25, 30)
    assert r.ranges == [(10, 40)]
    r.add(50, 60)
    assert r.missing(0, 70) == [(0, 10), (40, 50), (60, 70)]
    assert r.missing(12, 38) == []
    assert r.missing(39, 55) == [(40, 50)]
    assert 55 in r and 45 not in r
    assert r.total() == 40 and r.first == 10 and r.end == 60


def test_each_sample_is_written_once_live_and_backfill_overlapping():
    c, store = make()
    feed(c, batch(0, 50))
    feed(c, batch(50, 50))
    feed(c, batch(0, 50))  # the same live batch again
    feed(c, batch(25, 100, replay=True))  # backfill overlapping what arrived live
    assert store.indices() == list(range(125))
    assert c.stats.samples == 125 and c.stats.backfilled == 25
    assert c.stats.duplicates == 50 + 75
    # one dial, one epoch, keyed by (uid, boot); the rater label comes from the payload
    assert store.dials == [(DIAL, "client", "", "", "")]
    assert [(e[0], e[1], e[3]["daemon"], e[3]["rate_hz"]) for e in store.epochs] == [
        (1, 7, "room1", 1000.0)]


def test_rows_carry_values_and_host_time_on_one_base():
    c, store = make()
    feed(c, batch(10, 3, media=True))
    feed(c, batch(13, 2))
    rows = sorted(store.rows, key=lambda r: r[1])
    # (epoch, index, dial, device_us, host_ns, count, rating, flags, media_id, media_s, state)
    assert rows[0] == (1, 10, 1, 10_000, 10 * 10**6, 10, 50.0, 0, 1, 0.010, 1)
    assert rows[3] == (1, 13, 1, 13_000, 13 * 10**6, 13, 53.0, 0, None, None, 5)
    assert store.media == ["room1"]


def test_boots_and_dials_are_separate_epochs():
    c, store = make()
    feed(c, batch(0, 10, boot=7))
    feed(c, batch(0, 10, boot=8))
    feed(c, batch(0, 10, dial="fedcba9876543210", daemon="room2"))
    assert len(store.rows) == 30
    assert sorted((e[0], e[1]) for e in store.epochs) == [(1, 7), (1, 8), (2, 7)]
    assert sorted(c.daemons) == ["room1", "room2"]
    assert store.meta_kv["collected"]["daemons"] == ["room1", "room2"]


def test_hole_is_requested_only_after_settling_and_then_once():
    c, _ = make()
    feed(c, batch(0, 100), now=0.0)
    feed(c, batch(150, 50), now=0.1)  # 100..150 missing
    feed(c, status(260), now=0.2)  # the daemon has up to 259
    assert c.due_requests(1.0) == []  # not settled: live batches may still be on the way
    reqs = c.due_requests(2.25)
    assert len(reqs) == 1
    r = reqs[0]
    assert r.topic(P) == f"{P}/v1/daemons/room1/replay"
    assert json.loads(r.payload()) == {"v": 1, "dial": DIAL, "boot": 7,
                                       "ranges": [[100, 150], [200, 260]]}
    # at most one outstanding request per (dial, boot)
    feed(c, status(400), now=2.3)
    assert c.due_requests(5.0) == []


def test_holes_filled_in_time_are_not_requested():
    c, _ = make()
    feed(c, batch(0, 100), now=0.0)
    feed(c, status(150), now=0.0)
    feed(c, batch(100, 50), now=0.5)  # the live batch came before the settle time
    assert c.due_requests(3.0) == []
    assert c.holes() == {}


def test_answer_with_absent_indices_records_absent_gaps_and_clears_request():
    c, store = make()
    feed(c, batch(0, 100), now=0.0)
    feed(c, batch(200, 100), now=0.0)
    feed(c, status(300), now=0.0)
    (req,) = c.due_requests(3.0)
    assert req.ranges == ((100, 200),)
    feed(c, batch(100, 60, replay=True), now=3.1)  # the daemon held 100..159
    # it did not hold 160..199; an absent range outside the request is ignored
    feed(c, answer([[100, 200]], [[160, 200], [400, 500]]), now=3.2)
    assert store.gaps == [(1, 1, 160, 200, ABSENT)]
    assert c.stats.absent == 40
    assert c.holes() == {}
    assert c.due_requests(3.5) == []
    assert store.indices() == list(range(160)) + list(range(200, 300))


def test_a_gap_event_after_an_absent_answer_gives_the_gap_its_reason():
    """Found by a loaded CI preview of test_scale_out: the collector, back from an outage,
    asked for a hole before the daemon's queued ``gap`` event reached it; the daemon answered
    ``absent`` and the collected file kept reason ``absent`` where the daemon's said
    ``link``. The later gap event now relabels the rows it covers, and only those."""
    c, store = make()
    feed(c, batch(0, 100), now=0.0)
    feed(c, batch(200, 100), now=0.0)
    feed(c, batch(400, 100), now=0.0)
    feed(c, status(500), now=0.0)
    (req,) = c.due_requests(3.0)
    assert req.ranges == ((100, 200), (300, 400))
    feed(c, answer([[100, 200], [300, 400]], [[100, 200], [300, 400]]), now=3.1)
    assert store.gaps == [(1, 1, 100, 200, ABSENT), (1, 1, 300, 400, ABSENT)]
    feed(c, gap_event(5, 100, 200, "link"), now=3.2)
    assert store.gaps == [(1, 1, 100, 200, "link"), (1, 1, 300, 400, ABSENT)]
    assert c.stats.gaps == 2 and c.holes() == {}


def test_a_recorder_store_relabels_a_gap_committed_with_it(tmp_path):
    """The relabel reaches the file even when the absent row and its new reason share one
    commit (updates run after the commit's inserts)."""
    from ratedial.mqtt.collect_store import RecorderStore
    from ratedial.recording.writer import Recorder

    path = tmp_path / "c.ratedial"
    rec = Recorder(path, meta={}, commit_interval_s=60)
    store = RecorderStore(rec)
    store.gap_reason(1, 0, 5, "earlier")  # a relabel of another row, first in the commit
    store.gap(1, 1, 100, 200, ABSENT)
    store.gap_reason(1, 100, 200, "link")
    rec.close()
    with sqlite3.connect(path) as con:
        rows = con.execute("SELECT first_index, end_index, reason FROM gaps").fetchall()
    assert rows == [(100, 200, "link")]


def test_gap_events_are_gaps_not_holes_and_keep_their_reason():
    c, store = make()
    feed(c, batch(0, 100), now=0.0)
    feed(c, gap_event(3, 100, 120), now=0.0)
    feed(c, gap_event(3, 100, 120), now=0.0)  # the same event again (replayed): once
    feed(c, batch(120, 80), now=0.0)
    feed(c, status(200), now=0.0)
    assert c.due_requests(3.0) == []
    assert store.gaps == [(1, 1, 100, 120, "device_drop")]
    (ev,) = store.events
    assert ev[2] == "gap" and ev[3]["source"] == {"daemon": "room1", "run": "", "event_id": 3}
    assert ev[0] == 5  # host_ns: the event's wall time on the collection's time base
    # a sample inside a known gap is not written (a gap stays a gap)
    feed(c, batch(110, 5, replay=True))
    assert c.stats.conflicts == 5
    assert 110 not in store.indices()


def test_events_are_deduplicated_by_daemon_run_and_id():
    c, store = make()
    for run in ("r1", "r1", "r2"):  # the same event twice, then id 1 of the next run
        c.feed(f"{P}/v1/daemons/room1/events", event_payload(
            event_id=1, kind="run_start", host_ns=1, wall_ns=OFFSET + 7, dial=None,
            daemon="room1", data={}, run=run), 0.0)
    assert [(e[1], e[2], e[3]["source"]) for e in store.events] == [
        (None, "run_start", {"daemon": "room1", "run": "r1", "event_id": 1}),
        (None, "run_start", {"daemon": "room1", "run": "r2", "event_id": 1})]


def test_unanswered_request_times_out_and_backs_off():
    c, _ = make()
    feed(c, batch(0, 10), now=0.0)
    feed(c, batch(20, 10), now=0.0)
    assert len(c.due_requests(2.0)) == 1
    assert c.due_requests(11.0) == []  # outstanding until the timeout
    assert c.due_requests(12.0) == []  # timed out, now backing off
    assert c.stats.timeouts == 1
    assert len(c.due_requests(14.1)) == 1  # again after timeout + back-off (settle_s)
    assert c.due_requests(24.2) == []
    assert c.stats.timeouts == 2
    assert c.due_requests(27.0) == []  # back-off doubles: 4 s
    assert len(c.due_requests(28.3)) == 1


def test_answer_without_progress_backs_off_and_with_progress_asks_again_at_once():
    c, _ = make()
    feed(c, batch(0, 10), now=0.0)
    feed(c, batch(50, 10), now=0.0)
    (r1,) = c.due_requests(2.0)
    feed(c, answer([[10, 50]], []), now=2.1)  # nothing came back and nothing is absent
    assert c.due_requests(2.2) == []
    (r2,) = c.due_requests(4.2)
    assert r2.ranges == r1.ranges
    feed(c, batch(10, 20, replay=True), now=4.3)
    feed(c, answer([[10, 50]], []), now=4.4)  # progress: the rest is asked for at once
    (r3,) = c.due_requests(4.5)
    assert r3.ranges == ((30, 50),)


def test_request_holds_at_most_100_ranges():
    c, _ = make()
    for k in range(150):
        feed(c, batch(20 * k, 10), now=0.0)
    (req,) = c.due_requests(2.5)
    assert len(req.ranges) == MAX_RANGES
    assert req.ranges[0] == (10, 20) and req.ranges[-1] == (2000 - 10, 2000)


def test_after_a_reboot_the_old_boot_tail_is_asked_for_once_and_is_no_gap():
    c, store = make()
    feed(c, batch(0, 100, boot=7), now=0.0)
    feed(c, status(100, boot=7), now=0.0)
    feed(c, status(5000, boot=8), now=1.0)  # rebooted; the end of boot 7 is not known
    assert c.due_requests(2.5) == []  # settling
    reqs = {r.boot: r.ranges for r in c.due_requests(3.1)}
    # boot 8, known only from its status, is asked for from its start
    assert reqs == {7: ((100, 100 + TAIL_SPAN),), 8: ((0, 5000),)}
    feed(c, batch(100, 20, boot=7, replay=True), now=3.2)  # the daemon had up to 119
    feed(c, answer([[100, 100 + TAIL_SPAN]], [[120, 100 + TAIL_SPAN]]), now=3.3)
    assert store.gaps == [] and c.stats.absent == 0
    assert c.due_requests(10.0) == []
    assert c.open_tails() == 0 and c.holes() == {(DIAL, 8): [(0, 5000)]}
    assert store.indices() == list(range(120))


def test_the_head_of_a_boot_seen_late_is_asked_for_and_is_no_gap():
    c, store = make()
    feed(c, batch(500, 100), now=0.0)  # collection started while the boot was running
    (req,) = c.due_requests(2.5)
    assert req.ranges == ((0, 500),)
    feed(c, batch(300, 100, replay=True), now=2.6)
    feed(c, batch(420, 80, replay=True), now=2.6)
    # the daemon's recording starts at 300 (not a gap) and lacks 400..420 (a gap)
    feed(c, answer([[0, 500]], [[0, 300], [400, 420]]), now=2.7)
    assert store.gaps == [(1, 1, 400, 420, ABSENT)]
    assert c.due_requests(5.0) == []
    feed(c, batch(650, 50), now=5.0)  # later holes start from the daemon's first index
    (req,) = c.due_requests(7.5)
    assert req.ranges == ((600, 650),)


def test_an_answer_to_another_request_is_not_taken_for_absent_samples():
    c, store = make()
    feed(c, batch(0, 10), now=0.0)
    feed(c, batch(20, 10), now=0.0)
    c.due_requests(2.5)
    feed(c, answer([[0, 30]], [[0, 30]]), now=2.6)  # e.g. asked by a killed predecessor
    assert store.gaps == [] and c.stats.answers == 1


def test_garbage_is_counted_not_fatal():
    c, store = make()
    c.feed(f"{P}/v1/dials/{DIAL}/samples", b"\xff not json", 0.0)
    c.feed(f"{P}/v1/dials/{DIAL}/samples", b'{"v": 1, "dial": "0123456789abcdef"}', 0.0)
    c.feed(f"{P}/v1/dials/{DIAL}/samples", json.dumps({"v": 1, "dial": DIAL, "boot": 1,
           "first": 0, "n": 2, "device_us": [1]}).encode(), 0.0)
    c.feed(f"{P}/v1/daemons/room1/replayed", b'{"v": 1, "dial": 3}', 0.0)
    c.feed("other/v1/dials/x/samples", b"{}", 0.0)
    assert c.stats.rejected == 4
    assert store.rows == []


def test_real_recording_resumes_with_dedupe_state(tmp_path):
    path = tmp_path / "c.ratedial"
    rec = Recorder(path, meta={"collected": {"source": "mqtt", "prefix": P, "daemons": []}})
    rec.put("wall_anchors", (1000, OFFSET + 1000))
    c = Collector(P, RecorderStore(rec), wall_offset_ns=OFFSET)
    feed(c, batch(0, 100, media=True))
    feed(c, batch(150, 50))
    feed(c, gap_event(4, 200, 210))
    feed(c, batch(210, 10))
    rec.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600

    st = read_resume_state(path)
    assert st.dial_ids == {DIAL: 1}
    assert st.epochs == {(DIAL, 7): (1, "room1")}
    assert st.received == {1: [(0, 100), (150, 200), (210, 220)]}
    assert st.gaps == {1: [(200, 210)]}
    assert st.events == {("room1", "", 4)}
    assert st.media == {"room1": 1}
    assert st.wall_offset_ns == OFFSET
    assert st.daemons == {"room1"}

    rec2 = Recorder(path, meta={}, append=True, next_ids=st.next_ids)
    c2 = Collector(P, RecorderStore(rec2), wall_offset_ns=OFFSET, resume=st)
    feed(c2, batch(50, 150, replay=True), now=0.0)  # 100..150 new, the rest duplicates
    feed(c2, gap_event(4, 200, 210), now=0.0)  # seen before the restart
    feed(c2, batch(220, 10, boot=9), now=0.0)  # a new boot: a new epoch id
    rec2.close()
    assert c2.stats.samples == 60 and c2.stats.duplicates == 100 and c2.stats.events == 0
    con = sqlite3.connect(path)
    assert con.execute("SELECT COUNT(*), COUNT(DISTINCT sample_index) FROM samples "
                       "WHERE epoch_id = 1").fetchone() == (210, 210)
    assert con.execute("SELECT epoch_id, boot_id FROM epochs ORDER BY 1").fetchall() == [
        (1, 7), (2, 9)]
    assert con.execute("SELECT COUNT(*) FROM events").fetchone() == (1,)
    assert con.execute("SELECT first_index, end_index, reason FROM gaps").fetchall() == [
        (200, 210, "device_drop")]


def test_resume_refuses_a_daemon_recording(tmp_path):
    from ratedial.errors import UsageError

    path = tmp_path / "d.ratedial"
    Recorder(path, meta={}).close()
    with pytest.raises(UsageError, match="not a recording collected"):
        read_resume_state(path)
    # another program's SQLite file with a meta table that holds no JSON: one line too
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    con.execute("INSERT INTO meta VALUES ('format', 'not json')")
    con.commit()
    con.close()
    with pytest.raises(UsageError, match="is not a ratedial recording"):
        read_resume_state(other)


def test_request_holds_at_most_an_hour_of_samples():
    c, _ = make()
    feed(c, batch(0, 10), now=0.0)
    feed(c, batch(5_000_000, 10), now=0.0)
    (req,) = c.due_requests(2.5)
    assert req.ranges == ((10, 3_600_010),)


def run_record(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ratedial", "record", *args],
                          check=False, capture_output=True, text=True, timeout=timeout)


def test_bad_url_is_one_line_error_and_no_file(tmp_path):
    path = tmp_path / "c.ratedial"
    r = run_record("--mqtt", "ftp://host", "--record", str(path))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "ratedial: error: --mqtt 'ftp://host': expected mqtt://HOST[:PORT] or "
        "mqtts://HOST[:PORT]"]
    assert not path.exists()


def test_unreachable_broker_at_start_is_one_line_error_and_no_file(tmp_path):
    from brokers import free_port

    path = tmp_path / "c.ratedial"
    r = run_record("--mqtt", f"mqtt://127.0.0.1:{free_port()}", "--record", str(path))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ratedial: error: cannot connect to broker ")
    assert "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_existing_daemon_recording_is_not_overwritten(tmp_path):
    path = tmp_path / "d.ratedial"
    Recorder(path, meta={}).close()
    before = path.read_bytes()
    r = run_record("--mqtt", "mqtt://127.0.0.1:1", "--record", str(path))
    assert r.returncode == 2 and "not a recording collected" in r.stderr
    assert path.read_bytes() == before


def test_a_file_another_collector_writes_is_refused(tmp_path):
    import fcntl

    path = tmp_path / "c.ratedial"
    Recorder(path, meta={"collected": {"source": "mqtt", "prefix": P, "daemons": []}}).close()
    with open(path, "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        r = run_record("--mqtt", "mqtt://127.0.0.1:1", "--record", str(path))
    assert r.returncode == 2
    assert r.stderr.strip() == (f"ratedial: error: {path} is being written by another "
                                "running collector")


def test_analyze_and_export_read_a_collected_recording(tmp_path):
    path = tmp_path / "c.ratedial"
    rec = Recorder(path, meta={"collected": {"source": "mqtt", "prefix": P, "daemons": []},
                               "scale": {"minimum": 0, "maximum": 100, "start": 50,
                                         "counts_per_point": 1, "anchors": {}}})
    rec.put("wall_anchors", (1000, OFFSET + 1000))
    c = Collector(P, RecorderStore(rec), wall_offset_ns=OFFSET)
    for dial, rater in (("0123456789abcdef", "client"), ("fedcba9876543210", "therapist")):
        for k in range(100):  # 5 s of 1 kHz with a playing video
            topic, payload = batch(50 * k, 50, dial=dial, media=True)
            c.feed(topic, payload.replace(b'"rater":"client"', f'"rater":"{rater}"'.encode()),
                   0.0)
    rec.close()
    out = subprocess.run([sys.executable, "-m", "ratedial", "export", str(path), "-o",
                          str(tmp_path / "x"), "--format", "csv-long"],
                         check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = (tmp_path / "x.long.csv").read_text().splitlines()
    raters = {r.split(",")[2] for r in rows[1:]}
    assert raters == {"client", "therapist"}
    assert len(rows) - 1 == 2 * 50  # 5 s on the default 10 Hz grid, both raters
    out = subprocess.run([sys.executable, "-m", "ratedial", "analyze", str(path)],
                         check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "client vs therapist" in out.stdout


def _event(event_id: int, run: str, *, daemon: str = "room1", replay: bool = False
           ) -> tuple[str, bytes]:
    return (f"{P}/v1/daemons/{daemon}/events",
            event_payload(event_id=event_id, kind="media_play", host_ns=5, wall_ns=OFFSET + 5,
                          dial=None, daemon=daemon, run=run, data={}, replay=replay))


def _status(run: str, next_event: int, *, daemon: str = "room1") -> tuple[str, bytes]:
    return (f"{P}/v1/daemons/{daemon}/status", json.dumps({
        "v": 1, "daemon": daemon, "state": "online", "software": "x", "wall_ns": OFFSET,
        "run": run, "next_event": next_event}).encode())


def test_missing_events_are_asked_for_by_run_and_id():
    store = MemoryStore()
    col = Collector(P, store, wall_offset_ns=OFFSET, settle_s=2.0)
    col.feed(*_status("r1", 6), now=0.0)
    for i in (1, 2, 5):
        col.feed(*_event(i, "r1"), now=0.5)
    col.feed(*_event(2, "r1", replay=True), now=0.6)  # a duplicate: stored once
    assert len(store.events) == 3
    assert col.due_requests(1.0) == []  # not settled yet
    (req,) = col.due_requests(2.5)
    assert json.loads(req.payload()) == {"v": 1, "run": "r1", "events": [[3, 5]]}
    assert req.topic(P) == f"{P}/v1/daemons/room1/replay"
    assert col.due_requests(3.0) == []  # one outstanding request per run
    col.feed(*_event(3, "r1", replay=True), now=3.1)
    answer = {"v": 1, "run": "r1", "events": [[3, 5]], "absent": [[4, 5]]}
    col.feed(f"{P}/v1/daemons/room1/replayed", json.dumps(answer).encode(), now=3.2)
    assert col.due_requests(10.0) == []  # 4 is absent: never asked for again
    assert sorted(e[3]["source"]["event_id"] for e in store.events) == [1, 2, 3, 5]
    assert col.summary()["missing_events"] == 0


def test_a_run_that_ended_unseen_is_asked_for_its_events_past_its_last_status():
    """An audit (2026-12-05): a daemon killed during a broker outage had recorded events
    (broker_down, button presses) its statuses never announced; its next run republished them
    while the collector was not subscribed, and the collector, which asked only below the
    killed run's last next_event, never got them and said "missing_events": 0. A run that
    ended without its offline status is asked for the ids past all it knows, until the
    daemon's answer shows where they end."""
    from ratedial.mqtt.collect_state import EVENT_TAIL

    store = MemoryStore()
    col = Collector(P, store, wall_offset_ns=OFFSET, settle_s=2.0)
    col.feed(*_status("r1", 3), now=0.0)
    for i in (1, 2):
        col.feed(*_event(i, "r1"), now=0.5)
    assert col.due_requests(3.0) == []  # r1 may still be running: nothing to ask
    col.feed(*_status("r2", 1), now=4.0)  # its daemon's next run: r1 has ended
    (req,) = col.due_requests(4.0)
    assert json.loads(req.payload()) == {"v": 1, "run": "r1", "events": [[3, 3 + EVENT_TAIL]]}
    for i in (3, 5):  # 4 is not in the daemon's file (say), 3 and 5 are
        col.feed(*_event(i, "r1", replay=True), now=4.1)
    tail = {"v": 1, "run": "r1", "events": [[3, 3 + EVENT_TAIL]],
            "absent": [[4, 5], [6, 3 + EVENT_TAIL]]}
    col.feed(f"{P}/v1/daemons/room1/replayed", json.dumps(tail).encode(), now=4.2)
    assert col.due_requests(20.0) == []  # where r1 ends is known: nothing more to ask
    assert sorted(e[3]["source"]["event_id"] for e in store.events) == [1, 2, 3, 5]
    assert col.summary()["missing_events"] == 0


def test_events_a_tail_answer_says_the_daemon_holds_are_asked_for_until_they_come():
    """A code review (2026-12-05): ids the answer did not call absent but that never arrived
    were neither asked for again nor counted missing."""
    from ratedial.mqtt.collect_state import EVENT_TAIL

    store = MemoryStore()
    col = Collector(P, store, wall_offset_ns=OFFSET, settle_s=2.0)
    col.feed(*_status("r1", 3), now=0.0)
    for i in (1, 2):
        col.feed(*_event(i, "r1"), now=0.5)
    col.feed(*_status("r2", 1), now=4.0)
    (probe,) = col.due_requests(4.0)
    tail = [3, 3 + EVENT_TAIL]
    assert json.loads(probe.payload())["events"] == [tail]
    col.feed(f"{P}/v1/daemons/room1/replayed", json.dumps(  # 3 and 5 held, never arrive
        {"v": 1, "run": "r1", "events": [tail], "absent": [[4, 5], [6, 3 + EVENT_TAIL]]}
    ).encode(), now=4.2)
    assert col.summary()["missing_events"] == 2
    (again,) = col.due_requests(4.3)
    assert json.loads(again.payload())["events"] == [[3, 4], [5, 6]]
    s = col.summary()
    assert s["requested_events"] == 2 and s["event_probes"] == 1 and s["open_event_tails"] == 0


def test_a_status_older_than_the_newest_does_not_end_the_live_run():
    """A code review (2026-12-05): a late status of an older run marked the live run ended;
    it was probed, and its future ids were taken as absent for good."""
    from ratedial.mqtt.collect_state import EVENT_TAIL

    store = MemoryStore()
    col = Collector(P, store, wall_offset_ns=OFFSET, settle_s=2.0)

    def status(run: str, next_event: int, wall: int) -> tuple[str, bytes]:
        topic, payload = _status(run, next_event)
        return topic, json.dumps({**json.loads(payload), "wall_ns": wall}).encode()

    col.feed(*status("r1", 2, OFFSET), now=0.0)
    col.feed(*status("r2", 3, OFFSET + 10**9), now=1.0)  # r1 has ended, r2 is the newest
    col.feed(*_event(1, "r1"), now=1.1)
    for i in (1, 2):
        col.feed(*_event(i, "r2"), now=1.1)
    col.feed(*status("r1", 2, OFFSET + 5 * 10**8), now=1.2)  # late: older than r2's
    requests = col.due_requests(10.0)
    assert [(r.run, json.loads(r.payload())["events"]) for r in requests] == [
        ("r1", [[2, 2 + EVENT_TAIL]])]
    col.feed(*status("r2", 9, OFFSET + 2 * 10**9), now=11.0)  # r2 goes on: 3-8 are asked
    col.feed(f"{P}/v1/daemons/room1/replayed", json.dumps(
        {"v": 1, "run": "r1", "events": json.loads(requests[0].payload())["events"],
         "absent": json.loads(requests[0].payload())["events"]}).encode(), now=11.1)
    asked = {r.run: json.loads(r.payload())["events"] for r in col.due_requests(14.0)}
    assert asked == {"r2": [[3, 9]]}


def test_a_tail_nobody_answers_is_said_open_and_never_counted_as_requested_events():
    store = MemoryStore()
    col = Collector(P, store, wall_offset_ns=OFFSET, settle_s=2.0, request_timeout_s=1.0)
    col.feed(*_event(1, "r1"), now=0.0)
    col.feed(*_status("r2", 1), now=1.0)
    for k in range(6):  # the daemon is gone: asked again and again, with back-off
        col.due_requests(1.0 + 100 * k)
    s = col.summary()
    assert s["event_probes"] >= 3 and s["requested_events"] == 0
    assert s["open_event_tails"] == 1 and s["missing_events"] == 0


def test_a_run_whose_daemon_said_offline_is_not_asked_past_its_end():
    store = MemoryStore()
    col = Collector(P, store, wall_offset_ns=OFFSET, settle_s=2.0)
    topic, payload = _status("r1", 3)
    col.feed(topic, json.dumps({**json.loads(payload), "state": "offline"}).encode(), now=0.0)
    for i in (1, 2):
        col.feed(*_event(i, "r1"), now=0.5)
    col.feed(*_status("r2", 1), now=4.0)
    assert col.due_requests(10.0) == []


def test_a_tail_answered_in_full_is_asked_again_from_its_end():
    from ratedial.mqtt.collect_state import EVENT_TAIL

    store = MemoryStore()
    col = Collector(P, store, wall_offset_ns=OFFSET, settle_s=2.0)
    col.feed(*_event(1, "r1"), now=0.0)
    col.feed(*_status("r2", 1), now=1.0)
    (req,) = col.due_requests(1.0)
    first = [2, 2 + EVENT_TAIL]
    assert json.loads(req.payload())["events"] == [first]
    for i in range(2, 2 + EVENT_TAIL):  # every id of the tail is the run's
        col.feed(*_event(i, "r1", replay=True), now=1.1)
    col.feed(f"{P}/v1/daemons/room1/replayed", json.dumps(
        {"v": 1, "run": "r1", "events": [first], "absent": []}).encode(), now=1.2)
    (again,) = col.due_requests(1.3)
    assert json.loads(again.payload())["events"] == [[2 + EVENT_TAIL, 2 + 2 * EVENT_TAIL]]
    assert col.summary()["missing_events"] == 0


def _offline(next_index: int, *, boot: int = 7, board: str = "pico") -> tuple[str, bytes]:
    """The retained status a stopped daemon leaves for its dial."""
    topic, payload = status(next_index, boot=boot)
    msg = json.loads(payload)
    return topic, json.dumps({**msg, "state": "offline", "board": board}).encode()


def test_a_boot_known_only_from_a_retained_status_is_asked_for_whole_and_stays_missing():
    """Found by a black-box test: a collector started after the daemons had stopped reported
    "0 samples still missing" although the retained statuses announced 116,000 samples per
    dial; a status of a boot it had no sample of was ignored."""
    c, store = make()
    feed(c, _offline(5000), now=0.0)  # the daemon has stopped: its horizon is final
    (req,) = c.due_requests(0.25)
    assert (req.boot, req.ranges) == (7, ((0, 5000),))
    assert store.epochs == []  # the epoch's row comes with its first sample or gap
    assert c.due_requests(10.0) == []
    assert c.due_requests(10.3) == []  # no answer (the daemon is gone): timed out
    s = c.summary()
    assert (s["holes"], s["requested_samples"], s["replay_timeouts"]) == (5000, 5000, 1)
    assert c.holes() == {(DIAL, 7): [(0, 5000)]}
    # a later run of that daemon answers: what it holds fills the boot, the rest is a gap
    feed(c, batch(0, 4000, replay=True), now=20.0)
    (req,) = c.due_requests(20.5)
    assert req.ranges == ((4000, 5000),)
    feed(c, answer([[4000, 5000]], [[4500, 5000]]), now=20.6)
    feed(c, batch(4000, 500, replay=True), now=20.6)
    assert c.summary()["holes"] == 0
    assert store.gaps == [(1, 1, 4500, 5000, ABSENT)]
    (epoch,) = store.epochs  # its hello has the rate of the backfilled samples
    assert (epoch[1], epoch[3]["period_us"], epoch[3]["rate_hz"]) == (7, 1000, 1000.0)


def test_a_live_status_of_an_unseen_boot_settles_before_it_is_asked_for():
    c, _ = make()
    feed(c, status(3000), now=0.0)  # "connected": live batches may still be on the way
    assert c.due_requests(1.0) == [] and c.summary()["holes"] == 0
    (req,) = c.due_requests(2.25)
    assert req.ranges == ((0, 3000),)
    feed(c, status(0, boot=9), now=2.3)  # a boot with nothing yet: no epoch, no request
    assert (DIAL, 9) not in c.epochs


def test_a_head_beyond_one_request_absent_in_full_is_no_gap():
    """The daemon's recording starts after the first request's hour: the rest of the head
    is asked for as head again, so what lies before its first index is not a gap."""
    c, store = make()
    feed(c, batch(4_000_000, 10), now=0.0)
    (req,) = c.due_requests(2.5)
    assert req.ranges == ((0, 3_600_000),)
    feed(c, answer([[0, 3_600_000]], [[0, 3_600_000]]), now=2.6)
    (req,) = c.due_requests(2.7)
    assert req.ranges == ((3_600_000, 4_000_000),)
    feed(c, batch(3_700_000, 300_000, replay=True), now=2.8)
    feed(c, answer([[3_600_000, 4_000_000]], [[3_600_000, 3_700_000]]), now=2.9)
    assert store.gaps == [] and c.stats.absent == 0
    assert c.holes() == {} and c.due_requests(5.0) == []


def _connected(board: str, firmware: str, backend: str, event_id: int = 1
               ) -> tuple[str, bytes]:
    return f"{P}/v1/dials/{DIAL}/events", event_payload(
        event_id=event_id, kind="dial_connected", host_ns=5, wall_ns=OFFSET + 5, dial=DIAL,
        daemon="room1", run="r1", data={"boot_id": 7, "board": board, "firmware": firmware,
                                        "backend": backend})


def test_dial_rows_are_filled_from_status_and_events_whatever_comes_first():
    """Found by a black-box test: collected dials rows had board, firmware and backend ''
    unevenly (the row took only what its first message said)."""
    c, store = make()
    feed(c, batch(0, 10), now=0.0)  # samples say only the rater
    assert store.dials == [(DIAL, "client", "", "", "")]
    feed(c, status(10), now=0.1)
    assert store.dials == [(DIAL, "client", "pico", "0.1.0", "")]
    feed(c, _connected("pico", "0.1.0", "pio"), now=0.2)
    assert store.dials == [(DIAL, "client", "pico", "0.1.0", "pio")]
    feed(c, _connected("pico2", "0.2.0", "irq", event_id=2), now=0.3)  # the first stays
    assert store.dials == [(DIAL, "client", "pico", "0.1.0", "pio")]

    c, store = make()  # the event first: the row is complete at once
    feed(c, _connected("pico", "0.1.0", "pio"), now=0.0)
    feed(c, batch(0, 10), now=0.1)
    assert store.dials == [(DIAL, "client", "pico", "0.1.0", "pio")]


def _collected(path: Any, prefix: str = P) -> Recorder:
    rec = Recorder(path, meta={"collected": {"source": "mqtt", "prefix": prefix,
                                             "daemons": []}})
    rec.put("wall_anchors", (1000, OFFSET + 1000))
    return rec


def test_dial_fields_reach_the_file_and_a_killed_runs_events_fill_them_on_resume(tmp_path):
    path = tmp_path / "c.ratedial"
    rec = _collected(path)
    c = Collector(P, RecorderStore(rec), wall_offset_ns=OFFSET)
    feed(c, batch(0, 10))
    feed(c, _connected("pico", "0.1.0", "pio"))
    rec.close()  # as a killed collector leaves it: the row as first written
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT uid, rater, board, firmware, backend FROM dials"
                           ).fetchall() == [(DIAL, "client", "", "", "")]

    st = read_resume_state(path)  # the file's dial_connected event says more
    assert st.dial_rows == {DIAL: ("client", "", "", "")}
    assert st.dial_events == {DIAL: {"board": "pico", "firmware": "0.1.0", "backend": "pio"}}
    store = RecorderStore(Recorder(path, meta={}, append=True, next_ids=st.next_ids))
    c2 = Collector(P, store, wall_offset_ns=OFFSET, resume=st)
    feed(c2, status(10), now=0.0)
    store.close()
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT uid, rater, board, firmware, backend FROM dials"
                           ).fetchall() == [(DIAL, "client", "pico", "0.1.0", "pio")]
    assert read_resume_state(path).dial_rows == {DIAL: ("client", "pico", "0.1.0", "pio")}


def test_every_broker_of_a_collection_is_kept_in_its_provenance(tmp_path):
    path = tmp_path / "c.ratedial"
    rec = _collected(path)
    c = Collector(P, RecorderStore(rec), wall_offset_ns=OFFSET)
    c.connected_to("mqtt://a:1883")
    c.connected_to("mqtt://a:1883")  # a reconnection to the same broker
    rec.close()
    st = read_resume_state(path)
    assert st.brokers == ["mqtt://a:1883"]
    rec = Recorder(path, meta={}, append=True, next_ids=st.next_ids)
    c2 = Collector(P, RecorderStore(rec), wall_offset_ns=OFFSET, resume=st)
    c2.connected_to("mqtt://b:1883")  # the broker moved
    rec.close()
    with sqlite3.connect(path) as con:
        (value,) = con.execute("SELECT value FROM meta WHERE key = 'collected'").fetchone()
    assert json.loads(value) == {"source": "mqtt", "prefix": P, "daemons": [],
                                 "brokers": ["mqtt://a:1883", "mqtt://b:1883"]}


def test_continuing_a_collection_with_another_prefix_is_refused_and_leaves_it(tmp_path):
    path = tmp_path / "c.ratedial"
    rec = _collected(path, prefix="panel/a")
    c = Collector("panel/a", RecorderStore(rec), wall_offset_ns=OFFSET)
    c.feed(f"panel/a/v1/dials/{DIAL}/samples", batch(0, 10)[1], 0.0)
    rec.close()
    before = path.read_bytes()
    r = run_record("--mqtt", "mqtt://127.0.0.1:1", "--record", str(path), "--prefix",
                   "panel/b")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"ratedial: error: {path} was collected from topic prefix 'panel/a', not 'panel/b': "
        "continue it with --prefix panel/a, or choose another --record path"]
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.ratedial"]


def test_an_empty_client_id_is_refused(tmp_path):
    path = tmp_path / "c.ratedial"
    r = run_record("--mqtt", "mqtt://127.0.0.1:1", "--record", str(path), "--client-id", "")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "ratedial: error: --client-id: an MQTT client id cannot be empty (leave the option "
        "out for one derived from the host, prefix and --record path)"]
    assert not path.exists()


def test_the_tail_of_a_boot_is_never_cut_by_the_hour_a_request_holds():
    """A tail cut to fit the hour would make the indices past the cut look absent: the
    daemon answers them absent (its boot ended before), and they became gaps."""
    c, store = make()
    feed(c, status(3_000_000, boot=7), now=0.0)
    feed(c, status(10, boot=8), now=0.5)  # rebooted: boot 7's end is asked for too
    reqs = {r.boot: r.ranges for r in c.due_requests(2.6)}
    assert reqs[7] == ((0, 3_000_000),)  # not with [3_000_000, 3_600_000) of its tail
    feed(c, answer([[0, 3_000_000]], [[0, 3_000_000]]), now=2.7)  # holds none of it
    reqs = {r.boot: r.ranges for r in c.due_requests(2.8)}
    assert reqs[7] == ((3_000_000, 3_000_000 + TAIL_SPAN),)
    feed(c, answer([[3_000_000, 3_000_000 + TAIL_SPAN]], [[3_000_000, 3_000_000 + TAIL_SPAN]]),
         now=2.9)
    assert store.gaps == [] and c.open_tails() == 0
    assert (DIAL, 7) not in c.holes()


def reboot_event(event_id: int, old: int, new: int) -> tuple[str, bytes]:
    return f"{P}/v1/dials/{DIAL}/events", event_payload(
        event_id=event_id, kind="dial_reboot", host_ns=5, wall_ns=OFFSET + 5, dial=DIAL,
        daemon="room1", data={"old_boot_id": old, "new_boot_id": new, "resumed": False})


def test_a_boot_known_only_from_a_reboot_event_is_asked_for_whole():
    """An audit (2026-12-04): a collector started after a dial's reboot collected only the
    current boot and said "0 samples still missing"; the earlier boot (1,710 samples in the
    daemon's file) was only named by the dial_reboot event it received."""
    c, store = make()
    feed(c, status(3000, boot=8), now=0.0)  # the dial is in boot 8 now
    feed(c, reboot_event(3, old=7, new=8), now=0.0)  # (an event asked for, or queued)
    reqs = {r.boot: r.ranges for r in c.due_requests(2.5)}
    assert reqs[7] == ((0, TAIL_SPAN),)  # all of boot 7: head and tail at once
    assert c.open_tails() == 1
    feed(c, batch(270, 1710, boot=7, replay=True), now=2.6)  # the daemon holds 270..1979
    feed(c, answer([[0, TAIL_SPAN]], [[0, 270], [1980, TAIL_SPAN]], boot=7), now=2.7)
    assert store.gaps == [] and c.stats.absent == 0  # before its first, after its last
    assert c.open_tails() == 0 and (DIAL, 7) not in c.holes()
    assert all(r.boot != 7 for r in c.due_requests(10.0))
    assert sorted(store.indices()) == list(range(270, 1980))


def test_a_continued_collection_remembers_where_each_boots_records_begin_and_end(tmp_path):
    """An audit (2026-12-04): a complete collection (holes 0, open tails 0) continued after
    the daemons had stopped reported 1,690 missing samples (the indices before each
    daemon's first) and an open tail: what replay answers had said was not kept."""
    path = tmp_path / "c.ratedial"
    rec = Recorder(path, meta={"collected": {"source": "mqtt", "prefix": P, "daemons": []}})
    rec.put("wall_anchors", (1000, OFFSET + 1000))
    c = Collector(P, RecorderStore(rec), wall_offset_ns=OFFSET, settle_s=2.0)
    feed(c, batch(500, 100, boot=7), now=0.0)  # joined late: boot 7 from index 500
    feed(c, status(600, boot=7), now=0.0)
    feed(c, status(100, boot=8), now=1.0)  # the dial rebooted
    feed(c, batch(0, 100, boot=8), now=1.0)
    reqs = {r.boot: r.ranges for r in c.due_requests(3.5)}
    assert reqs == {7: ((0, 500), (600, 600 + TAIL_SPAN))}
    feed(c, answer([[0, 500], [600, 600 + TAIL_SPAN]], [[0, 300], [620, 600 + TAIL_SPAN]]),
         now=3.6)  # the daemon holds 300.. and ends at 620
    feed(c, batch(300, 200, boot=7, replay=True), now=3.6)
    feed(c, batch(600, 20, boot=7, replay=True), now=3.6)
    assert c.summary()["holes"] == 0 and c.open_tails() == 0
    rec.close()

    st = read_resume_state(path)  # continued after the daemons stopped: nobody answers
    rec2 = Recorder(path, meta={}, append=True, next_ids=st.next_ids)
    c2 = Collector(P, RecorderStore(rec2), wall_offset_ns=OFFSET, settle_s=2.0, resume=st)
    assert [r for r in c2.due_requests(10.0) if r.boot == 7] == []
    s = c2.summary()
    rec2.close()
    assert (s["holes"], s["open_tails"]) == (0, 0)


def _as(msg: tuple[str, bytes], rater: str | None) -> tuple[str, bytes]:
    new = "null" if rater is None else f'"{rater}"'
    return msg[0], msg[1].replace(b'"rater":"client"', f'"rater":{new}'.encode()).replace(
        b'"rater": "client"', f'"rater": {new}'.encode())


def test_a_retained_status_of_a_past_session_does_not_label_the_dial():
    """Found by a black-box test: the collector kept the first rater told, and a dial's
    retained status from the previous session (client) labelled this session's therapist,
    reversing the dyad in analyze."""
    for now_rater in ("therapist", None):  # the new run labels it otherwise, or not at all
        c, store = make()
        feed(c, status(500), now=0.0)  # retained: the previous session's "client"
        assert store.dials[0][1] == "client"
        feed(c, _as(batch(0, 10, boot=8), now_rater), now=0.1)  # this session, live
        assert store.dials[0][1] == now_rater
        feed(c, status(10, boot=8), now=0.2)  # a status saying "client" again changes nothing
        feed(c, _as(batch(0, 10, replay=True), "client"), now=0.3)  # nor an old backfill
        assert store.dials[0][1] == now_rater
        assert store.events == []


def test_a_live_rater_that_changes_is_recorded_as_an_event():
    c, store = make()
    feed(c, batch(0, 10), now=0.0)
    feed(c, _as(batch(10, 10), "therapist"), now=0.1)
    assert store.dials[0][1] == "therapist"
    assert [(e[2], e[3]) for e in store.events] == [
        ("rater_changed", {"from": "client", "to": "therapist"})]


def test_a_new_collection_anchors_its_wall_clock_with_one_reading(tmp_path):
    """Found by a black-box test: the first wall_anchors row read the monotonic clock twice,
    so host_ns + that row's offset was 231-561 ns off the daemons' wall_ns."""
    from ratedial.config import MqttConfig
    from ratedial.mqtt.collect_shell import CollectConfig, open_recording, unlock

    path = tmp_path / "c.ratedial"
    rec, _, offset = open_recording(CollectConfig(mqtt=MqttConfig(), record=path), "cid",
                                    lambda _e: None)
    rec.close()
    unlock(path)
    with sqlite3.connect(path) as con:
        ((mono, wall),) = con.execute("SELECT host_ns, wall_ns FROM wall_anchors").fetchall()
    assert wall - mono == offset


def test_holes_left_at_the_end_are_uncollected_gaps_that_a_resume_asks_for_again(tmp_path):
    """Found by a black-box test: samples a collection never received were in no gap, so
    analyze said "gaps 0" for a file lacking 110 of a dial's samples (recording.md: every
    missing index lies in exactly one gap)."""
    path = tmp_path / "c.ratedial"
    rec = Recorder(path, meta={"collected": {"source": "mqtt", "prefix": P, "daemons": []}})
    rec.put("wall_anchors", (1000, OFFSET + 1000))
    store = RecorderStore(rec)
    c = Collector(P, store, wall_offset_ns=OFFSET, settle_s=2.0)
    feed(c, batch(0, 100), now=0.0)
    feed(c, batch(150, 50), now=0.1)
    feed(c, status(200), now=0.2)
    c.due_requests(3.0)  # settled: 100..150 is a hole (asked for, never answered)
    assert c.record_holes() == 50
    store.close()
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT first_index, end_index, reason FROM gaps").fetchall() == [
            (100, 150, "uncollected")]

    st = read_resume_state(path)  # the next run of the collection: a hole again
    assert st.gaps == {}
    store2 = RecorderStore(Recorder(path, meta={}, append=True, next_ids=st.next_ids))
    c2 = Collector(P, store2, wall_offset_ns=OFFSET, resume=st, settle_s=2.0)
    feed(c2, status(200), now=0.0)
    (req,) = c2.due_requests(3.0)
    assert json.loads(req.payload())["ranges"] == [[100, 150]]
    feed(c2, batch(100, 50, replay=True), now=3.1)  # the answer fills it
    assert c2.record_holes() == 0
    store2.close()
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT COUNT(*) FROM gaps").fetchone() == (0,)
        assert con.execute("SELECT COUNT(*) FROM samples").fetchone() == (200,)


def _with_uncollected(path: Any) -> None:
    """A collected file that ended with holes: [100, 150) between received samples and
    all of boot 8 (known only from its daemon's last status)."""
    rec = _collected(path)
    store = RecorderStore(rec)
    c = Collector(P, store, wall_offset_ns=OFFSET, settle_s=2.0)
    feed(c, batch(0, 100), now=0.0)
    feed(c, batch(150, 50), now=0.1)
    feed(c, _offline(200), now=0.2)
    feed(c, _offline(300, boot=8), now=0.2)
    c.due_requests(3.0)
    assert c.record_holes() == 350
    store.close()


def _gap_rows(path: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as con:
        return con.execute("SELECT e.boot_id, g.first_index, g.end_index, g.reason FROM gaps g "
                           "JOIN epochs e USING (epoch_id) ORDER BY 1, 2").fetchall()


@pytest.mark.parametrize("how", ["another prefix", "unreachable broker"])
def test_a_refused_or_failed_continuation_leaves_the_file_as_it_was(tmp_path, how):
    """An audit (2026-12): a continuation refused for its prefix, or one that could not
    reach the broker, deleted the file's uncollected gap rows (docs/mqtt.md: "the file is
    left as it was")."""
    from brokers import free_port

    path = tmp_path / "c.ratedial"
    _with_uncollected(path)
    rows = _gap_rows(path)
    assert rows == [(7, 100, 150, "uncollected"), (8, 0, 300, "uncollected")]
    before = path.read_bytes()
    args = (["--prefix", "other"] if how == "another prefix" else [])
    r = run_record("--mqtt", f"mqtt://127.0.0.1:{free_port()}", "--record", str(path),
                   "--prefix", P, *args)
    assert r.returncode == (2 if how == "another prefix" else 1), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.ratedial"]


def test_a_continuation_that_ends_keeps_uncollected_rows_for_the_holes_still_open(tmp_path):
    """An audit (2026-12): the uncollected rows went when a continuation started, and a hole
    past everything received (a boot known only from a status) was no hole of the new run,
    so a continuation that received nothing left the file without them."""
    path = tmp_path / "c.ratedial"
    _with_uncollected(path)
    st = read_resume_state(path)
    assert st.gaps == {}  # uncollected rows are holes again, not gaps
    store = RecorderStore(Recorder(path, meta={}, append=True, next_ids=st.next_ids))
    c = Collector(P, store, wall_offset_ns=OFFSET, settle_s=2.0, resume=st)
    assert c.holes() == {(DIAL, 7): [(100, 150)], (DIAL, 8): [(0, 300)]}
    feed(c, batch(120, 10, replay=True), now=1.0)  # part of one arrives
    assert c.record_holes() == 340
    store.close()
    assert _gap_rows(path) == [(7, 100, 120, "uncollected"), (7, 130, 150, "uncollected"),
                               (8, 0, 300, "uncollected")]


def _hellos(path: Any) -> list[tuple[int, Any, Any]]:
    with sqlite3.connect(path) as con:
        return [(boot, h["period_us"], h["rate_hz"]) for boot, h in (
            (b, json.loads(x)) for b, x in con.execute(
                "SELECT boot_id, hello FROM epochs ORDER BY epoch_id"))]


def test_an_epochs_rate_is_the_nominal_one_once_a_batch_tells_it_also_in_a_continuation(
        tmp_path):
    """An audit (2026-12): a boot first known from a retained status (its daemon had
    stopped) got hello {"period_us": null, "rate_hz": 1000.5}, the rate the status measured,
    and a continuation that received the boot's live batches (period_us 1000) kept it."""
    path = tmp_path / "c.ratedial"
    rec = _collected(path)
    store = RecorderStore(rec)
    c = Collector(P, store, wall_offset_ns=OFFSET, settle_s=2.0)
    topic, payload = _offline(300)
    feed(c, (topic, json.dumps({**json.loads(payload), "rate_hz": 1000.5}).encode()), now=0.0)
    c.due_requests(3.0)
    assert c.record_holes() == 300  # the row is made without a sample: the status's rate
    store.close()
    assert _hellos(path) == [(7, None, 1000.5)]

    st = read_resume_state(path)
    store = RecorderStore(Recorder(path, meta={}, append=True, next_ids=st.next_ids))
    c = Collector(P, store, wall_offset_ns=OFFSET, settle_s=2.0, resume=st)
    feed(c, batch(300, 10), now=1.0)  # the daemon runs again, the same boot: period_us 1000
    store.close()
    assert _hellos(path) == [(7, 1000, 1000.0)]


@pytest.mark.parametrize("rate", [True, float("inf"), 10 ** 400, -5, 0, "1000", None])
def test_a_status_rate_that_is_no_rate_is_not_taken(tmp_path, rate):
    """A review (2026-12-05): a status's ``rate_hz`` of ``true`` was taken as 1.0 Hz and
    Infinity as a rate (written into the epoch's hello); an integer of 400 digits raised
    OverflowError. Only a finite number above 0 (not a bool) is a rate; otherwise the
    epoch's hello has none (the reader then takes the rate as unknown)."""
    path = tmp_path / "c.ratedial"
    store = RecorderStore(_collected(path))
    c = Collector(P, store, wall_offset_ns=OFFSET, settle_s=2.0)
    topic, payload = _offline(300)
    text = json.dumps({**json.loads(payload), "rate_hz": 0}).replace(
        '"rate_hz": 0', f'"rate_hz": {json.dumps(rate) if rate != float("inf") else "Infinity"}')
    feed(c, (topic, text.encode()), now=0.0)
    c.due_requests(3.0)
    holes = c.record_holes()
    store.close()
    if (isinstance(rate, int) and rate > 10 ** 300) or rate == float("inf"):
        # the payload itself is refused (not finite JSON): no epoch from it at all
        assert (holes, _hellos(path)) == (0, [])
    else:
        assert (holes, _hellos(path)) == (300, [(7, None, None)])


def test_a_backfilled_boots_period_is_corrected_by_the_first_live_batch():
    c, store = make()
    topic, payload = batch(0, 10, replay=True)  # device times 2 us apart: period 2
    msg = json.loads(payload)
    feed(c, (topic, json.dumps({**msg, "device_us": [2 * i for i in range(10)]}).encode()))
    assert [(e[3]["period_us"], e[3]["rate_hz"]) for e in store.epochs] == [(2, 500000.0)]
    feed(c, batch(10, 10), now=0.1)
    assert [(e[3]["period_us"], e[3]["rate_hz"]) for e in store.epochs] == [(1000, 1000.0)]
    feed(c, batch(20, 10), now=0.2)  # told once
    assert store.hellos == 1


def test_the_collected_scale_is_the_daemons_not_0_to_100():
    """An audit (2026-12-05): a session rated on -100..100 was collected with meta.scale
    0-100 (payloads carried no scale), and analyze then judged it by a band of 45-55. The
    daemon status carries the scale; the first daemon's is the recording's, another is said."""
    said: list[str] = []
    store = MemoryStore()
    c = Collector(P, store, wall_offset_ns=OFFSET, on_notice=said.append)
    scale = {"minimum": -100.0, "maximum": 100.0, "start": -50.0, "counts_per_point": -0.5,
             "anchors": {"-100": "hindering", "0": "neutral", "100": "helpful"}}

    def status(daemon: str, s: Any) -> tuple[str, bytes]:
        return (f"{P}/v1/daemons/{daemon}/status", json.dumps({
            "v": 1, "daemon": daemon, "state": "online", "software": "x", "wall_ns": OFFSET,
            "run": "r1", "next_event": 1, "scale": s}).encode())

    feed(c, status("room1", {"minimum": 5, "maximum": 1, "start": 3}))  # not a scale: ignored
    assert "scale" not in store.meta_kv
    feed(c, status("room1", scale))
    assert store.meta_kv["scale"] == {**scale, "from_daemon": "room1"}
    feed(c, status("room1", scale))  # every second: no news
    other = {**scale, "minimum": 0.0, "maximum": 100.0, "start": 50.0}
    feed(c, status("room2", other))
    feed(c, status("room2", other))
    assert store.meta_kv["scale"]["from_daemon"] == "room1"
    assert [(k, d["daemon"]) for _, _, k, d in store.events] == [("scale_differs", "room2")]
    # and said, once, in one line (record --mqtt printed nothing)
    assert said == ["daemon room2 rates on another scale (0 to 100) than this recording's "
                    "(-100 to 100, from daemon room1): its ratings are kept on their own scale "
                    "(a scale_differs event); collect such sessions with one [scale]"]


@pytest.mark.parametrize("bad", [
    ("status", "rater", "kl\\udce9"),  # a lone surrogate: no text a recording can hold
    ("samples", "count", 2**63),  # beyond SQLite's integers
    ("samples", "device_us", 1.5e19),  # a number, not an integer
    ("samples", "rating", "x"),
    ("samples", "count", 3.7),  # was taken as 3
    ("samples", "media_s", "NaN"),
])
def test_a_message_no_recording_can_hold_is_rejected_whole_and_the_collection_goes_on(
        tmp_path, bad):
    """A code review (2026-12-05): one status with "rater": "\\udce9" (legal JSON) from any
    client on the broker stopped the whole collection (the recording's one-line error), and a
    value that failed mid-message left indices taken as received with no row written."""
    from ratedial.mqtt.collect_store import RecorderStore
    from ratedial.recording.writer import Recorder

    kind, key, value = bad
    rec = Recorder(tmp_path / "c.ratedial", meta={})
    store = RecorderStore(rec)
    col = Collector(P, store, wall_offset_ns=OFFSET, settle_s=2.0)
    topic, payload = status(10) if kind == "status" else batch(0, 10)
    text = payload.decode()
    if kind == "status":
        text = text.replace('"rater": "client"', f'"rater": "{value}"')
    else:
        msg = json.loads(payload)
        msg[key][3] = value
        text = json.dumps(msg)
        if value == "NaN":
            text = text.replace('"NaN"', "NaN")
    col.feed(topic, text.encode(), now=0.0)
    assert col.stats.rejected == 1
    col.feed(*batch(0, 10), now=0.1)  # the good message after it is taken whole
    rec.flush()
    assert rec.error is None
    assert col.stats.samples == 10
    store.close()
    con = sqlite3.connect(tmp_path / "c.ratedial")
    assert con.execute("SELECT sample_index FROM samples ORDER BY 1").fetchall() == [
        (i,) for i in range(10)]


def test_samples_without_a_host_time_are_collected():
    """A code review (2026-12-05): the value checks required every wall_ns to be an integer;
    it is null by design for samples the daemon could give no host time (no clock yet, a rate
    that looked implausible), and such batches were rejected whole."""
    store = MemoryStore()
    col = Collector(P, store, wall_offset_ns=OFFSET, settle_s=2.0)
    topic, payload = batch(0, 5)
    msg = json.loads(payload)
    msg["wall_ns"] = [None] * 5
    col.feed(topic, json.dumps(msg).encode(), now=0.0)
    assert col.stats.rejected == 0 and col.stats.samples == 5
    assert [r[4] for r in store.rows] == [None] * 5

