"""Store and forward across a killed daemon, and replay requests (real mosquitto, real ptys).

A daemon killed while the broker was away leaves samples the broker never confirmed; the
next run of the same daemon id republishes them from the killed run's recording, marks that
file finished, and a third run does not send them again. Subscribers that missed something
ask for index ranges on the daemon's replay topic and get them from the recordings.
"""

from __future__ import annotations

import json
import os
import signal

import paho.mqtt.publish as paho_publish

from brokers import mosquitto
from daemonrun import (
    finish,
    mqtt_progress,
    query,
    recorded,
    start_daemon,
    wait_until,
)
from scripted import UID, ScriptedPort, stream
from subscriber import Subscriber

N_SAMPLES = "SELECT count(*) FROM samples"
DIAL = UID.hex()


def test_killed_daemon_is_finished_by_the_next_run(tmp_path):
    rec1, rec2, rec3 = (tmp_path / f"run{k}.ratedial" for k in (1, 2, 3))
    with mosquitto(tmp_path / "broker") as broker:
        sub = Subscriber(broker.port)
        assert sub.started()
        port1 = ScriptedPort(stream(3000, boot=42))
        proc = start_daemon("--port", port1.path, "--broker", broker.url, "--record", str(rec1))
        try:
            wait_until(rec1, N_SAMPLES, lambda n: n >= 1500)
            assert sub.wait_for(lambda s: len(s.seen) >= 1000, 20)
            # The subscriber's session must survive the crash whoever reconnects first (a
            # crash forgets a session younger than the broker's last snapshot: brokers.py).
            broker.save()
            broker.kill()  # from here on the killed daemon's samples reach only its file
            n = query(rec1, N_SAMPLES)[0][0]
            wait_until(rec1, N_SAMPLES, lambda m: m >= n + 1500)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            port1.close()
        first = recorded(rec1)
        assert not first <= set(sub.seen)  # the broker really missed part of it
        broker.start()

        port2 = ScriptedPort(stream(300, boot=43))
        proc = start_daemon("--port", port2.path, "--broker", broker.url, "--record", str(rec2),
                            "--duration", "4")
        _out, err = finish(proc)
        port2.close()
        assert "republishing what 1 earlier recording(s)" in err  # --json: messages on stderr
        both = first | recorded(rec2)
        assert sub.wait_for(lambda s: set(s.seen) >= both, 30), len(both - set(sub.seen))
        assert mqtt_progress(rec1) == {"complete": True}
        assert mqtt_progress(rec2)["complete"] is True
        sent_before = {k: sub.seen[k] for k in first}

        port3 = ScriptedPort(stream(200, boot=44))
        proc = start_daemon("--port", port3.path, "--broker", broker.url, "--record", str(rec3),
                            "--duration", "3")
        _out, err = finish(proc)
        port3.close()
        assert "republishing" not in err
        assert sub.wait_for(lambda s: set(s.seen) >= recorded(rec3), 30)
        sub.stop()
    assert {k: sub.seen[k] for k in first} == sent_before  # nothing of run 1 sent again
    assert sub.replayed >= 1500
    # events of a killed run are republished too, under that run's id
    runs = {e.get("run") for e in sub.events}
    assert len(runs) == 3 and None not in runs


