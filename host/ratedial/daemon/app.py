"""``ratedial run``: wires the daemon, the recorder, MQTT and the live view together."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import secrets
import selectors
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from .. import __version__
from .._platform.signals import stop_on_signals
from .._platform.stopsignal import ignore_stop_signals
from ..config import RunConfig
from ..errors import NO_FIRMWARE_HINT, RatedialError
from ..media import MediaOutput, MediaSession, NoPlayer
from ..mqtt.archive import find_earlier, find_unfinished
from ..mqtt.topics import Topics, checked_daemon_id
from ..outputs import EventOut, Sink
from ..recording.walfile import wal_of
from ..recording.writer import Recorder, RecordingError, remove_recording, try_lock
from .dialview import DialView
from .run import HANDSHAKE_S, Daemon
from .sinks import RecorderSink
from .summary import LostAtEnd, NoDialAnswered, RunSummary
from .view import LiveView, player_line

SECRET_FLAGS = ("--password",)


def first_leaf(group: BaseExceptionGroup[Any]) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def recording_path(record: str | None) -> Path:
    """Where a run records: ``record`` as given, or a new ``<date>-<time>.ratedial`` in
    ``recordings/`` or in the folder ``record`` names (an existing folder, or a name ending
    in a path separator)."""
    if not record:
        return default_recording_path()
    if record.endswith(("/", os.sep)) or Path(record).is_dir():
        return default_recording_path(Path(record))
    return Path(record)


def default_recording_path(folder: Path = Path("recordings")) -> Path:
    """``<folder>/<date>-<time>.ratedial``; ``-2``, ``-3``, ... before the suffix when a
    recording of that second exists (two daemons started together on one machine)."""
    stem = folder / time.strftime("%Y%m%d-%H%M%S")
    path, n = stem.with_name(stem.name + ".ratedial"), 2
    while path.exists():
        path, n = stem.with_name(f"{stem.name}-{n}.ratedial"), n + 1
    return path


def scrub_command_line(argv: list[str]) -> list[str]:
    """The command line as stored in recordings: values of secret-looking flags removed."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            out.append("***")
            skip = False
        elif arg in SECRET_FLAGS:
            out.append(arg)
            skip = True
        elif "://" in arg and "@" in arg:
            scheme, rest = arg.split("://", 1)
            out.append(f"{scheme}://***@{rest.split('@', 1)[1]}")
        else:
            out.append(arg)
    return out


def status_dict(v: DialView, daemon: str) -> dict[str, Any]:
    return {"v": 1, "dial": v.uid, "rater": v.rater, "daemon": daemon, "state": v.state,
            "board": v.board, "firmware": v.firmware, "received": v.received,
            "missing": v.missing, "rejected": v.rejected, "rate_hz": round(v.rate_hz, 1),
            "rating": v.rating, "boot": v.boot, "next_index": v.next_index,
            "clock": {"latency_ms": v.latency_ms, "skew_ppm": v.skew_ppm,
                      "uncertainty_us": v.uncertainty_us},
            "wall_ns": time.time_ns()}


def precise_loop() -> asyncio.AbstractEventLoop:
    """An event loop whose timers fire to the microsecond.

    The default epoll selector waits in whole milliseconds, counted from the loop's last
    wake-up, which on a dial link is a frame arrival; PINGs then leave at a fixed phase of
    the 1 ms USB frame and every one waits most of a frame before the dial reads it, which
    biases the clock model (docs/timing.md). ``select`` takes microseconds; a daemon has
    far fewer than its 1024 descriptors.
    """
    return asyncio.SelectorEventLoop(selectors.SelectSelector())


def lost_at_end(dials: list[DialView], t0_ns: int, end_ns: int) -> dict[str, LostAtEnd]:
    """The dials lost and not back at the run's end (the rest of the run is not recorded),
    by uid: when in the run (seconds from ``t0_ns``) and for how long until ``end_ns``. A
    dial lost before ``t0_ns`` (during the handshake) is lost from the run's start: its
    ``for_s`` was the time since it was lost, longer than the run (a review, 2026-12-05)."""
    found = {}
    for v in dials:
        if v.state == "lost" and v.lost_ns is not None:
            lost_ns = max(v.lost_ns, t0_ns)
            found[v.uid] = LostAtEnd(at_s=(lost_ns - t0_ns) / 1e9,
                                     for_s=max(0, end_ns - lost_ns) / 1e9, cause=v.lost_cause)
    return found


