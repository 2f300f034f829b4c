"""How a media clock is set up: how its player reports, and the tolerances it uses (pure data).

Each player shell (``ratedial.players``) picks a :class:`Source` and a :class:`ClockConfig`
for its :class:`~ratedial.media.MediaClock`; the clock reads them and never changes them.
Thresholds given in frames use the file's frame rate, :data:`DEFAULT_FPS` until it is known.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

DEFAULT_FPS = 30.0


class Source(Enum):
    """How a player reports its position; decides which bounds a report gives."""

    PUSH = "push"  # sent when the frame changes (mpv time-pos): true at or before receipt
    POLL = "poll"  # answer to a poll (MPC): true between the request and the answer
    STEP = "step"  # poll answer that advances in coarse steps (VLC position): stale by < a step
    NONE = "none"  # no reports: the clock only follows marks (manual mode)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClockConfig:
    source: Source
    latency_ms: float = 0.0  # display latency: the screen shows the clock of latency ago
    window_s: float = 5.0  # reports used for a segment's line
    history_s: float = 30.0  # how far back queries are answered from the segments then
    jump_frames: float = 2.0  # residual beyond which a report starts a new segment
    late_frames: float = 2.0  # PUSH: extra delivery delay tolerated before a "jump back"
    max_lead_frames: float | None = None  # ceiling above the last report, in frames ...
    max_lead_s: float | None = None  # ... or in seconds (STEP: the largest step)
    # STEP: the largest step measured (VLC: 0.5 s x rate). A value whose age is unknown (the
    # first answer of a player already playing) is placed in its middle, and the player's
    # own value may shift by up to it at a rate change (neither is a seek).
    step_s: float = 0.0
