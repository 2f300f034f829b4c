"""Live batches form only under load (real mosquitto, real recorder, the real publisher).

An idle publisher sends a dial's frame at once, whatever ``batch_ms`` says; frames that
arrive while a publish is in flight (or in one turn of the event loop) are coalesced into
one message per dial. No timing is asserted: ``batch_ms`` is set far beyond every wait here,
so a sample that arrives at all was not held for it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from brokers import mosquitto
from ratedial.config import MqttConfig, load_config
from ratedial.mqtt.publisher import MqttPublisher
from ratedial.mqtt.topics import Topics
from ratedial.outputs import SamplesOut
from ratedial.recording.writer import Recorder
from subscriber import Subscriber

DIAL = "c0ffee0000000001"
HOUR_MS = 3_600_000


def frame(first: int, n: int) -> SamplesOut:
    idx = range(first, first + n)
    return SamplesOut(DIAL, 7, first, 1000, tuple(1000 * i for i in idx),
                      tuple(10**9 + 10**6 * i for i in idx), tuple(idx),
                      tuple(float(i) for i in idx), (0,) * n)


async def _run(path: Path, cfg: MqttConfig, sub: Subscriber) -> MqttPublisher:
    rec = Recorder(path, meta={"daemon_id": "cork", "run_id": "r1"})
    pub = MqttPublisher(cfg,
                        topics=Topics("ratedial", "cork"), recorder=rec, run_id="r1",
                        rater_of=lambda _u: None, status_of=dict, wall_offset_ns=0,
                        software_version="test")
    task = asyncio.create_task(pub.run())
    loop = asyncio.get_running_loop()

    async def until(pred: object, timeout: float = 30.0) -> bool:
        return await loop.run_in_executor(None, sub.wait_for, pred, timeout)

    try:
        # The publisher announces itself online right after it connected.
        assert await until(lambda s: any(d.get("state") == "online" for d in s.daemon_status))
        assert pub.connected

        async def serving() -> None:
            while not pub._serving:  # polling a condition: the serving loop has begun
                await asyncio.sleep(0.01)

        await asyncio.wait_for(serving(), 30)
        # Idle: one frame goes out on its own, long before batch_ms, from handle() itself
        # (no turn of the event loop in between).
        pub.handle([frame(0, 10)])
        assert pub.live_messages == 1
        assert await until(lambda s: len(s.seen) >= 10)
        assert pub.live_messages == 1
        # Twenty frames handed over in one turn of the loop: coalesced, one message.
        pub.handle([frame(10 + 10 * k, 10) for k in range(20)])
        assert await until(lambda s: len(s.seen) >= 210)
        assert pub.live_messages == 2
        # Idle again: the next frame goes out alone.
        pub.handle([frame(210, 1)])
        assert await until(lambda s: len(s.seen) >= 211)
        assert pub.live_messages == 3
        await pub.stop()
        await asyncio.wait_for(task, 60)
        rec.close()
        return pub
    finally:
        if not task.done():
            task.cancel()


@pytest.mark.parametrize(("live_qos", "from_file"), [(1, False), (0, False), (1, True)])
def test_frames_go_out_at_once_when_idle_and_coalesce_under_load(tmp_path, live_qos,
                                                                  from_file):
    """At QoS 1 a live message is in flight until its PUBACK, at QoS 0 until it is written.
    ``from_file``: the settings come from a config file that sets ``live_expiry_s`` (an audit
    found every value of it stopped all live samples: read as a float, paho could not pack
    it, and the batches counted as sent)."""
    with mosquitto(tmp_path / "broker") as broker:
        cfg = MqttConfig(broker=broker.url, batch_ms=HOUR_MS, live_qos=live_qos)
        if from_file:
            conf = tmp_path / "c.toml"
            conf.write_text(f'[mqtt]\nbroker = "{broker.url}"\nbatch_ms = {HOUR_MS}\n'
                            f"live_qos = {live_qos}\nlive_expiry_s = 30\n")
            cfg = load_config(conf).mqtt
            assert cfg.live_expiry_s == 30
        sub = Subscriber(broker.port)
        try:
            assert sub.started()
            pub = asyncio.run(_run(tmp_path / "cork.ratedial", cfg, sub))
        finally:
            sub.stop()
    got = sub.indices(DIAL)
    assert got == {7: set(range(211))}
    assert sub.duplicates == 0
    sizes = [p["n"] for p in sub.payloads["samples"]]
    assert sizes == [10, 200, 1]
    assert pub.published_samples == 211
    assert not pub.outbox.backlog
    assert not pub.outbox.unconfirmed  # the last checkpoint's PUBACK covered every batch


def test_the_last_will_names_no_event_id_it_cannot_know(tmp_path):
    """The retained will is set at connect and published at a crash: a ``next_event`` in it
    was the connect's, so a subscriber arriving after the crash would not ask for the
    events of the run (an audit, 2026-12-04: ``next_event`` 2 where 3 were published)."""
    import json

    rec = Recorder(tmp_path / "w.ratedial", meta={"daemon_id": "cork", "run_id": "r1"})
    try:
        pub = MqttPublisher(MqttConfig(broker="mqtt://127.0.0.1:1"),
                            topics=Topics("ratedial", "cork"), recorder=rec, run_id="r1",
                            rater_of=lambda _u: None, status_of=dict, wall_offset_ns=0,
                            software_version="test")
        async def made() -> object:  # aiomqtt makes its client inside a running loop
            return pub._make_client()._client

        paho_client = asyncio.run(made())
        assert paho_client._will_topic == b"ratedial/v1/daemons/cork/status"
        will = json.loads(paho_client._will_payload)
        assert will["state"] == "lost" and will["run"] == "r1" and "next_event" not in will
        assert paho_client._will_retain
    finally:
        rec.close()
