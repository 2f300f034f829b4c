"""The media clock: every sample on the video's timeline (pure, no I/O).

:class:`MediaClock` turns a player's reports (position, pause, seek, rate, end) into the media
time and state at any recent host time; :mod:`ratedial.players` feeds it from real players.
:class:`MediaSession` is the seam between the daemon and a player (:class:`NoPlayer`: none).

The modules, lowest first: ``config`` (:class:`Source`, :class:`ClockConfig`), ``events``
(:class:`MediaEvent`, :data:`Annotation`), ``segments`` (a stretch of constant player state
and the bounds that place it), ``timeline`` (the segments kept and the queries on them),
``clock`` (:class:`MediaClock`: the player's reports in), ``session`` (the daemon's seam),
``baselines`` (what other tools do, for benchmarks).
"""

from .baselines import PollExtrapolate
from .clock import MediaClock
from .config import ClockConfig, Source
from .events import Annotation, MediaEvent
from .session import MediaOutput, MediaSession, NoPlayer

__all__ = [
    "Annotation",
    "ClockConfig",
    "MediaClock",
    "MediaEvent",
    "MediaOutput",
    "MediaSession",
    "NoPlayer",
    "PollExtrapolate",
    "Source",
]
