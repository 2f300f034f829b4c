"""The MQTT shell: one broker connection's lifecycle, around live publishing and
store-and-forward from the recording.

Invariants (see :mod:`ratedial.mqtt.outbox`): every sample and event reaches the broker at
least once, live or republished from the recording after an outage, or, if this daemon was
killed, by the next run of the same daemon id (``archive.py``); subscribers that want exactly
once deduplicate by ``(dial, boot, index)`` and events by ``(daemon, run, id)``. Replay
requests from subscribers are answered from the recordings, never from memory
(:mod:`ratedial.mqtt.backfill`). The publisher never blocks the daemon; what it sends over a
live connection is :mod:`ratedial.mqtt.live`.

The connection: reconnected with jittered back-off, the other MQTT version tried if the first
never got a CONNACK; its last will says "lost", a clean end or a cancellation says "offline".
A cancelled publisher ends within seconds and leaves nothing open (:meth:`MqttPublisher.run`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiomqtt

from ..config import MqttConfig, Reread
from ..recording.writer import Recorder
from .acks import (
    AckRouter,
    PublishRefused,
    SubscriptionRefused,
    credentials_refused,
    disconnect_reason,
    subscribe,
)
from .archive import Archive, Unfinished
from .backoff import Backoff
from .live import LivePublishing, cancelling
from .outbox import Outbox
from .requests import parse_broker
from .topics import Topics, dumps
from .tuning import no_delay, write_at_once

__all__ = ["MqttPublisher"]

log = logging.getLogger("ratedial.mqtt")

# added to "unreachable" while this run never reached its broker: a lab may have none
NO_BROKER_HINT = (" (no MQTT broker here? --broker none records without one, --broker "
                  "embedded starts one)")
# aiomqtt warns "There are N pending publish calls" whenever more than ten QoS 1 messages
# await their PUBACK: normal here (20 live batches a second per dial), and at tens of dials
# a flood of stderr lines. Connection problems reach us as exceptions, not log lines.
_client_log = logging.getLogger("ratedial.mqtt.client")
_client_log.setLevel(logging.CRITICAL)  # paho's "failed to receive on socket" too

# Cancelled (the run failed, e.g. at start-up): how long to say "offline", and then how long
# to wait for the broker to acknowledge the DISCONNECT; the socket is closed after either way.
CANCEL_GRACE_S = 2.0
# Cancelled while aiomqtt connects: how long to let that finish. Its connect runs in an
# executor thread that no cancellation stops (paho's connect timeout is 5 s, and aiomqtt then
# waits up to its timeout, 5 s, for the CONNACK); the loop's shutdown waits for that thread.
CONNECT_SETTLE_S = 12.0


def _abandon(client: aiomqtt.Client) -> None:
    """Close what the client left open: its socket (aiomqtt's ``on_socket_close`` then stops
    reading it and cancels its ``loop_misc`` task) and paho's wake-up socket pair. Left to
    paho's ``__del__``, that runs after the event loop closed, and prints tracebacks."""
    paho_client = getattr(client, "_client", None)
    reset = getattr(paho_client, "_reset_sockets", None)
    if reset is not None:
        with contextlib.suppress(Exception):
            reset()
    misc = getattr(client, "_misc_task", None)
    if misc is not None and not misc.done():
        misc.cancel()
    # aiomqtt keeps an unexpected disconnection (another client taking this client id, the
    # broker dropping the session) in a future that its __aexit__ never reads once set:
    # asyncio then printed "Future exception was never retrieved" and a traceback. What ended
    # the connection is already known (said once, recorded as broker_down).
    gone = getattr(client, "_disconnected", None)
    if isinstance(gone, asyncio.Future):
        gone.add_done_callback(_read_outcome)


