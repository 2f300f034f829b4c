"""atheris fuzz target for the player protocol parsers (host/ratedial/players/).

    python tests/fuzz/fuzz_players.py tests/fuzz/corpus/players -max_total_time=60

The first byte of an input picks the parser, the rest is what the player (or a stranger on
its port) sent. Each parser is driven the way its session drives it, and may raise only
what that session handles:

* ``mpv``: JSON IPC lines -> ``json.loads`` -> :class:`MpvInput` -> the media clock.
  ``MpvSession._follow`` skips a line that raises ``ValueError``; nothing else may raise.
* ``vlc`` / ``mpc``: ``status.json`` / ``variables.html`` bodies (NUL-separated, one per
  poll) -> ``parse`` -> ``PolledSession.snapshot`` -> the clock. ``_follow`` skips a body
  whose ``parse`` raises ``ValueError``, ``KeyError`` or ``TypeError``; ``snapshot`` may
  raise nothing.
* ``playlist``: VLC ``playlist.json`` -> :func:`current_path`; ``ValueError`` is handled.
* ``http``: a server's answer to :func:`http_get`; ``PlayerSession.run`` handles
  ``OSError``, ``EOFError`` and ``TimeoutError`` (the player is gone), nothing else.
* ``spec``: a ``--player`` value -> :func:`parse_spec`; only ``UsageError``.

:func:`check` needs no atheris, so the corpus replays in every test run
(tests/test_fuzz_targets.py). ``RATEDIAL_FUZZ_SKIP_KNOWN=1`` tolerates the crashes already
kept as regressions in ``corpus/players/regressions`` (see :data:`KNOWN`), so a bounded run
looks for new ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Callable
from typing import Any

try:
    import atheris
except ImportError:  # replaying the corpus needs no atheris
    atheris = None

_instrument = (atheris.instrument_imports() if atheris is not None and __name__ == "__main__"
               else contextlib.nullcontext())
with _instrument:
    from ratedial.errors import UsageError
    from ratedial.media import MediaClock
    from ratedial.players import http as player_http
    from ratedial.players.mpc import MpcSession
    from ratedial.players.mpv_input import MpvInput, mpv_clock_config
    from ratedial.players.polled import PolledSession
    from ratedial.players.spec import parse_spec
    from ratedial.players.vlc import VlcSession, current_path

MS = 1_000_000


class NotOneLine(AssertionError):
    """A UsageError whose message spans lines (it echoes the input unescaped)."""

T0 = 10**12

# Crashes kept as regressions (corpus/players/regressions, one file each), tolerated only when
# RATEDIAL_FUZZ_SKIP_KNOWN=1: parser -> exception types. Remove an entry when it is fixed.
KNOWN: dict[str, tuple[type[BaseException], ...]] = {}
# Found and fixed (kept in the corpus as regressions): json.loads recursion and float()
# overflow in mpv and VLC answers, non-object JSON in VLC status and playlist, malformed HTTP
# lengths and over-long lines, and a newline echoed in a --player error.


def _annotate(clock: MediaClock, t: int) -> None:
    clock.annotate([t - 30 * MS, t, t + 5 * MS, None])
    clock.at(t)


def fuzz_mpv(payload: bytes) -> None:
    inp = MpvInput(MediaClock(mpv_clock_config(0.0)))
    t = T0
    for line in payload.split(b"\n"):
        t += MS + (len(line) * 7919) % (40 * MS)
        try:
            msg = json.loads(line)
        except (ValueError, RecursionError):  # as MpvSession._follow
            continue
        if isinstance(msg, dict):
            inp.message(t, msg)
            _annotate(inp.clock, t)


def _polled(session: PolledSession, payload: bytes) -> None:
    t = T0
    for body in payload.split(b"\0"):
        t += 40 * MS + (len(body) * 7919) % (20 * MS)
        try:
            snap = session.parse(body)
        except (ValueError, KeyError, TypeError):  # as PolledSession._follow
            continue
        session.snapshot(t - 20 * MS, t, snap)
        _annotate(session.clock, t)


def fuzz_vlc(payload: bytes) -> None:
    _polled(VlcSession(host="127.0.0.1", port=8080, password="x"), payload)


def fuzz_mpc(payload: bytes) -> None:
    _polled(MpcSession(host="127.0.0.1", port=13579), payload)


def fuzz_playlist(payload: bytes) -> None:
    with contextlib.suppress(ValueError, RecursionError):  # as VlcSession._identify_vlc
        current_path(json.loads(payload))


class _Writer:
    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass

    async def wait_closed(self) -> None:
        pass

    def get_extra_info(self, name: str) -> Any:
        return None


_loop = asyncio.new_event_loop()


def fuzz_http(payload: bytes) -> None:
    async def open_connection(host: str, port: int) -> tuple[asyncio.StreamReader, _Writer]:
        reader = asyncio.StreamReader()
        reader.feed_data(payload)
        reader.feed_eof()
        return reader, _Writer()

    real = player_http.asyncio.open_connection
    player_http.asyncio.open_connection = open_connection  # type: ignore[assignment]
    try:
        with contextlib.suppress(OSError, EOFError, TimeoutError):  # as PlayerSession.run
            _loop.run_until_complete(player_http.http_get("127.0.0.1", 8080, "/", timeout=5))
    finally:
        player_http.asyncio.open_connection = real  # type: ignore[assignment]


def fuzz_spec(payload: bytes) -> None:
    try:
        spec = parse_spec(payload.decode("utf-8", "replace"))
    except UsageError as exc:
        if "\n" in str(exc):
            raise NotOneLine(f"UsageError is not one line: {exc!r}") from None
        return
    if spec.host is not None:
        _ = spec.url


PARSERS: dict[str, Callable[[bytes], None]] = {
    "mpv": fuzz_mpv, "vlc": fuzz_vlc, "mpc": fuzz_mpc, "playlist": fuzz_playlist,
    "http": fuzz_http, "spec": fuzz_spec,
}
_ORDER = list(PARSERS)


def parser_for(data: bytes) -> str:
    return _ORDER[data[0] % len(_ORDER)] if data else "spec"


def check(data: bytes) -> None:
    name = parser_for(data)
    tolerated: tuple[type[BaseException], ...] = (
        KNOWN.get(name, ()) if os.environ.get("RATEDIAL_FUZZ_SKIP_KNOWN") else ())
    with contextlib.suppress(*tolerated):
        PARSERS[name](data[1:])


def main() -> None:
    assert atheris is not None, "pip install atheris"
    sys.setrecursionlimit(1000)
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