def _close_quietly(recorder: Recorder, lock_fd: int | None) -> None:
    """Close a run's recording and its lock on a failure (the recorder has reported its own
    error, if it had one)."""
    with contextlib.suppress(RecordingError):
        recorder.close()
    if lock_fd is not None:
        os.close(lock_fd)


def serve(cfg: RunConfig, *, console: Console | None = None,
          argv: list[str] | None = None, last: bool = False) -> RunSummary:
    """Run the daemon to the end on a :func:`precise_loop`. ``last``: the process only says
    how the run went after it (``ratedial run``): from the run's end on, stop signals are
    ignored, so a second Ctrl+C cannot turn its clean end into a kill."""
    with asyncio.Runner(loop_factory=precise_loop) as runner:
        return runner.run(run_daemon(cfg, console=console, argv=argv, last=last))


class _Stopper:
    """What a stop signal does: stop the daemon, or, before it exists (the recording being
    made, the broker started), have it stop as soon as it does. Installed first, so that no
    moment of the start leaves SIGTERM's default (killed, a file without tables left
    behind) or lets Ctrl+C be lost."""

    def __init__(self) -> None:
        self.asked = False
        self._stop: Callable[[], None] | None = None

    def __call__(self) -> None:
        self.asked = True
        if self._stop is not None:
            self._stop()

    def attach(self, stop: Callable[[], None]) -> None:
        self._stop = stop
        if self.asked:
            stop()


async def _refuse_if_online(cfg: RunConfig, daemon_id: str) -> None:
    """A run with a broker whose daemon id is live there already is refused before it makes
    anything (:mod:`~ratedial.mqtt.liveness`): connecting as the same client would take over
    that daemon's connection, even for a run that then fails to start."""
    broker = cfg.mqtt.broker
    if broker in ("none", "embedded"):
        return
    from ..mqtt.liveness import daemon_online
    from ..mqtt.requests import parse_broker

    address = parse_broker(broker, tls=cfg.mqtt.tls)
    topic = Topics(cfg.mqtt.topic_prefix, daemon_id).daemon_status
    if await daemon_online(cfg.mqtt, address, topic):
        raise RatedialError(f"daemon {daemon_id} is running already: its status on broker "
                            f"{address.host}:{address.port} is live; a second run with its "
                            "id would take over its broker connection (give this run another "
                            "--daemon-id, or stop the other run)")


async def run_daemon(cfg: RunConfig, *, console: Console | None = None,
                     argv: list[str] | None = None, last: bool = False) -> RunSummary:
    stopper = _Stopper()
    undo_signals = stop_on_signals(asyncio.get_running_loop(), stopper)  # Ctrl+C, Ctrl+Break
    try:
        await _refuse_if_online(cfg, checked_daemon_id(cfg.mqtt.daemon_id))
        return await _run_daemon(cfg, stopper, console=console, argv=argv)
    finally:
        undo_signals()
        if last:
            ignore_stop_signals()