def test_replay_requests_are_answered_from_the_recording(tmp_path):
    rec = tmp_path / "r.ratedial"
    with mosquitto(tmp_path / "broker") as broker:
        sub = Subscriber(broker.port)
        assert sub.started()
        port = ScriptedPort(stream(800, boot=42))
        proc = start_daemon("--port", port.path, "--broker", broker.url, "--record", str(rec),
                            "--duration", "6", "--daemon-id", "room-1")
        wait_until(rec, N_SAMPLES, lambda n: n >= 2000)
        topic = "ratedial/v1/daemons/room-1/replay"
        for junk in (b"\xff\x00", b"{}", b'{"v":1,"dial":"x","boot":1,"ranges":[[5,2]]}'):
            paho_publish.single(topic, junk, qos=1, hostname="127.0.0.1", port=broker.port)
        lo = query(rec, "SELECT min(sample_index) FROM samples")[0][0] + 100
        # overlapping ranges are served once (an audit, 2026-12-05: 100 copies of one range
        # were served 100 times, 653,440 samples for a 20,000-sample recording)
        asked = [[lo, lo + 100], [lo + 50, lo + 100], [lo, lo + 60], [10**7, 10**7 + 5]]
        request = {"v": 1, "dial": DIAL, "boot": 42, "ranges": asked}
        paho_publish.single(topic, json.dumps(request), qos=1, hostname="127.0.0.1",
                            port=broker.port)
        assert sub.wait_for(lambda s: s.payloads["daemon_replayed"], 20)
        run = json.loads(query(rec, "SELECT value FROM meta WHERE key = 'run_id'")[0][0])
        ask = {"v": 1, "run": run, "events": [[1, 3], [1, 3], [10**6, 10**6 + 1]]}
        paho_publish.single(topic, json.dumps(ask), qos=1, hostname="127.0.0.1",
                            port=broker.port)
        assert sub.wait_for(lambda s: len(s.payloads["daemon_replayed"]) == 2, 20)
        finish(proc)
        port.close()
        sub.stop()
    reply, events_reply = sub.payloads["daemon_replayed"]
    assert events_reply == {"v": 1, "run": run, "events": [[1, 3], [1, 3], [10**6, 10**6 + 1]],
                            "absent": [[10**6, 10**6 + 1]]}
    again = sorted(e["id"] for e in sub.events if e["replay"])
    assert again == [1, 2]
    assert any(p.get("run") == run and p.get("next_event", 0) > 2 for p in sub.daemon_status)
    assert reply == {"v": 1, "dial": DIAL, "boot": 42,
                     "ranges": asked,
                     "absent": [[10**7, 10**7 + 5]]}
    assert all(sub.seen[(DIAL, 42, i)] == 2 for i in range(lo, lo + 100))  # live, then replayed
    assert sub.replayed == 100
    assert all(p["daemon"] == "room-1" for p in sub.payloads["samples"])
    status = sub.status[DIAL]
    assert status["boot"] == 42 and status["next_index"] > 2000


def test_looking_at_finished_recordings_leaves_no_wal_beside_them(tmp_path):
    """Found by a black-box test: each run looked for unfinished recordings of its daemon
    in its folder with read-only connections, which left a -wal and -shm beside every
    finished recording (which recording.md teaches to read as a crash's)."""
    folder = tmp_path / "recs"
    with mosquitto(tmp_path / "broker") as broker:
        for k in (1, 2):
            port = ScriptedPort(stream(300, boot=50 + k))
            try:
                finish(start_daemon("--port", port.path, "--broker", broker.url,
                                    "--record", str(folder / f"run{k}.ratedial"),
                                    "--duration", "2"))
            finally:
                port.close()
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["run1.ratedial", "run2.ratedial"], names


def test_a_run_ending_with_the_broker_down_says_what_it_has_not_published(tmp_path):
    """Found by a black-box test: a daemon stopped while its broker was down said only
    "broker: down"; a collector then reported 0 holes although seconds of samples had never
    reached the broker. The summary now counts them and says how they get there."""
    import json as _json

    with mosquitto(tmp_path / "broker") as broker:
        port = ScriptedPort(stream(20000, boot=61))
        try:
            proc = start_daemon("--port", port.path, "--broker", broker.url, "--record",
                                str(tmp_path / "a.ratedial"), "--daemon-id", "room9",
                                "--duration", "120")
            wait_until(tmp_path / "a.ratedial", N_SAMPLES, lambda n: n >= 1000)
            broker.kill()
            n = query(tmp_path / "a.ratedial", N_SAMPLES)[0][0]
            wait_until(tmp_path / "a.ratedial", N_SAMPLES, lambda m: m >= n + 1000)
            proc.send_signal(signal.SIGINT)
            out, _ = finish(proc)
        finally:
            port.close()
        down = _json.loads(out.strip().splitlines()[-1])
        assert down["broker"].startswith("down")
        assert down["unpublished"]["samples"] >= 1000 and down["unpublished"]["events"] >= 1
        broker.start()
        port = ScriptedPort(stream(300, boot=62))
        try:
            proc = start_daemon("--port", port.path, "--broker", broker.url, "--record",
                                str(tmp_path / "b.ratedial"), "--daemon-id", "room9",
                                "--duration", "120")
            wait_until(tmp_path / "a.ratedial",  # the next run has published it all
                       "SELECT value FROM meta WHERE key = 'mqtt_progress'",
                       lambda v: _json.loads(v).get("complete") is True)
            wait_until(tmp_path / "b.ratedial", N_SAMPLES, lambda m: m >= 100)
            proc.send_signal(signal.SIGINT)
            out, _ = finish(proc)
        finally:
            port.close()
    assert _json.loads(out.strip().splitlines()[-1])["unpublished"] == {"samples": 0,
                                                                        "events": 0}
    assert mqtt_progress(tmp_path / "a.ratedial")["complete"] is True


