"""The seam between the daemon and a video player (``ratedial.players`` implements it).

The daemon calls :meth:`MediaSession.annotate` on every batch of samples, with their mapped
host times, to put them on the media timeline; the session runs its own task
(:meth:`MediaSession.run`) that talks to the player and reports through :class:`MediaOutput`.
Without a player (``--player none``) every sample is "no player" with no media time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from ..recording.schema import MediaState
from .events import Annotation


class MediaOutput(Protocol):
    """What a media session may do to the run: all non-blocking."""

    def event(self, kind: str, data: dict[str, Any], host_ns: int) -> None:
        """Record and publish a media event (``media_load``, ``media_play``, ``media_pause``,
        ``media_seek``, ``media_rate``, ``media_end``, ``player_lost``, ``player_back``)."""

    def add_media(self, path: str | None, duration_s: float | None, fps: float | None,
                  fingerprint: str | None) -> int:
        """Record a media identity; returns its ``media_id``."""

    def observation(self, host_ns: int, media_id: int | None, media_s: float | None,
                    rate: float | None, playing: bool | None, source: str) -> None:
        """Record one raw player observation (``media_obs`` table)."""


class MediaSession(Protocol):
    def poll(self) -> None:
        """Take in, without waiting, what the player has already sent (the daemon calls it
        before :meth:`annotate`, so a loop that read the player late does not annotate with
        an old state); may record media events."""

    def annotate(self, host_ns: Sequence[int | None]) -> Annotation:
        """(media_id, media_s, MediaState) for each host time; must be cheap (1 kHz per dial)."""

    async def run(self, out: MediaOutput) -> None:
        """Talk to the player until cancelled; reconnect when it goes away."""

    def status(self) -> dict[str, Any]:
        """For the live view and status topic, e.g. {"player": "mpv", "state": "playing",
        "media_s": 12.3, "connected": true}."""


class NoPlayer:
    """``--player none``: wall clock only."""

    def poll(self) -> None:
        return None

    def annotate(self, host_ns: Sequence[int | None]) -> Annotation:
        n = len(host_ns)
        return (None,) * n, (None,) * n, (int(MediaState.NONE),) * n

    async def run(self, out: MediaOutput) -> None:
        return None

    def status(self) -> dict[str, Any]:
        return {"player": "none", "state": "none", "media_s": None, "connected": False}
