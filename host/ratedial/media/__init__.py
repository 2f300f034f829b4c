"""The media clock: every sample on the video's timeline (pure, no I/O).

:class:`MediaClock` turns a player's reports (position, pause, seek, rate, end) into the media
time and state at any recent host time; :mod:`ratedial.players` feeds it from real players.
:class:`MediaSession` is the seam between the daemon and a player (:class:`NoPlayer`: none).
"""

from .baselines import PollExtrapolate
from .clock import ClockConfig, MediaClock, MediaEvent, Source
from .session import Annotation, MediaOutput, MediaSession, NoPlayer

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
