"""Payload layouts: one table entry per frame type, used for both packing and parsing.

Invariant: for every frame ``f`` that :func:`pack_payload` accepts,
``parse_payload(type_of(f), f.seq, pack_payload(f)) == f``. Parsing reads only the fields it
knows, so longer payloads from newer firmware are accepted; shorter ones raise
:class:`MalformedPayload`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from itertools import accumulate, islice
from operator import add

from .frames import (
    Ack,
    Button,
    Drop,
    Error,
    Frame,
    FrameType,
    Hello,
    Samples,
    Status,
    Sync,
)


class MalformedPayload(ValueError):
    """The payload is shorter than its type's layout or otherwise inconsistent."""


_HELLO = struct.Struct("<IQIHHBBH")
_SAMPLES_HEAD = struct.Struct("<QQIiB")
_RECORD = struct.Struct("<Bbh")
_SYNC = struct.Struct("<IQQ")
_BUTTON = struct.Struct("<BQQQ")
_STATUS = struct.Struct("<QQIIIIIHH")
_ERROR_HEAD = struct.Struct("<B")
_DROP = struct.Struct("<QII")
_ACK = struct.Struct("<BQi")

# A body is at most MAX_BODY (1024) bytes: 4 of header, 25 of SAMPLES fields, 4 per record and
# 4 of CRC leave room for 247 records.
MAX_SAMPLES_PER_FRAME = 247


def _take_str(payload: bytes, pos: int) -> tuple[bytes, int]:
    if pos >= len(payload):
        raise MalformedPayload("string length missing")
    n = payload[pos]
    end = pos + 1 + n
    if end > len(payload):
        raise MalformedPayload("string runs past the payload")
    return payload[pos + 1 : end], end


def _put_str(value: bytes) -> bytes:
    if len(value) > 255:
        raise ValueError("string longer than 255 bytes")
    return bytes([len(value)]) + value


def _unpack(st: struct.Struct, payload: bytes, offset: int = 0) -> tuple[int, ...]:
    if len(payload) < offset + st.size:
        raise MalformedPayload(f"payload of {len(payload)} bytes is too short")
    return st.unpack_from(payload, offset)


# --- parsing -------------------------------------------------------------------------------


def _parse_hello(seq: int, p: bytes) -> Hello:
    boot_id, time_us, period_us, rate_hz, batch, tick_bits, flags, debounce = _unpack(_HELLO, p)
    pos = _HELLO.size
    uid, pos = _take_str(p, pos)
    board, pos = _take_str(p, pos)
    firmware, pos = _take_str(p, pos)
    backend, pos = _take_str(p, pos)
    return Hello(
        seq=seq,
        boot_id=boot_id,
        time_us=time_us,
        period_us=period_us,
        rate_hz=rate_hz,
        batch=batch,
        tick_bits=tick_bits,
        flags=flags,
        debounce_ms=debounce,
        uid=bytes(uid),
        board=board.decode("utf-8", "replace"),
        firmware=firmware.decode("utf-8", "replace"),
        backend=backend.decode("utf-8", "replace"),
    )


def _parse_samples(seq: int, p: bytes) -> Samples:
    first_index, t_first, period, count_first, n = _unpack(_SAMPLES_HEAD, p)
    start = _SAMPLES_HEAD.size
    end = start + _RECORD.size * n
    if n == 0 or len(p) < end:
        raise MalformedPayload(f"SAMPLES frame declares {n} samples but carries fewer")
    # transposed in C: flags, count steps and time jitters as three columns
    flags, dcounts, jitters = zip(*_RECORD.iter_unpack(p[start:end]), strict=True)
    if dcounts[0] != 0 or jitters[0] != 0:
        raise MalformedPayload("record 0 must have dcount 0 and jitter 0")
    counts = tuple(accumulate(islice(dcounts, 1, None), initial=count_first))
    times = tuple(map(add, range(t_first, t_first + n * period, period), jitters)) \
        if period else tuple(t_first + j for j in jitters)
    return Samples(
        seq=seq,
        first_index=first_index,
        period_us=period,
        counts=counts,
        times_us=times,
        flags=flags,
    )


def _parse_sync(seq: int, p: bytes) -> Sync:
    token, t_rx, t_tx = _unpack(_SYNC, p)
    return Sync(seq=seq, token=token, t_rx_us=t_rx, t_tx_us=t_tx)


def _parse_button(seq: int, p: bytes) -> Button:
    pressed, index, t_us, t_edge = _unpack(_BUTTON, p)
    return Button(seq=seq, pressed=pressed, index=index, t_us=t_us, t_edge_us=t_edge)


