"""A broker that refuses what the daemon publishes (MQTT 5 reason codes; real mosquitto whose
access rules deny a topic, real ptys).

mosquitto answers a QoS 1 PUBLISH on a topic its ACL denies with PUBACK 0x87 "Not
authorized" (to an MQTT 5 client). That is not a delivery: the daemon says so in one line
and in its summary, keeps the refused samples unconfirmed in the recording, and the next run
of the same daemon id, once the broker takes them, publishes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import paho.mqtt.client as paho
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from brokers import Mosquitto
from daemonrun import finish, mqtt_progress, recorded, start_daemon
from ratedial.mqtt.acks import SubscriptionRefused, refusal_of, refused_subscription, subscribe
from ratedial.mqtt.topics import samples_payload
from scripted import UID, ScriptedPort, stream
from subscriber import Subscriber

DIAL = UID.hex()


def test_refused_samples_are_told_kept_unconfirmed_and_published_by_the_next_run(tmp_path):
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite #\ntopic deny ratedial/v1/dials/+/samples\n")
    rec1, rec2 = tmp_path / "run1.ratedial", tmp_path / "run2.ratedial"
    # (not max_queued_messages 0, as brokers.py sets: with it mosquitto 2.0.11 drops the
    # connection of a client whose publish it denied, test_a_broker_that_drops_..._below)
    broker = Mosquitto(tmp_path / "broker", extra=f"acl_file {acl}\nmax_queued_messages 1000")
    broker.start()
    try:
        sub = Subscriber(broker.port)
        assert sub.started()

        port1 = ScriptedPort(stream(300, boot=42), wait_for_host=True)
        proc = start_daemon("--port", port1.path, "--broker", broker.url, "--record", str(rec1),
                            "--duration", "4", "--daemon-id", "room-1")
        out, err = finish(proc)
        port1.close()
        first = recorded(rec1)
        # (how many arrive within --duration depends on the machine's load; a frame a
        # message at rest, so ten frames are several refused messages)
        assert len(first) >= 100
        told = [ln for ln in err.splitlines() if "Not authorized" in ln]
        assert len(told) == 1, err  # one line, not one per message
        assert "dials/" + DIAL + "/samples" in told[0]
        n = len(first)
        assert f"stopping with {n} samples the broker has not confirmed ({n} of them " \
               "refused)" in err, err
        summary = json.loads(out.strip().splitlines()[-1])
        # each reason and topic with its count (it named only the last one refused)
        assert f"{summary['mqtt_refused']} refused (Not authorized on samples: " \
            f"{summary['mqtt_refused']})" in summary["broker"], summary["broker"]
        # refused messages, counted: several (a frame a message at rest, coalesced under
        # load), each told in the one line above
        assert 2 <= summary["mqtt_refused"] <= len(first) // 10
        assert not sub.seen  # nothing reached the subscriber, and the daemon knows it
        assert sub.events  # what the broker took (events) still went out
        p = mqtt_progress(rec1)
        assert p["complete"] is False
        (epoch,) = p["epochs"]  # type: ignore[misc]
        pending = {(DIAL, 42, i) for a, b in epoch["pending"] for i in range(a, b)}
        assert pending == first  # every recorded sample still owed to the broker

        # The access rules are fixed: the next run of this daemon id publishes them.
        acl.write_text("topic readwrite #\n")
        broker.stop()
        broker.start()
        port2 = ScriptedPort(stream(200, boot=43), wait_for_host=True)
        proc = start_daemon("--port", port2.path, "--broker", broker.url, "--record", str(rec2),
                            "--duration", "4", "--daemon-id", "room-1")
        out, err = finish(proc)
        port2.close()
        assert "refused" not in err and "not confirmed" not in err
        assert json.loads(out.strip().splitlines()[-1])["mqtt_refused"] == 0
        assert sub.wait_for(lambda s: set(s.seen) >= first | recorded(rec2), 30), \
            len(first - set(sub.seen))
        assert mqtt_progress(rec1) == {"complete": True}
        sub.stop()
    finally:
        broker.stop()


def test_a_broker_that_drops_the_connection_as_it_refuses_prints_no_traceback(tmp_path):
    """mosquitto 2.0.11 with ``max_queued_messages 0`` (brokers.py's setting) closes the
    connection of a client whose QoS 1 publish its ACL denied, while the daemon is queueing
    the next packets. Until the fix, paho then asked aiomqtt to watch the closed socket and
    asyncio printed a traceback ("Exception in callback ... add_writer(-1, ...)") for every
    connection so lost. The daemon reconnects, tells the loss in one-line messages and
    records every sample."""
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite #\ntopic deny ratedial/v1/dials/+/samples\n")
    rec = tmp_path / "run.ratedial"
    broker = Mosquitto(tmp_path / "broker", extra=f"acl_file {acl}")
    broker.start()
    try:
        port = ScriptedPort(stream(300, boot=42), wait_for_host=True)
        proc = start_daemon("--port", port.path, "--broker", broker.url, "--record", str(rec),
                            "--duration", "4")
        out, err = finish(proc)  # exit 0, no "Traceback"
        port.close()
    finally:
        broker.stop()
    assert "Exception in callback" not in err, err
    assert "Bad socket read/write" in broker.log.read_text()  # the broker did drop it
    summary = json.loads(out.strip().splitlines()[-1])
    (dial,) = summary["dials"]
    assert dial["missing"] == 0 and dial["received"] == len(recorded(rec)) >= 100


def test_reason_codes_that_refuse_and_those_that_do_not():
    puback = PacketTypes.PUBACK
    assert refusal_of(ReasonCode(puback, identifier=0x87)) == (0x87, "Not authorized")
    assert refusal_of(ReasonCode(puback, identifier=0x97)) == (0x97, "Quota exceeded")
    assert refusal_of(ReasonCode(puback, identifier=0x10)) is None  # no matching subscribers
    assert refusal_of(ReasonCode(puback, identifier=0)) is None
    assert refusal_of(None) is None  # MQTT 3.1.1: a PUBACK has no reason code
    suback = PacketTypes.SUBACK
    assert refused_subscription([ReasonCode(suback, identifier=1)]) is None
    assert refused_subscription([ReasonCode(suback, identifier=1), ReasonCode(
        suback, identifier=0x87)]) == "Not authorized (reason code 0x87)"
    assert refused_subscription((1,)) is None  # MQTT 3.1.1: the granted QoS
    assert refused_subscription((0x80,)) == "Failure (reason code 0x80)"


def test_a_refused_replay_request_is_told_once(tmp_path):
    """The collector (``ratedial record --mqtt``) asks the daemon for a hole on a topic the
    broker's access rules deny: said in one line, not taken as asked, not a traceback. The
    test waits until the broker has denied the request twice (asked again after its
    back-off), as its log shows, then stops the collector: no --duration, which a loaded
    machine outran before the first request (a CI preview)."""
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite #\ntopic deny ratedial/v1/daemons/+/replay\n")
    broker = Mosquitto(tmp_path / "broker",
                       extra=f"acl_file {acl}\nmax_queued_messages 1000\nlog_type all")
    broker.start()

    def denied() -> int:
        return sum(1 for ln in broker.log.read_text(errors="replace").splitlines()
                   if "Denied PUBLISH" in ln and "daemons/room1/replay" in ln)

    proc: subprocess.Popen[str] | None = None
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ratedial", "record", "--mqtt", broker.url, "--record",
             str(tmp_path / "c.ratedial"), "--settle", "0.5", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        said = [proc.stderr.readline()]  # "ratedial: connected to ...": once subscribed
        assert "connected to" in said[0], said
        with paho_client(broker.port) as pub:
            for first, n in ((0, 100), (150, 50)):  # 100..150 missing
                topic, payload = _samples(first, n)
                pub.publish(topic, payload, qos=1).wait_for_publish(5)
        end = time.monotonic() + 90
        while denied() < 2:
            assert time.monotonic() < end and proc.poll() is None, broker.log.read_text()[-3000:]
            time.sleep(0.1)  # polling the broker's log, not standing in for it
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        broker.stop()
    said += err.splitlines()
    assert proc.returncode == 0, said
    told = [ln for ln in said if "refused" in ln]
    assert len(told) == 1, said  # asked again with back-off, said once
    assert "ratedial/v1/daemons/room1/replay" in told[0] and "Not authorized" in told[0]
    assert "Traceback" not in err
    assert json.loads(out)["holes"] >= 1  # still missing, and the summary says so


def _samples(first: int, n: int) -> tuple[str, bytes]:
    idx = range(first, first + n)
    return f"ratedial/v1/dials/{DIAL}/samples", samples_payload(
        uid=DIAL, rater="client", daemon="room1", boot_id=7, first_index=first,
        period_us=1000, device_us=[1000 * i for i in idx], host_ns=[10**6 * i for i in idx],
        wall_ns=[10**18 + 10**6 * i for i in idx], count=list(idx), rating=[50.0] * n,
        flags=[0] * n, media_s=[None] * n, media_state=[5] * n)


@contextlib.contextmanager
def paho_client(port: int) -> Iterator[paho.Client]:
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        yield c
    finally:
        c.loop_stop()
        c.disconnect()


def test_a_refused_subscription_is_one_line_naming_topic_and_reason():
    """What `record --mqtt` and `monitor` stop with (and `run` tells) when a broker refuses a
    subscription; mosquitto never does (it grants and filters), so a client that answers as
    EMQX or HiveMQ do for a denied topic."""
    class Refusing:
        async def subscribe(self, topic: str, qos: int) -> list[ReasonCode]:
            return [ReasonCode(PacketTypes.SUBACK, identifier=0x87)]

    with pytest.raises(SubscriptionRefused) as err:
        asyncio.run(subscribe(Refusing(), "ratedial/v1/dials/+/samples"))  # type: ignore[arg-type]
    assert str(err.value) == ("the broker refused the subscription to ratedial/v1/dials/+/"
                              "samples: Not authorized (reason code 0x87); check its access "
                              "rules for this client")


def test_the_summary_names_every_refused_topic_with_its_count() -> None:
    """A read-only user: samples, status and events refused; the summary named only the
    last one ("503 refused (Not authorized on status)"), hiding the 4990 samples."""
    from types import SimpleNamespace

    from ratedial.mqtt.backfill import FromRecordings

    pub = SimpleNamespace(refusals={"Not authorized on status": 503,
                                    "Not authorized on samples": 4490,
                                    "Not authorized on events": 7})
    assert FromRecordings.refusal_summary(pub) == (  # type: ignore[arg-type]
        "Not authorized on samples: 4490; Not authorized on status: 503; "
        "Not authorized on events: 7")