async def _run_daemon(cfg: RunConfig, stopper: _Stopper, *, console: Console | None = None,
                      argv: list[str] | None = None) -> RunSummary:
    console = console or Console(stderr=False)
    path = recording_path(cfg.record)
    loop = asyncio.get_running_loop()
    failure: list[RecordingError] = []
    daemon: Daemon | None = None

    def on_record_error(err: RecordingError) -> None:
        failure.append(err)
        if daemon is not None:
            loop.call_soon_threadsafe(daemon.stop)

    lock_fd: int | None = None  # the lock this run keeps on its recording (taken below)

    def restored(message: str, path: Path) -> None:  # on the loop's thread
        nonlocal lock_fd
        with contextlib.suppress(OSError):  # the run's lock moves to the new file
            new_fd = try_lock(path)
            if new_fd is not None:
                if lock_fd is not None:
                    os.close(lock_fd)
                lock_fd = new_fd
        if publisher is not None:  # backfill and replays read the file written now
            publisher.recording_moved(path)
        if daemon is None:
            console.print(f"ratedial: {message}", highlight=False, soft_wrap=True)
        else:
            daemon.say_once(message)
            daemon.event(None, "recording_restored", recording=path.name)

    def on_record_notice(message: str) -> None:  # on the recorder's thread
        loop.call_soon_threadsafe(restored, message, recorder.path)

    def ratings() -> dict[str, float]:
        views = {} if daemon is None else daemon.views
        return {(v.rater or uid): v.rating for uid, v in views.items() if v.rating is not None}

    # Before the recording exists: a bad --player or daemon id must not leave a file behind.
    daemon_id = checked_daemon_id(cfg.mqtt.daemon_id)
    media = make_media_session(cfg, ratings)
    anchor = (time.monotonic_ns(), time.time_ns())  # the run's wall offset, recorded as is
    wall_offset = anchor[1] - anchor[0]
    run_id = secrets.token_hex(8)
    scale_meta = {"minimum": cfg.scale.minimum, "maximum": cfg.scale.maximum,
                  "start": cfg.scale.start, "counts_per_point": cfg.scale.counts_per_point,
                  "anchors": cfg.scale.anchors}  # as the recording and LSL state it
    early_sinks: list[Sink] = []
    if cfg.lsl:  # a missing pylsl is one line before the recording exists
        from ..lsl import LslSink

        early_sinks.append(LslSink(
            raters=lambda uid: rec_sink.raters(uid),  # noqa: PLW0108 (made below)
            daemon_id=daemon_id,
            scale=scale_meta))
    web = None
    if cfg.web is not None:  # a bad address or a port in use: the same
        from ..web import WebServer, WebSink

        web_sink = WebSink(views=lambda: [] if daemon is None else list(daemon.views.values()),
                           media=media.status, scale=(cfg.scale.minimum, cfg.scale.maximum))
        early_sinks.append(web_sink)
        web = WebServer(web_sink, cfg.web)
        console.print(f"ratedial: live view on {await web.start()}", highlight=False,
                      soft_wrap=True)
    recorder = Recorder(path, on_error=on_record_error, on_notice=on_record_notice, meta={
        "software_version": __version__,
        "created_wall_ns": time.time_ns(),
        "host": socket.gethostname(),
        "command_line": scrub_command_line(argv if argv is not None else sys.argv),
        "config": cfg.public(),
        "scale": scale_meta,
        "session": cfg.session,
        "media": None,
        "daemon_id": daemon_id,
        "run_id": run_id,
        "mqtt": None if cfg.mqtt.broker == "none" else {
            "prefix": cfg.mqtt.topic_prefix, "broker": cfg.mqtt.broker},
    })
    # Ours alone (we just created it); a later run resumes it only once we are gone.
    lock_fd = try_lock(path)
    recorder.put("wall_anchors", anchor)  # republished later, its samples keep their wall_ns
    rec_sink = RecorderSink(recorder, raters=lambda uid: None)
    sinks: list[Sink] = [rec_sink]
    daemon = Daemon(cfg, sinks, media=media, next_event_id=recorder.new_event_id,
                    on_message=lambda m: console.print(f"ratedial: {m}", highlight=False,
                                                       soft_wrap=True))
    rec_sink.raters = lambda uid: daemon.views[uid].rater if uid in daemon.views else None

    broker_kind = cfg.mqtt.broker
    embedded = None
    publisher = None
    if broker_kind != "none":
        from ..mqtt.publisher import MqttPublisher

        mqtt_cfg = cfg.mqtt
        resume = [] if broker_kind == "embedded" else find_unfinished(
            path.parent, current=path, daemon_id=daemon_id, prefix=cfg.mqtt.topic_prefix,
            broker=cfg.mqtt.broker)
        earlier = [] if broker_kind == "embedded" else find_earlier(
            path.parent, current=path, daemon_id=daemon_id,
            skip=[u.archive.path for u in resume])
        if broker_kind == "embedded":
            from ..mqtt.broker import EmbeddedBroker

            embedded = EmbeddedBroker()
            await embedded.start()
            from dataclasses import replace

            mqtt_cfg = replace(mqtt_cfg, broker=embedded.url)
            console.print(f"ratedial: embedded MQTT broker on {embedded.url}", highlight=False,
                          soft_wrap=True)
        publisher = MqttPublisher(
            mqtt_cfg, topics=Topics(cfg.mqtt.topic_prefix, daemon_id), recorder=recorder,
            run_id=run_id, resume=resume, earlier=earlier, rater_of=rec_sink.raters,
            status_of=lambda: {uid: status_dict(v, daemon_id) for uid, v in daemon.views.items()},
            unrecorded_from=daemon.unrecorded_from,
            wall_offset_ns=wall_offset, software_version=__version__,
            mqtt5=embedded is None,  # the embedded broker (amqtt) speaks MQTT 3.1.1
            on_link=lambda kind, data: daemon.event(None, kind, **data))
        publisher.scale = scale_meta
        sinks.append(publisher)
        if resume:
            console.print(f"ratedial: republishing what {len(resume)} earlier recording(s) of "
                          f"daemon {daemon_id} had not published", highlight=False,
                          soft_wrap=True)  # one line, however narrow the output

    sinks += early_sinks

    def broker_state() -> str:
        if publisher is None:
            return "none"
        text = f"{publisher.state} ({publisher.address.host}:{publisher.address.port})"
        if publisher.refused_messages:  # MQTT 5: messages the broker answered with a refusal
            text += f", {publisher.refused_messages} refused ({publisher.refusal_summary()})"
        return text

    view = LiveView(console, lambda: list(daemon.views.values()), broker_state,
                    lo=cfg.scale.minimum, hi=cfg.scale.maximum, recording=str(path),
                    player=lambda: player_line(media.status()))
    stopper.attach(daemon.stop)
    # Everything built so far (modules, classes, the sinks) lives as long as the run: out of
    # the collector's sight, a full collection walks only what the run allocates since. At
    # 16 dials a full collection of the whole heap held the event loop for 50-80 ms, longer
    # than a sample may wait (bench_capacity's p99 limit is 25 ms); frozen, 10-45 ms.
    gc.collect()  # garbage of the start-up is collected, not frozen
    gc.freeze()
    t0 = time.monotonic()
    t0_ns = time.monotonic_ns()  # the clock of the dials' lost_ns and the daemon's stopped_ns
    daemon.event(None, "run_start", recording=path.name)
    ran = False
    try:
        with view:
            # A task that fails (the daemon: a --port that does not exist) cancels the others;
            # the publisher then says "offline", disconnects and closes its socket before the
            # group ends, within seconds (MqttPublisher.run), so nothing of it outlives the loop.
            async with asyncio.TaskGroup() as tg:
                tg.create_task(daemon.run(), name="daemon")
                tg.create_task(_run_media(daemon, media, RunMediaOutput(daemon, recorder)),
                               name="player")
                if publisher is not None:
                    tg.create_task(publisher.run(), name="mqtt")
                tg.create_task(_refresh(view, daemon, recorder), name="view")
                if web is not None:
                    tg.create_task(web.run(daemon.stop_event), name="web")
        ran = True
    except* RatedialError as group:
        raise first_leaf(group) from None
    finally:
        gc.unfreeze()  # run in-process (tests): what this run built is collectable again
        if embedded is not None:
            await embedded.stop()
        if not ran:  # failed or cancelled: what is recorded so far is committed, file closed
            _close_quietly(recorder, lock_fd)
            if not daemon.cores:  # no dial ever answered (a bad --port, say): nothing to
                # keep, and a file left behind would refuse the corrected command
                remove_recording(path, recorder.made_dirs)

    def summarise() -> RunSummary:
        summary = RunSummary(path=recorder.path, seconds=time.monotonic() - t0,  # if restored
                             dials=list(daemon.views.values()), broker=broker_state(),
                             mqtt_refused=0 if publisher is None
                             else publisher.refused_messages,
                             daemon_id=daemon_id,
                             silent_ports=[p for p in cfg.ports if p not in daemon.answered],
                             ended="failed" if failure else daemon.ended or "stopped")
        end_ns = daemon.stopped_ns or time.monotonic_ns()  # the run's end, not the final save
        summary.lost_at_end = lost_at_end(summary.dials, t0_ns, end_ns)
        if publisher is not None:  # this run's, then earlier recordings' it republished
            summary.unpublished, summary.unpublished_earlier = publisher.unpublished(
                recorder.next_id("events") - 1)
        for core in daemon.cores.values():
            for reason, n in core.missing_by_reason().items():
                summary.gaps[reason] = summary.gaps.get(reason, 0) + n
            for reason, n in core.rejected.items():
                summary.rejected[reason] = summary.rejected.get(reason, 0) + n
        return summary

    if failure:
        _close_quietly(recorder, lock_fd)
        failure[0].summary = summarise()  # what was received, for --json (the file: what
        raise failure[0]                  # was committed before it failed)
    if cfg.ports and not daemon.cores:  # the ports named were there, but no dial answered
        _close_quietly(recorder, lock_fd)
        remove_recording(path, recorder.made_dirs)  # it holds no dial's data
        if stopper.asked and time.monotonic() - t0 < HANDSHAKE_S:
            silent = NoDialAnswered(f"stopped before a dial answered on {', '.join(cfg.ports)}"
                                    ": nothing was recorded")
        else:
            silent = NoDialAnswered(f"no dial answered on {', '.join(cfg.ports)} during the "
                                    "run in a protocol this host speaks: nothing was recorded "
                                    f"({NO_FIRMWARE_HINT})")
        silent.summary = summarise()  # for --json: its error, silent_ports and no file
        silent.summary.kept = False
        raise silent
    ended = {"ended_wall_ns": time.time_ns()}  # written once all else is in the file
    if publisher is not None:
        publisher.save_progress(final=True)
    try:
        recorder.close(ended=ended)
    except RecordingError as exc:  # the final save failed (the disk filled): exit 1
        failure.append(exc)  # the summary says the run failed
        exc.summary = summarise()
        raise
    finally:
        if lock_fd is not None:
            os.close(lock_fd)
    if not recorder.folded:  # a reader held the last commits back: the file alone lacks them
        wal = wal_of(recorder.path)
        console.print(f"ratedial: note: another program was reading {recorder.path} as the "
                      f"run ended, so its last part is still only in {wal.name}: keep "
                      f"{wal.name} and {recorder.path.name}-shm beside it until it has been "
                      f"opened once after that program is done (ratedial analyze "
                      f"{recorder.path} folds them in)", highlight=False, soft_wrap=True)
    return summarise()


