"""The media clock: every sample on the video's timeline (pure, no I/O).

:class:`MediaClock` turns a player's reports (position, pause, seek, rate, end) into the media
time and state at any recent host time; :mod:`ratedial.players` feeds it from real players.
"""

from .baselines import PollExtrapolate
from .clock import ClockConfig, MediaClock, MediaEvent, Source

__all__ = ["ClockConfig", "MediaClock", "MediaEvent", "PollExtrapolate", "Source"]
