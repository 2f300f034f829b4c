"""The store-and-forward bookkeeping (pure) and what a killed run leaves for the next one."""

from __future__ import annotations

import json
import os
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratedial.mqtt.archive import (
    Archive,
    absent_ranges,
    find_unfinished,
    read_samples,
    unfinished,
)
from ratedial.mqtt.outbox import Outbox
from ratedial.mqtt.requests import parse_replay_request
from ratedial.recording.writer import Recorder, try_lock

KEY = ("abc", 1)

ops = st.lists(st.one_of(
    st.tuples(st.just("live"), st.integers(1, 30)),
    st.tuples(st.just("missed"), st.integers(1, 30)),
    st.tuples(st.just("checkpoint"), st.just(0)),
    st.tuples(st.just("ack"), st.integers(0, 5)),
    st.tuples(st.just("drop"), st.just(0)),
    st.tuples(st.just("backfill"), st.integers(0, 3)),
    st.tuples(st.just("refuse"), st.integers(0, 5)),
    st.tuples(st.just("refuse_backfill"), st.integers(0, 3)),
), max_size=60)


def covered(snap: dict, key: tuple[str, int], i: int) -> bool:
    for e in snap["epochs"]:
        if (e["dial"], e["boot"]) == key:
            return i >= e["sent_below"] or any(a <= i < b for a, b in e["pending"])
    return False


@settings(max_examples=300, deadline=None)
@given(ops)
def test_nothing_handed_over_is_forgotten(script):
    """Every index is confirmed by a checkpoint or backfill ack, or still unconfirmed, and the
    snapshot a recording stores lists every unconfirmed index. What the broker refused (a
    live batch's PUBACK or a backfill's with a failure reason code) is never confirmed by a
    later checkpoint, and stays unconfirmed."""
    box = Outbox()
    at = 0
    confirmed: set[int] = set()
    sent: list[tuple[int, int, int]] = []  # (generation, first, end) of live batches
    gens: list[int] = []
    refused: set[int] = set()
    for op, n in script:
        if op == "live":
            box.live_sent(KEY, at, at + n)
            sent.append((box.generation, at, at + n))
            at += n
        elif op == "missed":
            box.missed(KEY, at, at + n)
            at += n
        elif op == "checkpoint":
            gens.append(box.checkpoint())
        elif op == "ack" and gens:
            gen = gens.pop(0)
            box.checkpoint_acked(gen)
            for g, a, b in sent:
                if g <= gen:
                    confirmed.update(range(a, b))
            sent = [x for x in sent if x[0] > gen]  # a refusal's PUBACK comes before
        elif op == "drop":
            box.disconnected()
            sent.clear()
            gens.clear()
        elif op == "backfill" and box.pending():
            key, a, b = box.pending()[0]
            b = min(b, a + 7)
            box.backfill_acked(key, a, b)
            confirmed.update(range(a, b))
        elif op == "refuse" and sent:
            _, a, b = sent.pop(n % len(sent))  # its PUBACK came, with a refusal
            box.live_refused(KEY, a, b)
            refused.update(range(a, b))
        elif op == "refuse_backfill" and box.pending():
            key, a, b = box.pending()[0]
            b = min(b, a + 5)
            box.backfill_refused(key, a, b)
            refused.update(range(a, b))
    snap = box.snapshot()
    assert not refused & confirmed
    assert box.refused_samples == len(refused)
    assert box.unconfirmed or not refused
    for i in range(at):
        if i in refused:
            assert box.overlaps(KEY, i, i + 1) and covered(snap, KEY, i), i
        unconfirmed = box.overlaps(KEY, i, i + 1)
        assert unconfirmed or i in confirmed, i
        if unconfirmed:
            assert covered(snap, KEY, i), i
    assert json.loads(json.dumps(snap)) == snap


def test_absent_ranges():
    assert absent_ranges(0, 10, [0, 1, 2, 5, 6, 9]) == [(3, 5), (7, 9)]
    assert absent_ranges(5, 8, []) == [(5, 8)]
    assert absent_ranges(5, 8, [5, 6, 7]) == []


def test_replay_requests_are_validated():
    ok = parse_replay_request(b'{"v":1,"dial":"ab","boot":3,"ranges":[[0,5],[9,12]]}')
    assert ok == {"dial": "ab", "boot": 3, "ranges": [(0, 5), (9, 12)]}
    ev = parse_replay_request(b'{"v":1,"run":"9f0c","events":[[1,4]]}')
    assert ev == {"run": "9f0c", "events": [(1, 4)]}
    for bad in (b'{"v":1,"run":7,"events":[[1,4]]}', b'{"v":1,"run":"9f0c","events":[[4,1]]}',
                b'{"v":1,"run":"9f0c","events":[[0,1000000]]}', b'{"v":1,"run":"9f0c"}'):
        assert parse_replay_request(bad) is None, bad
    for bad in (b"", b"\xff", b"[]", b'{"v":2,"dial":"ab","boot":3,"ranges":[[0,5]]}',
                b'{"v":1,"dial":"ab","boot":3,"ranges":[]}',
                b'{"v":1,"dial":"ab","boot":true,"ranges":[[0,5]]}',
                b'{"v":1,"dial":"ab","boot":3,"ranges":[[5,5]]}',
                b'{"v":1,"dial":"ab","boot":3,"ranges":[[0,1e9]]}',
                b'{"v":1,"dial":"ab","boot":3,"ranges":[[0,100000000]]}',
                b'{"v":1,"dial":"ab","boot":3,"ranges":' + json.dumps([[i, i + 1] for i in
                                                                       range(101)]).encode()
                + b"}"):
        assert parse_replay_request(bad) is None, bad


