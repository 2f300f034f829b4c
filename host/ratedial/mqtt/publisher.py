"""The MQTT shell: live publishing, checkpoints, and store-and-forward from the recording.

Invariants (see :mod:`ratedial.mqtt.outbox`): every sample and event reaches the broker at
least once, live or republished from the recording after an outage, or, if this daemon was
killed, by the next run of the same daemon id (``archive.py``); subscribers that want exactly
once deduplicate by ``(dial, boot, index)`` and events by ``(daemon, run, id)``. Replay
requests from subscribers are answered from the recordings, never from memory. The
publisher never blocks the daemon: :meth:`MqttPublisher.handle` only appends to buffers.

Live batches form only under load (the way TCP corks): while no live message is in flight,
a dial's samples go out as soon as they arrive; while one is (awaiting its PUBACK at QoS 1,
or while the event loop is busy with other dials' frames), what arrives is coalesced, one
message per dial, and sent when the last in-flight message is confirmed. ``[mqtt] batch_ms``
is the upper bound a sample waits in a batch, however slow the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.properties import Properties

from ..config import MqttConfig
from ..outputs import EventOut, Out, SamplesOut
from ..recording.writer import Recorder
from .acks import AckRouter, PublishRefused, Refusal, SubscriptionRefused, subscribe
from .archive import Archive, Unfinished
from .backfill import FromRecordings
from .outbox import Key, Outbox
from .requests import (
    BrokerAddress,
    parse_broker,
    parse_replay_request,
)
from .topics import Topics, dumps, event_payload, samples_payload
from .tuning import PackedProperties, no_delay, write_at_once

__all__ = ["BrokerAddress", "MqttPublisher", "parse_broker", "parse_replay_request"]

log = logging.getLogger("ratedial.mqtt")
# aiomqtt warns "There are N pending publish calls" whenever more than ten QoS 1 messages
# await their PUBACK: normal here (20 live batches a second per dial), and at tens of dials
# a flood of stderr lines. Connection problems reach us as exceptions, not log lines.
_client_log = logging.getLogger("ratedial.mqtt.client")
_client_log.setLevel(logging.ERROR)

STOP_DRAIN_S = 30.0  # on stop, how long to keep publishing the backlog
# Cancelled (the run failed, e.g. at start-up): how long to say "offline", and then how long
# to wait for the broker to acknowledge the DISCONNECT; the socket is closed after either way.
CANCEL_GRACE_S = 2.0
# Cancelled while aiomqtt connects: how long to let that finish. Its connect runs in an
# executor thread that no cancellation stops (paho's connect timeout is 5 s, and aiomqtt then
# waits up to its timeout, 5 s, for the CONNACK); the loop's shutdown waits for that thread.
CONNECT_SETTLE_S = 12.0


def _cancelling() -> bool:
    """This task was asked to stop. Python 3.11's ``asyncio.wait_for`` (used by aiomqtt and
    here) drops a cancellation that arrives as the awaited future completes, and aiomqtt's
    ``__aexit__`` can turn one into an ``MqttError``: checking the task's count of
    cancellation requests is what makes a cancelled publisher end."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


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


@dataclass(slots=True)
class _Batch:
    key: Key
    first: int
    period_us: int
    cols: dict[str, list[Any]] = field(default_factory=dict)
    since: float = 0.0  # time.monotonic() of its first sample

    @property
    def end(self) -> int:
        return self.first + len(self.cols["count"])


