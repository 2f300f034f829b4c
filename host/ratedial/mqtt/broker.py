"""An in-process MQTT broker (amqtt) for demos and single machines: ``--broker embedded``.

It binds to 127.0.0.1 only, on a free port unless one is given, so nothing is exposed to the
network unless asked. amqtt speaks MQTT 3.1.1: the publisher falls back to it by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import warnings
from typing import Any


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class EmbeddedBroker:
    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._broker: Any = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        default = loop.get_exception_handler()

        def quiet(lp: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            # amqtt leaves cancelled connection handlers behind at shutdown: not an error.
            if isinstance(context.get("exception"), asyncio.CancelledError):
                return
            if default is not None:
                default(lp, context)
            else:
                lp.default_exception_handler(context)

        loop.set_exception_handler(quiet)
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from amqtt.broker import Broker

            self._broker = Broker({
                "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
                "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin":
                            {"allow_anonymous": True}},
            })
        await self._broker.start()

    async def stop(self) -> None:
        if self._broker is not None:
            with contextlib.suppress(Exception):
                await self._broker.shutdown()
            self._broker = None
