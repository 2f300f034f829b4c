"""Is a daemon id live on the broker? (:mod:`ratedial.mqtt.liveness`, real mosquitto)."""

from __future__ import annotations

import asyncio
import json

import paho.mqtt.publish as paho_publish

from brokers import free_port, mosquitto
from ratedial._platform.loops import selector_loop
from ratedial.config import MqttConfig
from ratedial.mqtt.liveness import daemon_online
from ratedial.mqtt.requests import parse_broker

TOPIC = "ratedial/v1/daemons/roomL/status"


def online(url: str) -> bool:
    cfg = MqttConfig(broker=url)
    with asyncio.Runner(loop_factory=selector_loop) as runner:
        return runner.run(daemon_online(cfg, parse_broker(url), TOPIC))


def retain(port: int, state: str) -> None:
    paho_publish.single(TOPIC, json.dumps({"v": 1, "daemon": "roomL", "state": state}),
                        qos=1, retain=True, hostname="127.0.0.1", port=port)


def test_no_broker_no_status_a_last_will_and_a_stale_online_are_not_a_live_daemon(tmp_path):
    assert online(f"mqtt://127.0.0.1:{free_port()}") is False  # nothing listens there
    with mosquitto(tmp_path / "b") as broker:
        assert online(broker.url) is False  # no status at all
        retain(broker.port, "lost")  # the last will of a daemon that died
        assert online(broker.url) is False
        retain(broker.port, "online")  # a crashed daemon's, before its will: nobody refreshes
        assert online(broker.url) is False


def test_a_status_published_while_listening_is_a_live_daemon(tmp_path):
    with mosquitto(tmp_path / "b") as broker:
        retain(broker.port, "online")

        async def main() -> bool:
            cfg = MqttConfig(broker=broker.url)
            check = asyncio.create_task(daemon_online(cfg, parse_broker(broker.url), TOPIC))
            while not check.done():  # a live daemon refreshes its status every second
                await asyncio.to_thread(retain, broker.port, "online")
                await asyncio.sleep(0.2)
            return check.result()

        with asyncio.Runner(loop_factory=selector_loop) as runner:
            assert runner.run(main()) is True
