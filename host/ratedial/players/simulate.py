"""Simulated playback with exact ground truth, through the real parsers and the media clock.

For the benchmark (bench/bench_media.py) and the model tests: a :class:`FakeMedia` plays a
script of rater actions in simulated time; what mpv would push, or VLC/MPC would answer to a
poll, goes through the same code the live adapters use (:class:`MpvInput`,
:meth:`VlcSession.parse_status`, :func:`mpc_snapshot`) into a :class:`MediaClock`, and a
poll-and-extrapolate baseline (CARMA's method) gets the same player. A 1 kHz dial's samples
are placed on the media timeline ``emit_delay_s`` after they were taken, as the daemon does.

Invariants: pure and deterministic (seeded delays, no clocks read, no I/O).
"""

from __future__ import annotations

import functools
import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..media import MediaClock, MediaEvent, PollExtrapolate
from ..recording.schema import MediaState
from .fake_media import Emit, FakeMedia
from .mpc import MpcSession, mpc_snapshot, parse_variables
from .mpv_input import MpvInput, mpv_clock_config
from .vlc import VlcSession

NS = 1_000_000_000
MS = 1_000_000


@dataclass(frozen=True, slots=True)
class Action:
    at_s: float
    name: str  # play | pause | seek | seek_by | rate
    arg: float = 0.0


# A rater's session: plays, pauses, rewinds, changes speed, seeks near the end, plays out.
STANDARD_SCRIPT: tuple[Action, ...] = (
    Action(1.0, "play"),
    Action(31.0, "pause"),
    Action(34.0, "seek_by", -20.0),
    Action(35.0, "play"),
    Action(45.0, "rate", 1.5),
    Action(55.0, "rate", 1.0),
    Action(60.0, "seek_by", 10.0), Action(60.05, "seek_by", 10.0),  # rapid repeated seeks
    Action(60.1, "seek_by", -5.0),
    Action(70.0, "pause"), Action(71.0, "seek_by", 30.0),  # seek while paused
    Action(72.0, "play"),
    Action(80.0, "seek", 146.0),  # near the end, then play out (ends at ~84 s)
)
SCRIPT_END_S = 90.0

TRUTH_STATE = {"playing": MediaState.PLAYING, "paused": MediaState.PAUSED,
               "seeking": MediaState.SEEKING, "ended": MediaState.ENDED,
               "idle": MediaState.UNKNOWN}


