"""mpv's IPC messages -> media clock inputs (pure: the session, the benchmark and the
simulations share it).

Invariants:

* Each message is one step (:class:`MpvStep`): media events for the clock, raw observations
  for the recording, whether a file loaded, whether to ask where a seek landed.
* A table (:data:`_PROPERTY_INPUTS`, :data:`_EVENT_INPUTS`), not a chain of ifs; unknown
  messages and values of the wrong type are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..media import ClockConfig, MediaClock, MediaEvent, Source
from ..recording import MediaState

# (media_s, rate, playing, source): what one message said, for the media_obs table
Observation = tuple[float | None, float | None, bool | None, str]


def mpv_clock_config(latency_ms: float) -> ClockConfig:
    """mpv's reports are lower bounds, one a frame: the line rests on the last second of them
    (``window_s``). mpv does not always play at the speed it says: after a speed change its
    frames came at the old cadence for ~3 s (headless, 2026-12-05 audit), and a line resting
    on 5 s of reports ran ahead at the frame ceiling (median 27 ms at 1.5-4x; 1 ms with 1 s)."""
    return ClockConfig(source=Source.PUSH, latency_ms=latency_ms, max_lead_frames=1.5,
                       window_s=1.0)


@dataclass(slots=True)
class MpvStep:
    """What one mpv message did: media events, raw observations, whether a file loaded."""

    events: list[MediaEvent] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)
    load: bool = False
    ask_position: bool = False  # a seek finished: ask time-pos, the answer is where it landed
    failed: str | None = None  # mpv could not play the file it was given: why
    failed_path: str | None = None  # ... and which file (mpv's ``path``), if mpv said


class MpvInput:
    """mpv IPC messages -> media clock inputs (pure: the session and the benchmark share it)."""

    def __init__(self, clock: MediaClock) -> None:
        self.clock = clock
        self.loaded = False
        self.starting = False  # a start-file event was seen: a file-loaded will follow
        self.path: str | None = None  # mpv's last ``path`` (also of a file that fails to load)

    def message(self, host_ns: int, msg: dict[str, Any]) -> MpvStep:
        step = MpvStep()
        event = msg.get("event")
        if event == "property-change":
            prop = _PROPERTY_INPUTS.get(str(msg.get("name")))
            if prop is not None:
                prop(self, step, host_ns, msg.get("data"))
        elif isinstance(event, str):
            on_event = _EVENT_INPUTS.get(event)
            if on_event is not None:
                on_event(self, step, host_ns, msg)
        return step

    def _obs(self, step: MpvStep, host_ns: int, source: str, *, media_s: float | None = None,
             playing: bool | None = None, rate: float | None = None) -> None:
        c = self.clock
        step.observations.append((
            c.position_now(host_ns) if media_s is None else media_s,
            c.rate if rate is None else rate,
            (c.state is MediaState.PLAYING) if playing is None else playing, source))

    def _time_pos(self, step: MpvStep, host_ns: int, value: Any) -> None:
        pos = finite(value)
        if pos is not None and pos >= 0:
            step.events += self.clock.position(host_ns, pos)
            self._obs(step, host_ns, "time-pos", media_s=pos)

    def _pause(self, step: MpvStep, host_ns: int, value: Any) -> None:
        if isinstance(value, bool):
            step.events += self.clock.paused(host_ns, value)
            self._obs(step, host_ns, "pause", playing=not value)

    def _speed(self, step: MpvStep, host_ns: int, value: Any) -> None:
        rate = finite(value)
        if rate is not None and rate > 0:
            step.events += self.clock.set_rate(host_ns, rate)
            self._obs(step, host_ns, "speed")

    def _seeking(self, step: MpvStep, host_ns: int, value: Any) -> None:
        if isinstance(value, bool):
            step.events += self.clock.seeking(host_ns, value)

    def _eof(self, step: MpvStep, host_ns: int, value: Any) -> None:
        step.events += self.clock.ended(host_ns, bool(value))
        if value:
            self._obs(step, host_ns, "eof-reached", playing=False)

    def _idle(self, step: MpvStep, host_ns: int, value: Any) -> None:
        if value is True and self.loaded:
            self.loaded = False
            step.events += self.clock.unload(host_ns)

    def _path(self, step: MpvStep, host_ns: int, value: Any) -> None:
        self.path = value if isinstance(value, str) and value.isprintable() else None
        # Connecting to an mpv that already plays a file: no file-loaded event will come.
        # After a start-file, one will: the load is that event's (mpv may report the new
        # path before or after it).
        if isinstance(value, str) and not self.loaded and not self.starting:
            self._load(step, host_ns)

    def _event_seek(self, step: MpvStep, host_ns: int, msg: dict[str, Any]) -> None:
        step.events += self.clock.seek(host_ns)
        self._obs(step, host_ns, "seek", playing=False)

    def _event_restart(self, step: MpvStep, host_ns: int, msg: dict[str, Any]) -> None:
        # time-pos is the target until mpv has a frame; it says nothing when they are equal.
        step.events += self.clock.seeking(host_ns, False)
        step.ask_position = self.clock.settling
        self._obs(step, host_ns, "playback-restart")

    def _event_start(self, step: MpvStep, host_ns: int, msg: dict[str, Any]) -> None:
        self.starting = True

    def _event_loaded(self, step: MpvStep, host_ns: int, msg: dict[str, Any]) -> None:
        if self.loaded and not self.starting:
            return  # the file we picked up from the initial ``path`` on connecting
        self.starting = False
        self._load(step, host_ns)

    def _event_end(self, step: MpvStep, host_ns: int, msg: dict[str, Any]) -> None:
        if msg.get("reason") == "error":  # e.g. "unrecognized file format"
            why = msg.get("file_error")
            step.failed = why if isinstance(why, str) and why.isprintable() else "error"
            step.failed_path = self.path
        if msg.get("reason") == "eof":
            step.events += self.clock.ended(host_ns, True)
        else:
            self.loaded = False
            step.events += self.clock.unload(host_ns)
        self._obs(step, host_ns, "end-file", playing=False)

    def _load(self, step: MpvStep, host_ns: int) -> None:
        self.loaded = True
        step.events += self.clock.load(host_ns)
        step.load = True


# mpv message -> clock input.
_PROPERTY_INPUTS: dict[str, Callable[[MpvInput, MpvStep, int, Any], None]] = {
    "time-pos": MpvInput._time_pos,
    "pause": MpvInput._pause,
    "speed": MpvInput._speed,
    "seeking": MpvInput._seeking,
    "eof-reached": MpvInput._eof,
    "idle-active": MpvInput._idle,
    "path": MpvInput._path,
}
_EVENT_INPUTS: dict[str, Callable[[MpvInput, MpvStep, int, dict[str, Any]], None]] = {
    "seek": MpvInput._event_seek,
    "playback-restart": MpvInput._event_restart,
    "start-file": MpvInput._event_start,
    "file-loaded": MpvInput._event_loaded,
    "end-file": MpvInput._event_end,
}


def finite(v: Any) -> float | None:
    """A JSON number as a finite float, else None (bools, huge integers, NaN, infinities)."""
    if not isinstance(v, int | float) or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None
