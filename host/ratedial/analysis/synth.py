"""Synthetic recordings in the documented file format, with known ground truth.

Tests and benchmarks write real SQLite files with the recorder's schema
(:data:`ratedial.recording.schema.DDL`), so the analysis reads what ``ratedial run`` writes.
Inserts name their columns, so nullable columns added to the schema later do not break it.
A rater is described by a *curve* (media time in, rating out) and a *script* of what
happened at the player: stretches played (possibly a second time, with other ratings: a
re-rated stretch), pauses, time with the player lost (media time unknown), reboots of the
dial and samples lost on the way (gaps).

Invariants:

* Sample indices of an epoch are consecutive except where a gap row accounts for them.
* Samples are written in recording order; media times within one ``Play`` advance by
  ``speed / rate_hz`` per sample.
* Nothing here reads the clock or randomness that is not seeded: the same call writes the
  same file.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..recording.schema import DDL, MediaState
from ..recording.writer import create_private_file

FloatArray = npt.NDArray[np.float64]
Curve = Callable[[FloatArray], FloatArray]

SQL = {
    "dials": "INSERT INTO dials (dial_id, uid, rater, board, firmware, backend) "
    "VALUES (?,?,?,?,?,?)",
    "epochs": "INSERT INTO epochs (epoch_id, dial_id, boot_id, first_host_ns, hello) "
    "VALUES (?,?,?,?,?)",
    "samples": "INSERT INTO samples (epoch_id, sample_index, dial_id, device_us, host_ns, count, "
    "rating, flags, media_id, media_s, media_state) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
    "gaps": "INSERT INTO gaps (epoch_id, dial_id, first_index, end_index, reason, "
    "first_host_ns, end_host_ns) VALUES (?,?,?,?,?,?,?)",
    "events": "INSERT INTO events (event_id, host_ns, dial_id, kind, data) VALUES (?,?,?,?,?)",
    "clock_models": "INSERT INTO clock_models (epoch_id, host_ns, ref_device_us, ref_host_ns, "
    "skew_ppm, uncertainty_ns, n_obs) VALUES (?,?,?,?,?,?,?)",
    "wall_anchors": "INSERT INTO wall_anchors (host_ns, wall_ns) VALUES (?,?)",
    "media": "INSERT INTO media (media_id, path, duration_s, fps, fingerprint) VALUES (?,?,?,?,?)",
    "meta": "INSERT OR REPLACE INTO meta (key, value) VALUES (?,?)",
}

DEFAULT_SCALE: dict[str, Any] = {
    "minimum": 0, "maximum": 100, "start": 50, "counts_per_point": 1,
    "anchors": {"0": "hindering", "50": "neutral", "100": "helpful"},
}


@dataclass(frozen=True, kw_only=True)
class Play:
    """The video plays from ``start_s`` to ``end_s``; the rater rates what is shown.

    ``rating`` replaces the rater's curve for this stretch (how a re-rated stretch gets other
    values the second time). ``gaps`` are media-time ranges ``(from_s, to_s, reason)`` in
    which the samples are lost on the way to the host (the video keeps playing).
    """

    start_s: float
    end_s: float
    speed: float = 1.0
    rating: Curve | None = None
    gaps: tuple[tuple[float, float, str], ...] = ()


@dataclass(frozen=True, kw_only=True)
class Pause:
    """The video is paused at ``at_s`` for ``seconds``; samples carry that frame's time."""

    at_s: float
    seconds: float
    rating: float | None = None  # the dial is turned to this value while paused


@dataclass(frozen=True, kw_only=True)
class Unknown:
    """The player is lost for ``seconds``: samples have no media time (state unknown)."""

    seconds: float


@dataclass(frozen=True, kw_only=True)
class NoPlayer:
    """No player at all for ``seconds`` (``ratedial run`` without ``--player``): samples have
    no media time (state none); the rating follows the rater's curve over *run time*, the
    seconds since the recording's first sample."""

    seconds: float


@dataclass(frozen=True, kw_only=True)
class Reboot:
    """The dial reboots: a new epoch starts, sample indices restart at 0."""


Step = Play | Pause | Unknown | NoPlayer | Reboot


@dataclass(frozen=True, kw_only=True)
class SynthRater:
    label: str | None
    curve: Curve
    script: Sequence[Step]
    uid: str = "e66038b7132f4a2c"
    firmware: str = "0.1.0"
    board: str = "pico"
    quantize: bool = True  # ratings in whole points, as a dial with counts_per_point 1 gives


@dataclass(frozen=True, kw_only=True)
class SynthMedia:
    path: str | None = "session.mp4"
    duration_s: float | None = 600.0
    fps: float | None = 25.0
    fingerprint: str | None = "sha256:synthetic"