def _parse_status(seq: int, p: bytes) -> Status:
    v = _unpack(_STATUS, p)
    return Status(seq, *v)


def _parse_error(seq: int, p: bytes) -> Error:
    (code,) = _unpack(_ERROR_HEAD, p)
    text, _ = _take_str(p, _ERROR_HEAD.size)
    return Error(seq=seq, code=code, text=text.decode("utf-8", "replace"))


def _parse_drop(seq: int, p: bytes) -> Drop:
    first, n_samples, n_frames = _unpack(_DROP, p)
    return Drop(seq=seq, first_index=first, n_samples=n_samples, n_frames=n_frames)


def _parse_ack(seq: int, p: bytes) -> Ack:
    command, index, value = _unpack(_ACK, p)
    return Ack(seq=seq, command=command, index=index, value=value)


PARSERS: dict[int, Callable[[int, bytes], Frame]] = {
    FrameType.HELLO: _parse_hello,
    FrameType.SAMPLES: _parse_samples,
    FrameType.SYNC: _parse_sync,
    FrameType.BUTTON: _parse_button,
    FrameType.STATUS: _parse_status,
    FrameType.ERROR: _parse_error,
    FrameType.DROP: _parse_drop,
    FrameType.ACK: _parse_ack,
}


def parse_payload(frame_type: int, seq: int, payload: bytes) -> Frame:
    """Parse a payload whose type is known; raise :class:`MalformedPayload` if it is short."""
    try:
        return PARSERS[frame_type](seq, payload)
    except struct.error as exc:  # defensive: _unpack checks lengths first
        raise MalformedPayload(str(exc)) from exc


# --- packing -------------------------------------------------------------------------------


def _pack_hello(f: Hello) -> bytes:
    head = _HELLO.pack(
        f.boot_id,
        f.time_us,
        f.period_us,
        f.rate_hz,
        f.batch,
        f.tick_bits,
        f.flags,
        f.debounce_ms,
    )
    return (
        head
        + _put_str(f.uid)
        + _put_str(f.board.encode())
        + _put_str(f.firmware.encode())
        + _put_str(f.backend.encode())
    )


def _pack_samples(f: Samples) -> bytes:
    n = len(f.counts)
    if not 1 <= n <= MAX_SAMPLES_PER_FRAME or len(f.times_us) != n or len(f.flags) != n:
        raise ValueError(f"SAMPLES needs 1-{MAX_SAMPLES_PER_FRAME} samples with matching counts, "
                         "times and flags")
    t0 = f.times_us[0]
    parts = [_SAMPLES_HEAD.pack(f.first_index, t0, f.period_us, f.counts[0], n)]
    parts.append(_RECORD.pack(f.flags[0], 0, 0))
    for k in range(1, n):
        dcount = f.counts[k] - f.counts[k - 1]
        jitter = f.times_us[k] - (t0 + k * f.period_us)
        if not -128 <= dcount <= 127 or not -32768 <= jitter <= 32767:
            raise ValueError(f"sample {k} does not fit a record; end the frame before it")
        parts.append(_RECORD.pack(f.flags[k], dcount, jitter))
    return b"".join(parts)


def _pack_sync(f: Sync) -> bytes:
    return _SYNC.pack(f.token, f.t_rx_us, f.t_tx_us)


def _pack_button(f: Button) -> bytes:
    return _BUTTON.pack(int(f.pressed), f.index, f.t_us, f.t_edge_us)


def _pack_status(f: Status) -> bytes:
    return _STATUS.pack(
        f.time_us,
        f.samples_taken,
        f.frames_dropped,
        f.samples_dropped,
        f.overruns,
        f.jitter_max_us,
        f.mem_free,
        f.queue_depth,
        f.queue_capacity,
    )


def _pack_error(f: Error) -> bytes:
    return _ERROR_HEAD.pack(f.code) + _put_str(f.text.encode())


def _pack_drop(f: Drop) -> bytes:
    return _DROP.pack(f.first_index, f.n_samples, f.n_frames)


def _pack_ack(f: Ack) -> bytes:
    return _ACK.pack(f.command, f.index, f.value)


def pack_payload(frame: Frame) -> bytes:
    """The payload bytes of ``frame`` (without header and CRC)."""
    match frame:
        case Hello():
            return _pack_hello(frame)
        case Samples():
            return _pack_samples(frame)
        case Sync():
            return _pack_sync(frame)
        case Button():
            return _pack_button(frame)
        case Status():
            return _pack_status(frame)
        case Error():
            return _pack_error(frame)
        case Drop():
            return _pack_drop(frame)
        case Ack():
            return _pack_ack(frame)