def test_a_second_run_of_a_running_daemon_id_is_refused_before_it_touches_the_broker(
        tmp_path):
    """An audit (2026-12-05): a second ``ratedial run`` with the id of a running daemon (its
    --port busy, so it failed at start, exit 1) had already connected as the same MQTT
    client: the broker closed the running daemon's connection, which recorded an outage and
    was announced 'lost' by its last will. It is now refused first, in one line, when the
    daemon's status on the broker is live; the running one is untouched."""
    rec1, rec2 = tmp_path / "run1.ratedial", tmp_path / "run2.ratedial"
    with mosquitto(tmp_path / "broker") as broker:
        sub = Subscriber(broker.port)
        assert sub.started()
        port = ScriptedPort(stream(100_000, boot=44))
        proc = start_daemon("--port", port.path, "--broker", broker.url, "--record", str(rec1),
                            "--daemon-id", "twice")
        try:
            # the first daemon is live on the broker: its status goes on arriving
            assert sub.wait_for(lambda s: sum(st.get("state") == "online"
                                              for st in s.daemon_status) >= 2, 60)
            wait_until(rec1, N_SAMPLES, lambda n: n >= 500)
            second = start_daemon("--port", port.path, "--broker", broker.url, "--record",
                                  str(rec2), "--daemon-id", "twice", "--duration", "5")
            _out, err = second.communicate(timeout=60)
            n = query(rec1, N_SAMPLES)[0][0]
            wait_until(rec1, N_SAMPLES, lambda m: m >= n + 500)  # the first one goes on
        finally:
            proc.send_signal(signal.SIGTERM)
            out1, _ = finish(proc)
            port.close()
            sub.stop()
    summary = json.loads(out1.strip().splitlines()[-1])
    assert second.returncode == 1, err
    assert err.strip().splitlines() == [
        f"ratedial: error: daemon twice is running already: its status on broker "
        f"127.0.0.1:{broker.port} is live; a second run with its id would take over its "
        "broker connection (give this run another --daemon-id, or stop the other run)"]
    assert not rec2.exists()
    kinds = [k for (k,) in query(rec1, "SELECT kind FROM events")]
    assert "broker_down" not in kinds, kinds
    assert summary["broker"].startswith("connected"), summary


def test_with_no_broker_each_summary_counts_its_own_run_apart_from_earlier_ones(tmp_path):
    """Found by a black-box test: with no broker (README's default localhost:1883 in a lab
    without one), each run's "not confirmed ... N samples; they are in the recording" added
    the earlier recordings' backlog it carries (by design: it republishes it once a broker
    is there), so N grew with every session and was not what the file held; and each new
    file's mqtt_progress listed the earlier files' epochs. Now the summary counts this run's
    apart (``unpublished``) from the earlier recordings' (``unpublished_earlier``), the new
    file's mqtt_progress holds only its own, and "unreachable" says how to run without one.
    The dial's boot goes on across the runs (a dial stays powered between sessions)."""
    from brokers import free_port

    nowhere = f"mqtt://127.0.0.1:{free_port()}"  # nothing listens there
    folder = tmp_path / "recs"
    summaries, errs = [], []
    for k in (1, 2):
        port = ScriptedPort(stream(20000, boot=70, first_frame=(k - 1) * 1000))
        try:
            out, err = finish(start_daemon(
                "--port", port.path, "--broker", nowhere, "--daemon-id", "room7",
                "--record", str(folder / f"run{k}.ratedial"), "--duration", "2"))
        finally:
            port.close()
        summaries.append(json.loads(out.strip().splitlines()[-1]))
        errs.append(err)
    n1, n2 = (query(folder / f"run{k}.ratedial", N_SAMPLES)[0][0] for k in (1, 2))
    first, second = summaries
    assert first["unpublished"]["samples"] == n1 > 0
    assert first["unpublished_earlier"] == {"samples": 0, "events": 0, "recordings": 0}
    assert second["unpublished"]["samples"] == n2 > 0  # this run's only
    assert second["unpublished_earlier"]["samples"] == n1
    assert second["unpublished_earlier"]["recordings"] == 1
    assert second["unpublished_earlier"]["events"] >= 1  # run1's run_start, run_end ...
    lo2 = query(folder / "run2.ratedial", "SELECT min(sample_index) FROM samples")[0][0]
    (epoch,) = mqtt_progress(folder / "run2.ratedial")["epochs"]  # type: ignore[misc]
    assert epoch["boot"] == 70 and min(a for a, _ in epoch["pending"]) >= lo2, epoch
    assert all("--broker none" in e and "--broker embedded" in e for e in errs), errs
