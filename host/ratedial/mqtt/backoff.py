"""How long the MQTT shells (the daemon's publisher, ``record``'s collector, ``monitor``)
wait between attempts to reach a broker: one rule for all three.

Invariant: the n-th pause after a success is drawn from [0.5, 1.5) times
``first_s * 2**(n - 1)``, capped at ``most_s`` before the draw (0.5 s doubling to 5 s), so
clients that lost one broker together do not all come back at the same instant.
"""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """Jittered exponential back-off between reconnection attempts."""

    __slots__ = ("_first", "_most", "_step")

    def __init__(self, first_s: float = 0.5, most_s: float = 5.0) -> None:
        self._first = first_s
        self._most = most_s
        self._step = first_s

    def reset(self) -> None:
        """A connection succeeded: the next failure waits the shortest pause again."""
        self._step = self._first

    def pause(self) -> float:
        """The next pause in seconds (the one after it is twice as long, up to ``most_s``)."""
        pause = self._step * (0.5 + random.random())
        self._step = min(self._most, self._step * 2)
        return pause