class MqttPublisher(FromRecordings):
    """One broker connection with a reconnect loop. Feed it with :meth:`handle`."""

    def __init__(
        self,
        cfg: MqttConfig,
        *,
        topics: Topics,
        recorder: Recorder,
        run_id: str,
        resume: list[Unfinished] | None = None,
        rater_of: Callable[[str], str | None],
        status_of: Callable[[], dict[str, dict[str, Any]]],
        wall_offset_ns: int,
        software_version: str,
        mqtt5: bool = True,
        on_link: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.cfg = cfg
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
        self.status_of = status_of
        self.wall_offset_ns = wall_offset_ns
        self.version = software_version
        self.outbox = Outbox()
        self.connected = False
        self.state = "connecting"
        self.protocol = aiomqtt.ProtocolVersion.V5 if mqtt5 else aiomqtt.ProtocolVersion.V311
        self._batches: dict[Key, _Batch] = {}
        self._events: list[EventOut] = []
        self._events_since = 0.0  # time.monotonic() of the oldest unpublished event
        self._wake = asyncio.Event()  # new samples or events, or the last live PUBACK came
        self._serving = False  # the serving loop runs: handle() may send an idle dial's frame
        self._expiry_props: dict[int, Properties] = {}
        self._live_inflight = 0  # live sample messages not yet confirmed (QoS 1) or written
        self._acks: AckRouter | None = None  # the current connection's PUBACKs
        self.refused_messages = 0  # QoS 1 messages the broker refused (MQTT 5 reason codes)
        self._refusals_told: set[tuple[str, int]] = set()
        self.last_refusal: str | None = None
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
        if self._resumed:
            log.info("republishing %d samples of %d earlier recording(s) of this daemon",
                     sum(u.samples for u in self._resumed), len(self._resumed))

    # --- feeding (synchronous, never blocks) -----------------------------------------------

    def handle(self, outs: list[Out]) -> None:
        new_batch = False
        for o in outs:
            if isinstance(o, SamplesOut):
                new_batch |= self._add_samples(o)
            elif isinstance(o, EventOut):
                # Events ride with the next samples (or go within batch_ms): a dial's first
                # message is then its samples, which name its rater, not dial_connected.
                if not self._events:
                    self._events_since = time.monotonic()
                self._events.append(o)
        client = self._client
        if self._batches and self._live_inflight == 0 and self._serving and \
                client is not None and self._failure is None:
            # Idle: what this call brought goes out now, as the serving loop would send it
            # on its next turn (samples, then the events riding with them), without waking
            # that loop: two turns of the event loop fewer per frame at rest.
            self._flush_all()
            if self._events:
                self._publish_events()
        elif new_batch:
            self._wake.set()  # the serving loop times the new batch's bound

    def _add_samples(self, o: SamplesOut) -> bool:
        """Add a frame to its dial's batch; True if that started a new batch."""
        key = (o.uid, o.boot_id)
        if not self.connected:
            self.outbox.missed(key, o.first_index, o.first_index + len(o))
            return False
        b = self._batches.get(key)
        if b is not None and (b.end != o.first_index or b.period_us != o.period_us):
            self._flush_one(b)
            b = None
        created = b is None
        if b is None:
            b = _Batch(key, o.first_index, o.period_us, {k: [] for k in (
                "device_us", "host_ns", "count", "rating", "flags", "media_s", "media_state")},
                time.monotonic())
            self._batches[key] = b
        c = b.cols
        c["device_us"] += o.device_us
        c["host_ns"] += o.host_ns
        c["count"] += o.counts
        c["rating"] += o.ratings
        c["flags"] += o.flags
        c["media_s"] += o.media_s if o.media_s else [None] * len(o)
        c["media_state"] += o.media_states if o.media_states else [5] * len(o)
        return created

    # --- the connection -------------------------------------------------------------------

    def _make_client(self) -> aiomqtt.Client:
        tls_context = self.cfg.tls_context() if self.address.tls else None
        will = aiomqtt.Will(self.topics.daemon_status, dumps(self._daemon_status("lost")),
                            qos=1, retain=True)
        return aiomqtt.Client(
            self.address.host,
            self.address.port,
            username=self.cfg.username,
            password=self.cfg.password(),
            identifier=self.cfg.client_id or f"ratedial-{self.topics.daemon}",
            protocol=self.protocol,
            will=will,
            tls_context=tls_context,
            keepalive=10,
            timeout=5,
            max_inflight_messages=200,
            logger=_client_log,
        )

    def _daemon_status(self, state: str) -> dict[str, Any]:
        return {"v": 1, "daemon": self.topics.daemon, "state": state,
                "software": self.version, "wall_ns": time.time_ns(), "run": self.run_id,
                "next_event": self.recorder.next_id("events")}

    async def run(self) -> None:
        """Publish until :meth:`stop` (then drain) or cancellation (then leave the broker
        within a few seconds, nothing left open: see :meth:`_connection`)."""
        backoff = 0.5
        while not self._stop.is_set():
            if _cancelling():
                raise asyncio.CancelledError
            try:
                self._failure = None
                async with self._connection() as client:
                    self._client = client
                    no_delay(client)
                    write_at_once(client)
                    self._acks = AckRouter(client)
                    self._ever_connected = True
                    self.connected, self.state, backoff = True, "connected", 0.5
                    if self._down_since is not None:
                        down_s = round(time.monotonic() - self._down_since, 3)
                        self._down_since = None
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
                text = str(exc)
                if not self._ever_connected and self._client is None:
                    # Never got a CONNACK: a broker without MQTT 5 may refuse it or stay
                    # silent (amqtt), so try the other protocol version next time.
                    v5 = self.protocol == aiomqtt.ProtocolVersion.V5
                    self.protocol = (aiomqtt.ProtocolVersion.V311 if v5
                                     else aiomqtt.ProtocolVersion.V5)
                    if v5:
                        continue
                self._went_down(text)
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
            if _cancelling():  # the error stood in for a cancellation: no retry
                raise asyncio.CancelledError
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), backoff * (0.5 + random.random()))
            backoff = min(5.0, backoff * 2)

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

    def _went_down(self, reason: str) -> None:
        if self.connected or self.last_error != reason:
            log.warning("MQTT broker %s:%d unreachable: %s", self.address.host,
                        self.address.port, reason)
        self.connected = False
        self.state = "down"
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

    def save_progress(self, *, final: bool = False) -> None:
        """Store what the broker has not confirmed in the recording (``mqtt_progress``)."""
        done = final and not self._batches and not self.outbox.unconfirmed \
            and not self._old_events
        snap = self.outbox.snapshot(complete=done)
        if snap != self._last_progress:
            self._last_progress = snap
            with contextlib.suppress(Exception):  # a failed recorder reports itself
                self.recorder.set_meta("mqtt_progress", snap)

    async def _serve(self, client: aiomqtt.Client) -> None:
        self._spawn(self._read_requests(client), endless=True)
        self._spawn(self._serve_requests(), endless=True)
        bound_s = self.cfg.batch_ms / 1000
        self._serving = True
        try:
            await self._serve_loop(bound_s)
        finally:
            self._serving = False

    async def _serve_loop(self, bound_s: float) -> None:
        last_checkpoint = 0.0
        last_status = 0.0
        replay: asyncio.Task[None] | None = None
        while True:
            if _cancelling():  # a cancellation asyncio.wait_for dropped (see _cancelling)
                raise asyncio.CancelledError
            self._wake.clear()
            replay = self._replay_if_due(replay)
            now = time.monotonic()
            oldest = min((b.since for b in self._batches.values()), default=None)
            flushed = False
            if oldest is not None and (self._live_inflight == 0 or now - oldest >= bound_s):
                self._flush_all()
                oldest, flushed = None, True
            if self._events and (flushed or now - self._events_since >= bound_s):
                self._publish_events()
            if now - last_checkpoint >= 1.0:
                last_checkpoint = now
                self.save_progress()
                # The generation is taken here, in publish order, not when the task runs.
                self._spawn(self._checkpoint(self.outbox.checkpoint()))
            if now - last_status >= 1.0:
                last_status = now
                for uid, st in self.status_of().items():
                    self._spawn(self._publish(self.topics.dial_status(uid), dumps(st),
                                              retain=True))
            if self._failure is not None:
                raise aiomqtt.MqttError(f"connection lost: {self._failure}")
            if self._stop.is_set():
                await self._drain(replay)
                return
            # Sleep until something arrives, the last live message is confirmed, a batch
            # reaches its bound, or the next checkpoint is due.
            wait = 1.0 - (now - min(last_checkpoint, last_status))
            if oldest is not None:
                wait = min(wait, oldest + bound_s - now)
            if self._events:
                wait = min(wait, self._events_since + bound_s - now)
            if not self._wake.is_set() and not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, wait)):  # no task per wait
                        await self._wake.wait()

    async def _drain(self, replay: asyncio.Task[None] | None) -> None:
        """On stop: publish what is buffered and finish the backlog, for at most
        ``STOP_DRAIN_S``; what is still unconfirmed then is left to the next run."""
        self._flush_all()
        self._publish_events()
        for uid, st in self.status_of().items():  # retained: nobody records these dials now
            self._spawn(self._publish(self.topics.dial_status(uid),
                                      dumps({**st, "state": "offline"}), retain=True))
        self._spawn(self._checkpoint(self.outbox.checkpoint()))
        deadline = time.monotonic() + STOP_DRAIN_S
        while self._failure is None:
            replay = self._replay_if_due(replay)
            waiting = [t for t in self._tasks if not getattr(t, "endless", False)]
            left = deadline - time.monotonic()
            if not waiting or left <= 0:
                break
            await asyncio.wait(waiting, timeout=left)
        if self.outbox.unconfirmed:
            refused = self.outbox.refused_samples
            log.warning("MQTT: stopping with %d samples the broker has not confirmed%s; the "
                        "next run of this daemon publishes them",
                        self.outbox.backlog_samples + refused,
                        f" ({refused} of them refused)" if refused else "")

    def _replay_if_due(self, replay: asyncio.Task[None] | None) -> asyncio.Task[None] | None:
        """Start a replay pass when there is backlog and none is running; the running one."""
        if (self.outbox.pending() or self.outbox.event_backlog or self._old_events) and (
                replay is None or replay.done()):
            return self._spawn(self._replay())
        return replay

    def _spawn(self, coro: Any, *, endless: bool = False) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        if endless:
            task.endless = True  # type: ignore[attr-defined]
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()  # retrieved here, so asyncio never logs it as lost
        if exc is not None:
            self._fail(exc)

    async def _publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        with contextlib.suppress(PublishRefused):  # told by _confirmed
            await self._confirmed(topic, payload, retain=retain)

    async def _checkpoint(self, gen: int) -> None:
        with contextlib.suppress(PublishRefused):
            # Refused or not, its PUBACK says the broker received every live batch before it
            # (those it refused said so in their own PUBACKs, which came first).
            await self._confirmed(self.topics.daemon_status,
                                  dumps(self._daemon_status("online")), retain=True)
        self.outbox.checkpoint_acked(gen)

    # --- samples and events ---------------------------------------------------------------

    def _flush_all(self) -> None:
        for b in list(self._batches.values()):
            self._flush_one(b)

    def _flush_one(self, b: _Batch) -> None:
        self._batches.pop(b.key, None)
        if not b.cols["count"]:
            return
        if not self.connected or self._client is None:
            self.outbox.missed(b.key, b.first, b.end)
            return
        uid, boot = b.key
        payload = samples_payload(
            uid=uid, rater=self.rater_of(uid), daemon=self.topics.daemon, boot_id=boot,
            first_index=b.first, period_us=b.period_us, device_us=b.cols["device_us"],
            host_ns=b.cols["host_ns"], wall_ns=self._walls(b.cols["host_ns"]),
            count=b.cols["count"], rating=b.cols["rating"], flags=b.cols["flags"],
            media_s=b.cols["media_s"], media_state=b.cols["media_state"])
        self.outbox.live_sent(b.key, b.first, b.end)
        self.published_samples += b.end - b.first
        self.live_messages += 1
        self._send_live(self._client, self.topics.samples(uid), payload, b.key, b.first, b.end)

    def _send_live(self, client: aiomqtt.Client, topic: str, payload: bytes, key: Key,
                   first: int, end: int) -> None:
        """Hand a live batch to the connection now, in publish order; its PUBACK comes to
        :meth:`_live_acked` (refused or not). Without the task, event and timer per message that
        ``client.publish`` takes, and one turn of the loop sooner: nothing waits here for
        the PUBACK (the outbox waits for the next checkpoint's), and a connection that stops
        acknowledging fails that checkpoint's ``QOS1_TIMEOUT_S``."""
        props = None
        expiry_s = self.cfg.live_expiry_s
        if expiry_s and self.protocol == aiomqtt.ProtocolVersion.V5:
            props = self._expiry_props.get(expiry_s)
            if props is None:  # built and packed once: paho packs it for every message
                props = self._expiry_props[expiry_s] = PackedProperties(expiry_s)
        try:
            info = client._client.publish(topic, payload, self.cfg.live_qos, False, props)
        except Exception as exc:  # as from a publish task: this connection is given up
            self._fail(exc)
            return
        if info.rc != paho.MQTT_ERR_SUCCESS:
            self._fail(aiomqtt.MqttCodeError(info.rc, "could not publish a live batch"))
            return
        if info.is_published():
            return  # QoS 0, on the socket already
        self._router().expect(info.mid, lambda refusal: self._live_acked(
            refusal, topic, key, first, end))
        self._live_inflight += 1

    def _live_acked(self, refusal: Refusal | None, topic: str, key: Key, first: int,
                    end: int) -> None:
        if refusal is not None:
            self.outbox.live_refused(key, first, end)
            self.published_samples -= end - first
            self._refused(PublishRefused(topic, refusal))
        self._live_inflight -= 1
        if self._live_inflight == 0 and self._batches:
            self._wake.set()  # what was coalesced meanwhile can go now

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
            self.connected = False  # new samples go to the backlog from now on
            self._wake.set()

    def _publish_events(self) -> None:
        events, self._events = self._events, []
        for e in events:
            if not self.connected:
                self.outbox.event_missed(e.event_id)
                continue
            topic = self.topics.dial_events(e.uid) if e.uid else self.topics.daemon_events
            payload = event_payload(event_id=e.event_id, kind=e.kind, host_ns=e.host_ns,
                                    wall_ns=e.host_ns + self.wall_offset_ns, dial=e.uid or None,
                                    daemon=self.topics.daemon, run=self.run_id, data=e.data)
            self.outbox.event_sent(e.event_id)
            self._spawn(self._publish_event(topic, payload, e.event_id))

    async def _publish_event(self, topic: str, payload: bytes, event_id: int) -> None:
        try:
            await self._confirmed(topic, payload)
        except PublishRefused:
            self.outbox.event_refused(event_id)
        else:
            self.outbox.event_acked(event_id)