def make_recording(path, *, daemon="d1", progress=None, n=100, broker="mqtt://b:1883"):
    rec = Recorder(path, meta={"daemon_id": daemon, "run_id": "r1",
                               "mqtt": {"prefix": "ratedial", "broker": broker}})
    dial = rec.add_dial("abc", None, "test", "0.1", "irq")
    epoch = rec.add_epoch(dial, 1, 0, {})
    rec.put_many("samples", [(epoch, i, dial, 1000 * i, 10 * i, i, 50.0, 0, None, None, 5)
                             for i in range(n)])
    rec.event(5, dial, "dial_connected", {})
    if progress is not None:
        rec.set_meta("mqtt_progress", progress)
    rec.close()


def test_a_killed_run_leaves_exactly_its_unconfirmed_part(tmp_path):
    cur = tmp_path / "now.ratedial"
    cur.touch()
    make_recording(tmp_path / "a.ratedial", progress={
        "complete": False, "events_pending": [], "events_handed_max": 1,
        "epochs": [{"dial": "abc", "boot": 1, "sent_below": 80, "pending": [[10, 20]]}]})
    make_recording(tmp_path / "b.ratedial", progress={"complete": True})
    make_recording(tmp_path / "c.ratedial", daemon="someone-else")
    make_recording(tmp_path / "d.ratedial", broker="mqtt://elsewhere:1883")
    make_recording(tmp_path / "e.ratedial")  # killed before its first progress note
    found = {u.archive.path.name: u for u in find_unfinished(
        tmp_path, current=cur, daemon_id="d1", prefix="ratedial", broker="mqtt://b:1883")}
    assert set(found) == {"a.ratedial", "e.ratedial"}
    assert found["a.ratedial"].ranges == {KEY: [(10, 20), (80, 100)]}
    assert found["a.ratedial"].events == []
    assert found["e.ratedial"].ranges == {KEY: [(0, 100)]}
    assert found["e.ratedial"].events == [1]
    rows = read_samples([Archive(tmp_path / "a.ratedial"), Archive(tmp_path / "e.ratedial")],
                        KEY, 95, 105)
    assert [r[0] for r in rows] == [95, 96, 97, 98, 99]
    assert rows[0][1:4] == (95_000, 950, 95)


def test_a_recording_in_use_is_not_resumed(tmp_path):
    path = tmp_path / "a.ratedial"
    make_recording(path)
    fd = try_lock(path)
    assert fd is not None
    try:
        assert unfinished(path, daemon_id="d1", prefix="ratedial",
                          broker="mqtt://b:1883") is None
    finally:
        os.close(fd)  # the daemon is gone: now its file may be finished by the next run
    assert unfinished(path, daemon_id="d1", prefix="ratedial",
                      broker="mqtt://b:1883") is not None


def test_a_folder_name_with_uri_characters_is_read(tmp_path):
    # "study #3?" would end an unquoted file: URI early: the killed run's tail was never
    # found (and a replay request read nothing) in such a folder
    folder = tmp_path / "study #3? 50%"
    folder.mkdir()
    make_recording(folder / "a.ratedial")
    found = find_unfinished(folder, current=folder / "now.ratedial", daemon_id="d1",
                            prefix="ratedial", broker="mqtt://b:1883")
    assert [u.ranges for u in found] == [{KEY: [(0, 100)]}]
    rows = Archive(folder / "a.ratedial").samples(KEY, 3, 5, must_read=True)
    assert [r[0] for r in rows] == [3, 4]
    assert not (folder / "a.ratedial-wal").exists()


@pytest.mark.skipif(sys.platform != "linux", reason="names are bytes on Linux")
def test_a_recording_whose_name_is_not_utf8_is_read_and_found(tmp_path):
    """A code review (2026-12-05): a recording named with a Latin-1 byte beside the run's
    made `ratedial run --broker ...` a traceback (its file: URI could not be encoded)."""
    odd = tmp_path / os.fsdecode(b"kl\xe9.ratedial")
    make_recording(odd)
    found = find_unfinished(tmp_path, current=tmp_path / "now.ratedial", daemon_id="d1",
                            prefix="ratedial", broker="mqtt://b:1883")
    assert [u.ranges for u in found] == [{KEY: [(0, 100)]}]
    rows = Archive(odd).samples(KEY, 3, 5, must_read=True)
    assert [r[0] for r in rows] == [3, 4]


def test_file_uris_sqlite_reads_on_every_platform(tmp_path):
    """A review (2026-12-05): Path.as_uri() of a Windows share (\\\\nas\\study\\a.ratedial)
    is file://nas/study/..., which SQLite refuses ("invalid uri authority: nas")."""
    import sqlite3

    from ratedial.recording.readonly import connect_ro, file_uri

    assert file_uri("//nas/study #3/a.ratedial") == "file:////nas/study%20%233/a.ratedial"
    assert file_uri("C:/study/a?.ratedial") == "file:///C:/study/a%3F.ratedial"
    assert file_uri("/tmp/50%/é.ratedial") == "file:///tmp/50%25/%C3%A9.ratedial"
    odd = tmp_path / "50% é #1?"
    odd.mkdir()
    con = sqlite3.connect(odd / "x.db")
    con.execute("CREATE TABLE t (v)")
    con.execute("INSERT INTO t VALUES (7)")
    con.commit()
    con.close()
    ro = connect_ro(odd / "x.db", immutable=True)
    assert ro.execute("SELECT v FROM t").fetchall() == [(7,)]
    ro.close()
