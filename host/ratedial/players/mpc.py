"""MPC-HC / MPC-BE over their web interface (``/variables.html``, port 13579 by default).

``position`` and ``duration`` are milliseconds, ``state`` is DirectShow's filter state
(-1 nothing loaded, 0 stopped, 1 paused, 2 playing), ``playbackrate`` the speed (older MPC-HC
versions always say 1). A poll answer is a snapshot taken between request and answer
(:data:`Source.POLL`).

Invariants: parsing is pure; an answer without the expected fields raises ``ValueError``.
"""

from __future__ import annotations

import html
import re

from ..media import ClockConfig, Source
from .polled import PolledSession, Snapshot

_FIELD = re.compile(r'<p id="([a-z]+)">(.*?)</p>', re.S)
END_S = 0.5  # stopped or paused this close to the end counts as the end
_PLAYING = 2
_LOADED_STATES = {0, 1, 2}


def mpc_clock_config(latency_ms: float) -> ClockConfig:
    return ClockConfig(source=Source.POLL, latency_ms=latency_ms, window_s=10.0)


def parse_variables(body: str) -> dict[str, str]:
    """The ``<p id="name">value</p>`` fields of ``variables.html``."""
    return {k: html.unescape(v) for k, v in _FIELD.findall(body)}


class MpcSession(PolledSession):
    player = "mpc"
    target = "/variables.html"
    interface = "MPC's web interface"

    def __init__(self, *, host: str, port: int, latency_ms: float = 0.0) -> None:
        super().__init__(mpc_clock_config(latency_ms), host=host, port=port)

    def parse(self, body: bytes) -> Snapshot:
        return mpc_snapshot(parse_variables(body.decode("utf-8", "replace")))


def _ms(text: str) -> float:
    """Milliseconds as seconds; ValueError unless 0 <= ms < 10^12 (30 years)."""
    ms = int(text)
    if not 0 <= ms < 10**12:
        raise ValueError(f"position out of range: {text[:40]!r}")
    return ms / 1000


def mpc_snapshot(v: dict[str, str]) -> Snapshot:
    state = int(v["state"])
    path = v.get("filepath") or None
    if state not in _LOADED_STATES or path is None:
        return Snapshot(loaded=False)
    media_s = _ms(v["position"])
    duration = _ms(v["duration"]) if v.get("duration") else None
    try:
        rate = float(v.get("playbackrate") or 1.0)
    except ValueError:
        rate = 1.0
    if not 0.01 < rate < 100:  # some builds print garbage here (also NaN)
        rate = 1.0
    playing = state == _PLAYING
    ended = not playing and duration is not None and media_s >= duration - END_S
    return Snapshot(loaded=True, media_s=media_s, playing=playing, rate=rate, ended=ended,
                    key=path, path=path, duration_s=duration)
