"""Load recordings into rater series on a common media-time grid.

A *series* is what one dial rated of one video in one recording, on the grid of
:mod:`ratedial.analysis.align`. Series of the same video from different recordings line up
bin for bin, because every grid starts at media time 0 with the same rate.

Invariants:

* Memory is bounded by the number of grid bins and sample groups, not by the number of
  samples: SQLite aggregates (:func:`ratedial.analysis.read.sample_groups`).
* Long recordings are read in parallel, one forked worker process per epoch (threads would
  contend on SQLite's global allocator lock), but only where ``fork`` is safe (POSIX, no
  other thread running); otherwise one after the other. The result is the same either way.
* Rater labels come from ``dials.rater``, then from overrides; a dial without any label is
  called by its uid.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..recording.schema import MediaState
from .align import (
    AlignOptions,
    Binned,
    FloatArray,
    StatusArray,
    fill_short,
    pass_ids,
    resolve,
)
from .errors import NothingToAnalyse, UsageError
from .fmt import fmt_range
from .losses import Loss
from .read import (
    BIN_NO_MEDIA_TIME,
    RUN_TIMELINE,
    Dial,
    Gap,
    Groups,
    Media,
    Recording,
    read_recording,
    sample_groups,
)

DEFAULT_SAMPLE_RATE_HZ = 1000.0
#: Below this many samples in all, reading in worker processes costs more than it saves.
PARALLEL_MIN_SAMPLES = 1_500_000

_STATE_REASON = {int(MediaState.UNKNOWN): "state_unknown", int(MediaState.PAUSED): "paused",
                 int(MediaState.SEEKING): "seeking", int(MediaState.ENDED): "ended",
                 int(MediaState.NONE): "no_player"}


@dataclass(frozen=True, kw_only=True, eq=False)
class Series:
    """One rater's ratings of one video, on the grid."""

    recording: Recording
    dial: Dial
    media: Media
    rater: str
    options: AlignOptions
    binned: Binned
    passes: int  # passes over this video (1 when watched once straight through)
    samples_used: int
    excluded: dict[str, int] = field(default_factory=dict)  # samples left out, by reason
    gaps: tuple[Gap, ...] = ()

    @property
    def values(self) -> FloatArray:
        return self.binned.values

    @property
    def stalls(self) -> tuple[int, float]:
        """How often this rater's dial took no samples for 0.1 s or more (``dial_stalled``),
        and for how long in all (the whole recording: stalls carry no media time)."""
        return self.recording.stalls.get(self.dial.dial_id, (0, 0.0))

    @property
    def losses(self) -> tuple[Loss, ...]:
        """This rater's dial lost while this video played (or during the run, on a run
        timeline): where, and whether it came back."""
        return tuple(x for x in self.recording.losses if x.dial_id == self.dial.dial_id
                     and (self.media.timeline == RUN_TIMELINE
                          or x.media_id == self.media.media_id))

    @property
    def status(self) -> StatusArray:
        return self.binned.status

    @property
    def rate_hz(self) -> float:
        return self.options.rate_hz

    @property
    def duration_s(self) -> float:
        if self.media.duration_s:
            return float(self.media.duration_s)
        return len(self.values) / self.rate_hz

    @property
    def label(self) -> str:
        """``rater`` in ``recording`` (for messages)."""
        return f"{self.rater} ({self.recording.path.name})"


def differing_scales(series: Iterable[Series]) -> str | None:
    """``client 0 to 100, therapist 1 to 7`` (each scale with the first rater on it) when
    the series are on more than one scale; None when they share one."""
    seen: dict[tuple[float, float], str] = {}
    for s in series:
        seen.setdefault(s.recording.scale_range, s.rater)
    if len(seen) < 2:
        return None
    return ", ".join(f"{who} {fmt_range(key)}" for key, who in seen.items())


def parse_rater_overrides(specs: Iterable[str]) -> dict[str, str]:
    """``["REC=LABEL", "REC:DIAL=LABEL"]`` → ``{"REC": "LABEL", "REC:DIAL": "LABEL"}``."""
    out: dict[str, str] = {}
    for spec in specs:
        target, sep, label = spec.rpartition("=")
        if not sep or not target or not label:
            raise UsageError(f"--rater {spec!r}: expected RECORDING=LABEL or "
                             "RECORDING:DIAL=LABEL")
        out[target] = label
        resolved = _resolved_key(target)
        if resolved is not None:
            out[resolved] = label
    return out