def _read_outcome(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled():
        fut.exception()


class MqttPublisher(LivePublishing):
    """One broker connection with a reconnect loop. Feed it with :meth:`handle`."""

    def __init__(
        self,
        cfg: MqttConfig,
        *,
        topics: Topics,
        recorder: Recorder,
        run_id: str,
        resume: list[Unfinished] | None = None,
        earlier: list[Archive] | None = None,
        rater_of: Callable[[str], str | None],
        status_of: Callable[[], dict[str, dict[str, Any]]],
        wall_offset_ns: int,
        software_version: str,
        mqtt5: bool = True,
        on_link: Callable[[str, dict[str, Any]], None] | None = None,
        unrecorded_from: Callable[[str, int], int | None] = lambda uid, boot: None,
    ) -> None:
        self.cfg = cfg
        self._password = Reread(cfg.password, log.warning)
        self._tls = Reread(cfg.tls_context, log.warning)
        # told ("broker_down", {"reason"}) when the broker is lost or cannot be reached, and
        # ("broker_up", {"down_s"}) when it is back: the daemon records both as events
        self._on_link = on_link
        self._down_since: float | None = None  # time.monotonic() the broker went down
        self.address = parse_broker(cfg.broker, tls=cfg.tls)
        self.topics = topics
        self.recorder = recorder
        self.run_id = run_id
        self.archives = [Archive(recorder.path, run_id)]
        self.rater_of = rater_of
        self.unrecorded_from = unrecorded_from
        # the rating scale (meta.scale) the daemon status carries, for collectors
        self.scale: dict[str, Any] | None = None
        self.status_of = status_of
        self.wall_offset_ns = wall_offset_ns
        self.version = software_version
        self.outbox = Outbox()
        self.connected = False
        self.state = "connecting"
        self.protocol = aiomqtt.ProtocolVersion.V5 if mqtt5 else aiomqtt.ProtocolVersion.V311
        # _batches, _events and _expiry_props are typed in LivePublishing
        self._batches = {}
        self._events = []
        self._events_since = 0.0  # time.monotonic() of the oldest unpublished event
        self._wake = asyncio.Event()  # new samples or events, or the last live PUBACK came
        self._serving = False  # the serving loop runs: handle() may send an idle dial's frame
        self._expiry_props = {}
        self._live_inflight = 0  # live sample messages not yet confirmed (QoS 1) or written
        self._acks: AckRouter | None = None  # the current connection's PUBACKs
        self.refused_messages = 0  # QoS 1 messages the broker refused (MQTT 5 reason codes)
        self._refusals_told: set[tuple[str, int]] = set()
        self.refusals = {}
        self._replay_refused: str | None = None  # the replay subscription's refusal
        self.live_messages = 0
        self._client: aiomqtt.Client | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.published_samples = 0
        self.replayed_samples = 0
        self.unreadable = 0
        self.last_error: str | None = None
        self._failure: BaseException | None = None
        self._ever_connected = False
        self._stop = asyncio.Event()
        self._requests: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=100)
        self.requests_served = 0
        self._last_progress: dict[str, Any] | None = None
        # Earlier runs of this daemon that were killed before the broker had everything.
        self._resumed = resume or []
        self._old_events: dict[int, set[int]] = {}
        self._finished: set[int] = set()
        for k, u in enumerate(self._resumed, start=1):
            self.archives.append(u.archive)
            for key, ranges in u.ranges.items():
                for a, b in ranges:
                    self.outbox.restore(key, a, b)
            if u.events:
                self._old_events[k] = set(u.events)
        # Its other recordings: replay requests are answered from them too.
        self.archives += earlier or []
        if self._resumed:
            log.info("republishing %d samples of %d earlier recording(s) of this daemon",
                     sum(u.samples for u in self._resumed), len(self._resumed))

    def recording_moved(self, path: Path) -> None:
        """The recording was written again elsewhere (deleted while recording): backfill and
        replay answers read that file from now on."""
        self.archives[0].path = path

    # --- the connection -------------------------------------------------------------------

    def _client_id(self) -> str:
        return self.cfg.client_id or f"ratedial-{self.topics.daemon}"

    def _make_client(self) -> aiomqtt.Client:
        tls_context = self._tls() if self.address.tls else None
        lost = self._daemon_status("lost")
        del lost["next_event"]  # set now, sent at a crash: a subscriber would miss what came
        will = aiomqtt.Will(self.topics.daemon_status, dumps(lost), qos=1, retain=True)
        return aiomqtt.Client(
            self.address.host,
            self.address.port,
            username=self.cfg.username,
            password=self._password(),
            identifier=self._client_id(),
            protocol=self.protocol,
            will=will,
            tls_context=tls_context,
            keepalive=10,
            timeout=5,
            max_inflight_messages=200,
            logger=_client_log,
        )

    async def run(self) -> None:
        """Publish until :meth:`stop` (then drain) or cancellation (then leave the broker
        within a few seconds, nothing left open: see :meth:`_connection`)."""
        backoff = Backoff()
        while not self._stop.is_set():
            if cancelling():
                raise asyncio.CancelledError
            try:
                self._failure = None
                async with self._connection() as client:
                    self._client = client
                    no_delay(client)
                    write_at_once(client)
                    self._acks = AckRouter(client)
                    self._ever_connected = True
                    self.connected, self.state = True, "connected"
                    backoff.reset()
                    if self._down_since is not None:
                        down_s = round(time.monotonic() - self._down_since, 3)
                        self._down_since = None
                        log.warning("MQTT broker %s:%d reachable again after %.1f s: "
                                    "publishing what it missed", self.address.host,
                                    self.address.port, down_s)
                        self._tell("broker_up", {"down_s": down_s})
                    with contextlib.suppress(PublishRefused):  # told by _confirmed
                        await self._confirmed(self.topics.daemon_status,
                                              dumps(self._daemon_status("online")), retain=True)
                    try:
                        await subscribe(client, self.topics.replay_requests)
                        self._replay_refused = None
                    except SubscriptionRefused as exc:
                        if str(exc) != self._replay_refused:
                            log.warning("MQTT: %s; replay requests will not be answered", exc)
                        self._replay_refused = str(exc)
                    await self._serve(client)
                    with contextlib.suppress(aiomqtt.MqttError, PublishRefused):
                        await self._confirmed(self.topics.daemon_status,
                                              dumps(self._daemon_status("offline")),
                                              retain=True, timeout=2)
                return
            except aiomqtt.MqttError as exc:
                self.connected = False
                text = disconnect_reason(exc, self._client_id(), "daemon with the same --daemon-id")
                if not self._ever_connected and self._client is None:
                    # Never got a CONNACK: a broker without MQTT 5 may refuse it or stay
                    # silent (amqtt), so try the other protocol version next time.
                    v5 = self.protocol == aiomqtt.ProtocolVersion.V5
                    self.protocol = (aiomqtt.ProtocolVersion.V311 if v5
                                     else aiomqtt.ProtocolVersion.V5)
                    if v5:
                        continue
                self._went_down(text, refused=credentials_refused(exc))
            except ssl.SSLError as exc:
                self._went_down(f"TLS: {exc.reason or exc}")
            except OSError as exc:
                self._went_down(exc.strerror or str(exc))
            finally:
                self._client = None
                self._live_inflight = 0  # their samples are in the outbox's backlog now
                if self._acks is not None:
                    self._acks.forget()
                    self._acks = None
                tasks = list(self._tasks)
                for t in tasks:
                    t.cancel()
                if tasks:  # cancelled: they end at once, on this loop, not at its close
                    await asyncio.wait(tasks, timeout=1.0)
            if cancelling():  # the error stood in for a cancellation: no retry
                raise asyncio.CancelledError
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), backoff.pause())

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[aiomqtt.Client]:
        """``async with`` an aiomqtt client, leaving nothing behind however it ends.

        aiomqtt connects in an executor thread that a cancellation does not stop, and a
        connect that fails or is cancelled leaves its socket open and its ``loop_misc`` task
        running (started from that thread, possibly after the loop cancelled its tasks):
        paho's ``__del__`` then calls into the closed event loop (a traceback at exit) and
        the task is destroyed pending. So a cancelled connect is let finish (bounded by
        :data:`CONNECT_SETTLE_S`), a cancelled connection says "offline" and disconnects,
        each within :data:`CANCEL_GRACE_S`, and the socket is closed in every case.
        """
        client = self._make_client()
        enter = asyncio.ensure_future(client.__aenter__())
        try:
            await asyncio.shield(enter)
        except asyncio.CancelledError:
            await asyncio.wait([enter], timeout=CONNECT_SETTLE_S)
            if not enter.done():
                enter.cancel()
            elif not enter.cancelled() and enter.exception() is None:
                await self._leave(client)
            _abandon(client)
            raise
        except BaseException:
            _abandon(client)
            raise
        try:
            yield client
        except asyncio.CancelledError:
            await self._leave(client)
            raise
        except BaseException as exc:
            await client.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        else:
            await client.__aexit__(None, None, None)
        finally:
            _abandon(client)

    async def _leave(self, client: aiomqtt.Client) -> None:
        """On cancellation: say "offline" and disconnect, each for at most
        :data:`CANCEL_GRACE_S`; never raises but a further cancellation."""
        steps = []
        if self._acks is not None and self._failure is None:
            steps.append(self._confirmed(self.topics.daemon_status,
                                         dumps(self._daemon_status("offline")), retain=True,
                                         timeout=CANCEL_GRACE_S))
        steps.append(client.__aexit__(None, None, None))
        for step in steps:
            task = asyncio.ensure_future(step)
            try:
                await asyncio.wait([task], timeout=CANCEL_GRACE_S)
            finally:
                if not task.done():
                    task.cancel()
                elif not task.cancelled():
                    task.exception()  # retrieved: the connection is closed either way

    def _went_down(self, reason: str, *, refused: bool = False) -> None:
        """No connection: the broker is away, or (``refused``) it refused the credentials."""
        if self.connected or self.last_error != reason:
            # a lab with no broker at all: say how to run without one (docs/mqtt.md)
            hint = "" if refused or self._ever_connected else NO_BROKER_HINT
            log.warning("MQTT broker %s:%d %s %s%s", self.address.host, self.address.port,
                        "is there, but" if refused else "unreachable:", reason, hint)
        self.connected = False
        self.state = "refused" if refused else "down"
        self.last_error = reason
        for b in list(self._batches.values()):
            self._flush_one(b)  # not connected: becomes backlog
        self.outbox.disconnected()
        if self._down_since is None:  # once per outage, however many retries fail
            self._down_since = time.monotonic()
            self._tell("broker_down", {"reason": reason})

    def _tell(self, kind: str, data: dict[str, Any]) -> None:
        if self._on_link is not None:
            self._on_link(kind, data)

    async def stop(self) -> None:
        """Publish what is buffered, then end the connection."""
        self._stop.set()
        self._wake.set()
