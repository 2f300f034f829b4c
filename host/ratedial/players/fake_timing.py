"""Time for the fake player servers: the media advanced to the clock, replies made late.

:class:`Driven` advances a pure :class:`~.fake_media.FakeMedia` to the clock's now (a task
in each server calls it every 0.5 ms for mpv, 2 ms for HTTP, and so does every request);
:class:`NetDelay` is the injected network delay of each reply: a fixed latency plus uniform
jitter, seeded, so runs repeat.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from .fake_media import NS, Emit, FakeMedia


class NetDelay:
    """Injected network delay: ``latency + U(0, jitter)``, seeded."""

    def __init__(self, latency_s: float, jitter_s: float, seed: int) -> None:
        self.latency_s = latency_s
        self.jitter_s = jitter_s
        self.rng = random.Random(seed)

    def delay_ns(self) -> int:
        return round((self.latency_s + self.rng.uniform(0, self.jitter_s)) * NS)


class Driven:
    """A FakeMedia advanced by a task in real time (CLOCK_MONOTONIC)."""

    def __init__(self, media: FakeMedia, now: Callable[[], int]) -> None:
        self.media = media
        self.now = now

    def step(self) -> tuple[int, list[Emit]]:
        t = self.now()
        return t, self.media.advance(t)
