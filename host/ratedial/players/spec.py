"""``--player`` specifications (pure): ``mpv[:SOCKET] | vlc[:URL] | mpc[:URL] | mpris[:NAME] |
manual[:SECONDS] | none``.

Invariants: a bad spec is a one-line :class:`UsageError` naming the accepted forms; a URL never
carries a password (secrets come from the environment or a file, never the command line).
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import UsageError, hide_userinfo

FORMS = "mpv[:SOCKET], vlc[:URL], mpc[:URL], mpris[:NAME], manual[:SECONDS] or none"
DEFAULT_MPV_SOCKET = r"\\.\pipe\mpvsocket" if sys.platform == "win32" else "/tmp/mpvsocket"
DEFAULT_PORTS = {"vlc": 8080, "mpc": 13579}


@dataclass(frozen=True, slots=True)
class PlayerSpec:
    kind: str  # mpv | vlc | mpc | mpris | manual | none
    socket: str | None = None  # mpv
    name: str | None = None  # mpris: the player's bus name after org.mpris.MediaPlayer2.
    host: str | None = None  # vlc, mpc
    port: int | None = None
    seconds: float = 0.0  # manual: media time at the mark
    explicit_socket: bool = False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _http(kind: str, arg: str, spec: str) -> PlayerSpec:
    arg = arg.strip()  # "vlc: 8080"
    if arg[:1] in ("+", "-") and arg[1:].isdigit():  # a port, signed: not a host named "-1"
        raise UsageError(f"--player {spec}: the port must be a number from 1 to 65535")
    if not arg:
        return PlayerSpec(kind, host="127.0.0.1", port=DEFAULT_PORTS[kind])
    if arg.isdigit():  # vlc:8080 (ASCII digits only: int() refuses "²", which isdigit() takes)
        if not (arg.isascii() and len(arg) <= 5 and 0 < int(arg) < 65536):  # int() of
            # a 5,000-digit string raises ValueError (Python's digit limit)
            raise UsageError(f"--player {spec}: the port must be a number from 1 to 65535")
        return PlayerSpec(kind, host="127.0.0.1", port=int(arg))
    text = arg if "://" in arg else f"http://{arg}"
    try:
        u = urlsplit(text)
        port = u.port
    except ValueError:
        raise UsageError(f"--player {spec}: not a valid URL") from None
    if u.scheme != "http":
        raise UsageError(f"--player {spec}: only http:// URLs are supported")
    if u.password is not None or u.username:
        where = ("set RATEDIAL_VLC_PASSWORD or RATEDIAL_VLC_PASSWORD_FILE instead"
                 if kind == "vlc" else "MPC-HC's web interface takes none")
        raise UsageError(f"--player {spec}: put no password in the URL (nor a user name); {where}")
    if not u.hostname:
        raise UsageError(f"--player {spec}: the URL has no host")
    if port == 0:
        raise UsageError(f"--player {spec}: the port must be a number from 1 to 65535")
    return PlayerSpec(kind, host=u.hostname, port=port or DEFAULT_PORTS[kind])


def _mpv(arg: str, spec: str) -> PlayerSpec:
    if arg:
        return PlayerSpec("mpv", socket=os.path.expanduser(arg), explicit_socket=True)
    return PlayerSpec("mpv", socket=DEFAULT_MPV_SOCKET)


def _manual(arg: str, spec: str) -> PlayerSpec:
    if not arg:
        return PlayerSpec("manual")
    try:
        seconds = float(arg)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds):  # "nan" and "inf" too: no time in a video
        raise UsageError(f"--player {spec}: manual:SECONDS needs a number of seconds, "
                         "e.g. manual:12.5")
    if seconds < 0:
        raise UsageError(f"--player {spec}: SECONDS must be 0 or more")
    return PlayerSpec("manual", seconds=seconds)


def _mpris(arg: str, spec: str) -> PlayerSpec:
    if arg and not all(part and all(c.isalnum() or c in "_-" for c in part)
                       for part in arg.split(".")):
        raise UsageError(f"--player {spec}: NAME is a bus name part such as vlc or "
                         "chromium.instance1234")
    return PlayerSpec("mpris", name=arg or None)


def _none(arg: str, spec: str) -> PlayerSpec:
    if arg:
        raise UsageError(f"--player {spec}: 'none' takes no argument")
    return PlayerSpec("none")


_KINDS = {
    "mpc-hc": lambda arg, spec: _http("mpc", arg, spec),
    "mpc-be": lambda arg, spec: _http("mpc", arg, spec),
    "mpv": _mpv,
    "vlc": lambda arg, spec: _http("vlc", arg, spec),
    "mpc": lambda arg, spec: _http("mpc", arg, spec),
    "mpris": _mpris,
    "manual": _manual,
    "none": _none,
}


def parse_spec(spec: str) -> PlayerSpec:
    """Parse a ``--player`` value; raises :class:`UsageError` with a one-line message."""
    kind, _, arg = spec.strip().partition(":")
    parse = _KINDS.get(kind.lower())
    shown = hide_userinfo(spec if spec.isprintable() else repr(spec))  # one line, no secret
    if parse is None:
        raise UsageError(f"--player {shown}: expected {FORMS}")
    if "\0" in arg:  # a config file can hold one; no path, URL or name can
        raise UsageError(f"--player {shown}: contains a NUL character")
    return parse(arg, shown)
