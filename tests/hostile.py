"""A dial's byte stream, honest or hostile, fed through the daemon's own frame path.

:class:`World` is one port of a :class:`ratedial.daemon.run.Daemon` with a real recorder
behind it: bytes go through the real :class:`~ratedial.wire.FrameDecoder` in reads split
wherever the test says, then into ``Daemon._frames`` exactly as the serial shell hands them
over. :class:`SimDial` makes the frames an honest dial would send (its own uid, boot, index
and device clock, running ``drift_ppm`` fast), so a test knows which samples are owed.
"""

from __future__ import annotations

import itertools
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ratedial.config import RunConfig
from ratedial.daemon.run import Daemon
from ratedial.daemon.sinks import RecorderSink
from ratedial.recording.writer import Recorder
from ratedial.wire import FrameDecoder, Hello, Samples, encode_frame

PORT = "/dev/hostile"


@dataclass
class SimDial:
    """An honest dial: ``frame()`` is its next SAMPLES frame, taken on its own clock."""

    uid: bytes
    boot: int
    t0_us: int = 1_000_000  # device time of sample 0
    host0_ns: int = 10**12  # host time of device time t0_us
    drift_ppm: float = 0.0  # + : the dial's clock runs fast
    batch: int = 10
    period_us: int = 1000
    next_index: int = 0
    seq: int = 0
    sent: list[Samples] = field(default_factory=list)

    def t_us(self, index: int) -> int:
        return self.t0_us + index * self.period_us

    def host_ns(self, device_us: int) -> int:
        """True host time of a device time: the dial's µs last 1 / (1 + drift) host µs."""
        return self.host0_ns + round((device_us - self.t0_us) * 1000 / (1 + self.drift_ppm * 1e-6))

    def hello(self) -> Hello:
        """The next HELLO: like every frame it takes the next seq (the first of a boot: 0)."""
        self.seq += 1
        return Hello(seq=(self.seq - 1) & 0xFFFF, boot_id=self.boot,
                     time_us=self.t_us(self.next_index), period_us=self.period_us,
                     rate_hz=round(1e6 / self.period_us), batch=self.batch, tick_bits=30,
                     flags=1, debounce_ms=5, uid=self.uid, board="test", firmware="0.1.0",
                     backend="irq")

    def frame(self) -> Samples:
        i = self.next_index
        n = self.batch
        s = Samples(seq=self.seq & 0xFFFF, first_index=i, period_us=self.period_us,
                    counts=tuple((i + k) % 50 for k in range(n)),
                    times_us=tuple(self.t_us(i + k) for k in range(n)), flags=(0,) * n)
        self.seq += 1
        self.next_index += n
        self.sent.append(s)
        return s

    def arrival_ns(self, s: Samples, latency_ns: int = 1_000_000) -> int:
        return self.host_ns(s.times_us[-1]) + latency_ns

    def reboot(self, boot: int, *, t0_us: int | None = None, at_host_ns: int) -> None:
        """Start again: index 0, a new time base, host time ``at_host_ns`` at sample 0."""
        self.boot = boot
        self.t0_us = 500_000 if t0_us is None else t0_us
        self.host0_ns = at_host_ns
        self.next_index = 0
        self.seq = 0


class World:
    """One port of a real daemon, recording to ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.recorder = Recorder(path, meta={})
        self.sink = RecorderSink(self.recorder, raters=lambda uid: None)
        self.outs: list[Any] = []
        self.said: list[str] = []
        self.daemon = Daemon(RunConfig(scan=False), [self.sink, self],
                             on_message=self.said.append)
        self.decoder = FrameDecoder()
        self.decoder.feed(b"\x00")  # the port is synchronised, as after the dial's first 0x00

    def handle(self, outs: list[Any]) -> None:  # a sink that keeps everything
        self.outs.extend(outs)

    def send(self, data: bytes, host_ns: int, *, splits: tuple[int, ...] = ()) -> None:
        """Deliver ``data`` in reads cut at ``splits`` (offsets), all stamped ``host_ns``."""
        cuts = [0, *sorted(c for c in set(splits) if 0 < c < len(data)), len(data)]
        for a, b in itertools.pairwise(cuts):
            items = self.decoder.feed_marked(data[a:b])
            if items:
                self.daemon._frames(PORT, items, host_ns)

    def frames(self, *frames: Any, host_ns: int, **kw: Any) -> None:
        self.send(b"".join(encode_frame(f) for f in frames), host_ns, **kw)

    def tick(self, host_ns: int) -> None:
        """What the daemon does between frames (expire what waited too long)."""
        self.daemon.emit(self._core_expire(host_ns))

    def _core_expire(self, host_ns: int) -> list[Any]:
        outs: list[Any] = []
        for core in self.daemon.cores.values():
            outs += core.expire(host_ns)
        return outs

    def close(self) -> sqlite3.Connection:
        self.daemon.finish()  # as at the end of a run
        self.recorder.close()
        return sqlite3.connect(self.path)

    def events(self, kind: str) -> list[Any]:
        return [o for o in self.outs if getattr(o, "kind", None) == kind]


def recorded(con: sqlite3.Connection) -> dict[tuple[str, int], list[int]]:
    """Sample indices per (uid, boot) in the recording."""
    out: dict[tuple[str, int], list[int]] = {}
    for uid, boot, i in con.execute(
            "SELECT d.uid, e.boot_id, s.sample_index FROM samples s JOIN epochs e "
            "USING (epoch_id) JOIN dials d ON d.dial_id = e.dial_id ORDER BY 1, 2, 3"):
        out.setdefault((uid, boot), []).append(i)
    return out


def gaps(con: sqlite3.Connection) -> dict[tuple[str, int], list[tuple[int, int, str]]]:
    out: dict[tuple[str, int], list[tuple[int, int, str]]] = {}
    for uid, boot, a, b, r in con.execute(
            "SELECT d.uid, e.boot_id, g.first_index, g.end_index, g.reason FROM gaps g "
            "JOIN epochs e USING (epoch_id) JOIN dials d ON d.dial_id = e.dial_id "
            "ORDER BY 1, 2, 3"):
        out.setdefault((uid, boot), []).append((a, b, r))
    return out


def accounted(con: sqlite3.Connection) -> None:
    """Per epoch: each index from the first accounted for is recorded once or in one gap."""
    rec, gp = recorded(con), gaps(con)
    for key in set(rec) | set(gp):
        idx = rec.get(key, [])
        assert len(idx) == len(set(idx)), f"{key}: a sample recorded twice"
        covered = set(idx)
        for a, b, _ in gp.get(key, []):
            span = set(range(a, b))
            assert not span & covered, f"{key}: gap {a}-{b} overlaps"
            covered |= span
        if covered:
            assert covered == set(range(min(covered), max(covered) + 1)), f"{key}: unaccounted"
