"""Any MPRIS 2 player on the D-Bus session bus (Linux): VLC (built in), mpv with mpv-mpris,
Celluloid, Totem, browsers playing HTML5 video. ``--player mpris`` follows the first player
on the bus, ``--player mpris:NAME`` the one named ``org.mpris.MediaPlayer2.NAME[.*]``.

Invariants:

* MPRIS does not signal the position: it is polled (``GetAll`` of the Player interface, 25
  times a second), each answer bracketed by the host times the call was sent and answered;
  players refresh ``Position`` in steps (VLC every 0.25 s, sometimes 0.5 s, measured here),
  so the clock is :data:`Source.STEP` bounded by the player's largest step (:data:`MAX_STEP_S`).
* ``Seeked`` and ``PropertiesChanged`` (PlaybackStatus, Rate, Metadata) poll at once, so a
  seek, pause or new file is seen within one round trip (~0.4 ms), not at the next poll.
* The file is ``xesam:url`` (a ``file://`` URL is a local path), its length
  ``mpris:length``; parsing a reply is pure (:func:`parse_player`).
* The player leaving the bus is :class:`PlayerGone`: the run goes on, the session
  reconnects when a player is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Any
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from .._paths import install_hint
from ..errors import UsageError
from ..media import ClockConfig, MediaOutput, Source
from .polled import Snapshot
from .session import PlayerGone, PlayerSession

BUS = "org.freedesktop.DBus"
PATH = "/org/mpris/MediaPlayer2"
PREFIX = "org.mpris.MediaPlayer2."
PLAYER = "org.mpris.MediaPlayer2.Player"
PROPS = "org.freedesktop.DBus.Properties"
PERIOD_S = 0.04
CALL_TIMEOUT_S = 1.0
END_S = 0.75  # paused this close to the end counts as the end (VLC --play-and-pause)
# The largest step of a player's Position, by the bus name's first part: VLC refreshes every
# 0.25 s and sometimes skips one (0.5 s measured); one more skip allowed, as for VLC's HTTP.
# Players not measured here get VLC's bound.
MAX_STEP_S = {"vlc": 1.05}
DEFAULT_MAX_STEP_S = 1.05
STEP_S = 0.5  # the largest step measured (VLC): see ratedial.players.vlc.STEP_S


def mpris_clock_config(latency_ms: float, player: str | None) -> ClockConfig:
    step = MAX_STEP_S.get((player or "").split(".")[0], DEFAULT_MAX_STEP_S)
    return ClockConfig(source=Source.STEP, latency_ms=latency_ms, window_s=10.0,
                       max_lead_s=step, step_s=STEP_S)


def _unwrap(v: Any) -> Any:
    return getattr(v, "value", v)  # dbus-fast Variant -> its value


def _finite(v: Any, lo: float, hi: float) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) and lo <= f <= hi else None


def url_path(url: str | None) -> str | None:
    """A local path for a ``file://`` URL; other URLs as they are."""
    if not url:
        return None
    u = urlsplit(url)
    if u.scheme != "file":
        return url
    return url2pathname(unquote(u.path))


def parse_player(props: dict[str, Any]) -> Snapshot:
    """One ``GetAll`` of the Player interface -> a :class:`Snapshot` (pure)."""
    p = {k: _unwrap(v) for k, v in props.items()}
    meta = {k: _unwrap(v) for k, v in (p.get("Metadata") or {}).items()}
    status = p.get("PlaybackStatus")
    url = meta.get("xesam:url") if isinstance(meta.get("xesam:url"), str) else None
    track = meta.get("mpris:trackid")
    length_us = _finite(meta.get("mpris:length"), 1.0, 1e13)
    duration = None if length_us is None else length_us / 1e6
    if status == "Stopped" or (url is None and track is None):
        return Snapshot(loaded=False)
    pos_us = _finite(p.get("Position"), 0.0, 1e13)
    media_s = None if pos_us is None else pos_us / 1e6
    playing = status == "Playing"
    ended = (not playing and media_s is not None and duration is not None
             and media_s >= duration - END_S)
    rate = _finite(p.get("Rate"), 1e-3, 1e3) or 1.0
    return Snapshot(loaded=True, media_s=media_s, playing=playing, rate=rate, ended=ended,
                    key=f"{track}:{url}", path=url_path(url), duration_s=duration)


