"""XDF files (the format of LSL's LabRecorder), written from recordings without liblsl.

One stream per dial and boot (``<rater> rating``: channels ``rating`` and ``media_s``, one
sample per dial sample, timestamp = ``samples.host_ns`` / 1e9), and one marker stream per
recording (``ratedial events``: each ``events`` row as JSON ``{"kind": ..., ...}``).

Invariants:

* Timestamps are the recording's host clock in seconds (``CLOCK_MONOTONIC``, the clock of
  LSL's ``local_clock()`` on Linux, and of ``ratedial run --lsl``): the dial's own clock is
  already mapped onto it by the recorded clock model, so every stream's ClockOffset chunks
  say 0. The model (skew, uncertainty) is in the stream header's ``desc``.
* Samples are streamed from SQLite in chunks: memory does not grow with the recording.
* The layout follows the XDF 1.0 specification: magic ``XDF:``, chunks of [length][tag]
  [content] with variable-length lengths; stream ids are 4-byte little-endian.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO
from xml.sax.saxutils import escape

from ..outfile import staged
from .read import Recording, connect

CHUNK_SAMPLES = 8192
TAG_FILE_HEADER, TAG_STREAM_HEADER, TAG_SAMPLES, TAG_CLOCK_OFFSET = 1, 2, 3, 4
TAG_BOUNDARY, TAG_STREAM_FOOTER = 5, 6
BOUNDARY = bytes.fromhex("4321d4f0e1f1d8b8d6d8c9ccd5e8ffcb")  # from the XDF specification


def _varlen(n: int) -> bytes:
    if n < 256:
        return struct.pack("<BB", 1, n)
    if n < 2**32:
        return struct.pack("<BI", 4, n)
    return struct.pack("<BQ", 8, n)


def _chunk(fh: BinaryIO, tag: int, content: bytes) -> None:
    fh.write(_varlen(len(content) + 2) + struct.pack("<H", tag) + content)


def _header_xml(name: str, kind: str, channels: Sequence[str], srate: float, fmt: str,
                source_id: str, desc: str) -> bytes:
    chans = "".join(f"<channel><label>{escape(c)}</label></channel>" for c in channels)
    return ("<?xml version=\"1.0\"?><info>"
            f"<name>{escape(name)}</name><type>{escape(kind)}</type>"
            f"<channel_count>{len(channels)}</channel_count>"
            f"<nominal_srate>{srate:g}</nominal_srate><channel_format>{fmt}</channel_format>"
            f"<source_id>{escape(source_id)}</source_id><version>1.1</version>"
            f"<created_at>0</created_at><uid>{escape(source_id)}</uid>"
            f"<desc><channels>{chans}</channels>{desc}</desc></info>").encode()


def _footer_xml(first: float, last: float, count: int) -> bytes:
    return ("<?xml version=\"1.0\"?><info>"
            f"<first_timestamp>{first!r}</first_timestamp>"
            f"<last_timestamp>{last!r}</last_timestamp>"
            f"<sample_count>{count}</sample_count>"
            "<clock_offsets><offset><time>0</time><value>0</value></offset></clock_offsets>"
            "</info>").encode()


def _rating_rows(rec: Recording, epoch_id: int) -> Iterable[list[tuple[int, float,
                                                                        float | None]]]:
    con = connect(rec.path)
    try:
        cur = con.execute("SELECT host_ns, rating, media_s FROM samples WHERE epoch_id = ? "
                          "AND host_ns IS NOT NULL ORDER BY sample_index", (epoch_id,))
        while rows := cur.fetchmany(CHUNK_SAMPLES):
            yield rows
    finally:
        con.close()


def _numeric_chunk(sid: int, rows: Sequence[tuple[int, float, float | None]]) -> bytes:
    out = bytearray(struct.pack("<I", sid))
    out += _varlen(len(rows))
    nan = float("nan")
    for host_ns, rating, media_s in rows:
        out += struct.pack("<Bddd", 8, host_ns / 1e9, rating,
                           nan if media_s is None else media_s)
    return bytes(out)


def _string_chunk(sid: int, rows: Sequence[tuple[int, str]]) -> bytes:
    out = bytearray(struct.pack("<I", sid))
    out += _varlen(len(rows))
    for host_ns, text in rows:
        data = text.encode()
        out += struct.pack("<Bd", 8, host_ns / 1e9) + _varlen(len(data)) + data
    return bytes(out)


def _clock_offsets(fh: BinaryIO, sid: int, first: float, last: float) -> None:
    for t in (first, last):
        _chunk(fh, TAG_CLOCK_OFFSET, struct.pack("<Idd", sid, t, 0.0))


def write_xdf(recordings: Sequence[Recording], path: Path,
              raters: Mapping[tuple[Path, int], str] | None = None) -> Path:
    """Write every dial boot of ``recordings`` and their events to one XDF file. ``raters``
    names a dial's streams (keyed by recording path and dial id: the labels ``--rater`` gave
    the analysis); otherwise the recorded rater, or the dial's id."""
    with staged(path, overwrite=True) as part, part.open("wb") as fh:
        fh.write(b"XDF:")
        _chunk(fh, TAG_FILE_HEADER,
               b"<?xml version=\"1.0\"?><info><version>1.0</version></info>")
        sid = 0
        for rec in recordings:
            for dial in rec.dials:
                rater = (raters or {}).get((rec.path, dial.dial_id)) or dial.rater or dial.uid
                for epoch in rec.epochs_of(dial.dial_id):
                    sid += 1
                    clock = next((c for c in rec.clocks if c.epoch_id == epoch.epoch_id), None)
                    desc = (f"<ratedial><recording>{escape(rec.path.name)}</recording>"
                            f"<dial>{escape(dial.uid)}</dial><boot_id>{epoch.boot_id}"
                            f"</boot_id><rater>{escape(rater)}</rater>"
                            "<timestamps>recording host clock (CLOCK_MONOTONIC s); the "
                            "dial clock is already mapped, clock offsets are 0</timestamps>")
                    if clock is not None:
                        desc += (f"<clock_models>{clock.models}</clock_models>"
                                 f"<skew_ppm>{clock.skew_ppm}</skew_ppm>"
                                 f"<uncertainty_us_median>{clock.uncertainty_us_median}"
                                 "</uncertainty_us_median>")
                    desc += "</ratedial>"
                    _chunk(fh, TAG_STREAM_HEADER, struct.pack("<I", sid) + _header_xml(
                        f"{rater} rating", "Rating", ("rating", "media_s"),
                        epoch.rate_hz or 0.0, "double64",
                        f"ratedial:{dial.uid}:{epoch.boot_id}", desc))
                    first = last = None
                    count = 0
                    for rows in _rating_rows(rec, epoch.epoch_id):
                        _chunk(fh, TAG_SAMPLES, _numeric_chunk(sid, rows))
                        first = rows[0][0] / 1e9 if first is None else first
                        last = rows[-1][0] / 1e9
                        count += len(rows)
                    if first is not None and last is not None:
                        _clock_offsets(fh, sid, first, last)
                        _chunk(fh, TAG_STREAM_FOOTER,
                               struct.pack("<I", sid) + _footer_xml(first, last, count))
            sid += 1
            _markers(fh, rec, sid)
        _chunk(fh, TAG_BOUNDARY, BOUNDARY)
    return path


