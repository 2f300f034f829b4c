"""How the publisher's aiomqtt connection is tuned for small, frequent live messages: each
sent at once (TCP_NODELAY, written when queued rather than a loop turn later) and the
message-expiry property packed once. Split from :mod:`ratedial.mqtt.publisher`."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def no_delay(client: aiomqtt.Client) -> None:
    """Send each small live message at once (TCP_NODELAY): with Nagle's algorithm a message
    waits for the ACK of the one before it, which a peer may delay by up to 40 ms."""
    paho_client = getattr(client, "_client", None)
    sock = paho_client.socket() if paho_client is not None else None
    if sock is not None:
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class PackedProperties(Properties):
    """A PUBLISH's message expiry, packed once: paho packs a message's properties each time
    it sends one (a walk of its property tables per live message)."""

    _packed: bytes

    def __init__(self, expiry_s: int) -> None:
        super().__init__(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        self.MessageExpiryInterval = expiry_s
        packed: bytes = super().pack()  # type: ignore[no-untyped-call]
        object.__setattr__(self, "_packed", packed)  # paho's __setattr__ takes property names

    def pack(self) -> bytes:
        return self._packed


def write_at_once(client: aiomqtt.Client) -> None:
    """Hand each packet to the socket when it is queued, not one event-loop turn later.

    aiomqtt flushes paho's queue from a writer callback it registers through
    ``call_soon_threadsafe``: per packet a self-pipe write and read, two ``epoll_ctl`` and
    two more turns of the loop before the packet is sent. On the loop's own thread and
    outside paho's callbacks (where paho writes at once too when it runs its own loop), the
    packet is written here; what the socket does not take (or a broken socket) goes the
    deferred way, which reports errors as before.
    """
    paho_client = getattr(client, "_client", None)
    deferred = getattr(paho_client, "on_socket_register_write", None)
    in_callback = getattr(paho_client, "_in_callback_mutex", None)
    if paho_client is None or deferred is None or in_callback is None:
        return
    loop_thread = threading.get_ident()

    def register_write(c: Any, userdata: Any, sock: Any) -> None:
        if threading.get_ident() == loop_thread and in_callback.acquire(False):
            in_callback.release()
            with contextlib.suppress(Exception):  # the deferred write meets it and reports it
                c.loop_write()
            if not c.want_write():
                return
        if sock.fileno() < 0:
            # Closed under paho (the broker dropped the connection, seen by the write above
            # or by a read): the loss is reported where it was seen. aiomqtt's deferred
            # write would watch fd -1, and asyncio would print a traceback for it.
            return
        deferred(c, userdata, sock)

    paho_client.on_socket_register_write = register_write
