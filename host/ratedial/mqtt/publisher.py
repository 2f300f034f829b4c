"""The MQTT shell: live publishing, checkpoints, and store-and-forward from the recording.

Invariants (see :mod:`ratedial.mqtt.outbox`): every sample and event reaches the broker at
least once, live or republished from the recording after an outage; subscribers that want
exactly once deduplicate by ``(dial, boot, index)`` and event ``id``. The publisher never
blocks the daemon: :meth:`MqttPublisher.handle` only appends to buffers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import sqlite3
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ..config import MqttConfig
from ..daemon.core import EventOut, Out, SamplesOut
from ..errors import UsageError
from ..recording.writer import Recorder
from .outbox import Key, Outbox
from .topics import Topics, dumps, event_payload, samples_payload

log = logging.getLogger("ratedial.mqtt")

REPLAY_CHUNK = 500  # samples per backfill message: about 12 kB of JSON


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool


def parse_broker(url: str, *, tls: bool = False) -> BrokerAddress:
    """``mqtt://host[:port]`` or ``mqtts://host[:port]``; one-line UsageError otherwise."""
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise UsageError(f"--broker {url!r}: expected mqtt://HOST[:PORT], mqtts://HOST[:PORT], "
                         "embedded or none")
    secure = tls or parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if secure else 1883)
    except ValueError:
        raise UsageError(f"--broker {url!r}: bad port") from None
    return BrokerAddress(parts.hostname, port, secure)


@dataclass(slots=True)
class _Batch:
    key: Key
    first: int
    period_us: int
    cols: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def end(self) -> int:
        return self.first + len(self.cols["count"])