def _resolved_key(target: str) -> str | None:
    """``target`` (``REC`` or ``REC:DIAL``) with ``REC`` as an absolute path, when it names an
    existing file: ``./a.ratedial``, ``a.ratedial`` and ``/study/a.ratedial`` are one file."""
    if Path(target).is_file():
        return str(Path(target).resolve())
    rec, sep, sel = target.rpartition(":")
    if sep and rec and Path(rec).is_file():
        return f"{Path(rec).resolve()}:{sel}"
    return None


def recording_names(rec: Recording) -> set[str]:
    """The names a ``--rater`` or ``--dyad`` override may give a recording by: the path as
    given, the absolute path, and every trailing part of it (``client.ratedial``,
    ``S01/client.ratedial``, ...; with ``/`` or the system's separator)."""
    parts = rec.path.resolve().parts
    tails = {sep.join(parts[i:]) for i in range(1, len(parts)) for sep in {"/", os.sep}}
    return {str(rec.path), rec.path.name, str(rec.path.resolve()), *tails}


def distinct_names(paths: Iterable[Path]) -> dict[Path, str]:
    """Each path by the shortest trailing part of it that no other of ``paths`` ends with
    (``S01/client.ratedial`` and ``backup/S01/client.ratedial``): for messages naming
    recordings of one file name in several folders. Every trailing part is counted once, so
    the cost grows with the number of paths times their depth squared, not with the number
    of paths squared."""
    full = {p: p.resolve().parts for p in paths}
    ends = Counter(parts[-n:] for parts in full.values() for n in range(1, len(parts) + 1))
    out: dict[Path, str] = {}
    for p, parts in full.items():
        n = next((n for n in range(1, len(parts)) if ends[parts[-n:]] == 1), len(parts))
        out[p] = "/".join(parts[-n:]) if n < len(parts) else str(p.resolve())
    return out


def check_overrides(recs: Sequence[Recording], overrides: Mapping[str, str], *,
                    option: str, dials: bool) -> None:
    """Refuse an override that names no recording (or no dial of it): a typo must not leave
    a rater or dyad silently under its recorded label. Refuse two overrides that name one
    recording (for ``--rater``: one dial) by different names with different labels
    (``client.ratedial=A`` and ``S01/client.ratedial=B``): which one won depended on the
    order of a set, that is on ``PYTHONHASHSEED``. The same label twice is harmless."""
    known: dict[Path, set[str]] = {}  # each recording (once) -> the names it is known by
    by_dial: dict[tuple[Path, int], set[str]] = {}  # (recording, dial) -> REC:DIAL names
    for rec in recs:
        names = recording_names(rec)
        path = rec.path.resolve()
        known.setdefault(path, set()).update(names)
        if dials:
            for d in rec.dials:
                by_dial.setdefault((path, d.dial_id), set()).update(
                    f"{n}:{sel}" for n in names
                    for sel in (d.uid, str(d.dial_id), d.rater) if sel is not None)
    dials_of: dict[Path, list[tuple[Path, int]]] = {}
    for target in by_dial:
        dials_of.setdefault(target[0], []).append(target)
    first: dict[tuple[Path, int], str] = {}  # what is overridden -> the first key naming it
    for key in overrides:
        resolved = _resolved_key(key)
        hits = [p for p, names in known.items() if key in names or resolved in names]
        on_dials = [t for t, names in by_dial.items() if key in names or resolved in names]
        if on_dials:
            hits = list(dict.fromkeys(p for p, _ in on_dials))
        if not hits:
            what = "recording or dial" if dials else "recording"
            raise UsageError(f"{option} {key}={overrides[key]}: no {what} given is {key!r} "
                             f"(recordings: {', '.join(r.path.name for r in recs)})")
        if len(hits) > 1:  # a bare file name in a folder-per-dyad study: which one?
            shown = distinct_names(hits)  # only here: it costs, and only they share a name
            listed = ", ".join(shown[p] for p in hits)
            raise UsageError(f"{option} {key}={overrides[key]}: {key!r} names {len(hits)} "
                             f"recordings ({listed}); give a longer path that names one")
        targets = on_dials or (dials_of.get(hits[0], []) if dials else [(hits[0], -1)])
        for t in targets:
            other = first.setdefault(t, key)
            if overrides[other] != overrides[key]:
                name = distinct_names(p for p in known if p.name == t[0].name)[t[0]]
                what = name if t[1] == -1 else f"dial {_dial_uid(recs, t)} of {name}"
                raise UsageError(f"{option} {other}={overrides[other]} and {key}="
                                 f"{overrides[key]} both name {what}; give one label")


