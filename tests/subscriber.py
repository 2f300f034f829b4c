"""A test subscriber: a real MQTT client with a persistent session that counts every sample.

It subscribes at QoS 1 to live samples, backfill and events, and keeps exact bookkeeping:
which ``(dial, boot, index)`` arrived, how often, and on which path.
"""

from __future__ import annotations

import json
import threading
from collections import Counter, defaultdict
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


class Subscriber:
    def __init__(self, port: int, *, prefix: str = "ratedial", client_id: str = "test-sub") -> None:
        self.port = port
        self.prefix = prefix
        self.seen: Counter[tuple[str, int, int]] = Counter()
        self.live = 0
        self.replayed = 0
        self.events: list[dict[str, Any]] = []
        self.status: dict[str, dict[str, Any]] = {}
        self.daemon_status: list[dict[str, Any]] = []
        self.payloads: dict[str, list[dict[str, Any]]] = defaultdict(list)  # by topic leaf
        self.cond = threading.Condition()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=paho.MQTTv5)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.connects = 0  # connections whose subscriptions the broker has acknowledged

    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        client.subscribe([*((f"{self.prefix}/v1/dials/+/{leaf}", 1) for leaf in
                            ("samples", "backfill", "events", "status")),
                          (f"{self.prefix}/v1/daemons/+/#", 1)])

    def _on_subscribe(self, _c: Any, _u: Any, _mid: Any, _codes: Any, _p: Any) -> None:
        # Counted (and waiters woken) only once the SUBACK is in: from then on the broker
        # routes every message to us. (Counting in on_connect, without a notify, left a
        # waiter asleep until its time-out when the connection came after its first check:
        # a fault-session test failed so on a loaded machine.)
        with self.cond:
            self.connects += 1
            self.cond.notify_all()

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        leaf = msg.topic.rsplit("/", 1)[-1]
        if leaf == "replay":  # requests to a daemon, not something a daemon publishes
            return
        payload = json.loads(msg.payload)
        kind = "daemon_" + leaf if "/daemons/" in msg.topic else leaf
        with self.cond:
            if len(self.payloads[kind]) < 5000:
                self.payloads[kind].append(payload)
            if leaf in ("samples", "backfill"):
                for k in range(payload["n"]):
                    self.seen[(payload["dial"], payload["boot"], payload["first"] + k)] += 1
                if leaf == "samples":
                    self.live += payload["n"]
                else:
                    self.replayed += payload["n"]
            elif leaf == "events":
                self.events.append(payload)
            elif leaf == "status" and "/dials/" in msg.topic:
                self.status[payload["dial"]] = payload
            else:
                self.daemon_status.append(payload)
            self.cond.notify_all()

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600  # keep our subscriptions and queue across outages
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect("127.0.0.1", self.port, keepalive=5, clean_start=False,
                            properties=props)
        self.client.loop_start()

    def started(self, timeout: float = 10.0) -> bool:
        """Connect, and wait until the broker has acknowledged the subscriptions."""
        self.start()
        return self.wait_for(lambda s: s.connects >= 1, timeout)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def pause(self) -> None:
        """Stay away (no reading, no reconnecting) without ending the session: after the
        broker went down, what is published for us meanwhile waits in our session."""
        self.client.loop_stop()

    def resume(self) -> None:
        """Come back: reconnect (``clean_start`` false) and receive what the session kept."""
        self.client.loop_start()

    def wait_for(self, predicate: Any, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self), timeout)

    def indices(self, dial: str) -> dict[int, set[int]]:
        by_boot: dict[int, set[int]] = defaultdict(set)
        with self.cond:
            for (d, boot, i) in self.seen:
                if d == dial:
                    by_boot[boot].add(i)
        return by_boot

    @property
    def duplicates(self) -> int:
        with self.cond:
            return sum(n - 1 for n in self.seen.values())
