"""ELAN files (pympi-ling): an ``.eaf`` document per dyad, its video linked, and the rating
curves as an ELAN time-series file linked to it.

Per dyad, ``PREFIX.<dyad>.eaf`` holds:

* the video as the primary linked media (``MEDIA_DESCRIPTOR``), by absolute path and by
  a path relative to the document;
* a tier per rater, ``<rater> segments``: the top and bottom segments, each annotated
  ``T1 mean 85.5`` / ``B1 mean 20.3`` (label and mean rating over the segment);
* a tier ``events``: pauses, seeks and rate changes of the player (from the recordings'
  ``events``, at their media time) and every gap (``gap <reason>: N samples lost``) with the
  media-time stretch it spans;
* the rating curves as ELAN links a time series, two secondary linked files:
  ``PREFIX.<dyad>.ratings.csv`` (``t_s``, one column per rater, the analysis grid; empty
  where missing) and ``PREFIX.<dyad>_tsconf.xml``, ELAN's time-series configuration named as
  ELAN names it (one track per rater, range 0-100).

Invariants: times are media times in milliseconds (ELAN's unit); an event has at least
``MIN_EVENT_MS`` so that ELAN can show it; files are created with mode 0600.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

from ..outfile import staged
from .align import padded
from .groups import Group
from .read import connect
from .segments import SegmentOptions, find_segments

MIN_EVENT_MS = 40  # one frame at 25 fps
COLORS = ("0,114,178", "213,94,0", "0,158,115", "204,121,167", "86,180,233", "230,159,0")


def _ms(t_s: float) -> int:
    return max(0, round(t_s * 1000))


def media_events(group: Group) -> list[tuple[int, int, str]]:
    """Player events and gaps of the group's recordings as (start_ms, end_ms, text)."""
    out: list[tuple[int, int, str]] = []
    seen: set[tuple[str, str, int]] = set()
    for s in group.series:
        rec = s.recording
        con = connect(rec.path)
        try:
            rows = con.execute("SELECT kind, data FROM events WHERE kind IN "
                               "('media_load', 'media_pause', 'media_play', 'media_seek', "
                               "'media_rate') ORDER BY host_ns, event_id").fetchall()
        except sqlite3.Error:
            rows = []
        finally:
            con.close()
        # a player event belongs to the video loaded last before it: this group's video's
        # events only (a recording of several videos has one ELAN file per video)
        loaded: object = None if any(k == "media_load" for k, _ in rows) else s.media.media_id
        for kind, data in rows:
            try:
                d = json.loads(data)
            except ValueError:
                continue
            if kind == "media_load":
                loaded = d.get("media_id") if isinstance(d, dict) else None
                continue
            if not isinstance(d, dict) or loaded != s.media.media_id:
                continue
            at = d.get("to_s") if kind == "media_seek" else d.get("media_s")
            if not isinstance(at, int | float):
                continue
            text = {"media_pause": "paused", "media_play": "playing",
                    "media_rate": f"rate {d.get('rate')}",
                    "media_seek": "seek" if d.get("from_s") is None
                    else f"seek from {d.get('from_s')} s"}[kind]
            key = (rec.path.name, kind, _ms(at))
            if key not in seen:
                seen.add(key)
                out.append((_ms(at), _ms(at) + MIN_EVENT_MS, f"{text} ({rec.path.name})"))
        for g in s.gaps:
            a, b = g.media_from_s, g.media_to_s
            if a is None and b is None:
                continue
            lo = a if a is not None else b
            hi = b if b is not None else a
            assert lo is not None and hi is not None
            out.append((_ms(lo), max(_ms(hi), _ms(lo) + MIN_EVENT_MS),
                        f"gap {g.reason}: {g.n_missing} samples lost ({s.rater})"))
    return sorted(out)