def make_media_session(cfg: RunConfig, ratings: Callable[[], dict[str, float]]) -> MediaSession:
    spec = "mpv" if cfg.video and cfg.player == "none" else cfg.player
    if spec == "none":
        return NoPlayer()
    from ..players import create_session

    return create_session(spec, video=cfg.video, latency_ms=cfg.player_latency_ms,
                          osd=cfg.osd, ratings=ratings)


class RunMediaOutput:
    """Media events and identities go into the recording and out on the events topic."""

    def __init__(self, daemon: Daemon, recorder: Recorder) -> None:
        self.daemon = daemon
        self.recorder = recorder

    def event(self, kind: str, data: dict[str, Any], host_ns: int) -> None:
        self.daemon.emit([EventOut("", host_ns, kind, data)])

    def add_media(self, path: str | None, duration_s: float | None, fps: float | None,
                  fingerprint: str | None) -> int:
        media_id = self.recorder.add_media(path, duration_s, fps, fingerprint)
        self.recorder.set_meta("media", {"media_id": media_id, "path": path,
                                         "duration_s": duration_s, "fps": fps,
                                         "fingerprint": fingerprint})
        return media_id

    def observation(self, host_ns: int, media_id: int | None, media_s: float | None,
                    rate: float | None, playing: bool | None, source: str) -> None:
        self.recorder.put("media_obs", (host_ns, media_id, media_s, rate,
                                        None if playing is None else int(playing), source))


async def _run_media(daemon: Daemon, media: MediaSession, out: MediaOutput) -> None:
    task = asyncio.ensure_future(media.run(out))
    stop = asyncio.ensure_future(daemon.stop_event.wait())
    await asyncio.wait([task, stop], return_when=asyncio.FIRST_COMPLETED)
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    else:
        task.result()
    stop.cancel()


async def _refresh(view: LiveView, daemon: Daemon, recorder: Recorder) -> None:
    last_anchor = time.monotonic()
    while not daemon.stop_event.is_set():
        view.refresh()
        if time.monotonic() - last_anchor > 60:
            last_anchor = time.monotonic()
            recorder.put("wall_anchors", (time.monotonic_ns(), time.time_ns()))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(daemon.stop_event.wait(), 0.25)
    # the publisher (if any) stops when the daemon does, after publishing the end of the run
    # and the frames still waiting for a frame to confirm them (Daemon.finish)
    daemon.finish()
    if recorder.error is None:
        daemon.event(None, "run_end", reason=daemon.ended or "stopped")
    for sink in daemon.sinks:
        stop = getattr(sink, "stop", None)
        if stop is not None:
            await stop()
