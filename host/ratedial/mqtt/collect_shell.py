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
  after it, the shell reconnects with jittered back-off until stopped. A file continued is
  only read (and locked) until the first connection: one refused or never connected is
  left as it was, byte for byte.
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


def read_collected(cfg: CollectConfig) -> ResumeState:
    """Lock the collected recording at ``cfg.record`` and read what it holds, refusing (one
    line, the lock released) one that is no collected recording or has another prefix.
    Nothing of the file changes."""
    path = cfg.record
    lock(path)
    try:
        st = read_resume_state(path)
        prefix = st.meta["collected"].get("prefix")
        if isinstance(prefix, str) and prefix != cfg.mqtt.topic_prefix:
            raise UsageError(
                f"{path} was collected from topic prefix {prefix!r}, not "
                f"{cfg.mqtt.topic_prefix!r}: continue it with --prefix {prefix}, or "
                "choose another --record path")
    except BaseException:
        unlock(path)
        raise
    return st


def continue_recording(cfg: CollectConfig, st: ResumeState,
                       on_error: Callable[[RecordingError], None],
                       on_notice: Callable[[str], None] | None = None) -> tuple[Recorder, int]:
    """Reopen the collected recording :func:`read_collected` read (and locked) to write
    on (only once the collection runs: its first connection)."""
    rec = Recorder(cfg.record, meta={}, append=True, next_ids=st.next_ids,
                   on_error=on_error, on_notice=on_notice)
    offset = st.wall_offset_ns
    if offset is None:
        mono = time.monotonic_ns()
        offset = time.time_ns() - mono
        rec.put("wall_anchors", (mono, mono + offset))
    resumes = list(st.meta.get("resumed_wall_ns") or [])
    rec.set_meta("resumed_wall_ns", [*resumes, time.time_ns()])
    return rec, offset


def open_recording(cfg: CollectConfig, client_id: str,
                   on_error: Callable[[RecordingError], None],
                   on_notice: Callable[[str], None] | None = None) -> tuple[
                       Recorder, ResumeState | None, int]:
    """Create the recording, or reopen a collected one to continue it."""
    from .. import __version__

    path = cfg.record
    if path.exists():
        st = read_collected(cfg)
        try:
            rec, offset = continue_recording(cfg, st, on_error, on_notice)
        except BaseException:
            unlock(path)
            raise
        return rec, st, offset
    offset = time.time_ns() - time.monotonic_ns()
    rec = Recorder(path, on_error=on_error, on_notice=on_notice, meta={
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
        self.store: RecorderStore | None = None
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

        resume: ResumeState | None = None
        if self.cfg.record.exists():  # continued: written from the first connection on
            resume = read_collected(self.cfg)
        else:
            recorder, _, offset = open_recording(self.cfg, self.client_id, on_error,
                                                 self.on_message)
            self._start(recorder, offset, None)
        created = resume is None
        undo_signals = stop_on_signals(loop, self.stop_event.set)
        t0 = time.monotonic()
        timer: asyncio.TimerHandle | None = None
        if self.cfg.duration_s is not None:
            timer = loop.call_later(self.cfg.duration_s, self.stop_event.set)
        protocol = aiomqtt.ProtocolVersion.V5
        backoff = Backoff()
        last_error: str | None = None
        try:
            while self.connects == 0 or not self.stop_event.is_set():
                try:
                    async with self._client(protocol) as client:
                        if self.collector is None:  # a continued file, first connection
                            assert resume is not None
                            self._start(*continue_recording(self.cfg, resume, on_error,
                                                            self.on_message),
                                        resume)
                        collector = self.collector
                        assert collector is not None
                        self.connected = True
                        self.connects += 1
                        last_error = None
                        backoff.reset()
                        collector.connected_to(_public_url(self.cfg.mqtt.broker))
                        for topic in subscriptions(self.cfg.mqtt.topic_prefix,
                                                   self.cfg.share):
                            await subscribe(client, topic)
                        # said once subscribed: what is published from then on is collected
                        # (said before, a publisher that waited for it could race the
                        # subscriptions: a loaded CI preview lost a test's samples so)
                        self.on_message(f"connected to {self.address.host}:"
                                        f"{self.address.port} as {self.client_id}")
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
                    what = "is there, but" if reason.startswith("it refused") else \
                        "unreachable, retrying:"
                    self.on_message(f"broker {what} {reason}")
                    last_error = reason
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop_event.wait(), backoff.pause())
        finally:
            if timer is not None:
                timer.cancel()
            undo_signals()
            if self.collector is None or self.store is None:
                unlock(self.cfg.record)  # a continuation that never connected: as it was
            elif self.connects == 0 and created:
                # never connected: leave no empty recording behind
                with contextlib.suppress(RecordingError):
                    self.store.recorder.close()
                unlock(self.cfg.record)
                remove_recording(Path(self.cfg.record), self.store.recorder.made_dirs)
            else:
                try:
                    self._close(self.collector, self.store)
                finally:
                    unlock(self.cfg.record)
        assert self.collector is not None  # made at the latest by the first connection
        summary = self.collector.summary()
        # the file written, also when it had to be written again elsewhere (deleted)
        summary["recording"] = str(self.cfg.record if self.store is None
                                   else self.store.recorder.path)
        summary["seconds"] = round(time.monotonic() - t0, 3)
        summary["client_id"] = self.client_id
        return summary

    def _start(self, recorder: Recorder, offset: int, resume: ResumeState | None) -> None:
        """The recording is open: the collector writes to it from now on."""
        self.recorder = recorder
        self.store = RecorderStore(recorder)
        self.collector = Collector(self.cfg.mqtt.topic_prefix, self.store,
                                   wall_offset_ns=offset, settle_s=self.cfg.settle_s,
                                   request_timeout_s=self.cfg.request_timeout_s,
                                   resume=resume, on_notice=self.on_message)

    def _close(self, collector: Collector, store: RecorderStore) -> None:
        recorder = store.recorder
        ended = None
        if not self.failure:
            with contextlib.suppress(RecordingError):
                collector.record_holes()
                recorder.set_meta("collected", {**collector.describe(),
                                                "daemon_status": collector.daemons})
                ended = {"ended_wall_ns": time.time_ns()}  # once all else is in the file
        try:
            store.close(ended=ended)
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