@dataclass(kw_only=True)
class Written:
    """What was written (ground truth for tests)."""

    path: Path
    samples: int = 0
    gaps: list[tuple[int, int, int, str]] = field(default_factory=list)  # epoch, first, end, why


# --- curves -------------------------------------------------------------------------------


def constant(value: float) -> Curve:
    def f(t: FloatArray) -> FloatArray:
        return np.full(t.shape, float(value))

    return f


def piecewise(edges: Sequence[float], values: Sequence[float]) -> Curve:
    """``values[i]`` on ``[edges[i-1], edges[i])``: ``len(values) == len(edges) + 1``."""
    if len(values) != len(edges) + 1:
        raise ValueError("piecewise needs one value more than edges")
    e = np.asarray(edges, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)

    def f(t: FloatArray) -> FloatArray:
        return np.asarray(v[np.searchsorted(e, t + 1e-9, side="right")], dtype=np.float64)

    return f


def smooth_random(seed: int, duration_s: float, *, knot_s: float = 8.0, mean: float = 55.0,
                  sd: float = 15.0) -> Curve:
    """A smooth random rating curve (cubic-ish interpolation of random knots), clipped 0-100."""
    rng = np.random.default_rng(seed)
    n = int(duration_s / knot_s) + 3
    kt = np.arange(n) * knot_s - knot_s
    kv = mean + sd * rng.standard_normal(n)

    def f(t: FloatArray) -> FloatArray:
        # smoothstep between knots: continuous, with zero slope at the knots
        i = np.clip(((t - kt[0]) / knot_s).astype(np.int64), 0, n - 2)
        u = (t - kt[i]) / knot_s
        w = u * u * (3 - 2 * u)
        return np.asarray(np.clip(kv[i] * (1 - w) + kv[i + 1] * w, 0, 100), dtype=np.float64)

    return f


def shifted(curve: Curve, lag_s: float) -> Curve:
    """The same curve ``lag_s`` seconds later (a rater who reacts later)."""

    def f(t: FloatArray) -> FloatArray:
        return curve(t - lag_s)

    return f


def mixed(a: Curve, b: Curve, weight_a: float) -> Curve:
    def f(t: FloatArray) -> FloatArray:
        return weight_a * a(t) + (1 - weight_a) * b(t)

    return f


# --- writing ------------------------------------------------------------------------------


class _Sink:
    """Rows for one file, inserted in large batches inside one transaction."""

    def __init__(self, con: sqlite3.Connection) -> None:
        self.con = con
        self.n_samples = 0

    def samples(self, cols: list[Any]) -> None:
        rows = list(zip(*cols, strict=True))
        self.con.executemany(SQL["samples"], rows)
        self.n_samples += len(rows)