def _dial_uid(recs: Sequence[Recording], target: tuple[Path, int]) -> str:
    for rec in recs:
        if rec.path.resolve() == target[0]:
            for d in rec.dials:
                if d.dial_id == target[1]:
                    return d.uid
    return str(target[1])


def rater_label(rec: Recording, dial: Dial, overrides: Mapping[str, str]) -> str:
    names = recording_names(rec)
    for name in names:
        for sel in (dial.uid, str(dial.dial_id), dial.rater):
            if sel is not None and f"{name}:{sel}" in overrides:
                return overrides[f"{name}:{sel}"]
    for name in names:
        if name in overrides:
            if len(rec.dials) > 1:
                raise UsageError(f"--rater {name}=...: {rec.path.name} holds "
                                 f"{len(rec.dials)} dials; name one as {name}:DIAL=LABEL "
                                 f"(DIAL: {', '.join(d.uid for d in rec.dials)})")
            return overrides[name]
    return dial.rater or dial.uid


def _block(rate_hz: float | None, options: AlignOptions) -> int:
    """Consecutive samples one SQL group may span: at most 0.1 s and half the tolerance."""
    span_s = min(0.1, options.rewind_tolerance_s / 2)
    return max(1, int((rate_hz or DEFAULT_SAMPLE_RATE_HZ) * span_s))


def _n_bins(media: Media, max_bin: int, options: AlignOptions) -> int:
    n = max_bin + 1
    if media.duration_s:
        n = max(n, math.ceil(media.duration_s * options.rate_hz - 1e-9))
    return n


def _no_groups() -> Groups:
    ints, floats = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    return Groups(first_index=ints, media_id=ints, state=ints, bin=ints, media_min=floats,
                  media_max=floats, rating_sum=floats, count=ints)


def _build(rec: Recording, dial: Dial, groups: Sequence[Groups], overrides: Mapping[str, str],
           options: AlignOptions) -> list[Series]:
    excluded: dict[int, dict[str, int]] = {}
    no_time = 0
    for g in groups:
        out = g.bin < 0
        for mid, state, b, n in zip(g.media_id[out], g.state[out], g.bin[out], g.count[out],
                                    strict=True):
            if b == BIN_NO_MEDIA_TIME or mid < 0:
                no_time += int(n)
                continue
            reason = _STATE_REASON.get(int(state), f"state_{state}")
            per = excluded.setdefault(int(mid), {})
            per[reason] = per.get(reason, 0) + int(n)
    series = []
    gaps_of_dial = tuple(gp for gp in rec.gaps if gp.dial_id == dial.dial_id)
    for media in rec.media:
        # a gap belongs to the video played on either side of it: in a recording of several
        # videos, not to the others (it was counted, and drawn, in every one)
        gaps = gaps_of_dial if len(rec.media) == 1 else tuple(
            gp for gp in gaps_of_dial if media.media_id in gp.media_ids)
        parts_p, parts_g = [], []
        next_pass = 0
        for g in groups:  # epochs in order; every epoch starts a new pass
            mine = g.take((g.media_id == media.media_id) & (g.bin >= 0))
            if len(mine.bin) == 0:
                continue
            p = pass_ids(mine.media_min, mine.media_max, tolerance_s=options.rewind_tolerance_s,
                         start=next_pass)
            next_pass = int(p[-1]) + 1
            parts_p.append(p)
            parts_g.append(mine)
        if not parts_g:
            # The dial was there while this video was loaded, but rated none of it (paused
            # throughout, say, or every sample lost: gaps, and the recording's only video):
            # a rater with every bin missing, not a rater left out.
            lost_all = bool(gaps) and len(rec.media) == 1
            if not (media.media_id in excluded or lost_all) or not media.duration_s:
                continue
            parts_p, parts_g = [np.zeros(0, dtype=np.int64)], [_no_groups()]
        pid = np.concatenate(parts_p)
        bins = np.concatenate([g.bin for g in parts_g])
        if media.duration_s:  # a sample shown at the very end (its position clamped to the
            # length) belongs to the last bin, not to one past the video's end
            end = math.ceil(media.duration_s * options.rate_hz - 1e-9)
            top = np.concatenate([g.media_max for g in parts_g])
            bins = np.where((bins == end) & (top <= media.duration_s + 1e-6), end - 1, bins)
        sums = np.concatenate([g.rating_sum for g in parts_g])
        counts = np.concatenate([g.count for g in parts_g])
        n_bins = _n_bins(media, int(bins.max()) if len(bins) else -1, options)
        if (media.timeline == RUN_TIMELINE and rec.run_end_s is not None
                and any(x.dial_id == dial.dial_id and not x.back for x in rec.losses)):
            # a dial lost for good: its run-time grid goes on to the run's end (whole bins),
            # missing, so the time after the loss is not left off a lone rater's coverage
            n_bins = max(n_bins, math.floor(rec.run_end_s * options.rate_hz + 1e-9))
        binned = resolve(pid, bins, sums, counts, n_bins=n_bins, rule=options.rerate)
        binned = fill_short(binned, max_fill_bins=int(options.max_fill_s * options.rate_hz
                                                      + 1e-9))
        ex = dict(excluded.get(media.media_id, {}))
        if no_time:
            ex["no_media_time"] = no_time
        series.append(Series(recording=rec, dial=dial, media=media,
                             rater=rater_label(rec, dial, overrides), options=options,
                             binned=binned, passes=next_pass, samples_used=int(counts.sum()),
                             excluded=ex, gaps=gaps))
    return series