@dataclass(slots=True)
class SimResult:
    player: str
    ratedial: list[float] = field(default_factory=list)  # model - truth, seconds, per sample
    baseline: list[float] = field(default_factory=list)
    state_agree: int = 0
    samples: int = 0
    events: list[MediaEvent] = field(default_factory=list)
    # Seeks the player's answers cannot show: VLC's status.json after the seek the same as in
    # its last answer (a target within the step it showed). Seen at its next refresh.
    unseen_seeks: int = 0
    unseen_at_s: list[float] = field(default_factory=list)  # when each of them was made

    def stats(self, which: str) -> dict[str, float]:
        errs = sorted(abs(e) for e in getattr(self, which))
        if not errs:
            return {}
        n = len(errs)
        return {"median_ms": round(errs[n // 2] * 1000, 2),
                "p99_ms": round(errs[min(n - 1, int(n * 0.99))] * 1000, 2),
                "max_ms": round(errs[-1] * 1000, 2),
                "within_1_frame": round(sum(e <= 1 / 30 for e in errs) / n, 4)}


@dataclass(frozen=True, slots=True, kw_only=True)
class Link:
    """Delays between the player and the daemon: ``latency + U(0, jitter)`` seconds."""

    latency_s: float
    jitter_s: float
    answer_s: float = 0.0002  # for polls: answer on its way back


LINKS = {
    "mpv": Link(latency_s=0.0005, jitter_s=0.003),  # unix socket; mpv's own timing jitter
    "vlc": Link(latency_s=0.020, jitter_s=0.002),  # VLC's HTTP answers take ~21 ms
    "mpc": Link(latency_s=0.003, jitter_s=0.003),
}
POLL_S = {"mpv": 0.05, "vlc": 0.04, "mpc": 0.04}


class _Sim:
    def __init__(self, player: str, *, seed: int, duration_s: float, fps: float,
                 emit_delay_s: float, exact_length: bool) -> None:
        self.player = player
        self.rng = random.Random(seed)
        self.link = LINKS[player]
        self.media = FakeMedia(duration_s=duration_s, fps=fps, paused=True, t_ns=0,
                               vlc_skip=0.3, seed=seed)
        self.emit_delay = round(emit_delay_s * NS)
        self.exact_length = exact_length
        self.heap: list[tuple[int, int, Callable[[int], None]]] = []
        self.order = itertools.count()
        self.baseline = PollExtrapolate()
        self.result = SimResult(player)
        self._mpv_due = 0
        self._vlc_shown: dict[str, Any] | None = None  # VLC's last status.json snapshot
        self.clock: MediaClock
        if player == "mpv":
            self.clock = MediaClock(mpv_clock_config(0.0))
            self.mpv = MpvInput(self.clock)
        elif player == "vlc":
            self.vlc = VlcSession(host="sim", port=0, password="sim")
            self.vlc._out = _Collect(self.result)
            self.clock = self.vlc.clock
        else:
            self.mpc = MpcSession(host="sim", port=0)
            self.mpc._out = _Collect(self.result)
            self.clock = self.mpc.clock

    def at(self, t: int, fn: Callable[[int], None]) -> None:
        heapq.heappush(self.heap, (t, next(self.order), fn))

    def delay(self) -> int:
        return round((self.link.latency_s + self.rng.uniform(0, self.link.jitter_s)) * NS)

    def advance(self, t: int) -> None:
        self.deliver(self.media.advance(t))

    def deliver(self, emits: list[Emit]) -> None:
        if self.player != "mpv":
            return
        for e in emits:
            due = max(self._mpv_due, e.t_ns + self.delay())
            self._mpv_due = due
            msg: dict[str, Any]
            if e.kind == "event":
                msg = {"event": e.name, **(e.value if isinstance(e.value, dict) else {})}
            else:
                msg = {"event": "property-change", "name": e.name, "data": e.value}
            self.at(due, functools.partial(self.mpv_message, msg=msg))

    def mpv_message(self, t: int, *, msg: dict[str, Any]) -> None:
        step = self.mpv.message(t, msg)
        self.result.events += step.events
        if step.ask_position:  # the session asks where a seek landed (get_property time-pos)
            self.at(t + 2 * self.delay(), functools.partial(self.mpv_landed, sent=t))
        if step.load:  # the session identifies the file a few ms later
            self.result.events += self.clock.identify(t, media_id=1, path=self.media.path,
                                                      duration_s=self.media.duration_s,
                                                      fps=self.media.fps)

    def mpv_landed(self, t: int, *, sent: int) -> None:
        value = self.media.mpv_property("time-pos")
        if value is not None:
            self.result.events += self.clock.position(t, value, sent_ns=sent)

    # --- polls --------------------------------------------------------------------------

    def poll(self, sent: int) -> None:
        snap_t = sent + self.delay()
        self.at(snap_t, lambda t: self.snapshot(sent, t))
        self.at(sent + round(POLL_S[self.player] * NS), self.poll)

    def snapshot(self, sent: int, t: int) -> None:
        m = self.media
        recv = t + round(self.link.answer_s * NS)
        if self.player == "mpv":  # the baseline polls time-pos (get_property)
            value, playing = m.mpv_property("time-pos"), m.moving
            self.at(recv, lambda r: self.baseline.poll(r, value, playing=playing, rate=m.rate))
        elif self.player == "vlc":
            status = self._vlc_shown = m.vlc_status()
            self.at(recv, lambda r: self.vlc_answer(sent, r, status))
        else:
            body = m.mpc_variables(t)
            self.at(recv, lambda r: self.mpc_answer(sent, r, body))

    def vlc_answer(self, sent: int, recv: int, status: dict[str, Any]) -> None:
        snap = self.vlc.parse_status(status)
        if self.vlc.snapshot(sent, recv, snap):
            if self.exact_length:
                self.vlc.exact_length(self.media.duration_s)  # what ffprobe says
            self.result.events += self.clock.identify(
                recv, media_id=1, path=self.media.path, duration_s=self.media.duration_s,
                fps=self.media.fps)
        self.baseline.poll(recv, float(status["time"]) if status["state"] != "stopped" else None,
                           playing=status["state"] == "playing", rate=float(status["rate"]))

    def mpc_answer(self, sent: int, recv: int, body: str) -> None:
        v = parse_variables(body)
        snap = mpc_snapshot(v)
        if self.mpc.snapshot(sent, recv, snap):
            self.result.events += self.clock.identify(
                recv, media_id=1, path=snap.path, duration_s=snap.duration_s, fps=None)
        self.baseline.poll(recv, snap.media_s, playing=snap.playing, rate=snap.rate)

    # --- samples ------------------------------------------------------------------------

    def sample(self, t: int) -> None:
        truth = self.media.truth(t)
        state = TRUTH_STATE[self.media.state]
        base = self.baseline.at(t)
        self.at(t + self.emit_delay, lambda now: self.annotate(t, truth, state, base))

    def annotate(self, t: int, truth: float | None, state: MediaState,
                 base: float | None) -> None:
        _, ours, our_state = self.clock.at(t)
        r = self.result
        r.samples += 1
        r.state_agree += our_state is state
        if truth is None:
            return
        if ours is not None:
            r.ratedial.append(ours - truth)
        if base is not None:
            r.baseline.append(base - truth)

    # --- script -------------------------------------------------------------------------

    def action(self, a: Action, t: int) -> None:  # (a first: functools.partial)
        self.deliver(_ACTIONS[a.name](self.media, t, a.arg))
        if self.player == "vlc" and a.name in ("seek", "seek_by") \
                and self.media.vlc_status() == self._vlc_shown:
            self.result.unseen_seeks += 1
            self.result.unseen_at_s.append(t / NS)

    def run(self, script: tuple[Action, ...], end_s: float) -> SimResult:
        if self.player == "mpv":  # connect: mpv sends the initial values, then the file loads
            self.at(MS, functools.partial(self.mpv_message, msg={"event": "file-loaded"}))
            for name in ("pause", "speed", "time-pos"):
                msg = {"event": "property-change", "name": name,
                       "data": self.media.mpv_property(name)}
                self.at(MS, functools.partial(self.mpv_message, msg=msg))
        self.clock.connected(0)
        self.at(MS, self.poll)
        for a in script:
            self.at(round(a.at_s * NS), functools.partial(self.action, a))
        for k in range(round(0.5 * 1000), round(end_s * 1000)):  # a 1 kHz dial
            self.at(k * MS, self.sample)
        end = round(end_s * NS) + self.emit_delay + NS
        while self.heap:
            t, _, fn = heapq.heappop(self.heap)
            if t > end:
                break
            self.advance(t)
            fn(t)
        return self.result


_ACTIONS: dict[str, Callable[[FakeMedia, int, float], list[Emit]]] = {
    "play": lambda m, t, arg: m.play(t),
    "pause": lambda m, t, arg: m.pause(t),
    "seek": lambda m, t, arg: m.seek(t, arg),
    "seek_by": lambda m, t, arg: m.seek(t, m.reported + arg),
    "rate": lambda m, t, arg: m.set_rate(t, arg),
}


class _Collect:
    """A MediaOutput that keeps the events (the simulated sessions' output)."""

    def __init__(self, result: SimResult) -> None:
        self.result = result

    def event(self, kind: str, data: dict[str, Any], host_ns: int) -> None:
        self.result.events.append(MediaEvent(kind, data, host_ns))

    def add_media(self, path: str | None, duration_s: float | None, fps: float | None,
                  fingerprint: str | None) -> int:
        return 1

    def observation(self, host_ns: int, media_id: int | None,
                    media_s: float | None, rate: float | None, playing: bool | None,
                    source: str) -> None:
        return None


def simulate(player: str, script: tuple[Action, ...] = STANDARD_SCRIPT, *, seed: int = 1,
             end_s: float = SCRIPT_END_S, duration_s: float = 150.0, fps: float = 30.0,
             emit_delay_s: float = 0.010, exact_length: bool = True) -> SimResult:
    """Play ``script`` on a fake ``player`` (mpv, vlc or mpc) and measure both methods."""
    if player not in LINKS:
        raise ValueError(f"unknown player {player!r}")
    return _Sim(player, seed=seed, duration_s=duration_s, fps=fps, emit_delay_s=emit_delay_s,
                exact_length=exact_length).run(script, end_s)
