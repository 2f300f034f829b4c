"""What the publisher sends over a live connection: live samples, events, the retained status
and the checkpoints that confirm them. Split from :mod:`ratedial.mqtt.publisher`, whose
:class:`~ratedial.mqtt.publisher.MqttPublisher` (the connection's lifecycle) builds on this.

Invariants: the publisher never blocks the daemon: :meth:`LivePublishing.handle` only appends
to buffers (when nothing is in flight, it hands them to the connection without waiting). A
live batch counts as received only when a later checkpoint's PUBACK proves it
(:mod:`ratedial.mqtt.outbox`); what is unconfirmed is stored in the recording
(``mqtt_progress``, every second while connected and at the end) for the next run of this
daemon.

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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.properties import Properties

from ..config import MqttConfig
from ..outputs import EventOut, Out, SamplesOut
from .acks import PublishRefused, Refusal
from .backfill import FromRecordings
from .outbox import Key
from .topics import dumps, event_payload, samples_payload
from .tuning import PackedProperties

log = logging.getLogger("ratedial.mqtt")

STOP_DRAIN_S = 30.0  # on stop, how long to keep publishing the backlog


def cancelling() -> bool:
    """This task was asked to stop. Python 3.11's ``asyncio.wait_for`` (used by aiomqtt and
    here) drops a cancellation that arrives as the awaited future completes, and aiomqtt's
    ``__aexit__`` can turn one into an ``MqttError``: checking the task's count of
    cancellation requests is what makes a cancelled publisher end."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


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


class LivePublishing(FromRecordings):
    """The publisher's live half; the attributes are the publisher's (set in its
    ``__init__``), the connection is its :meth:`~ratedial.mqtt.publisher.MqttPublisher.run`."""

    cfg: MqttConfig
    run_id: str
    scale: dict[str, Any] | None  # the rating scale the daemon status carries
    status_of: Callable[[], dict[str, dict[str, Any]]]
    version: str
    connected: bool
    protocol: aiomqtt.ProtocolVersion
    _batches: dict[Key, _Batch]
    _events: list[EventOut]
    _events_since: float
    _wake: asyncio.Event
    _serving: bool
    _expiry_props: dict[int, Properties]
    _live_inflight: int
    _client: aiomqtt.Client | None
    _tasks: set[asyncio.Task[None]]
    published_samples: int
    live_messages: int
    _failure: BaseException | None
    _stop: asyncio.Event
    _last_progress: dict[str, Any] | None

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

    # --- serving a live connection: status, checkpoints, the loop -------------------------

    def _daemon_status(self, state: str) -> dict[str, Any]:
        status = {"v": 1, "daemon": self.topics.daemon, "state": state,
                  "software": self.version, "wall_ns": time.time_ns(), "run": self.run_id,
                  "next_event": self.recorder.next_id("events")}
        if self.scale is not None:  # what its ratings are on (a collector records it)
            status["scale"] = self.scale
        return status

    def unpublished(self, last_event_id: int) -> tuple[tuple[int, int], tuple[int, int, int]]:
        """What the broker has not confirmed: this run's ``(samples, events)``
        (``last_event_id``: the run's newest event, recorded but perhaps never handed to the
        broker), which wait in this recording for a later run of this daemon; then the
        ``(samples, events, recordings)`` of the earlier recordings this run was
        republishing and did not finish, which stay in those files for the next run."""
        snap = self.outbox.snapshot()
        samples, earlier = self.outbox.unconfirmed_samples()
        never_handed = max(0, last_event_id - int(snap["events_handed_max"]))
        earlier_events = sum(len(ids) for ids in self._old_events.values())
        files = len(self._resumed) - len(self._finished)
        return ((samples, len(snap["events_pending"]) + never_handed),
                (earlier, earlier_events, files if earlier or earlier_events else 0))

    def save_progress(self, *, final: bool = False) -> None:
        """Store what the broker has not confirmed in the recording (``mqtt_progress``)."""
        # this file's row holds this run's part only: complete when the broker has all of
        # it, whatever earlier recordings still wait for (their own rows say so)
        done = final and not self._batches and not self.outbox.own_unconfirmed()
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
            if cancelling():  # a cancellation asyncio.wait_for dropped (see cancelling)
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
                raise aiomqtt.MqttError(f"connection lost: {self._failure}") from self._failure
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
        try:  # anything that fails here gives the connection up: the batch is sent again
            if expiry_s and self.protocol == aiomqtt.ProtocolVersion.V5:
                props = self._expiry_props.get(expiry_s)
                if props is None:  # built and packed once: paho packs it for every message
                    props = self._expiry_props[expiry_s] = PackedProperties(int(expiry_s))
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