def _tsconf(csv_path: Path, raters: Sequence[tuple[str, float, float]]) -> str:
    """ELAN's time-series configuration: a track per rater, its range the rater's scale."""
    tracks = "".join(
        f"""    <track derivative="0" name={quoteattr(r)}>
      <property key="detect-range" value="false"/>
      <sample-position><pos col="{i + 1}" row="0"/></sample-position>
      <description>{r}: rating on the analysis grid</description>
      <units>rating</units>
      <range max="{hi!r}" min="{lo!r}"/>
      <color>{COLORS[i % len(COLORS)]}</color>
    </track>
""" for i, (r, lo, hi) in enumerate(raters))
    url = quoteattr(csv_path.resolve().as_uri())
    date = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<timeseries date="{date}" version="1.0">
  <tracksource sample-type="Continuous Rate" source-url={url} time-column="0">
    <property key="provider" value="mpi.eudico.client.annotator.timeseries.csv.CSVServiceProvider"/>
{tracks}  </tracksource>
</timeseries>
"""


def eaf_files(base: Path) -> tuple[Path, Path, Path]:
    """The files :func:`write_eaf` writes for ``base``: the ``.eaf``, the ratings CSV and
    its time-series configuration (ELAN's name for it: ``<eaf>_tsconf.xml``)."""
    return (base.with_name(base.name + ".eaf"), base.with_name(base.name + ".ratings.csv"),
            base.with_name(base.name + "_tsconf.xml"))


def write_eaf(group: Group, base: Path, segments: SegmentOptions | None = None) -> list[Path]:
    """``base.eaf``, ``base.ratings.csv`` and ``base.ratings_tsconf.xml`` for one dyad."""
    import pympi

    opt = segments or SegmentOptions()
    eaf_path, csv_path, conf_path = eaf_files(base)
    raters = [s.rater for s in group.series]
    n = group.n_bins
    with staged(csv_path, overwrite=True) as part, \
            part.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["t_s", *raters])
        cols = [np.round(padded(s.values, n), 6) for s in group.series]
        for i in range(n):
            w.writerow([repr(round(i / group.rate_hz, 6)),
                        *("" if np.isnan(c[i]) else repr(float(c[i])) for c in cols)])
    with staged(conf_path, overwrite=True) as part:
        part.write_text(_tsconf(csv_path, [(s.rater, *s.recording.scale_range)
                                           for s in group.series]), encoding="utf-8")

    eaf = pympi.Elan.Eaf(author="ratedial")
    eaf.remove_tier("default")
    media = group.media
    if media.path:
        video = Path(media.path)
        rel = os.path.relpath(video, eaf_path.parent.resolve()) if video.is_absolute() \
            else str(video)
        eaf.add_linked_file(video.resolve().as_uri() if video.is_absolute() else str(video),
                            relpath=rel, mimetype="video/mp4")
    # as ELAN links a time series: the data file and its configuration, both secondary
    eaf.add_secondary_linked_file(csv_path.resolve().as_uri(), relpath=csv_path.name,
                                  mimetype="text/plain")
    eaf.add_secondary_linked_file(conf_path.resolve().as_uri(), relpath=conf_path.name,
                                  mimetype="text/xml")
    for s in group.series:
        tier = f"{s.rater} segments"
        eaf.add_tier(tier)
        for seg in find_segments(s.values, s.rate_hz, opt):
            eaf.add_annotation(tier, _ms(seg.start_s), _ms(seg.end_s),
                               f"{seg.label} mean {seg.mean:.1f}")
    eaf.add_tier("events")
    for start, end, text in _non_overlapping(media_events(group)):
        eaf.add_annotation("events", start, end, text)
    # pympi renames an existing file to .bak: it writes a new one in a private folder, which
    # then takes the staged part's place (0600)
    with staged(eaf_path, overwrite=True) as part, \
            tempfile.TemporaryDirectory(dir=eaf_path.parent, prefix=".eaf-") as tmp:
        fresh = Path(tmp) / eaf_path.name
        pympi.Elan.to_eaf(str(fresh), eaf)
        os.chmod(fresh, 0o600)
        os.replace(fresh, part)
    return [eaf_path, csv_path, conf_path]


def _non_overlapping(events: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """ELAN tiers hold no overlapping annotations: overlapping events are merged."""
    out: list[tuple[int, int, str]] = []
    for start, end, text in events:
        if out and start < out[-1][1]:
            s0, e0, t0 = out[-1]
            out[-1] = (s0, max(e0, end), f"{t0}; {text}")
        else:
            out.append((start, end, text))
    return out
