"""Is a daemon with this id already publishing on this broker? Asked before a run starts.

Two runs with one daemon id publish under the same topics and, as one MQTT client id, each
connection the broker accepts closes the other's: a second ``ratedial run`` with the id of a
running one (a command typed twice, even one that then fails at start, its port busy) would
take the running daemon's connection over. So a run with a broker first listens, as a client
of its own, to the daemon's retained status: no status, or one that is not ``online`` (the
last will ``lost``, ``offline``), and it starts at once; an ``online`` status is only taken
for a live daemon when a fresh one (not the retained copy: daemons publish their status every
second) arrives within :data:`FRESH_S`. The check works across computers too. It never stops a
run for a broker it cannot reach: the publisher says that, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import Any

import aiomqtt

from ..config import MqttConfig
from .requests import BrokerAddress
from .topics import loads

FRESH_S = 2.5  # a live daemon publishes its status every second (a busy one later)
RETAINED_S = 0.3  # a retained status comes right after the subscription's SUBACK
LATE_RETAINED_S = 0.15  # ... or just after it (EMQX dispatches retained messages apart)
CONNECT_S = 2.0  # at most this long to connect: the check must not hold a run up


async def daemon_online(cfg: MqttConfig, address: BrokerAddress, status_topic: str) -> bool:
    """Whether a live daemon publishes ``status_topic`` on the broker now (False also when
    the broker cannot be reached, refuses this client or answers nothing in time)."""
    try:
        tls = cfg.tls_context() if address.tls else None
        async with asyncio.timeout(CONNECT_S + RETAINED_S + FRESH_S + 1.0):
            async with aiomqtt.Client(
                    address.host, address.port, username=cfg.username,
                    password=cfg.password(), tls_context=tls,
                    identifier=f"ratedial-check-{secrets.token_hex(6)}",
                    protocol=aiomqtt.ProtocolVersion.V311, timeout=CONNECT_S,
                    keepalive=10) as client:
                await client.subscribe(status_topic, qos=1)
                # The broker answers in order: a retained status of the first subscription
                # is sent before this second one's SUBACK, so none queued by then is none.
                await client.subscribe(f"ratedial-check/{secrets.token_hex(6)}", qos=0)
                return await _live(client, LATE_RETAINED_S if len(client.messages) == 0
                                   else RETAINED_S)
    except Exception:  # a check: whatever it meets (no broker, TLS, a bad password file),
        return False   # the run goes on, and the publisher says what is wrong, as before


async def _live(client: aiomqtt.Client, retained_s: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + retained_s
    seen_online = False
    it = aiter(client.messages)
    while True:
        left = deadline - loop.time()
        if left <= 0:
            return False
        try:
            async with asyncio.timeout(left):
                message = await anext(it)
        except TimeoutError:
            return False
        online = _state(message.payload) == "online"
        if not message.retain:  # published now, by a daemon that is running
            if online:
                return True
            continue
        if not online:
            return False  # its last word was lost or offline: nobody runs as it
        if not seen_online:  # retained "online": a live daemon refreshes it within a second
            seen_online = True
            deadline = loop.time() + FRESH_S


def _state(payload: Any) -> str | None:
    with contextlib.suppress(ValueError, TypeError):
        data = loads(payload)
        state = data.get("state") if isinstance(data, dict) else None
        return state if isinstance(state, str) else None
    return None
