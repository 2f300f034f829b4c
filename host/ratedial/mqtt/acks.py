"""PUBACKs and what they say: which QoS 1 messages the broker took and which it refused.

An MQTT 5 broker answers every QoS 1 PUBLISH with a reason code; 0x80 and above is a refusal
(mosquitto: 0x87 "Not authorized" for a topic its ACL denies this client). aiomqtt's
``publish`` returns on any PUBACK, refused or not, so this module routes a connection's
PUBACKs itself: :meth:`AckRouter.publish` awaits one message's PUBACK and raises
:class:`PublishRefused` for a refusal, and :meth:`AckRouter.expect` hands the reason to a
callback (live batches, which nothing awaits). With MQTT 3.1.1 a broker cannot refuse: it
acknowledges and drops, and nothing here can tell (docs/mqtt.md says so).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from ..errors import RatedialError

Refusal = tuple[int, str]  # (reason code, its name), e.g. (0x87, "Not authorized")
OnAck = Callable[[Refusal | None], None]  # None: the broker took it


class PublishRefused(Exception):
    """The broker answered a QoS 1 PUBLISH with a failure reason code (MQTT 5)."""

    def __init__(self, topic: str, refusal: Refusal) -> None:
        super().__init__(f"the broker refused a message on {topic}: {refusal[1]} "
                         f"(reason code 0x{refusal[0]:02X})")
        self.topic = topic
        self.refusal = refusal


def refusal_of(reason_code: Any) -> Refusal | None:
    """A PUBACK's reason code as a refusal, or None when it is a success (codes below 0x80,
    e.g. 0x10 "No matching subscribers"; MQTT 3.1.1 has no code at all)."""
    value = getattr(reason_code, "value", reason_code)
    if not isinstance(value, int) or value < 0x80:
        return None
    return value, str(reason_code)


class SubscriptionRefused(RatedialError):
    """The broker's SUBACK refused a subscription (reason code 0x80 or above)."""


class AckRouter:
    """Takes over one connection's ``on_publish``: PUBACKs of the message ids registered
    here go to their callback; others to aiomqtt as before."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self._paho = client._client
        self._theirs = self._paho.on_publish
        self._waiting: dict[int, OnAck] = {}
        self._paho.on_publish = self._on_publish

    def _on_publish(self, c: Any, userdata: Any, mid: int, *rest: Any) -> None:
        on_ack = self._waiting.pop(mid, None)
        if on_ack is not None:
            on_ack(refusal_of(rest[0]) if rest else None)
        elif self._theirs is not None:
            self._theirs(c, userdata, mid, *rest)

    def expect(self, mid: int, on_ack: OnAck) -> None:
        self._waiting[mid] = on_ack

    def forget(self) -> None:
        """The connection is gone: no PUBACK will come for what is waiting."""
        self._waiting.clear()

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False,
                      timeout: float) -> None:
        """Publish at QoS 1 and wait for the PUBACK: :class:`PublishRefused` if the broker
        refused it, ``aiomqtt.MqttError`` if it could not be sent or no PUBACK came within
        ``timeout`` (as ``aiomqtt.Client.publish``)."""
        info = self._paho.publish(topic, payload, 1, retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
        done: asyncio.Future[Refusal | None] = asyncio.get_running_loop().create_future()

        def on_ack(refusal: Refusal | None) -> None:
            if not done.done():
                done.set_result(refusal)

        self.expect(info.mid, on_ack)
        try:
            async with asyncio.timeout(timeout):
                refusal = await done
        except TimeoutError:
            raise aiomqtt.MqttError("Operation timed out") from None
        finally:
            self._waiting.pop(info.mid, None)
        if refusal is not None:
            raise PublishRefused(topic, refusal)


def refused_subscription(granted: Any) -> str | None:
    """What a SUBACK refused, or None: ``aiomqtt.Client.subscribe`` returns MQTT 5 reason
    codes, or MQTT 3.1.1's granted QoS per topic, where 0x80 is a failure."""
    for g in granted if isinstance(granted, list | tuple) else [granted]:
        refusal = refusal_of(g)
        if refusal is not None:
            name = refusal[1] if not isinstance(g, int) else "Failure"
            return f"{name} (reason code 0x{refusal[0]:02X})"
    return None


async def subscribe(client: aiomqtt.Client, topic: str) -> None:
    """Subscribe at QoS 1; :class:`SubscriptionRefused` (one line, naming topic and reason)
    if the broker refused it."""
    refused = refused_subscription(await client.subscribe(topic, qos=1))
    if refused is not None:
        raise SubscriptionRefused(f"the broker refused the subscription to {topic}: {refused}; "
                                  "check its access rules for this client")


SESSION_TAKEN_OVER = 0x8E  # MQTT 5 DISCONNECT: another client connected with this client id
UNSPECIFIED = 0x80  # what paho reports for a connection the broker closed without a reason


BAD_CREDENTIALS = (0x86, 0x87)  # MQTT 5 CONNACK: bad user name or password; not authorized
BAD_CREDENTIALS_V311 = (4, 5)  # MQTT 3.1.1 CONNACK return codes, the same two


def credentials_refused(exc: BaseException) -> bool:
    """The broker refused the connection for its user name or password (or for the lack of
    them): it is there, so this is no outage, and retrying changes nothing until they do."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        rc = getattr(e, "rc", None)
        if isinstance(rc, ReasonCode) and rc.value in BAD_CREDENTIALS and \
                rc.packetType == PacketTypes.CONNACK:  # not a DISCONNECT or a refused SUBACK
            return True
        if isinstance(e, MqttConnectError) and rc in BAD_CREDENTIALS_V311:
            return True  # an int there is the CONNACK's code (elsewhere, paho's own errors)
        e = e.__cause__ or e.__context__
    return False


def credentials_text(exc: BaseException) -> str:
    """The reason shown for :func:`credentials_refused` (the broker's own words kept)."""
    return (f"it refused the user name or password ({exc}): check [mqtt] username and the "
            "password (RATEDIAL_MQTT_PASSWORD or [mqtt] password_file)")


def disconnect_reason(exc: BaseException, client_id: str, who: str) -> str:
    """One line for a lost connection. The broker closing it because another client took
    the same client id (MQTT 5 reason 0x8E; mosquitto 2.0 closes with no reason, which paho
    reports as 0x80) is named as the likely cause: the two then take turns disconnecting
    each other, which otherwise reads as a broker that keeps going away. ``who`` names the
    other client, e.g. "daemon with the same --daemon-id"."""
    if credentials_refused(exc):
        return credentials_text(exc)
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        rc = getattr(e, "rc", None)
        code = getattr(rc, "value", rc)
        if code == SESSION_TAKEN_OVER:
            return (f"another client connected with client id {client_id}, so the broker "
                    f"closed this connection (session taken over): is another {who} "
                    "running? Each needs its own")
        if code == UNSPECIFIED:  # also a broker shutting down (mosquitto 2.0: no reason)
            return (f"{exc}: the broker closed the connection (it restarted; or, if this "
                    f"repeats every few seconds, another {who} is running with client id "
                    f"{client_id}: each needs its own)")
        e = e.__cause__ or e.__context__
    return str(exc)
