"""``ratedial monitor``: subscribe to a broker and show every dial's live values."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from dataclasses import dataclass
from typing import Any

import aiomqtt
from rich.console import Console
from rich.live import Live
from rich.table import Table

from .acks import subscribe
from .requests import BrokerAddress


@dataclass(slots=True)
class DialSeen:
    dial: str
    rater: str | None = None
    state: str = "?"
    rating: float | None = None
    media_s: float | None = None
    samples: int = 0
    duplicates: int = 0
    missing: int = 0
    last_index: tuple[int, int] | None = None  # (boot, index)


class Monitor:
    def __init__(self) -> None:
        self.dials: dict[str, DialSeen] = {}
        self._seen: dict[tuple[str, int], set[int]] = {}
        self.events: list[dict[str, Any]] = []

    def feed(self, topic: str, payload: bytes) -> str | None:
        """Account for one message; return a one-line description of events."""
        try:
            msg = json.loads(payload)
        except ValueError:
            return None
        if not isinstance(msg, dict):
            return None
        leaf = topic.rsplit("/", 1)[-1]
        dial = msg.get("dial")
        if not isinstance(dial, str):
            return None
        d = self.dials.setdefault(dial, DialSeen(dial))
        if leaf in ("samples", "backfill"):
            d.rater = msg.get("rater") or d.rater
            seen = self._seen.setdefault((dial, msg["boot"]), set())
            new = 0
            for k in range(msg["n"]):
                i = msg["first"] + k
                if i in seen:
                    d.duplicates += 1
                else:
                    seen.add(i)
                    new += 1
            d.samples += new
            if leaf == "samples" and msg["rating"]:
                d.rating = msg["rating"][-1]
                d.media_s = msg["media_s"][-1]
        elif leaf == "status":
            d.state = msg.get("state", "?")
            d.missing = msg.get("missing", 0)
            d.rater = msg.get("rater") or d.rater
        elif leaf == "events":
            self.events.append(msg)
            return f"{msg.get('kind')} {json.dumps(msg.get('data'))}"
        return None

    def table(self) -> Table:
        t = Table(title="ratedial monitor", title_justify="left")
        for col in ("dial", "rater", "state", "rating", "media s", "samples", "missing",
                    "duplicates"):
            t.add_column(col)
        for d in self.dials.values():
            t.add_row(d.dial[:8], d.rater or "-", d.state,
                      "-" if d.rating is None else f"{d.rating:.1f}",
                      "-" if d.media_s is None else f"{d.media_s:.2f}", str(d.samples),
                      str(d.missing), str(d.duplicates))
        return t


async def monitor(addr: BrokerAddress, *, prefix: str, duration: float | None,
                  console: Console, username: str | None = None, password: str | None = None,
                  tls_context: ssl.SSLContext | None = None) -> Monitor:
    mon = Monitor()
    deadline = None if duration is None else time.monotonic() + duration
    protocol = aiomqtt.ProtocolVersion.V5
    for _ in range(2):
        try:
            async with aiomqtt.Client(addr.host, addr.port, username=username, password=password,
                                      protocol=protocol, timeout=5,
                                      tls_context=tls_context) as client:
                for leaf in ("samples", "backfill", "events", "status"):
                    await subscribe(client, f"{prefix}/v1/dials/+/{leaf}")
                with Live(mon.table(), console=console, auto_refresh=False,
                          transient=False) as live:
                    last = 0.0
                    while deadline is None or time.monotonic() < deadline:
                        with contextlib.suppress(asyncio.TimeoutError):
                            async with asyncio.timeout(0.25):
                                async for m in client.messages:
                                    note = mon.feed(str(m.topic), bytes(m.payload))
                                    if note:
                                        console.print(note, highlight=False)
                        if time.monotonic() - last > 0.25:
                            last = time.monotonic()
                            live.update(mon.table(), refresh=True)
                return mon
        except aiomqtt.MqttError as exc:
            if protocol == aiomqtt.ProtocolVersion.V5 and "protocol" in str(exc).lower():
                protocol = aiomqtt.ProtocolVersion.V311
                continue
            raise
    return mon
