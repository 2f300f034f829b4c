"""Video players: media clock sessions for ``ratedial run --player``.

``--player`` takes ``mpv[:SOCKET] | vlc[:URL] | mpc[:URL] | mpris[:NAME] | manual[:SECONDS] |
none``
(docs/players.md); ``--video FILE`` starts an mpv for the file. Each session feeds the pure
:class:`~ratedial.media.MediaClock` from its player and implements the daemon's
:class:`~ratedial.media.MediaSession` seam.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from ..errors import UsageError
from ..media import MediaSession, NoPlayer
from .manual import ManualSession
from .mpc import MpcSession
from .mpv import MpvSession, launched_session
from .spec import PlayerSpec, parse_spec
from .vlc import VlcSession, vlc_password

__all__ = ["PlayerSpec", "create_session", "parse_spec"]


def create_session(spec: str, *, video: str | None, latency_ms: float, osd: bool,
                   ratings: Callable[[], dict[str, float]]) -> MediaSession:
    """The media session for a ``--player`` spec (and ``--video``, ``--osd``)."""
    p = parse_spec(spec)
    if video is not None and p.kind != "mpv":
        raise UsageError(f"--video plays the file in mpv; it cannot be used with --player {spec}")
    if osd and p.kind != "mpv":
        raise UsageError("--osd draws the rating on mpv's screen; use it with --player mpv "
                         "or --video")
    if p.kind == "mpv":  # a Unix socket, or on Windows a named pipe (_platform.pipes)
        if video is not None:
            return launched_session(video, socket_path=p.socket if p.explicit_socket else None,
                                    latency_ms=latency_ms, osd=osd, ratings=ratings)
        assert p.socket is not None
        return MpvSession(p.socket, latency_ms=latency_ms, osd=osd, ratings=ratings)
    if p.kind == "vlc":
        assert p.host is not None and p.port is not None
        return VlcSession(host=p.host, port=p.port, password=vlc_password(),
                          latency_ms=latency_ms)
    if p.kind == "mpc":
        assert p.host is not None and p.port is not None
        return MpcSession(host=p.host, port=p.port, latency_ms=latency_ms)
    if p.kind == "mpris":
        if not sys.platform.startswith("linux"):
            raise UsageError("--player mpris follows players on Linux's D-Bus session bus; "
                             "here use mpv, vlc, mpc or manual")
        from .mpris import MprisSession

        return MprisSession(p.name, latency_ms=latency_ms)
    if p.kind == "manual":
        return ManualSession(seconds=p.seconds, latency_ms=latency_ms)
    return NoPlayer()
