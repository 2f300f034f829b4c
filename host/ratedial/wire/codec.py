"""Sans-I/O codec for the device stream: feed bytes, get frames; encode frames for tests.

Invariants (docs/protocol.md, "Host decoder rules"):

* :meth:`FrameDecoder.feed` never raises, whatever the bytes and however they are chunked.
* Only frames whose CRC-32 matches are ever returned; every other ``0x00``-terminated chunk
  is counted in :class:`DecoderStats` under exactly one reason.
* After any garbage the decoder resynchronises at the next ``0x00``.
* :meth:`FrameDecoder.feed_marked` also yields a :class:`Rejected` marker for each rejected
  chunk, at its place in the stream, so what follows a rejection never depends on how the
  bytes were split into reads.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, fields

from cobs import cobs

from .frames import FRAME_TYPES, MAX_BODY, PROTOCOL_VERSION, Frame, Rejected
from .layout import PARSERS, MalformedPayload, pack_payload, parse_payload

_HEADER = struct.Struct("<BBH")
_CRC = struct.Struct("<I")
_MIN_BODY = _HEADER.size + _CRC.size
# COBS adds one byte per 254 (at least one): the longest legal encoded chunk.
MAX_WIRE_CHUNK = MAX_BODY + MAX_BODY // 254 + 1


@dataclass(slots=True)
class DecoderStats:
    """Counters of everything the decoder has seen. Each chunk is counted once."""

    bytes_in: int = 0
    frames: int = 0  # valid frames returned
    empty: int = 0  # zero-length chunks (back-to-back delimiters)
    partial_start: int = 0  # the fragment before the first delimiter after start
    cobs_errors: int = 0
    too_short: int = 0
    too_long: int = 0
    crc_errors: int = 0
    foreign_version: int = 0  # frames with a valid CRC but another protocol version
    malformed: int = 0  # valid CRC, known type, payload too short
    unknown_type: int = 0  # valid CRC, type this host does not know (skipped, not an error)
    last_foreign_version: int | None = None

    @property
    def rejected(self) -> int:
        """Chunks that were damaged or not understood (excluding the start fragment)."""
        return (
            self.cobs_errors
            + self.too_short
            + self.too_long
            + self.crc_errors
            + self.foreign_version
            + self.malformed
        )

    def as_dict(self) -> dict[str, int | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class FrameDecoder:
    """Turns a byte stream from a dial into frames.

    ``synced=False`` (the default, for a port just opened) discards the bytes before the first
    delimiter as the tail of a frame whose start was missed.
    """

    def __init__(self, *, synced: bool = False) -> None:
        self.stats = DecoderStats()
        self._buf = bytearray()
        self._synced = synced
        self._skipping = False  # an over-long chunk is being discarded up to the next 0x00

    def feed(self, data: bytes) -> list[Frame]:
        """Consume ``data``; return the frames completed by it, in order."""
        return [f for f in self.feed_marked(data) if not isinstance(f, Rejected)]

    def feed_marked(self, data: bytes) -> list[Frame | Rejected]:
        """Like :meth:`feed`, with a :class:`Rejected` marker where each rejected chunk was."""
        self.stats.bytes_in += len(data)
        out: list[Frame | Rejected] = []
        start = 0
        while True:
            end = data.find(0, start)
            if end < 0:
                self._append(data[start:])
                return out
            self._append(data[start:end])
            chunk = bytes(self._buf)
            self._buf.clear()
            skipping, self._skipping = self._skipping, False
            start = end + 1
            if not self._synced:
                self._synced = True
                if chunk or skipping:
                    self.stats.partial_start += 1
                continue
            if skipping:
                out.append(Rejected("too_long"))  # counted when the skipping began
                continue
            frame = self._decode_chunk(chunk)
            if frame is not None:
                out.append(frame)
            if start < len(data) and data[start] == 0:
                # A run of delimiters is a run of empty chunks: count it in one step (a
                # megabyte of 0x00 must not cost a Python iteration per byte).
                run = len(data) - start - len(data[start:].lstrip(b"\x00"))
                self.stats.empty += run
                start += run

    def _append(self, part: bytes) -> None:
        if self._skipping or not part:
            return
        self._buf += part
        if len(self._buf) > MAX_WIRE_CHUNK:
            self._buf.clear()
            self._skipping = True
            if self._synced:
                self.stats.too_long += 1

    def _decode_chunk(self, chunk: bytes) -> Frame | Rejected | None:
        st = self.stats
        if not chunk:
            st.empty += 1
            return None
        try:
            body = cobs.decode(chunk)
        except cobs.DecodeError:
            st.cobs_errors += 1
            return Rejected("cobs")
        if len(body) < _MIN_BODY:
            st.too_short += 1
            return Rejected("too_short")
        if len(body) > MAX_BODY:
            st.too_long += 1
            return Rejected("too_long")
        (crc,) = _CRC.unpack_from(body, len(body) - _CRC.size)
        if zlib.crc32(memoryview(body)[: -_CRC.size]) != crc:
            st.crc_errors += 1
            return Rejected("crc")
        version, frame_type, seq = _HEADER.unpack_from(body)
        if version != PROTOCOL_VERSION:
            st.foreign_version += 1
            st.last_foreign_version = version
            return Rejected("version", version)
        if frame_type not in PARSERS:
            st.unknown_type += 1
            return None
        try:
            frame = parse_payload(frame_type, seq, body[_HEADER.size : -_CRC.size])
        except MalformedPayload:
            st.malformed += 1
            return Rejected("malformed")
        st.frames += 1
        return frame


def encode_body(frame: Frame, *, version: int = PROTOCOL_VERSION) -> bytes:
    """Header, payload and CRC of ``frame``: the bytes that COBS then encodes."""
    head = _HEADER.pack(version, FRAME_TYPES[type(frame)], frame.seq & 0xFFFF)
    unsealed = head + pack_payload(frame)
    body = unsealed + _CRC.pack(zlib.crc32(unsealed))
    if len(body) > MAX_BODY:
        raise ValueError(f"frame body of {len(body)} bytes exceeds {MAX_BODY}")
    return body


def encode_frame(frame: Frame, *, version: int = PROTOCOL_VERSION) -> bytes:
    """The bytes a device sends for ``frame``: COBS-encoded body and the 0x00 delimiter."""
    return bytes(cobs.encode(encode_body(frame, version=version))) + b"\x00"