class MqttPublisher:
    """One broker connection with a reconnect loop. Feed it with :meth:`handle`."""

    def __init__(
        self,
        cfg: MqttConfig,
        *,
        topics: Topics,
        recorder: Recorder,
        epoch_ids: dict[tuple[str, int], int],
        rater_of: Callable[[str], str | None],
        status_of: Callable[[], dict[str, dict[str, Any]]],
        wall_offset_ns: int,
        software_version: str,
        mqtt5: bool = True,
    ) -> None:
        self.cfg = cfg
        self.address = parse_broker(cfg.broker, tls=cfg.tls)
        self.topics = topics
        self.recorder = recorder
        self.epoch_ids = epoch_ids
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
        self._client: aiomqtt.Client | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.published_samples = 0
        self.replayed_samples = 0
        self.last_error: str | None = None
        self._failure: BaseException | None = None
        self._ever_connected = False
        self._stop = asyncio.Event()

    # --- feeding (synchronous, never blocks) -----------------------------------------------

    def handle(self, outs: list[Out]) -> None:
        for o in outs:
            if isinstance(o, SamplesOut):
                self._add_samples(o)
            elif isinstance(o, EventOut):
                self._events.append(o)

    def _add_samples(self, o: SamplesOut) -> None:
        key = (o.uid, o.boot_id)
        if not self.connected:
            self.outbox.missed(key, o.first_index, o.first_index + len(o))
            return
        b = self._batches.get(key)
        if b is not None and (b.end != o.first_index or b.period_us != o.period_us):
            self._flush_one(b)
            b = None
        if b is None:
            b = _Batch(key, o.first_index, o.period_us, {k: [] for k in (
                "device_us", "host_ns", "count", "rating", "flags", "media_s", "media_state")})
            self._batches[key] = b
        c = b.cols
        c["device_us"] += o.device_us
        c["host_ns"] += o.host_ns
        c["count"] += o.counts
        c["rating"] += o.ratings
        c["flags"] += o.flags
        c["media_s"] += o.media_s if o.media_s else [None] * len(o)
        c["media_state"] += o.media_states if o.media_states else [5] * len(o)

    # --- the connection -------------------------------------------------------------------

    def _make_client(self) -> aiomqtt.Client:
        tls_context = None
        if self.address.tls:
            tls_context = ssl.create_default_context(cafile=self.cfg.ca_file)
            if self.cfg.cert_file:
                tls_context.load_cert_chain(self.cfg.cert_file, self.cfg.key_file)
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
        )

    def _daemon_status(self, state: str) -> dict[str, Any]:
        return {"v": 1, "daemon": self.topics.daemon, "state": state,
                "software": self.version, "wall_ns": time.time_ns()}

    async def run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self._failure = None
                async with self._make_client() as client:
                    self._client = client
                    self._ever_connected = True
                    self.connected, self.state, backoff = True, "connected", 0.5
                    await client.publish(self.topics.daemon_status,
                                         dumps(self._daemon_status("online")), qos=1, retain=True)
                    await self._serve(client)
                    with contextlib.suppress(aiomqtt.MqttError):
                        await client.publish(self.topics.daemon_status,
                                             dumps(self._daemon_status("offline")), qos=1,
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
                for t in list(self._tasks):
                    t.cancel()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), backoff * (0.5 + random.random()))
            backoff = min(5.0, backoff * 2)

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

    async def stop(self) -> None:
        """Publish what is buffered, then end the connection."""
        self._stop.set()

    async def _serve(self, client: aiomqtt.Client) -> None:
        last_checkpoint = 0.0
        last_status = 0.0
        replay: asyncio.Task[None] | None = None
        while True:
            if (self.outbox.pending() or self.outbox.event_backlog) and (
                    replay is None or replay.done()):
                replay = self._spawn(self._replay(client))
            self._flush_all()
            self._publish_events(client)
            now = time.monotonic()
            if now - last_checkpoint >= 1.0:
                last_checkpoint = now
                self._spawn(self._checkpoint(client))
            if now - last_status >= 1.0:
                last_status = now
                for uid, st in self.status_of().items():
                    self._spawn(self._publish(client, self.topics.dial_status(uid), dumps(st),
                                              qos=1, retain=True))
            if self._failure is not None:
                raise aiomqtt.MqttError(f"connection lost: {self._failure}")
            if self._stop.is_set():
                self._flush_all()
                self._publish_events(client)
                await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), 5)
                return
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.cfg.batch_ms / 1000)

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()  # retrieved here, so asyncio never logs it as lost
        if exc is not None and self._failure is None:
            self._failure = exc
            self.connected = False  # new samples go to the backlog from now on

    async def _publish(self, client: aiomqtt.Client, topic: str, payload: bytes, *, qos: int,
                       retain: bool = False, expiry_s: int | None = None) -> None:
        props = None
        if expiry_s and self.protocol == aiomqtt.ProtocolVersion.V5:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.MessageExpiryInterval = expiry_s
        await client.publish(topic, payload, qos=qos, retain=retain, properties=props)

    async def _checkpoint(self, client: aiomqtt.Client) -> None:
        gen = self.outbox.checkpoint()
        await client.publish(self.topics.daemon_status, dumps(self._daemon_status("online")),
                             qos=1, retain=True)
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
            host_ns=b.cols["host_ns"], wall_ns=[self._wall(t) for t in b.cols["host_ns"]],
            count=b.cols["count"], rating=b.cols["rating"], flags=b.cols["flags"],
            media_s=b.cols["media_s"], media_state=b.cols["media_state"])
        self.outbox.live_sent(b.key, b.first, b.end)
        self.published_samples += b.end - b.first
        self._spawn(self._publish(self._client, self.topics.samples(uid), payload, qos=0,
                                  expiry_s=self.cfg.live_expiry_s))

    def _wall(self, host_ns: int | None) -> int | None:
        return None if host_ns is None else host_ns + self.wall_offset_ns

    def _publish_events(self, client: aiomqtt.Client) -> None:
        events, self._events = self._events, []
        for e in events:
            if not self.connected:
                self.outbox.event_missed(e.event_id)
                continue
            topic = self.topics.dial_events(e.uid) if e.uid else self.topics.daemon_events
            payload = event_payload(event_id=e.event_id, kind=e.kind, host_ns=e.host_ns,
                                    wall_ns=e.host_ns + self.wall_offset_ns, dial=e.uid or None,
                                    daemon=self.topics.daemon, data=e.data)
            self.outbox.event_sent(e.event_id)
            self._spawn(self._publish_event(client, topic, payload, e.event_id))

    async def _publish_event(self, client: aiomqtt.Client, topic: str, payload: bytes,
                             event_id: int) -> None:
        await client.publish(topic, payload, qos=1)
        self.outbox.event_acked(event_id)

    async def _replay(self, client: aiomqtt.Client) -> None:
        """Republish the backlog from the recording (never from memory), at QoS 1."""
        await asyncio.to_thread(self.recorder.flush)
        for key, first, end in self.outbox.pending():
            epoch = self.epoch_ids.get(key)
            if epoch is None:
                continue
            rows = await asyncio.to_thread(self._read_samples, epoch, first, end)
            for chunk in _contiguous_chunks(rows, REPLAY_CHUNK):
                uid, boot = key
                c0 = chunk[0]
                payload = samples_payload(
                    uid=uid, rater=self.rater_of(uid), daemon=self.topics.daemon, boot_id=boot,
                    first_index=c0[0], period_us=0, device_us=[r[1] for r in chunk],
                    host_ns=[r[2] for r in chunk], wall_ns=[self._wall(r[2]) for r in chunk],
                    count=[r[3] for r in chunk], rating=[r[4] for r in chunk],
                    flags=[r[5] for r in chunk], media_s=[r[6] for r in chunk],
                    media_state=[r[7] for r in chunk], replay=True)
                await client.publish(self.topics.backfill(uid), payload, qos=1)
                self.replayed_samples += len(chunk)
                self.outbox.backfill_acked(key, c0[0], chunk[-1][0] + 1)
            self.outbox.backfill_acked(key, first, end)  # indices absent from the recording
        ids = sorted(self.outbox.event_backlog)
        if ids:
            for row in await asyncio.to_thread(self._read_events, ids):
                event_id, host_ns, uid, kind, data = row
                topic = self.topics.dial_events(uid) if uid else self.topics.daemon_events
                payload = event_payload(event_id=event_id, kind=kind, host_ns=host_ns,
                                        wall_ns=host_ns + self.wall_offset_ns, dial=uid,
                                        daemon=self.topics.daemon, data=json.loads(data),
                                        replay=True)
                await client.publish(topic, payload, qos=1)
                self.outbox.event_acked(event_id)

    def _connect_ro(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.recorder.path}?mode=ro", uri=True)

    def _read_samples(self, epoch: int, first: int, end: int) -> list[tuple[Any, ...]]:
        con = self._connect_ro()
        try:
            return con.execute(
                "SELECT sample_index, device_us, host_ns, count, rating, flags, media_s, "
                "media_state FROM samples WHERE epoch_id=? AND sample_index>=? AND "
                "sample_index<? ORDER BY sample_index", (epoch, first, end)).fetchall()
        finally:
            con.close()

    def _read_events(self, ids: list[int]) -> list[tuple[Any, ...]]:
        con = self._connect_ro()
        try:
            marks = ",".join("?" * len(ids))
            return con.execute(
                "SELECT e.event_id, e.host_ns, d.uid, e.kind, e.data FROM events e "
                f"LEFT JOIN dials d USING (dial_id) WHERE e.event_id IN ({marks}) "
                "ORDER BY e.event_id", ids).fetchall()
        finally:
            con.close()


def _contiguous_chunks(rows: list[tuple[Any, ...]], size: int) -> list[list[tuple[Any, ...]]]:
    chunks: list[list[tuple[Any, ...]]] = []
    for r in rows:
        if chunks and len(chunks[-1]) < size and chunks[-1][-1][0] + 1 == r[0]:
            chunks[-1].append(r)
        else:
            chunks.append([r])
    return chunks
