"""``ratedial record --mqtt``, the asyncio shell: one broker connection feeding one pure
:class:`~ratedial.mqtt.collector.Collector`.

:func:`collect` opens (or reopens) the recording, connects with a persistent session,
subscribes, feeds every message to the collector and publishes the replay requests it asks
for; it only moves bytes between the broker, the collector and the :class:`Recorder`.

Invariants:

* One collector per file: the recording is locked while this process writes it (the OS
  releases the lock when the process ends, also on SIGKILL).
* The client id is stable across restarts of the same collection, so the broker keeps its
  session; an empty one is refused. The broker URLs kept in the recording never show
  credentials.
* A collected file holds one topic prefix: continuing it with another is refused before
  anything is written. Another broker is allowed (the broker moved) and is added to
  ``meta.collected.brokers``.
* Before the first connection a failure is a one-line error and leaves no new file behind;
  after it, the shell reconnects with jittered back-off until stopped.
* A replay request the broker refuses is told once; one whose PUBACK takes longer than
  :data:`REQUEST_TIMEOUT_S` means the connection is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._platform.loops import selector_loop
from .._platform.signals import stop_on_signals
from ..config import MqttConfig, Reread, mqtt_string_problem
from ..errors import RatedialError, UsageError
from ..recording.writer import Recorder, RecordingError, remove_recording, try_lock
from .acks import AckRouter, PublishRefused, disconnect_reason, subscribe
from .backoff import Backoff
from .collect_state import ResumeState
from .collect_store import RecorderStore, read_resume_state
from .collector import Collector

log = logging.getLogger("ratedial.collector")

REQUEST_TIMEOUT_S = 10.0  # a replay request's PUBACK slower than this: the connection is gone


@dataclass(frozen=True, slots=True, kw_only=True)
class CollectConfig:
    mqtt: MqttConfig
    record: Path
    client_id: str | None = None
    share: str | None = None  # shared subscription group (a broker that dispatches by sender)
    duration_s: float | None = None
    session_expiry_s: int = 3600
    settle_s: float = 2.0
    request_timeout_s: float = 10.0
    command_line: Sequence[str] = ()


def default_client_id(prefix: str, record: Path) -> str:
    """Stable across restarts of the same collection, so the broker keeps its session."""
    key = f"{socket.gethostname()}|{prefix}|{record.resolve()}"
    return "ratedial-record-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def subscriptions(prefix: str, share: str | None = None) -> list[str]:
    """Topic filters; with ``share``, as one member of the shared subscription group."""
    p = f"$share/{share}/{prefix}/v1" if share else f"{prefix}/v1"
    return [f"{p}/dials/+/samples", f"{p}/dials/+/backfill", f"{p}/dials/+/events",
            f"{p}/dials/+/status", f"{p}/daemons/+/status", f"{p}/daemons/+/events",
            f"{p}/daemons/+/replayed"]


def open_recording(cfg: CollectConfig, client_id: str,
                   on_error: Callable[[RecordingError], None]) -> tuple[
                       Recorder, ResumeState | None, int]:
    """Create the recording, or reopen a collected one to continue it."""
    from .. import __version__

    path = cfg.record
    if path.exists():
        lock(path)
        try:
            st = read_resume_state(path)
            prefix = st.meta["collected"].get("prefix")
            if isinstance(prefix, str) and prefix != cfg.mqtt.topic_prefix:
                raise UsageError(
                    f"{path} was collected from topic prefix {prefix!r}, not "
                    f"{cfg.mqtt.topic_prefix!r}: continue it with --prefix {prefix}, or "
                    "choose another --record path")
            rec = Recorder(path, meta={}, append=True, next_ids=st.next_ids,
                           on_error=on_error)
        except BaseException:
            unlock(path)
            raise
        offset = st.wall_offset_ns
        if offset is None:
            offset = time.time_ns() - time.monotonic_ns()
            rec.put("wall_anchors", (time.monotonic_ns(), time.time_ns()))
        resumes = list(st.meta.get("resumed_wall_ns") or [])
        rec.set_meta("resumed_wall_ns", [*resumes, time.time_ns()])
        return rec, st, offset
    offset = time.time_ns() - time.monotonic_ns()
    rec = Recorder(path, on_error=on_error, meta={
        "software_version": __version__,
        "created_wall_ns": time.time_ns(),
        "host": socket.gethostname(),
        "command_line": list(cfg.command_line),
        "config": {"mqtt": {"broker": _public_url(cfg.mqtt.broker),
                            "topic_prefix": cfg.mqtt.topic_prefix, "client_id": client_id,
                            "session_expiry_s": cfg.session_expiry_s, "share": cfg.share,
                            "settle_s": cfg.settle_s}},
        "scale": {"minimum": 0.0, "maximum": 100.0, "start": 50.0, "counts_per_point": 1.0,
                  "anchors": {"0": "hindering", "50": "neutral", "100": "helpful"},
                  "note": "ratings as published by the daemons"},
        "session": {},
        "media": None,
        "collected": {"source": "mqtt", "prefix": cfg.mqtt.topic_prefix, "daemons": [],
                      "brokers": []},
    })
    mono = time.monotonic_ns()  # one reading: the anchor's two times differ by the offset
    rec.put("wall_anchors", (mono, mono + offset))
    lock(path)
    return rec, None, offset


_locks: dict[Path, int] = {}


def lock(path: Path) -> None:
    """Hold an exclusive lock on the recording while this process writes it (released
    by the OS when the process ends, also on SIGKILL): one collector per file."""
    try:
        fd = try_lock(path)
    except OSError as exc:
        raise UsageError(f"cannot open {path}: {exc.strerror}") from None
    if fd is None:
        raise UsageError(f"{path} is being written by another running collector")
    _locks[path] = fd


def unlock(path: Path) -> None:
    fd = _locks.pop(path, None)
    if fd is not None:
        os.close(fd)  # closing the descriptor releases the lock


def _public_url(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


class CollectorShell:
    """The broker connection: subscribe, feed the collector, publish its requests."""

    def __init__(self, cfg: CollectConfig, *,
                 on_message: Callable[[str], None] = lambda _m: None) -> None:
        from .requests import parse_broker

        self.cfg = cfg
        if cfg.client_id == "":
            raise UsageError("--client-id: an MQTT client id cannot be empty (leave the option "
                             "out for one derived from the host, prefix and --record path)")
        too_long = None if cfg.client_id is None else mqtt_string_problem(cfg.client_id)
        if too_long:
            raise UsageError(f"--client-id is {too_long}")
        self.address = parse_broker(cfg.mqtt.broker, tls=cfg.mqtt.tls)
        self.client_id = (default_client_id(cfg.mqtt.topic_prefix, cfg.record)
                          if cfg.client_id is None else cfg.client_id)
        self.on_message = on_message
        self._password = Reread(cfg.mqtt.password, log.warning)
        self._tls = Reread(cfg.mqtt.tls_context, log.warning)
        self.connected = False
        self.connects = 0
        self._refusal_told = False  # the broker refused a replay request (said once)
        self.stop_event = asyncio.Event()
        self.failure: list[RecordingError] = []
        self.recorder: Recorder | None = None
        self.collector: Collector | None = None

    def _client(self, protocol: Any) -> Any:
        import aiomqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        tls_context = self._tls() if self.address.tls else None
        v5 = protocol == aiomqtt.ProtocolVersion.V5
        props = None
        if v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = self.cfg.session_expiry_s
        return aiomqtt.Client(
            self.address.host, self.address.port, username=self.cfg.mqtt.username,
            password=self._password(), identifier=self.client_id, protocol=protocol,
            clean_start=False if v5 else 3, clean_session=None if v5 else False,
            properties=props, tls_context=tls_context, keepalive=10, timeout=5,
            max_queued_incoming_messages=0)

    async def run(self) -> dict[str, Any]:
        import aiomqtt

        loop = asyncio.get_running_loop()

        def on_error(err: RecordingError) -> None:
            self.failure.append(err)
            loop.call_soon_threadsafe(self.stop_event.set)

        recorder, resume, offset = open_recording(self.cfg, self.client_id, on_error)
        self.recorder = recorder
        created = resume is None
        store = RecorderStore(recorder)
        collector = Collector(self.cfg.mqtt.topic_prefix, store, wall_offset_ns=offset,
                              settle_s=self.cfg.settle_s,
                              request_timeout_s=self.cfg.request_timeout_s, resume=resume)
        self.collector = collector
        undo_signals = stop_on_signals(loop, self.stop_event.set)
        t0 = time.monotonic()
        timer: asyncio.TimerHandle | None = None
        if self.cfg.duration_s is not None:
            timer = loop.call_later(self.cfg.duration_s, self.stop_event.set)
        protocol = aiomqtt.ProtocolVersion.V5
        backoff = Backoff()
        last_error: str | None = None
        try:
            while not self.stop_event.is_set():
                try:
                    async with self._client(protocol) as client:
                        self.connected = True
                        self.connects += 1
                        last_error = None
                        backoff.reset()
                        self.on_message(f"connected to {self.address.host}:"
                                        f"{self.address.port} as {self.client_id}")
                        collector.connected_to(_public_url(self.cfg.mqtt.broker))
                        for topic in subscriptions(self.cfg.mqtt.topic_prefix,
                                                   self.cfg.share):
                            await subscribe(client, topic)
                        await self._serve(client, collector)
                    break
                except aiomqtt.MqttError as exc:
                    text = disconnect_reason(exc, self.client_id,
                                             "collector with the same --client-id")
                    if self.connects == 0:
                        if protocol == aiomqtt.ProtocolVersion.V5 and "protocol" in text.lower():
                            protocol = aiomqtt.ProtocolVersion.V311
                            continue
                        raise RatedialError(f"cannot connect to broker {self.address.host}:"
                                            f"{self.address.port}: {text}") from None
                    reason = text
                except ssl.SSLError as exc:
                    if self.connects == 0:
                        raise RatedialError(f"cannot connect to broker: TLS: {exc}") from None
                    reason = f"TLS: {exc.reason or exc}"
                except OSError as exc:
                    if self.connects == 0:
                        raise RatedialError(f"cannot connect to broker {self.address.host}:"
                                            f"{self.address.port}: "
                                            f"{exc.strerror or exc}") from None
                    reason = exc.strerror or str(exc)
                self.connected = False
                if reason != last_error:
                    self.on_message(f"broker unreachable, retrying: {reason}")
                    last_error = reason
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop_event.wait(), backoff.pause())
        finally:
            if timer is not None:
                timer.cancel()
            undo_signals()
            if self.connects == 0 and created:
                # never connected: leave no empty recording behind
                with contextlib.suppress(RecordingError):
                    recorder.close()
                unlock(self.cfg.record)
                remove_recording(Path(self.cfg.record), recorder.made_dirs)
            else:
                try:
                    self._close(collector, store)
                finally:
                    unlock(self.cfg.record)
        summary = collector.summary()
        summary["recording"] = str(self.cfg.record)
        summary["seconds"] = round(time.monotonic() - t0, 3)
        summary["client_id"] = self.client_id
        return summary

    def _close(self, collector: Collector, store: RecorderStore) -> None:
        recorder = store.recorder
        if not self.failure:
            with contextlib.suppress(RecordingError):
                collector.record_holes()
                recorder.set_meta("collected", {**collector.describe(),
                                                "daemon_status": collector.daemons})
                recorder.set_meta("ended_wall_ns", time.time_ns())
        try:
            store.close()
        except RecordingError as exc:
            if not self.failure:
                self.failure.append(exc)
        if self.failure:
            raise self.failure[0]

    async def _serve(self, client: Any, collector: Collector) -> None:
        acks = AckRouter(client)  # a refused replay request is told, not taken as sent
        it = aiter(client.messages)
        nxt: asyncio.Future[Any] | None = None
        last_tick = 0.0
        try:
            while not self.stop_event.is_set():
                if nxt is None:
                    nxt = asyncio.ensure_future(anext(it))
                done, _ = await asyncio.wait({nxt}, timeout=0.1)
                if nxt in done:
                    m, nxt = nxt.result(), None
                    self._feed(collector, m)
                    while len(client.messages) > 0:  # drain without waiting
                        self._feed(collector, await anext(it))
                now = time.monotonic()
                if now - last_tick >= 0.25:
                    last_tick = now
                    for req in collector.due_requests(now):
                        try:
                            await acks.publish(req.topic(collector.prefix), req.payload(),
                                               timeout=REQUEST_TIMEOUT_S)
                        except PublishRefused as exc:
                            if not self._refusal_told:  # asked again later: said once
                                self._refusal_told = True
                                self.on_message(f"{exc}; replay requests cannot reach the "
                                                "daemons (check the broker's access rules "
                                                "for this client)")
        finally:
            if nxt is not None:
                if nxt.done() and not nxt.cancelled() and nxt.exception() is None:
                    self._feed(collector, nxt.result())
                else:
                    nxt.cancel()
                    with contextlib.suppress(BaseException):
                        await nxt

    def _feed(self, collector: Collector, m: Any) -> None:
        payload = m.payload
        if isinstance(payload, str):
            payload = payload.encode()
        elif not isinstance(payload, bytes | bytearray):
            return
        collector.feed(str(m.topic), bytes(payload), time.monotonic())


def collect(cfg: CollectConfig, *, on_message: Callable[[str], None] = lambda _m: None
            ) -> dict[str, Any]:
    """Run a collection until ``duration_s``, SIGINT or SIGTERM; return its summary."""
    shell = CollectorShell(cfg, on_message=on_message)
    with asyncio.Runner(loop_factory=selector_loop) as runner:  # aiomqtt needs add_reader
        return runner.run(shell.run())
