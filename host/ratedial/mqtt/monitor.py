"""``ratedial monitor``: subscribe to a broker and show every dial's live values.

Invariants:

* :class:`Monitor` is pure: messages in, counts and a table out; :func:`monitor` only moves
  messages from the broker to it and the table to the console.
* A broker that cannot be reached, or that refuses MQTT 5 and 3.1.1, before the first
  subscription is an ``aiomqtt.MqttError`` for the command to tell in one line; a refused
  subscription is :class:`~ratedial.mqtt.acks.SubscriptionRefused`, at any time.
* Once subscribed, a lost connection is said once per outage (``on_message``) and the shell
  reconnects with jittered back-off (as ``record --mqtt`` and the daemon do) and subscribes
  again; what was counted stays, so samples seen twice still count as duplicates.
* It ends at ``duration`` (a connection attempt under way finishes first: aiomqtt's 5 s
  time-out), or at Ctrl+C, SIGTERM or SIGHUP, each the same clean way: the last table shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt
from rich.console import Console
from rich.live import Live
from rich.table import Table

from .._platform.signals import stop_on_signals
from .acks import subscribe
from .backoff import Backoff
from .collect_ranges import MAX_SAMPLES, RangeSet, is_int
from .requests import BrokerAddress
from .topics import loads

LEAVES = ("samples", "backfill", "events", "status")  # of <prefix>/v1/dials/+/...
_BACK = "daemon {} is back: publishing again"


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
    daemon: str | None = None  # the daemon whose status message named it last


class Monitor:
    def __init__(self) -> None:
        self.dials: dict[str, DialSeen] = {}
        self._seen: dict[tuple[str, int], RangeSet] = {}  # indices seen per boot, as ranges
        self.malformed = 0  # messages skipped: fields missing or of the wrong type
        self.events: list[dict[str, Any]] = []
        self.daemons: dict[str, str] = {}  # daemon id -> its last state (online, offline, lost)

    def feed(self, topic: str, payload: bytes) -> str | None:
        """Account for one message; return a one-line description of events."""
        try:
            msg = loads(payload)
        except ValueError:
            return None
        if not isinstance(msg, dict):
            return None
        leaf = topic.rsplit("/", 1)[-1]
        if topic.rsplit("/", 3)[-3:-2] == ["daemons"]:  # <prefix>/v1/daemons/<d>/status
            return self._daemon_status(msg) if leaf == "status" else None
        dial = msg.get("dial")
        if not isinstance(dial, str):
            return None
        d = self.dials.setdefault(dial, DialSeen(dial))
        if leaf in ("samples", "backfill"):
            boot, first, n = msg.get("boot"), msg.get("first"), msg.get("n")
            if not (is_int(boot) and is_int(first) and is_int(n) and 0 <= n <= MAX_SAMPLES):
                self.malformed += 1  # anyone may publish here: a bad message is skipped
                return None
            if leaf == "samples" and "rater" in msg:  # live: who rates it now (null: nobody)
                d.rater = _text(msg["rater"])  # (a backfill may be a past run's: not used)
            back = self._back(_text(msg.get("daemon")))
            seen = self._seen.setdefault((dial, boot), RangeSet())
            new = sum(b - a for a, b in seen.missing(first, first + n))
            seen.add(first, first + n)
            d.samples += new
            d.duplicates += n - new
            rating, media_s = msg.get("rating"), msg.get("media_s")
            if leaf == "samples" and isinstance(rating, list) and rating:
                d.rating = _number(rating[-1])
                d.media_s = _number(media_s[-1]) if isinstance(media_s, list) and media_s \
                    else None
            return back
        elif leaf == "status":
            d.state = _text(msg.get("state")) or "?"
            d.daemon = _text(msg.get("daemon")) or d.daemon
            missing = msg.get("missing", 0)
            d.missing = missing if is_int(missing) else 0
            if "rater" in msg:  # the daemon's word on the dial now, a null label included
                d.rater = _text(msg["rater"])
            if d.rating is None:  # until a live sample tells it (a status comes each second)
                d.rating = _number(msg.get("rating"))
        elif leaf == "events":
            self.events.append(msg)
            return f"{msg.get('kind')} {json.dumps(msg.get('data'))}"
        return None

    def _daemon_status(self, msg: dict[str, Any]) -> str | None:
        daemon, state = _text(msg.get("daemon")), _text(msg.get("state"))
        if daemon is None or state is None:
            return None
        before = self.daemons.get(daemon)
        self.daemons[daemon] = state
        if state == "lost" and before != "lost":  # its last will: killed, cut off, or the
            # broker went down (it publishes the wills of all its clients)
            return (f"daemon {daemon} lost its broker connection (its last will: killed, cut "
                    "off, or the broker went down): its dials' status here is stale; it may "
                    "still be recording them")
        return _BACK.format(daemon) if before == "lost" and state != "lost" else None

    def _back(self, daemon: str | None) -> str | None:
        """Samples named ``daemon`` (never retained: it publishes): one line if it was
        lost."""
        if daemon is None or self.daemons.get(daemon) != "lost":
            return None
        self.daemons[daemon] = "online"
        return _BACK.format(daemon)

    def state_of(self, d: DialSeen) -> str:
        """The dial's state as its daemon's status leaves it: a daemon that is gone (its
        last will, retained) cannot update its dials' retained status, which would say
        "connected" for ever."""
        daemon = self.daemons.get(d.daemon or "")
        if daemon in ("lost", "offline") and d.state in ("connecting", "connected"):
            return f"daemon {daemon}"
        return d.state

    def table(self, status: str = "") -> Table:
        title = f"ratedial monitor ({status})" if status else "ratedial monitor"
        t = Table(title=title, title_justify="left")
        for col in ("dial", "rater", "state", "rating", "media s", "samples", "missing",
                    "duplicates"):
            t.add_column(col)
        for d in self.dials.values():
            t.add_row(d.dial[:8], d.rater or "-", self.state_of(d),
                      "-" if d.rating is None else f"{d.rating:.1f}",
                      "-" if d.media_s is None else f"{d.media_s:.2f}", str(d.samples),
                      str(d.missing), str(d.duplicates))
        return t


def _text(x: Any) -> str | None:
    return x if isinstance(x, str) else None


def _number(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None


def _tell(message: str) -> None:
    print(f"ratedial: {message}", file=sys.stderr, flush=True)


async def monitor(addr: BrokerAddress, *, prefix: str, duration: float | None,
                  console: Console, username: str | None = None, password: str | None = None,
                  tls_context: ssl.SSLContext | None = None,
                  on_message: Callable[[str], None] = _tell) -> Monitor:
    """Show what the broker carries until ``duration`` or cancellation (module invariants)."""
    mon = Monitor()
    deadline = None if duration is None else time.monotonic() + duration
    stopped = asyncio.Event()  # Ctrl+C, SIGTERM, SIGHUP: the final table, then exit 0
    undo_signals = stop_on_signals(asyncio.get_running_loop(), stopped.set)
    try:
        return await _monitor(mon, addr, prefix=prefix, deadline=deadline, stopped=stopped,
                              console=console, username=username, password=password,
                              tls_context=tls_context, on_message=on_message)
    finally:
        undo_signals()


async def _monitor(mon: Monitor, addr: BrokerAddress, *, prefix: str, deadline: float | None,
                   stopped: asyncio.Event, console: Console, username: str | None,
                   password: str | None, tls_context: ssl.SSLContext | None,
                   on_message: Callable[[str], None]) -> Monitor:
    where = f"{addr.host}:{addr.port}"
    protocol = aiomqtt.ProtocolVersion.V5
    backoff = Backoff()
    away = False
    with contextlib.ExitStack() as stack:
        live: Live | None = None  # shown from the first subscription on
        while (deadline is None or time.monotonic() < deadline) and not stopped.is_set():
            try:
                async with aiomqtt.Client(addr.host, addr.port, username=username,
                                          password=password, protocol=protocol, timeout=5,
                                          keepalive=10, tls_context=tls_context) as client:
                    for leaf in LEAVES:
                        await subscribe(client, f"{prefix}/v1/dials/+/{leaf}")
                    await subscribe(client, f"{prefix}/v1/daemons/+/status")
                    if live is None:
                        if not console.is_terminal:  # rich ends the last table line of a
                            stack.callback(console.line)  # file without a newline: after it
                        live = stack.enter_context(Live(mon.table(), console=console,
                                                        auto_refresh=False, transient=False))
                    away = False
                    backoff.reset()
                    await _show(client, mon, live, console, deadline, stopped)
                return mon
            except aiomqtt.MqttError as exc:
                if live is None:  # never subscribed: the command says why, in one line
                    if protocol == aiomqtt.ProtocolVersion.V5 and "protocol" in str(exc).lower():
                        protocol = aiomqtt.ProtocolVersion.V311
                        continue
                    raise
                if not away:
                    away = True
                    on_message(f"the broker at {where} went away; reconnecting")
            live.update(mon.table(f"reconnecting to {where}"), refresh=True)
            pause = backoff.pause()
            if deadline is not None:
                pause = min(pause, max(0.0, deadline - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopped.wait(), pause)
    return mon


async def _show(client: aiomqtt.Client, mon: Monitor, live: Live, console: Console,
                deadline: float | None, stopped: asyncio.Event) -> None:
    """Feed messages to ``mon`` and redraw its table, 4 times a second, until ``deadline``;
    ``aiomqtt.MqttError`` when the connection is lost."""
    live.update(mon.table(), refresh=True)
    last = time.monotonic()
    # One pending read, kept across redraws: cancelling aiomqtt's read on a timeout could
    # drop a message it had already taken off its queue (the counts came out short).
    messages = aiter(client.messages)
    nxt: asyncio.Future[aiomqtt.Message] = asyncio.ensure_future(anext(messages))
    try:
        while (deadline is None or time.monotonic() < deadline) and not stopped.is_set():
            wait = 0.25 if deadline is None else min(0.25, max(0.0, deadline - time.monotonic()))
            done, _ = await asyncio.wait({nxt}, timeout=wait)
            if nxt in done:
                m = nxt.result()  # aiomqtt.MqttError: the connection was lost
                nxt = asyncio.ensure_future(anext(messages))
                note = mon.feed(str(m.topic), bytes(m.payload))
                if note:
                    console.print(note, highlight=False)
            if time.monotonic() - last > 0.25:
                last = time.monotonic()
                live.update(mon.table(), refresh=True)
    finally:
        nxt.cancel()
        with contextlib.suppress(BaseException):
            await nxt
    live.update(mon.table(), refresh=True)