class _RaterWriter:
    def __init__(self, *, sink: _Sink, rater: SynthRater, dial_id: int, rate_hz: float,
                 media_id: int | None, first_epoch_id: int, host0_ns: int,
                 out: Written) -> None:
        self.sink = sink
        self.r = rater
        self.dial_id = dial_id
        self.rate = rate_hz
        self.media_id = media_id
        self.epoch_id = first_epoch_id
        self.index = 0
        self.t_us = 0  # device time of the next sample
        self.host0 = host0_ns
        self.position: float | None = None
        self.out = out
        self.epochs: list[int] = []
        self.last_rating = 50.0
        self.events: list[tuple[int, int | None, str, dict[str, Any]]] = []

    def host_ns(self) -> int:
        return self.host0 + self.t_us * 1000

    def start_epoch(self) -> None:
        hello = {"boot_id": 0x1000 + len(self.epochs), "rate_hz": self.rate,
                 "period_us": round(1e6 / self.rate), "uid": self.r.uid,
                 "board": self.r.board, "firmware": self.r.firmware, "backend": "pio"}
        self.sink.con.execute(SQL["epochs"], (self.epoch_id, self.dial_id, hello["boot_id"],
                                              self.host_ns(), json.dumps(hello)))
        self.sink.con.execute(SQL["clock_models"], (self.epoch_id, self.host_ns() + 10**9, 0,
                                                    self.host_ns(), 3.5, 180_000, 20))
        self.epochs.append(self.epoch_id)
        self.events.append((self.host_ns(), self.dial_id, "dial_connected",
                            {"port": "/dev/ttyACM0", "boot_id": hello["boot_id"]}))
        self.index = 0

    def emit(self, media_s: FloatArray | None, rating: FloatArray, state: MediaState,
             keep: npt.NDArray[np.bool_] | None = None, reasons: list[str] | None = None) -> None:
        n = len(rating)
        if n == 0:
            return
        idx = self.index + np.arange(n, dtype=np.int64)
        dev = self.t_us + np.round(np.arange(n) * 1e6 / self.rate).astype(np.int64)
        if self.r.quantize:
            rating = np.round(rating)
        rating = np.clip(rating, 0, 100)
        count = (rating - 50).astype(np.int64)
        if keep is not None and not keep.all():
            self._record_gaps(idx, dev, keep, reasons or [])
        else:
            keep = np.ones(n, dtype=np.bool_)
        host = self.host0 + dev * 1000
        ms: list[Any] = [None] * int(keep.sum()) if media_s is None else media_s[keep].tolist()
        mid: list[Any] = [None if media_s is None else self.media_id] * int(keep.sum())
        k = int(keep.sum())
        self.sink.samples([[self.epoch_id] * k, idx[keep].tolist(), [self.dial_id] * k,
                           dev[keep].tolist(), host[keep].tolist(), count[keep].tolist(),
                           rating[keep].tolist(), [0] * k, mid, ms, [int(state)] * k])
        self.last_rating = float(rating[-1])
        self.index += n
        self.t_us = int(dev[-1]) + round(1e6 / self.rate)

    def _record_gaps(self, idx: npt.NDArray[np.int64], dev: npt.NDArray[np.int64],
                     keep: npt.NDArray[np.bool_], reasons: list[str]) -> None:
        missing = (~keep).astype(np.int8)
        d = np.diff(np.concatenate([[0], missing, [0]]))
        starts = np.flatnonzero(d == 1)
        ends = np.flatnonzero(d == -1)
        for j, (s, e) in enumerate(zip(starts, ends, strict=True)):
            reason = reasons[j] if j < len(reasons) else "link"
            first, end = int(idx[s]), int(idx[e - 1]) + 1
            self.sink.con.execute(SQL["gaps"], (
                self.epoch_id, self.dial_id, first, end, reason,
                self.host0 + int(dev[s]) * 1000, self.host0 + int(dev[e - 1]) * 1000 + 10**6))
            self.out.gaps.append((self.epoch_id, first, end, reason))
            self.events.append((self.host0 + int(dev[s]) * 1000, self.dial_id, "gap",
                                {"epoch_id": self.epoch_id, "first_index": first,
                                 "end_index": end, "reason": reason}))

    def play(self, step: Play) -> None:
        if self.position is None or abs(self.position - step.start_s) > 1e-6:
            self.events.append((self.host_ns(), None, "media_seek",
                                {"from_s": self.position, "to_s": step.start_s}))
        self.events.append((self.host_ns(), None, "media_play", {"media_s": step.start_s}))
        n = round((step.end_s - step.start_s) / step.speed * self.rate)
        step_s = step.speed / self.rate
        media: FloatArray = step.start_s + np.arange(n, dtype=np.float64) * step_s
        rating = (step.rating or self.r.curve)(media)
        keep = np.ones(n, dtype=np.bool_)
        reasons = []
        for lo, hi, why in sorted(step.gaps):
            keep &= ~((media >= lo - 1e-9) & (media < hi - 1e-9))
            reasons.append(why)
        self.emit(media, rating, MediaState.PLAYING, keep, reasons)
        self.position = step.end_s

    def pause(self, step: Pause) -> None:
        self.events.append((self.host_ns(), None, "media_pause", {"media_s": step.at_s}))
        n = round(step.seconds * self.rate)
        value = self.last_rating if step.rating is None else step.rating
        self.emit(np.full(n, step.at_s), np.full(n, float(value)), MediaState.PAUSED)
        self.position = step.at_s

    def unknown(self, step: Unknown) -> None:
        self.events.append((self.host_ns(), None, "player_lost", {"player": "mpv"}))
        n = round(step.seconds * self.rate)
        self.emit(None, np.full(n, self.last_rating), MediaState.UNKNOWN)
        self.events.append((self.host_ns(), None, "player_back", {"player": "mpv"}))

    def no_player(self, step: NoPlayer) -> None:
        n = round(step.seconds * self.rate)
        run_s = self.t_us / 1e6 + np.arange(n, dtype=np.float64) / self.rate
        self.emit(None, self.r.curve(run_s), MediaState.NONE)

    def reboot(self) -> None:
        old = 0x1000 + len(self.epochs) - 1
        self.epoch_id += 1
        self.t_us += 2_000_000  # two seconds to boot and be found again
        self.events.append((self.host_ns(), self.dial_id, "dial_reboot",
                            {"old_boot_id": old, "new_boot_id": old + 1}))
        self.start_epoch()

    def run(self) -> None:
        self.start_epoch()
        for step in self.r.script:
            if isinstance(step, Play):
                self.play(step)
            elif isinstance(step, Pause):
                self.pause(step)
            elif isinstance(step, Unknown):
                self.unknown(step)
            elif isinstance(step, NoPlayer):
                self.no_player(step)
            else:
                self.reboot()