class MprisSession(PlayerSession):
    player = "mpris"

    def __init__(self, name: str | None = None, *, latency_ms: float = 0.0,
                 bus_address: str | None = None) -> None:
        super().__init__(mpris_clock_config(latency_ms, name))
        self.name = name
        self.bus_address = bus_address  # None: the session bus of DBUS_SESSION_BUS_ADDRESS
        self._key: str | None = None
        self._poke = asyncio.Event()

    async def _follow(self, out: MediaOutput) -> None:
        try:
            from dbus_fast import BusType, Message, MessageType
            from dbus_fast.aio import MessageBus
        except ImportError:
            raise UsageError("--player mpris needs dbus-fast: " + install_hint("mpris")
                             ) from None
        try:
            bus = await MessageBus(bus_address=self.bus_address,
                                   bus_type=BusType.SESSION).connect()
        except Exception as exc:  # dbus-fast raises plain Exceptions for a missing bus
            raise PlayerGone(f"no D-Bus session bus ({exc})") from None
        self._key = None

        async def call(msg: Message) -> Any:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                reply = await bus.call(msg)
            if reply is None or reply.message_type == MessageType.ERROR:
                raise PlayerGone(f"{msg.member}: {reply.error_name if reply else 'no reply'}")
            return reply.body

        try:
            names = (await call(Message(destination=BUS, path="/org/freedesktop/DBus",
                                        interface=BUS, member="ListNames")))[0]
            name = pick_player(names, self.name)
            if name is None:
                raise PlayerGone("no MPRIS player on the session bus" if self.name is None
                                 else f"no MPRIS player {self.name} on the session bus")
            owner = (await call(Message(destination=BUS, path="/org/freedesktop/DBus",
                                        interface=BUS, member="GetNameOwner", signature="s",
                                        body=[name])))[0]
            gone = asyncio.Event()

            def on_message(msg: Any) -> None:
                if msg.message_type != MessageType.SIGNAL:
                    return
                if msg.sender == owner and msg.path == PATH:
                    self._poke.set()  # Seeked, PropertiesChanged: look now
                elif msg.member == "NameOwnerChanged" and msg.body[:1] == [name] \
                        and not msg.body[2]:
                    gone.set()
                    self._poke.set()

            bus.add_message_handler(on_message)
            for rule in (f"type='signal',sender='{name}',path='{PATH}'",
                         f"type='signal',sender='{BUS}',member='NameOwnerChanged',arg0='{name}'"):
                await call(Message(destination=BUS, path="/org/freedesktop/DBus", interface=BUS,
                                   member="AddMatch", signature="s", body=[rule]))
            get_all = Message(destination=name, path=PATH, interface=PROPS, member="GetAll",
                              signature="s", body=[PLAYER])
            while not gone.is_set():
                self._poke.clear()
                sent = self.now()
                props = (await call(get_all))[0]
                recv = self.now()
                try:
                    snap = parse_player(props)
                except (TypeError, ValueError, AttributeError):
                    snap = None
                if snap is not None:
                    self._connected(recv)
                    self.snapshot(sent, recv, snap)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(PERIOD_S):
                        await self._poke.wait()
            raise PlayerGone(f"{name} left the session bus")
        finally:
            bus.disconnect()

    def snapshot(self, sent: int, recv: int, snap: Snapshot, source: str = "mpris") -> None:
        """Feed one parsed answer to the clock (pure but for identifying a new file)."""
        if snap.loaded and snap.key != self._key:
            self._key = snap.key
            self._emit(self.clock.load(recv, fps=snap.fps, duration_s=snap.duration_s))
            self._identify_later(recv, snap.path, duration_s=snap.duration_s, fps=snap.fps,
                                 use_probe=True)
        elif not snap.loaded:
            self._key = None
        self._emit(self.clock.poll(sent, recv, media_s=snap.media_s if snap.loaded else None,
                                   playing=snap.playing, rate=snap.rate, ended=snap.ended))
        self._observe(recv, snap.media_s, snap.rate, snap.playing, source)


def pick_player(names: list[str], wanted: str | None) -> str | None:
    """The bus name to follow: ``org.mpris.MediaPlayer2.WANTED`` or one of its instances
    (``WANTED.instance123``), or without ``wanted`` the first MPRIS player by name."""
    players = sorted(n for n in names if isinstance(n, str) and n.startswith(PREFIX))
    if wanted is None:
        return players[0] if players else None
    exact = PREFIX + wanted
    return next((n for n in players if n == exact or n.startswith(exact + ".")), None)
