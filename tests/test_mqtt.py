"""MQTT: every sample reaches a subscriber exactly once, through broker outages (real mosquitto)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import jsonschema

from brokers import mosquitto
from scripted import UID, ScriptedPort, stream
from subscriber import Subscriber

SCHEMAS = Path(__file__).resolve().parent.parent / "docs" / "schemas"


def start_daemon(port_path: str, broker_url: str, record: str, seconds: float):
    return subprocess.Popen(
        [sys.executable, "-m", "ratedial", "run", "--port", port_path, "--no-scan",
         "--broker", broker_url, "--record", record, "--duration", str(seconds), "--json",
         "--rater", f"client={UID.hex()}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def recorded(path) -> set[tuple[int, int]]:
    con = sqlite3.connect(path)
    rows = con.execute("SELECT e.boot_id, s.sample_index FROM samples s JOIN epochs e "
                       "USING (epoch_id)").fetchall()
    return set(rows)


def gated(chunks_fn: Callable[[], Iterator[tuple[bytes, float]]],
          go: threading.Event) -> Callable[[], Iterator[tuple[bytes, float]]]:
    """The scripted stream, started (its time 0) when ``go`` is set."""
    def chunks() -> Iterator[tuple[bytes, float]]:
        t0 = time.monotonic()
        assert go.wait(60)
        waited = time.monotonic() - t0
        for chunk, at in chunks_fn():
            yield chunk, at + waited
    return chunks


def test_every_sample_published_exactly_once(tmp_path):
    """No outage: every sample goes out live, none as backfill.

    The dial starts sending once the daemon is connected to the broker: what a daemon
    receives before its first connection goes out as backfill (by design, nothing is lost),
    and on a loaded machine the connection can come after the first frames (once replayed
    770 samples)."""
    with mosquitto(tmp_path / "broker") as broker:
        sub = Subscriber(broker.port)
        assert sub.started()
        # 10 s of 1 kHz for an 8 s run: what the dial sends before the daemon has opened its
        # port is gone (as with a real dial), and a loaded machine can take seconds to start
        # the daemon, so the run must not depend on catching the stream's start.
        go = threading.Event()
        port = ScriptedPort(gated(stream(1000), go))
        path = tmp_path / "r.ratedial"
        proc = start_daemon(port.path, broker.url, str(path), 8)
        online = sub.wait_for(lambda s: any(d.get("state") == "online"
                                            for d in s.daemon_status), 30)
        go.set()
        assert online
        _out, err = proc.communicate(timeout=60)
        port.close()
        assert proc.returncode == 0, err
        rec = recorded(path)
        assert len(rec) > 3000
        assert sub.wait_for(lambda s: {(b, i) for (_d, b, i) in s.seen} >= rec, 10)
        # the dial's last retained status says nobody records it any more
        assert sub.wait_for(lambda s: s.status.get(UID.hex(), {}).get("state") == "offline", 10)
        sub.stop()
    got = {(b, i) for (_d, b, i) in sub.seen}
    assert got == rec
    assert sub.duplicates == 0
    assert sub.replayed == 0
    assert all(d == UID.hex() for (d, _b, _i) in sub.seen)
    status = sub.status[UID.hex()]
    assert status["rater"] == "client" and status["dial"] == UID.hex()
    kinds = [e["kind"] for e in sub.events]
    assert "dial_connected" in kinds
    check_schemas(sub, ["samples", "events", "status", "daemon_status", "daemon_events"])


def check_schemas(sub: Subscriber, kinds: list[str]) -> None:
    schemas = {
        "samples": "samples", "backfill": "samples", "events": "event",
        "daemon_events": "event", "status": "dial_status", "daemon_status": "daemon_status"}
    for kind in kinds:
        payloads = sub.payloads[kind]
        assert payloads, f"nothing received on {kind}"
        schema = json.loads((SCHEMAS / f"{schemas[kind]}.schema.json").read_text())
        validator = jsonschema.Draft202012Validator(schema)
        for p in payloads:
            validator.validate(p)


def test_broker_outage_is_backfilled_from_the_recording(tmp_path):
    """The broker crashes (SIGKILL) for 4 s; the subscriber stays away until the daemon has
    republished everything, so the backfill reaches it only through its persistent session.

    mosquitto stores sessions in a snapshot (``autosave_interval``, 1800 s by default; never
    per message), so a crash forgets a session younger than the last snapshot, and the
    broker then acknowledges the daemon's backfill and drops it for want of a subscriber.
    With a 1 s autosave this test once lost the whole backfill (9,310 of 13,500 samples) when
    the crash came before the first snapshot and the daemon got back before the subscriber.
    Here the broker never autosaves, and the test saves the store itself before the crash,
    as a broker operator's snapshot would: without that save the subscriber gets nothing of
    the outage, while the daemon's ``mqtt_progress`` says complete (docs/mqtt.md).
    """
    with mosquitto(tmp_path / "broker", autosave_s=3600) as broker:
        sub = Subscriber(broker.port)
        assert sub.started()
        port = ScriptedPort(stream(1400))  # 14 s of 1 kHz
        path = tmp_path / "r.ratedial"
        proc = start_daemon(port.path, broker.url, str(path), 15)
        assert sub.wait_for(lambda s: len(s.seen) >= 1000, 20)
        broker.save()  # the subscriber's session (its subscriptions) is now in the store
        broker.kill()
        sub.pause()
        time.sleep(4)  # the outage itself (not synchronisation): the daemon keeps recording
        broker.start()
        out, err = proc.communicate(timeout=60)
        port.close()
        assert proc.returncode == 0, err
        sub.resume()
        rec = recorded(path)
        assert sub.wait_for(lambda s: {(b, i) for (_d, b, i) in s.seen} >= rec, 30), (
            len(rec), len(sub.seen))
        sub.stop()
    got = {(b, i) for (_d, b, i) in sub.seen}
    assert got == rec
    assert sub.replayed >= 3500  # about 4 s of samples came back from the recording
    check_schemas(sub, ["backfill"])
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["dials"][0]["received"] == len(rec)
    progress = json.loads(sqlite3.connect(path).execute(
        "SELECT value FROM meta WHERE key = 'mqtt_progress'").fetchone()[0])
    assert progress["complete"] is True
