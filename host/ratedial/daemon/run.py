"""The daemon: one task per port, one per sink, in a TaskGroup (thin asyncio shell).

Invariants:

* A dial is known by its unique id from HELLO, never by its port; the same :class:`DialCore`
  follows it across unplugging and ports.
* Nothing a dial, a port or a user can do ends in a traceback: port failures become ``lost``
  states and events, protocol mismatches one-line messages, and the run goes on.
* Each sink gets every output in order; sinks never block the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import random
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from serial.tools import list_ports

from .._platform import port_key
from ..clock import DeviceClock
from ..config import RunConfig
from ..errors import NO_FIRMWARE_HINT, PortError, ProtocolMismatch
from ..media import MediaSession, NoPlayer
from ..outputs import EventOut, Out, SamplesOut, Sink
from ..wire import (
    PROTOCOL_VERSION,
    Button,
    Frame,
    Hello,
    Info,
    Ping,
    Rejected,
    Samples,
    Status,
    Sync,
)
from ..wire.checks import field_problem
from .core import DialCore
from .dialview import DialView, name_together
from .epoch import Held
from .link import PortLink, close_link, open_link

log = logging.getLogger("ratedial")

# USB vendor ids of boards the firmware runs on (Raspberry Pi, Espressif, common USB-UART
# bridges on ESP32 boards: Silicon Labs CP210x, WCH CH34x, FTDI).
DIAL_VIDS = {0x2E8A, 0x303A, 0x10C4, 0x1A86, 0x0403}
HANDSHAKE_S = 3.0
# A port found by scanning that gives no HELLO in this time is another device on a common
# USB-serial chip (a trigger box, an Arduino): closed, and left alone while it stays plugged in.
SCAN_GIVE_UP_S = 5.0


def dial_ports(ports: Iterable[Any] | None = None, *, platform: str = sys.platform) -> list[str]:
    """The serial ports of boards a dial can be, by USB vendor id (never by name): COM4 on
    Windows, /dev/ttyACM0 on Linux, /dev/cu.usbmodem1101 on macOS. On macOS a port also
    appears as /dev/tty.*, whose open waits for carrier detect: only the cu.* side is used."""
    found = list_ports.comports() if ports is None else ports
    out: list[str] = []
    for p in found:
        if p.vid not in DIAL_VIDS:
            continue
        device = str(p.device)
        if platform == "darwin" and device.startswith("/dev/tty."):
            device = "/dev/cu." + device.removeprefix("/dev/tty.")
        out.append(device)
    return list(dict.fromkeys(out))


FAST_SYNCS = 10  # answered PINGs per boot before the PING interval slows to the configured one
HOLD_NS = 6_000_000_000  # SAMPLES wait this long for their dial's first HELLO
# A boot's first samples wait at most this long (from its HELLO) for a SYNC that pins its
# clock (daemon/settle.py) before they are mapped as the clock then stands (docs/timing.md,
# "The first frames of a boot"); the first PING goes out as the HELLO is in, so the wait is
# 40-80 ms at a run's start when the dial answers
SETTLE_S = 2.0


class Daemon:
    def __init__(self, cfg: RunConfig, sinks: list[Sink], *,
                 media: MediaSession | None = None,
                 next_event_id: Callable[[], int] | None = None,
                 on_message: Callable[[str], None] | None = None) -> None:
        self.cfg = cfg
        self.media: MediaSession = media or NoPlayer()
        # Without a player, samples go out with their media columns empty, which every sink
        # reads as NoPlayer's annotation (no media, state NONE: SamplesOut says so): not
        # annotating saves a SamplesOut a frame (issue 16)
        self._annotate = not isinstance(self.media, NoPlayer)
        self._next_event_id = next_event_id or itertools.count(1).__next__
        self.sinks = sinks
        self.scale = cfg.scale.scale()
        self.cores: dict[str, DialCore] = {}
        self.views: dict[str, DialView] = {}
        self.links: dict[str, PortLink] = {}  # port -> link
        self.by_port: dict[str, str] = {}  # port -> uid
        self._tokens = itertools.count(1)
        self._pings: dict[tuple[str, int], int] = {}
        self._port_tasks: dict[str, asyncio.Task[None]] = {}
        self._said: set[str] = set()
        self._early: dict[str, Held] = {}  # port -> SAMPLES that came before any HELLO
        self._info_sent: dict[str, int] = {}
        self._not_dials: set[str] = set()  # scanned ports that never answered, while plugged in
        self.answered: set[str] = set()  # ports on which a dial answered during the run
        self._say = on_message or (lambda m: log.warning("%s", m))
        self.stop_event = asyncio.Event()
        self.ended: str | None = None  # why it stopped, the first reason: stopped, duration
        self.stopped_ns: int | None = None  # monotonic time it was asked to stop (first ask)
        self._finished = False  # the run has ended (finish): reads after it are dropped

    # --- outputs --------------------------------------------------------------------------

    def emit(self, outs: list[Out]) -> None:
        if not outs:
            return
        annotate = self._annotate
        if annotate:
            for o in outs:
                if isinstance(o, SamplesOut):
                    self.media.poll()  # media events it records go out before these samples
                    break
        for i, o in enumerate(outs):
            if isinstance(o, SamplesOut):
                if annotate:
                    ids, pos, states = self.media.annotate(o.host_ns)
                    # built directly: dataclasses.replace walks the fields every frame
                    outs[i] = SamplesOut(o.uid, o.boot_id, o.first_index, o.period_us,
                                         o.device_us, o.host_ns, o.counts, o.ratings, o.flags,
                                         ids, pos, states)
                v = self.views.get(o.uid)
                if v is not None:
                    v.received += len(o)
                    v.rating = o.ratings[-1]
                    v.count = o.counts[-1]
                    v.note_rate(time.monotonic_ns(), len(o))
            elif isinstance(o, EventOut) and not o.event_id:
                outs[i] = replace(o, event_id=self._next_event_id())
                if o.kind == "clock_rate_implausible":
                    self.say_once(f"dial {o.uid}: its clock ran {o.data['device_s']} s in "
                                  f"{o.data['host_s']} s of this computer's time (x"
                                  f"{o.data['ratio']}); its samples are recorded without "
                                  "host times from now on (docs/timing.md)")
        for sink in self.sinks:
            sink.handle(outs)

    def event(self, uid: str | None, kind: str, **data: Any) -> None:
        self.emit([EventOut(uid or "", time.monotonic_ns(), kind, data)])

    def unrecorded_from(self, uid: str, boot_id: int) -> int | None:
        """The first index of ``uid``'s boot ``boot_id`` taken in but not yet put out to the
        recording (its boot's first samples wait for the clock: docs/timing.md), or None."""
        core = self.cores.get(uid)
        ep = None if core is None else core.epochs.get(boot_id)
        return ep.unsettled[0].first if ep is not None and ep.unsettled else None

    def say_once(self, message: str) -> None:
        if message not in self._said:
            self._said.add(message)
            self._say(message)

    # --- frames from a port ---------------------------------------------------------------

    def _frames(self, port: str, items: list[Frame | Rejected], host_ns: int) -> None:
        """Everything one read of ``port`` brought, in stream order.

        Frames go to the core of the dial whose HELLO this port gave last; a HELLO naming
        another dial ends the first one's connection here and binds the port to the new one
        from that frame on. Before any HELLO, SAMPLES wait in the port's :class:`Held`.
        """
        if self._finished:
            # A read handed over after the run ended (the thread reader's last chunk, queued
            # to the loop): the run ended before it, in the recording and on MQTT alike (it
            # was recorded but never published while the publisher stopped).
            return
        outs: list[Out] = []
        core = self._core_of(port)
        for f in items:
            if isinstance(f, Rejected):
                self._rejected_chunk(port, core, f)
                continue
            if isinstance(f, Hello) and (core is None or core.uid != f.uid_hex):
                # An impossible HELLO takes no port: one of a dial this run knows is judged
                # by its boots, as on the port it came from (and counted there, or by the
                # dial it names when the port has none yet)
                known = self.cores.get(f.uid_hex)
                if known is not None:
                    problem = known.hello_problem(f, host_ns)
                else:
                    field = field_problem(f)
                    problem = None if field is None else ("field", field)
                if problem is not None:
                    judge = core or known
                    if judge is not None:
                        outs += judge.reject(f, *problem, host_ns)
                    continue
                self.emit(outs)
                outs = []
                if core is not None:
                    self._lose(port, core.uid, "replaced")
                core = self._bind(port, f, host_ns)
                if core is None:
                    continue
                early = self._early.pop(port, None)
                if early is not None:  # the HELLO places them, or rejects what is not its
                    core.held.merge(early)
                outs += core.receive(f, host_ns)
                continue
            if core is None:
                if isinstance(f, Samples):
                    early = self._early.setdefault(port, Held(HOLD_NS))
                    early.add(f, host_ns, "no_hello")
                    early.expire(host_ns)
                continue
            sent = self._pings.pop((port, f.token), None) if isinstance(f, Sync) else None
            got = core.receive(f, host_ns, ping_sent_ns=sent)
            outs += got
            if isinstance(f, Status):
                self.views[core.uid].last_status = f
            elif isinstance(f, Button) and f.pressed and got and \
                    isinstance(got[0], EventOut) and got[0].kind == "button":
                press = getattr(self.media, "button", None)
                if press is not None:  # manual mode marks media time
                    est = core.epoch.clock.peek() if core.epoch else None
                    press(host_ns if est is None else est.to_host_ns(f.t_us))
        if core is not None:
            self._refresh_view(core, host_ns)
        self.emit(outs)
        if core is not None and core.needs_hello:
            self._ask_hello(port)

    def _core_of(self, port: str) -> DialCore | None:
        uid = self.by_port.get(port)
        return self.cores.get(uid) if uid else None

    def _rejected_chunk(self, port: str, core: DialCore | None, r: Rejected) -> None:
        if r.reason == "version" and r.version is not None:
            self.say_once(str(ProtocolMismatch(r.version, PROTOCOL_VERSION)) + f" ({port})")
        if core is not None:
            core.rejects()
            self.views[core.uid].rejected += 1

    def _refresh_view(self, core: DialCore, host_ns: int) -> None:
        view = self.views[core.uid]
        view.missing = core.total_missing
        view.rejected_content = sum(core.rejected.values())
        view.duplicates = core.duplicates
        view.stalls, view.stalled_s = core.stalls, core.stalled_us / 1e6
        ep = core.epoch
        if ep is None:
            return
        view.boot, view.next_index = ep.boot_id, ep.ledger.next_index
        est = ep.clock.peek()  # never a refit: what samples get must not depend on reads
        if est is not None:
            view.skew_ppm = est.skew_ppm
            view.uncertainty_us = est.uncertainty_ns / 1000
            if ep.last_device_us is not None:
                view.latency_ms = (host_ns - est.to_host_ns(ep.last_device_us)) / 1e6

    def _ask_hello(self, port: str) -> None:
        """Send INFO, at most every half second per port (a HELLO answers it)."""
        link = self.links.get(port)
        now = time.monotonic_ns()
        if link is not None and now >= self._info_sent.get(port, 0) + 500_000_000:
            self._info_sent[port] = now
            link.send(Info())

    def _lose(self, port: str, uid: str, cause: str) -> None:
        """The dial ``uid`` is no longer on ``port`` (unplugged, or another dial answered)."""
        if self.by_port.get(port) == uid:
            del self.by_port[port]
        view = self.views[uid]
        now = time.monotonic_ns()
        view.state = "lost"
        view.lost_ns, view.lost_cause = now, cause  # the summary names a dial not back
        view.rate_hz = 0.0
        view._window.clear()
        view._in_window = 0
        self.emit(self.cores[uid].unplugged(now, port, cause=cause))

    def _bind(self, port: str, h: Hello, host_ns: int) -> DialCore | None:
        """Bind ``port`` to the dial of ``h``; None if that dial is live on another port."""
        uid = h.uid_hex
        other = next((p for p, u in self.by_port.items() if u == uid and p != port), None)
        if other is not None and other in self.links:
            self.say_once(f"dial {uid} appears on both {other} and {port}; using {other}")
            return None
        self.by_port[port] = uid
        self.answered.add(port)
        core = self.cores.get(uid)
        conflict: dict[str, Any] | None = None
        if core is None:
            core = DialCore(uid, scale=self.scale, clock_factory=DeviceClock,
                            long_press_s=self.cfg.scale.long_press_s or None,  # 0: never
                            adc_units_per_point=self.cfg.scale.adc_units_per_point,
                            settle_s=SETTLE_S)
            self.cores[uid] = core
            labels = self.cfg.raters_for(uid, port)
            # each label one dial: a label by port that an earlier dial on that port took
            # is not given to the next dial there
            holder = {v.rater: u for u, v in self.views.items() if v.rater is not None}
            taken = [label for label in labels if label in holder]
            if len(labels) > 1:  # not guessed: recorded unlabelled, and said
                self.say_once(f"rater labels {name_together(labels)} dial {uid} on "
                              f"{port}: it is recorded without a rater label")
                conflict = {"port": port, "labels": labels}
            elif taken:
                self.say_once(f"rater label {taken[0]} already names dial "
                              f"{holder[taken[0]]}: dial {uid}, on the same port {port}, is "
                              "recorded without a rater label")
                conflict = {"port": port, "labels": labels, "labelled_dial": holder[taken[0]]}
            self.views[uid] = DialView(uid=uid, rater=labels[0] if len(labels) == 1 and not
                                       taken else None,
                                       conflict=tuple(labels) if conflict else ())
        view = self.views[uid]
        if view.state != "connected":
            view.state = "connected"
            view.lost_ns, view.lost_cause = None, ""
            view.port = port
            view.board, view.firmware = h.board, h.firmware
            self.event(uid, "dial_connected", port=port, boot_id=h.boot_id,
                       firmware=h.firmware, board=h.board, backend=h.backend)
        if conflict is not None:  # after dial_connected: the dial's row is made from its
            # first event, and that one carries its board and firmware
            self.event(uid, "rater_conflict", **conflict)
        return core

    def _housekeeping(self, port: str) -> None:
        """Bound every wait for a HELLO in time, even when the dial sends nothing more."""
        now = time.monotonic_ns()
        core = self._core_of(port)
        if core is not None:
            self.emit(core.expire(now))
            self._refresh_view(core, now)
            if core.needs_hello:
                self._ask_hello(port)
        early = self._early.get(port)
        if early is not None:
            early.expire(now)

    # --- ports ----------------------------------------------------------------------------

    async def _port_task(self, port: str, explicit: bool) -> None:
        backoff = 0.2
        first = True
        while not self.stop_event.is_set():
            try:
                link = await open_link(port, functools.partial(self._frames, port),
                                       io=self.cfg.serial.io)
            except PortError as exc:
                if first and explicit:
                    raise
                if not explicit:
                    return  # a scanned port that went away: the scanner will find it again
                if exc.gone:
                    # Unplugged: look again every 0.2 s. While no program has its port
                    # open a dial keeps only its newest 256 bytes (about 30 ms at 1 kHz),
                    # so each second of waiting past its return is a second of samples lost.
                    await self._sleep(0.2)
                    continue
                self.say_once(f"{exc}: retrying")  # busy (another program took it), denied
                await self._sleep(backoff)
                backoff = min(2.0, backoff * 2)
                continue
            first = False
            backoff = 0.2
            self.links[port] = link
            try:
                await self._serve(port, link, explicit)
            finally:
                self.links.pop(port, None)
                self._early.pop(port, None)
                await close_link(link)
            uid = self.by_port.get(port)
            if uid is not None and not self.stop_event.is_set():
                self._lose(port, uid, "unplugged")
            self.by_port.pop(port, None)
            if not explicit:
                return

    async def _serve(self, port: str, link: PortLink, explicit: bool = True) -> None:
        opened = time.monotonic()
        deadline = opened + HANDSHAKE_S
        while port not in self.by_port:
            if link.closed.done() or self.stop_event.is_set():
                return
            if not explicit and time.monotonic() > opened + SCAN_GIVE_UP_S:
                self._not_dials.add(port)
                if link.decoder.stats.last_foreign_version is not None:
                    self.say_once(f"{port}: a dial of another protocol version (said above): "
                                  "closed and left alone while it stays plugged in")
                else:
                    self.say_once(f"{port}: no ratedial dial answered in {SCAN_GIVE_UP_S:g} "
                                  "s: closed and left alone while it stays plugged in "
                                  f"(another device? if it is a dial, {NO_FIRMWARE_HINT})")
                return
            if time.monotonic() > deadline and link.decoder.stats.last_foreign_version is None:
                self.say_once(f"{port}: no ratedial dial answered ({NO_FIRMWARE_HINT})")
            # Again every 50 ms for the first second (a dial may miss an INFO sent as the
            # port opens, and its frames wait for the HELLO), then every half second (a
            # booting dial).
            link.send(Info())
            again = time.monotonic() + (0.05 if time.monotonic() - opened < 1.0 else 0.5)
            while port not in self.by_port and time.monotonic() < again and \
                    not link.closed.done() and not self.stop_event.is_set():
                await self._wait(link, 0.01)  # the first PING goes out as the HELLO is in
        while not link.closed.done() and not self.stop_event.is_set():
            token = next(self._tokens) & 0xFFFFFFFF
            self._pings[(port, token)] = link.send(Ping(token))
            if len(self._pings) > 64 * len(self.links):  # replies that never came
                for key in list(self._pings)[: len(self._pings) // 2]:
                    del self._pings[key]
            # A random fraction of a USB frame on top: PINGs must not keep one phase of the
            # 1 ms frame, or the lower clock bound never gets tight (docs/timing.md).
            await self._wait(link, self._ping_interval(port) + random.random() * 1e-3)
            self._housekeeping(port)

    def _ping_interval(self, port: str) -> float:
        """PINGs come ten times faster until a boot has FAST_SYNCS answers: a new clock
        model gets its two-way bounds in its first second, not its first ten."""
        core = self._core_of(port)
        if core is None or core.epoch is None or core.epoch.n_syncs < FAST_SYNCS:
            return self.cfg.ping_interval_s / 10
        return self.cfg.ping_interval_s

    async def _wait(self, link: PortLink, seconds: float) -> None:
        stop: asyncio.Future[Any] = asyncio.ensure_future(self.stop_event.wait())
        closed: asyncio.Future[Any] = link.closed
        try:
            await asyncio.wait([stop, closed], timeout=seconds,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.stop_event.wait(), seconds)

    async def _scan(self, tg: asyncio.TaskGroup) -> None:
        started = time.monotonic()
        while not self.stop_event.is_set():
            present = dial_ports()
            self._not_dials.intersection_update(present)  # unplugged: asked again when back
            # a --port given as a link (/dev/serial/by-id/...) is the device the scan finds
            # under its own name: opened twice, the second open found it busy
            held = {port_key(p) for p in self._port_tasks}
            for device in present:
                if device not in self._port_tasks and device not in self._not_dials \
                        and port_key(device) not in held:
                    self._start_port(tg, device, explicit=False)
            if not self._port_tasks and not self.cores and \
                    time.monotonic() - started >= HANDSHAKE_S:
                self.say_once("no dial found on USB yet: plug one in (ratedial devices lists "
                              "the dials this computer sees); recording goes on meanwhile")
            await self._sleep(1.0)

    def _start_port(self, tg: asyncio.TaskGroup, port: str, *, explicit: bool) -> None:
        task = tg.create_task(self._port_task(port, explicit), name=f"port {port}")
        self._port_tasks[port] = task
        task.add_done_callback(functools.partial(self._port_done, port))

    def _port_done(self, port: str, _task: asyncio.Task[None]) -> None:
        self._port_tasks.pop(port, None)

    async def run(self) -> None:
        """Run until :meth:`stop` or the configured duration."""
        for core in self.cores.values():
            core.start_rating()
        async with asyncio.TaskGroup() as tg:
            for port in self.cfg.ports:
                self._start_port(tg, port, explicit=True)
            if self.cfg.scan:
                tg.create_task(self._scan(tg), name="scan")
            if self.cfg.duration_s is not None:
                tg.create_task(self._stop_after(self.cfg.duration_s), name="duration")
            await self.stop_event.wait()
        self.finish()

    def finish(self) -> None:
        """The run is over: each dial's frames still waiting for a later frame to confirm
        them are taken in as far as they fit (:meth:`DialCore.finish`)."""
        now = time.monotonic_ns()
        for core in self.cores.values():
            self.emit(core.finish(now))
            self._refresh_view(core, now)  # the summary counts what they added
        self._finished = True

    async def _stop_after(self, seconds: float) -> None:
        await self._sleep(seconds)
        self.stop("duration")

    def stop(self, why: str = "stopped") -> None:
        """End the run; ``why`` (the first one asked counts): ``duration`` (its
        ``--duration`` ran out) or ``stopped`` (a stop signal, anything else)."""
        if self.ended is None:
            self.ended = why
            self.stopped_ns = time.monotonic_ns()
        self.stop_event.set()


