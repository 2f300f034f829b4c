"""MQTT topics and payloads (docs/mqtt.md), pure.

Topics carry only pseudonymous ids: the dial's unique id and a daemon id derived from the
host name by hashing. Rater labels ("client") appear in payloads, never personal names, and
never file names or paths.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from ..outputs import public_data

PAYLOAD_VERSION = 1


def default_daemon_id() -> str:
    """A stable pseudonymous id for this machine: ``d`` + 8 hex digits of a hash."""
    return "d" + hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def checked_daemon_id(value: str | None) -> str:
    """The configured daemon id, or the default; a one-line error if it is not topic-safe."""
    if value is None:
        return default_daemon_id()
    if not _ID.fullmatch(value):
        from ..errors import UsageError

        raise UsageError(f"daemon id {value!r}: use 1-64 letters, digits, '-' or '_'")
    return value


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str
    daemon: str

    def _dial(self, uid: str, leaf: str) -> str:
        return f"{self.prefix}/v1/dials/{uid}/{leaf}"

    def samples(self, uid: str) -> str:
        return self._dial(uid, "samples")

    def backfill(self, uid: str) -> str:
        return self._dial(uid, "backfill")

    def dial_events(self, uid: str) -> str:
        return self._dial(uid, "events")

    def dial_status(self, uid: str) -> str:
        return self._dial(uid, "status")

    @property
    def daemon_status(self) -> str:
        return f"{self.prefix}/v1/daemons/{self.daemon}/status"

    @property
    def daemon_events(self) -> str:
        return f"{self.prefix}/v1/daemons/{self.daemon}/events"

    @property
    def replay_requests(self) -> str:
        """Subscribers ask this daemon to republish index ranges from its recordings."""
        return f"{self.prefix}/v1/daemons/{self.daemon}/replay"

    @property
    def replayed(self) -> str:
        """Where the daemon says a replay request was served, and what it did not hold."""
        return f"{self.prefix}/v1/daemons/{self.daemon}/replayed"

    def all_samples(self) -> list[str]:
        """Subscriptions that together carry every sample (dedupe by dial, boot, index)."""
        return [f"{self.prefix}/v1/dials/+/samples", f"{self.prefix}/v1/dials/+/backfill"]


def loads(payload: bytes | str) -> Any:
    """A received payload's JSON (orjson). Every way it can be bad is a ``ValueError``:
    nesting too deep (``json.loads`` raised ``RecursionError`` on a ~6 KB ``[[[...]]]``, which
    cut the daemon off its broker and ended monitors and collectors), a string with a lone
    surrogate (``"\\udce9"``: no text SQLite or a UTF-8 reader can take; one such status
    stopped a whole collection), ``NaN`` or a number beyond a double."""
    try:
        return orjson.loads(payload)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def dumps(obj: Any) -> bytes:
    """Compact JSON (orjson: a 10-sample payload in ~3 µs against ~15 µs with ``json``, the
    largest single cost of a live message after paho's own). A NaN, which no sample holds,
    would be ``null``; what orjson cannot encode (an int beyond 64 bits) goes through
    ``json``."""
    try:
        return orjson.dumps(obj)
    except orjson.JSONEncodeError:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


def samples_payload(
    *,
    uid: str,
    rater: str | None,
    daemon: str,
    boot_id: int,
    first_index: int,
    period_us: int,
    device_us: Sequence[int],
    host_ns: Sequence[int | None],
    wall_ns: Sequence[int | None],
    count: Sequence[int],
    rating: Sequence[float],
    flags: Sequence[int],
    media_s: Sequence[float | None],
    media_state: Sequence[int],
    replay: bool = False,
) -> bytes:
    return dumps({
        "v": PAYLOAD_VERSION,
        "dial": uid,
        "rater": rater,
        "daemon": daemon,
        "boot": boot_id,
        "first": first_index,
        "n": len(count),
        "period_us": period_us,
        "replay": replay,
        "device_us": list(device_us),
        "host_ns": list(host_ns),
        "wall_ns": list(wall_ns),
        "count": list(count),
        "rating": list(rating),
        "flags": list(flags),
        "media_s": list(media_s),
        "media_state": list(media_state),
    })


def event_payload(*, event_id: int, kind: str, host_ns: int, wall_ns: int,
                  dial: str | None, daemon: str, data: dict[str, Any], run: str | None = None,
                  replay: bool = False) -> bytes:
    """``id`` counts within one run (recording) of the daemon: dedupe by daemon, run, id.
    File names stay in the recording: ``data`` goes out without :data:`LOCAL_ONLY` keys."""
    return dumps({"v": PAYLOAD_VERSION, "id": event_id, "kind": kind, "host_ns": host_ns,
                  "wall_ns": wall_ns, "dial": dial, "daemon": daemon, "run": run,
                  "replay": replay, "data": public_data(data)})

