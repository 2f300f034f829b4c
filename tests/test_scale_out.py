"""Scale-out: several daemons on two bridged brokers, one collector writing one recording.

Real mosquitto brokers (an edge broker bridged both ways to a core broker), real daemons
(``ratedial run --daemon-id``) reading real ptys, and ``ratedial record --mqtt`` on the core
broker. Every ``(dial, boot, index)`` any daemon recorded must be in the collected recording
exactly once, with the same gaps, although the collector is SIGKILLed twice: once for less
than its session expiry (the broker queues for it) and once for longer (the session is gone,
so what it missed must be asked for with replay requests and republished by the daemons).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from brokers import bridged_pair
from daemonrun import finish, gap_ranges, query, start_daemon
from ratedial.outputs import LOCAL_ONLY
from ratedial.wire import encode_frame
from scripted import ScriptedPort, hello, samples

UIDS = {"d1": "a1a1a1a1a1a1a1a1", "d2": "b2b2b2b2b2b2b2b2", "d3": "c3c3c3c3c3c3c3c3"}


def dial_stream(uid: str, n_frames: int, *, boot: int = 42, skip: range = range(0),
                reboot_at: int | None = None) -> Callable[[], Iterator[tuple[bytes, float]]]:
    """A 1 kHz dial in real time (frames of 10 samples every 10 ms) with its own uid.

    ``skip``: frames never sent (the daemon records a gap); ``reboot_at``: from this frame on
    the dial is in a new boot (boot + 1) and its indices restart at 0.
    """
    def chunks() -> Iterator[tuple[bytes, float]]:
        for i in range(n_frames):
            b, k = boot, i
            if reboot_at is not None and i >= reboot_at:
                b, k = boot + 1, i - reboot_at
            # one seq counter per boot, as in the firmware: a HELLO, then the frame after it
            h = dataclasses.replace(hello(boot=b, index=10 * k), uid=bytes.fromhex(uid),
                                    seq=2 * k % 65536)
            extra = encode_frame(h) if k % 50 == 0 else b""
            if i in skip:
                continue
            f = dataclasses.replace(samples(10 * k), seq=(2 * k + 1) % 65536)
            yield extra + encode_frame(f), i * 0.01
    return chunks


def start_collector(broker_url: str, record: Path, log: Path, *args: str
                    ) -> subprocess.Popen[str]:
    with open(log, "a") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "ratedial", "record", "--mqtt", broker_url, "--record",
             str(record), "--json", *args], stdout=subprocess.PIPE, stderr=err, text=True)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if predicate():
                return
        except sqlite3.Error:
            pass
        time.sleep(0.1)  # polling a condition, not standing in for one
    raise AssertionError(f"timed out waiting for {what}")


def triples(path: Path) -> list[tuple[str, int, int]]:
    return [tuple(r) for r in query(  # type: ignore[misc]
        path, "SELECT d.uid, e.boot_id, s.sample_index FROM samples s JOIN epochs e "
              "USING (epoch_id) JOIN dials d ON d.dial_id = s.dial_id")]


def as_ranges(items: set[tuple[str, int, int]]) -> dict[tuple[str, int], list[tuple[int, int]]]:
    out: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for u, b, i in sorted(items):
        rs = out.setdefault((u, b), [])
        if rs and rs[-1][1] == i:
            rs[-1] = (rs[-1][0], i + 1)
        else:
            rs.append((i, i + 1))
    return out


def connected(log: Path, n: int) -> bool:
    return log.exists() and log.read_text().count("ratedial: connected to") >= n


def test_two_bridged_brokers_three_daemons_one_collected_recording(tmp_path):
    with bridged_pair(tmp_path / "brokers") as (edge, core):
        col = tmp_path / "collected.ratedial"
        log = tmp_path / "collector.log"
        collectors = [start_collector(core.url, col, log)]
        c1 = collectors[0]
        wait_for(lambda: connected(log, 1), 15, "the collector to connect")
        # room1 (two dials, one with a gap, one rebooting) publishes to the edge broker,
        # room2 (one dial) to the core broker.
        frames = 1600  # 16 s of 1 kHz
        ports = {
            "d1": ScriptedPort(dial_stream(UIDS["d1"], frames, skip=range(300, 310))),
            "d2": ScriptedPort(dial_stream(UIDS["d2"], frames, boot=7, reboot_at=800)),
            "d3": ScriptedPort(dial_stream(UIDS["d3"], frames, boot=9)),
        }
        recs = {"room1": tmp_path / "room1.ratedial", "room2": tmp_path / "room2.ratedial"}
        daemons = {
            "room1": start_daemon("--daemon-id", "room1", "--port", ports["d1"].path,
                                  "--port", ports["d2"].path, "--broker", edge.url, "--record",
                                  str(recs["room1"]), "--duration", "26",
                                  "--rater", f"client={UIDS['d1']}",
                                  "--rater", f"therapist={UIDS['d2']}"),
            "room2": start_daemon("--daemon-id", "room2", "--port", ports["d3"].path,
                                  "--broker", core.url, "--record", str(recs["room2"]),
                                  "--duration", "26", "--rater", f"client={UIDS['d3']}"),
        }
        try:
            # 1. killed for less than its session expiry: the broker queues for it.
            # every dial's samples, not a total: a scripted dial answers no SYNC, so each
            # boot's first 2 s wait (timing.md) and room1's two dials alone can make 3000
            def every_dial_in() -> bool:
                got = [u for (u, _b, _i) in triples(col)]
                return all(got.count(u) >= 1000 for u in UIDS.values())
            wait_for(every_dial_in, 30, "samples of every dial in the collection")
            c1.send_signal(signal.SIGKILL)
            c1.wait()
            k1 = max(i for (u, _b, i) in triples(col) if u == UIDS["d3"])
            time.sleep(2.0)  # the outage itself
            # a long settle time: within this run nothing is asked for, so what the outage
            # missed can only come from the broker's queue for the persistent session
            c2 = start_collector(core.url, col, log, "--settle", "60", "--session-expiry", "2")
            collectors.append(c2)
            outage = set(range(k1 + 1000, k1 + 2000))
            wait_for(lambda: outage <= {i for (u, _b, i) in triples(col) if u == UIDS["d3"]},
                     20, "the outage to arrive from the broker's queue")

            # 2. killed for longer than its (now 2 s) session expiry: the session and its
            # queue are gone; what it missed must come from the daemons' recordings.
            c2.send_signal(signal.SIGKILL)
            c2.wait()
            k2 = max(i for (u, _b, i) in triples(col) if u == UIDS["d3"])
            time.sleep(4.0)  # the outage itself, longer than the session expiry
            c3 = start_collector(core.url, col, log, "--settle", "1")
            collectors.append(c3)
            wait_for(lambda: connected(log, 3), 15, "the collector to reconnect")

            outs = {name: finish(proc, 90) for name, proc in daemons.items()}
            expected = set()
            for path in recs.values():
                expected |= set(triples(path))
            try:
                wait_for(lambda: set(triples(col)) >= expected, 30,
                         "the collection to be complete")
            except AssertionError:
                raise AssertionError(f"missing {as_ranges(expected - set(triples(col)))}; "
                                     f"collector log: {log.read_text()[-2000:]}") from None
            c3.send_signal(signal.SIGTERM)
            out, _ = c3.communicate(timeout=30)
            assert c3.returncode == 0, log.read_text()[-3000:]
        finally:
            for p in ports.values():
                p.close()
            for proc in [*daemons.values(), *collectors]:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()

    got = triples(col)
    assert len(got) == len(set(got)), "a sample was recorded twice"
    assert set(got) == expected
    assert {(u, b) for (u, b, _i) in expected} == {
        (UIDS["d1"], 42), (UIDS["d2"], 7), (UIDS["d2"], 8), (UIDS["d3"], 9)}

    # the gaps the daemons recorded, with their reasons, and no others
    want_gaps = {**gap_ranges(recs["room1"]), **gap_ranges(recs["room2"])}
    assert gap_ranges(col) == want_gaps
    assert want_gaps[(UIDS["d1"], 42)] == [(3000, 3100, "link")]

    # the second outage was filled by replay requests, answered through the bridge
    summary = json.loads(out.strip().splitlines()[-1])
    (tmp_path / "collector-summary.json").write_text(json.dumps(summary, indent=1))
    assert summary["replay_requests"] >= 1
    assert summary["backfilled"] >= 3 * 3000  # about 4 s of three dials
    assert summary["replay_answers"] >= 1
    # A replay request may cross the gap's event (samples and events are separate topics:
    # under load the event can come a second after the samples around the gap): the daemon
    # then answers those indices absent, and the gap keeps the reason its event gives.
    # Nothing else may be absent (seen once in a CI preview under a CPU hog: 100, d1's gap).
    assert summary["absent"] <= sum(b - a for g in want_gaps.values() for a, b, _ in g)
    assert summary["conflicts"] == 0 and summary["holes"] == 0
    assert sorted(summary["daemons"]) == ["room1", "room2"]
    assert k2 > k1 + 2000

    # events: each once, as the daemon recorded it (less the file names and ports, which
    # never leave the daemon's recording), including those lost beyond the collector's
    # session (asked for by run and id)
    def events(path: Path, daemon: str | None = None) -> set[tuple[str, str, int, str, str]]:
        run = query(path, "SELECT value FROM meta WHERE key = 'run_id'")
        out = set()
        for eid, kind, data in query(path, "SELECT event_id, kind, data FROM events"):
            d = {k: v for k, v in json.loads(data).items() if k not in LOCAL_ONLY}
            src = d.pop("source", {"daemon": daemon, "run": json.loads(run[0][0]) if run
                                   else "", "event_id": eid})
            out.add((src["daemon"], src["run"], src["event_id"], kind,
                     json.dumps(d, sort_keys=True)))
        return out

    got_events = events(col)
    want_events = events(recs["room1"], "room1") | events(recs["room2"], "room2")
    assert len(got_events) == len(query(col, "SELECT event_id FROM events"))
    assert got_events == want_events, (want_events - got_events, got_events - want_events)
    assert {"run_start", "run_end", "dial_connected", "gap"} <= {k for *_, k, _x in got_events}
    assert summary["missing_events"] == 0

    # the analysis reads it like any recording
    from ratedial.analysis.read import read_recording

    r = read_recording(col)
    assert {d.uid for d in r.dials} == set(UIDS.values())
    assert [(g.first_index, g.end_index, g.reason) for g in r.gaps] == [(3000, 3100, "link")]
    assert {e.rate_hz for e in r.epochs} == {1000.0}

    con = sqlite3.connect(col)
    meta = {k: json.loads(v) for k, v in con.execute("SELECT key, value FROM meta")}
    assert meta["collected"]["source"] == "mqtt"
    assert sorted(meta["collected"]["daemons"]) == ["room1", "room2"]
    assert len(meta["resumed_wall_ns"]) == 2
    raters = dict(con.execute("SELECT uid, rater FROM dials"))
    assert raters == {UIDS["d1"]: "client", UIDS["d2"]: "therapist", UIDS["d3"]: "client"}
    assert stat.S_IMODE(os.stat(col).st_mode) == 0o600
    for name, (dout, _err) in outs.items():
        assert json.loads(dout.strip().splitlines()[-1]), name


@pytest.mark.soak
def test_core_broker_killed_and_restarted_is_caught_up(tmp_path):
    """The broker the collector uses dies (SIGKILL: its last second of queue is lost) and
    comes back on the same port: daemons, bridge and collector reconnect, and the collection
    still ends up holding every sample exactly once."""
    with bridged_pair(tmp_path / "brokers") as (edge, core):
        col = tmp_path / "collected.ratedial"
        log = tmp_path / "collector.log"
        collector = start_collector(core.url, col, log, "--settle", "1")
        wait_for(lambda: connected(log, 1), 15, "the collector to connect")
        ports = {"d1": ScriptedPort(dial_stream(UIDS["d1"], 1400)),
                 "d3": ScriptedPort(dial_stream(UIDS["d3"], 1400, boot=9))}
        recs = {"room1": tmp_path / "room1.ratedial", "room2": tmp_path / "room2.ratedial"}
        daemons = {
            "room1": start_daemon("--daemon-id", "room1", "--port", ports["d1"].path,
                                  "--broker", edge.url, "--record", str(recs["room1"]),
                                  "--duration", "22"),
            "room2": start_daemon("--daemon-id", "room2", "--port", ports["d3"].path,
                                  "--broker", core.url, "--record", str(recs["room2"]),
                                  "--duration", "22"),
        }
        try:
            wait_for(lambda: len(triples(col)) >= 2000, 30, "samples in the collection")
            core.kill()
            time.sleep(3.0)  # the outage itself
            core.start()
            for proc in daemons.values():
                finish(proc, 90)
            expected = set()
            for path in recs.values():
                expected |= set(triples(path))
            try:
                wait_for(lambda: set(triples(col)) >= expected, 40,
                         "the collection to be complete")
            except AssertionError:
                raise AssertionError(f"missing {as_ranges(expected - set(triples(col)))}; "
                                     f"collector log: {log.read_text()[-2000:]}") from None
            collector.send_signal(signal.SIGTERM)
            out, _ = collector.communicate(timeout=30)
            assert collector.returncode == 0, log.read_text()[-3000:]
        finally:
            for p in ports.values():
                p.close()
            for proc in [*daemons.values(), collector]:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    got = triples(col)
    assert len(got) == len(set(got)) and set(got) == expected
    assert gap_ranges(col) == {**gap_ranges(recs["room1"]), **gap_ranges(recs["room2"])}
    assert "broker unreachable, retrying" in log.read_text()
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["holes"] == 0 and summary["absent"] == 0 and summary["conflicts"] == 0
