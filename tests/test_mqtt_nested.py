"""A payload nested deeper than Python's JSON parser goes (``[[[...]]]``, ~6 KB) is a bad
payload like any other (docs/mqtt.md: ignored with a log line), on every subscriber of ours:
it was a RecursionError that cut the daemon off its broker (a false ``broker_down``, and a
retained one kept it off for the whole run) and ended ``monitor`` and ``record --mqtt`` with
a traceback. Real mosquitto, real ptys."""

from __future__ import annotations

import json
import subprocess
import sys

import paho.mqtt.client as paho
import pytest

from brokers import Mosquitto
from daemonrun import finish, query, recorded, start_daemon
from ratedial.mqtt.monitor import Monitor
from ratedial.mqtt.requests import parse_replay_request
from scripted import ScriptedPort, stream

DEEP = b"[" * 3000 + b"]" * 3000


def test_a_deep_payload_is_a_bad_payload_in_each_parser() -> None:
    assert parse_replay_request(b'{"v":1,"dial":"ab","boot":3,"ranges":' + DEEP + b"}") is None
    assert Monitor().feed("ratedial/v1/daemons/x/status", DEEP) is None
    # a range beyond SQLite's integers (an OverflowError out of the archive's read)
    assert parse_replay_request(b'{"v":1,"dial":"ab","boot":3,"ranges":[[9223372036854775807,'
                                b'9223372036854775808]]}') is None
    assert parse_replay_request(b'{"v":1,"run":"r","events":[[1,2]]}') is not None


def publish_retained(port: int, topic: str, payload: bytes) -> None:
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    c.connect("127.0.0.1", port)
    c.loop_start()
    c.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)
    c.loop_stop()
    c.disconnect()


@pytest.fixture
def broker(tmp_path):
    b = Mosquitto(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


def test_monitor_and_collector_skip_a_deep_retained_payload(broker, tmp_path) -> None:
    publish_retained(broker.port, "ratedial/v1/daemons/x/status", DEEP)
    mon = subprocess.run([sys.executable, "-m", "ratedial", "monitor", "--broker", broker.url,
                          "--duration", "1"], check=False, capture_output=True, text=True,
                         timeout=60)
    assert mon.returncode == 0 and "Traceback" not in mon.stderr, mon.stderr
    rec = subprocess.run([sys.executable, "-m", "ratedial", "record", "--mqtt", broker.url,
                          "--record", str(tmp_path / "c.ratedial"), "--duration", "1",
                          "--json"], check=False, capture_output=True, text=True,
                         timeout=60)
    assert rec.returncode == 0 and "Traceback" not in rec.stderr, rec.stderr
    assert json.loads(rec.stdout.strip().splitlines()[-1])["rejected"] == 1


def test_a_deep_retained_replay_request_does_not_cut_the_daemon_off(broker, tmp_path) -> None:
    publish_retained(broker.port, "ratedial/v1/daemons/room-9/replay", DEEP)
    path = tmp_path / "run.ratedial"
    port = ScriptedPort(stream(300, boot=7), wait_for_host=True)
    proc = start_daemon("--port", port.path, "--broker", broker.url, "--record", str(path),
                        "--duration", "3", "--daemon-id", "room-9")
    out, err = finish(proc)
    port.close()
    summary = json.loads(out.strip().splitlines()[-1])
    assert "recursion" not in err and "unreachable" not in err, err
    assert summary["broker"].startswith("connected"), summary["broker"]
    assert summary["unpublished"] == {"samples": 0, "events": 0}
    kinds = [k for (k,) in query(path, "SELECT kind FROM events")]
    assert "broker_down" not in kinds
    assert len(recorded(path)) >= 100


def test_monitor_shows_the_rating_of_a_dial_known_from_its_status_only() -> None:
    # docs/mqtt.md: the monitor shows every dial's rating; a dial whose daemon has stopped
    # (its retained status, no samples) showed "-" though its status carries the rating
    m = Monitor()
    m.feed("ratedial/v1/dials/ab12/status", json.dumps(
        {"v": 1, "dial": "ab12", "state": "offline", "rating": 63.0, "daemon": "d1"}).encode())
    assert m.dials["ab12"].rating == 63.0
