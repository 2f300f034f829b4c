"""What the daemon's MQTT side parses: broker addresses and subscribers' replay requests.

Pure functions (no connection), bounded so a request cannot flood the daemon; split from
:mod:`ratedial.mqtt.publisher`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..errors import UsageError, hide_userinfo
from .topics import loads

MAX_REQUEST_RANGES = 100
MAX_REQUEST_SAMPLES = 3_600_000  # one hour at 1 kHz per request
MAX_REQUEST_EVENTS = 100_000


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool


def parse_broker(url: str, *, tls: bool = False, option: str = "--broker",
                 words: str | None = None) -> BrokerAddress:
    """``mqtt://host[:port]`` or ``mqtts://host[:port]``; one-line UsageError otherwise, naming
    ``option`` and, as also accepted, ``words``: by default ``embedded or none`` for
    ``--broker`` (which callers handle), nothing for another option."""
    shown = hide_userinfo(url)  # every message: a password typed by mistake stays hidden
    try:
        parts = urlsplit(url if "://" in url else f"mqtt://{url}")
        hostname = parts.hostname
    except ValueError:  # "Invalid IPv6 URL": an unclosed [
        raise UsageError(f"{option} {shown!r}: not a valid URL (an IPv6 address goes in "
                         "brackets: mqtt://[::1]:1883)") from None
    if parts.scheme not in ("mqtt", "mqtts") or not hostname:
        if words is None:
            words = "embedded or none" if option == "--broker" else ""
        also = f", {words}" if words else ""
        raise UsageError(f"{option} {shown!r}: expected mqtt://HOST[:PORT]"
                         f"{',' if also else ' or'} mqtts://HOST[:PORT]{also}")
    if parts.username is not None or parts.password is not None or "@" in url:
        why = ("a command line is visible to every user of this computer"
               if option.startswith("-") else "a config file is read by whoever it is shared "
               "with")  # option: "mqtt.broker in FILE"
        raise UsageError(f"{option} {shown}: credentials do not go in the URL ({why}, and the "
                         "URL is kept in the recording): put the user in [mqtt] username and "
                         "the password in RATEDIAL_MQTT_PASSWORD or [mqtt] password_file")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise UsageError(f"{option} {shown!r}: expected mqtt://HOST[:PORT] or "
                         "mqtts://HOST[:PORT], nothing after the port")
    secure = tls or parts.scheme == "mqtts"
    try:
        port = parts.port
    except ValueError:  # not a number, or above 65535: said as port 0 is
        port = 0
    if port == 0:  # not "the default": a broker listens on a port of its own
        raise UsageError(f"{option} {shown!r}: bad port (1-65535)")
    port = port or (8883 if secure else 1883)
    return BrokerAddress(hostname, port, secure)


def _parse_ranges(ranges: Any, limit: int) -> list[tuple[int, int]] | None:
    if not isinstance(ranges, list) or not 0 < len(ranges) <= MAX_REQUEST_RANGES:
        return None
    out = []
    for r in ranges:
        if (not isinstance(r, list) or len(r) != 2
                or not all(type(x) is int for x in r) or not 0 <= r[0] < r[1] < 2**63):
            return None
        out.append((r[0], r[1]))
    return out if sum(b - a for a, b in union(out)) <= limit else None


def union(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The indices ``ranges`` cover, each once: sorted, overlaps merged (100 copies of one
    hour-long range are one hour, served once, not 100 hours)."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def parse_replay_request(raw: Any) -> dict[str, Any] | None:
    """A valid replay request (docs/mqtt.md), or None. Bounded so one cannot flood us.

    Samples: ``{"v": 1, "dial", "boot", "ranges"}``; events of one run of the daemon:
    ``{"v": 1, "run", "events"}`` (ranges of event ids)."""
    try:
        req = loads(raw)
        if not isinstance(req, dict) or req.get("v") != 1:
            return None
        if "run" in req:
            run = req["run"]
            ids = _parse_ranges(req["events"], MAX_REQUEST_EVENTS)
            if not isinstance(run, str) or ids is None:
                return None
            return {"run": run, "events": ids}
        dial, boot = req["dial"], req["boot"]
        ranges = _parse_ranges(req["ranges"], MAX_REQUEST_SAMPLES)
        if not isinstance(dial, str) or type(boot) is not int or ranges is None:
            return None
        return {"dial": dial, "boot": boot, "ranges": ranges}
    except (ValueError, KeyError, TypeError):
        return None


def contiguous_chunks(rows: list[tuple[Any, ...]], size: int) -> list[list[tuple[Any, ...]]]:
    chunks: list[list[tuple[Any, ...]]] = []
    for r in rows:
        if chunks and len(chunks[-1]) < size and chunks[-1][-1][0] + 1 == r[0]:
            chunks[-1].append(r)
        else:
            chunks.append([r])
    return chunks
