"""Video players: media clock sessions for ``ratedial run --player``."""

from __future__ import annotations

from collections.abc import Callable

from ..daemon.media import MediaSession
from ..errors import UsageError


def create_session(spec: str, *, video: str | None, latency_ms: float, osd: bool,
                   ratings: Callable[[], dict[str, float]]) -> MediaSession:
    raise UsageError(f"--player {spec}: player support is not available in this version")