def _markers(fh: BinaryIO, rec: Recording, sid: int) -> None:
    con = connect(rec.path)
    try:
        rows = [(h, json.dumps({"kind": k, "dial_id": d, **_obj(data)}, sort_keys=True))
                for h, d, k, data in con.execute(
                    "SELECT host_ns, dial_id, kind, data FROM events ORDER BY host_ns, "
                    "event_id")]
    finally:
        con.close()
    _chunk(fh, TAG_STREAM_HEADER, struct.pack("<I", sid) + _header_xml(
        "ratedial events", "Markers", ("event",), 0.0, "string",
        f"ratedial:events:{rec.path.name}",
        f"<ratedial><recording>{escape(rec.path.name)}</recording></ratedial>"))
    if rows:
        for i in range(0, len(rows), CHUNK_SAMPLES):
            _chunk(fh, TAG_SAMPLES, _string_chunk(sid, rows[i:i + CHUNK_SAMPLES]))
        first, last = rows[0][0] / 1e9, rows[-1][0] / 1e9
        _clock_offsets(fh, sid, first, last)
        _chunk(fh, TAG_STREAM_FOOTER, struct.pack("<I", sid) + _footer_xml(first, last,
                                                                          len(rows)))


def _obj(text: str) -> dict[str, object]:
    try:
        value = json.loads(text)
    except ValueError:
        return {"data": text}
    return value if isinstance(value, dict) else {"data": value}