def _fork_context() -> multiprocessing.context.BaseContext | None:
    # fork needs no importable __main__ (spawn would re-run the caller's script), and is safe
    # while this process runs a single thread
    if "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return None


def _groups_job(job: tuple[str, int, float, int, int | None]) -> Groups:
    path, epoch_id, rate_hz, block, run_t0_ns = job
    return sample_groups(path, epoch_id, rate_hz=rate_hz, block=block, run_t0_ns=run_t0_ns)


def load(paths: Sequence[str | Path], options: AlignOptions | None = None, *,
         raters: Mapping[str, str] | None = None, dyads: Mapping[str, str] | None = None,
         workers: int | None = None) -> list[Series]:
    """Read ``paths`` and return every (recording, dial, video) series, in input order.

    A recording in which no sample has a media time is read on run time (its own timeline,
    see :mod:`.read`); ``series.media.timeline`` says so.
    Raises :class:`NothingToAnalyse` when no recording holds a sample with a time, and
    :class:`UsageError` when a ``raters`` or ``dyads`` override names none of ``paths``.
    """
    options = options or AlignOptions()
    overrides = dict(raters or {})
    recs = [read_recording(p) for p in paths]
    check_overrides(recs, overrides, option="--rater", dials=True)
    check_overrides(recs, dyads or {}, option="--dyad", dials=False)
    tasks = [(r, e) for r in recs for e in r.epochs if e.last_index is not None]
    jobs = [(str(r.path), e.epoch_id, options.rate_hz, _block(e.rate_hz, options), r.run_t0_ns)
            for r, e in tasks]
    total = sum((e.last_index or 0) + 1 for _, e in tasks)
    n_workers = min(len(jobs), workers or os.cpu_count() or 1)
    ctx = _fork_context()
    if ctx is not None and n_workers > 1 and total >= PARALLEL_MIN_SAMPLES:
        with ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx) as pool:
            done = list(pool.map(_groups_job, jobs))
    else:
        done = [_groups_job(j) for j in jobs]
    by_epoch = {(id(r), e.epoch_id): g for (r, e), g in zip(tasks, done, strict=True)}
    out: list[Series] = []
    for rec in recs:
        for dial in rec.dials:
            groups = [by_epoch[(id(rec), e.epoch_id)] for e in rec.epochs_of(dial.dial_id)
                      if (id(rec), e.epoch_id) in by_epoch]
            out.extend(_build(rec, dial, groups, overrides, options))
    if not out:
        names = ", ".join(r.path.name for r in recs)
        raise NothingToAnalyse(f"no samples to analyse in {names} (no sample has a media "
                               "time or a host time)")
    return out