def write_recording(path: str | Path, raters: Sequence[SynthRater], *,
                    media: SynthMedia | None = None, rate_hz: float = 1000.0,
                    session: dict[str, Any] | None = None,
                    annotations: dict[str, Any] | None = None,
                    scale: dict[str, Any] | None = None) -> Written:
    """Write one recording file: every rater in ``raters`` is one dial of the same run.

    All dials rate the same ``media`` (one ``media`` row; ``None`` writes no media row and
    leaves media ids NULL). Dial uids must differ.
    """
    path = Path(path)
    out = Written(path=path)
    create_private_file(path)
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.executescript(DDL)
        con.execute("PRAGMA synchronous = OFF")
        con.execute("BEGIN")
        meta: dict[str, Any] = {
            "format": "ratedial-recording", "format_version": 1, "software_version": "synth",
            "created_wall_ns": 1_700_000_000 * 10**9, "host": "synth",
            "command_line": ["ratedial", "run"], "config": {},
            "scale": scale or DEFAULT_SCALE, "session": session or {},
            "ended_wall_ns": 1_700_003_600 * 10**9,
        }
        if annotations is not None:
            meta["annotations"] = annotations
        media_id: int | None = None
        if media is not None:
            media_id = 1
            con.execute(SQL["media"], (media_id, media.path, media.duration_s, media.fps,
                                       media.fingerprint))
            meta["media"] = {"media_id": media_id, "path": media.path,
                             "duration_s": media.duration_s, "fps": media.fps,
                             "fingerprint": media.fingerprint}
        con.executemany(SQL["meta"], [(k, json.dumps(v)) for k, v in meta.items()])
        con.execute(SQL["wall_anchors"], (10**9, 1_700_000_000 * 10**9))
        sink = _Sink(con)
        events: list[tuple[int, int | None, str, dict[str, Any]]] = []
        epoch_id = 1
        for dial_id, r in enumerate(raters, start=1):
            con.execute(SQL["dials"], (dial_id, r.uid, r.label, r.board, r.firmware, "pio"))
            w = _RaterWriter(sink=sink, rater=r, dial_id=dial_id, rate_hz=rate_hz,
                             media_id=media_id, first_epoch_id=epoch_id, host0_ns=10**9,
                             out=out)
            if media is not None:
                w.events.append((10**9, None, "media_load",
                                 {"media_id": media_id, "path": media.path,
                                  "duration_s": media.duration_s}))
            w.run()
            events.extend(w.events)
            epoch_id = w.epoch_id + 1
        events.sort(key=lambda e: e[0])
        con.executemany(SQL["events"], [(i, h, d, k, json.dumps(data))
                                        for i, (h, d, k, data) in enumerate(events, start=1)])
        con.execute("COMMIT")
        out.samples = sink.n_samples
    finally:
        con.close()
    return out


def simple_rater(label: str, curve: Curve, duration_s: float, *,
                 uid: str = "e66038b7132f4a2c") -> SynthRater:
    """A rater who watches the whole video once without pausing."""
    return SynthRater(label=label, curve=curve, script=(Play(start_s=0, end_s=duration_s),),
                      uid=uid)


def write_dyad(directory: str | Path, dyad: str, *, duration_s: float, seed: int,
               rate_hz: float = 1000.0, agreement: float = 0.6, lag_s: float = 1.0,
               annotations: tuple[dict[str, Any], dict[str, Any]] | None = None,
               ) -> tuple[Path, Path]:
    """A client and a therapist recording of the same video, in separate files.

    The therapist's curve is ``agreement`` times the client's curve (``lag_s`` later) plus an
    independent curve; both are labelled with ``--session dyad=<dyad>``.
    """
    d = Path(directory)
    client = smooth_random(seed, duration_s + 20)
    own = smooth_random(seed + 10_000, duration_s + 20, mean=50)
    therapist = mixed(shifted(client, lag_s), own, agreement)
    media = SynthMedia(path=f"{dyad}.mp4", duration_s=duration_s,
                       fingerprint=f"sha256:{dyad.lower()}-video")
    paths = []
    for i, (role, curve) in enumerate((("client", client), ("therapist", therapist))):
        p = d / f"{dyad}-{role}.ratedial"
        write_recording(p, [simple_rater(role, curve, duration_s, uid=f"{seed:08x}{i:08x}")],
                        media=media, rate_hz=rate_hz, session={"dyad": dyad},
                        annotations=None if annotations is None else annotations[i])
        paths.append(p)
    return paths[0], paths[1]
