"""Host frame decoder: chunking, every rejection reason, resynchronisation, commands."""

from __future__ import annotations

import struct
import zlib

import pytest
from cobs import cobs

from ratedial.wire import (
    Batch,
    Drop,
    FrameDecoder,
    Hello,
    Info,
    Ping,
    Rate,
    Samples,
    Status,
    Zero,
    encode_body,
    encode_command,
    encode_frame,
)


def _samples(seq: int, first: int, n: int = 10) -> Samples:
    return Samples(
        seq=seq,
        first_index=first,
        period_us=1000,
        counts=tuple(range(first, first + n)),
        times_us=tuple(1_000_000 + 1000 * (first + k) for k in range(n)),
        flags=tuple(k & 1 for k in range(n)),
    )


FRAMES = [_samples(i, 10 * i) for i in range(20)] + [
    Drop(seq=20, first_index=200, n_samples=30, n_frames=3),
    Status(seq=21, time_us=1, samples_taken=2, frames_dropped=3, samples_dropped=4,
           overruns=5, jitter_max_us=6, mem_free=7, queue_depth=8, queue_capacity=9),
]
STREAM = b"".join(encode_frame(f) for f in FRAMES)


def _split_whole(data: bytes) -> list[bytes]:
    return [data]


def _split_bytes(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def _split_odd(data: bytes) -> list[bytes]:
    return [data[i : i + 7] for i in range(0, len(data), 7)]


@pytest.mark.parametrize("split", [_split_whole, _split_bytes, _split_odd])
def test_stream_decodes_identically_however_chunked(split):
    dec = FrameDecoder(synced=True)
    out = []
    junk = b"\x13\x37trailing junk without delimiter"
    for part in split(STREAM + junk):
        out += dec.feed(part)
    assert out == FRAMES
    assert dec.stats.frames == len(FRAMES)
    assert dec.stats.rejected == 0
    assert dec.stats.bytes_in == len(STREAM) + len(junk)


def test_port_opened_mid_frame_discards_the_fragment_without_error():
    dec = FrameDecoder()
    wire = encode_frame(FRAMES[0])
    out = dec.feed(wire[5:] + STREAM)
    assert out == FRAMES
    assert dec.stats.partial_start == 1
    assert dec.stats.rejected == 0


def test_text_before_first_frame_is_a_discarded_start_fragment():
    dec = FrameDecoder()
    out = dec.feed(b"MicroPython v1.29 on rp2\r\n>>> \x00" + STREAM)
    assert out == FRAMES
    assert dec.stats.partial_start == 1


def _wire(body: bytes) -> bytes:
    return bytes(cobs.encode(body)) + b"\x00"


def _sealed(unsealed: bytes) -> bytes:
    return unsealed + struct.pack("<I", zlib.crc32(unsealed))


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (b"\x05\x01\x02\x00", "cobs_errors"),  # code byte runs past the chunk
        (_wire(b"\x01\x02\x03"), "too_short"),
        (_wire(_sealed(b"\x01\x02\x00\x00" + b"\x01" * 1100)), "too_long"),
        (_wire(encode_body(FRAMES[0])[:-1] + b"\x00"), "crc_errors"),
        (_wire(encode_body(FRAMES[0], version=2)), "foreign_version"),
        (_wire(_sealed(b"\x01\x02\x09\x00" + b"\x00" * 10)), "malformed"),
        (_wire(_sealed(b"\x01\x99\x09\x00payload")), "unknown_type"),
        (b"\x00", "empty"),
    ],
)
def test_each_rejection_is_counted_once_and_the_stream_resyncs(bad, reason):
    dec = FrameDecoder(synced=True)
    out = dec.feed(encode_frame(FRAMES[0]) + bad + encode_frame(FRAMES[1]))
    assert out == FRAMES[:2]
    counts = dec.stats.as_dict()
    assert counts[reason] == 1
    others = {k: v for k, v in counts.items()
              if k not in (reason, "bytes_in", "frames", "last_foreign_version")}
    assert all(v == 0 for v in others.values()), others
    if reason == "foreign_version":
        assert dec.stats.last_foreign_version == 2


def test_endless_garbage_without_delimiters_is_bounded_and_counted():
    dec = FrameDecoder(synced=True)
    for _ in range(100):
        assert dec.feed(b"\xaa" * 1000) == []
    assert len(dec._buf) <= 1100
    assert dec.stats.too_long == 1
    assert dec.feed(b"\x00" + encode_frame(FRAMES[3])) == [FRAMES[3]]


def test_samples_payload_shorter_than_declared_is_malformed():
    body = bytearray(encode_body(FRAMES[0]))
    body[4 + 24] = 11  # declares 11 samples but carries 10
    unsealed = bytes(body[:-4])
    dec = FrameDecoder(synced=True)
    assert dec.feed(_wire(_sealed(unsealed))) == []
    assert dec.stats.malformed == 1


def test_longer_payload_from_newer_firmware_is_accepted():
    hello = Hello(seq=1, boot_id=2, time_us=3, period_us=1000, rate_hz=1000, batch=10,
                  tick_bits=30, flags=1, debounce_ms=5, uid=b"\x01" * 8, board="pico",
                  firmware="9.9", backend="pio")
    unsealed = encode_body(hello)[:-4] + b"future fields"
    assert FrameDecoder(synced=True).feed(_wire(_sealed(unsealed))) == [hello]


def test_samples_derived_values_follow_the_spec():
    s = FrameDecoder(synced=True).feed(bytes.fromhex(
        "0401020703e80301010101010480841e0101010103e8030102050101020201010104010103056f6d69f000"
    ))
    # the worked example of docs/protocol.md (checked against textbook COBS in test_vectors)
    assert s == [Samples(seq=7, first_index=1000, period_us=1000, counts=(5, 6),
                         times_us=(2_000_000, 2_001_003), flags=(0, 1))]


def test_samples_that_do_not_fit_a_record_are_refused_by_the_encoder():
    big_jump = Samples(seq=0, first_index=0, period_us=1000, counts=(0, 128),
                       times_us=(0, 1000), flags=(0, 0))
    with pytest.raises(ValueError, match="does not fit"):
        encode_frame(big_jump)
    late = Samples(seq=0, first_index=0, period_us=1000, counts=(0, 0),
                   times_us=(0, 1000 + 32768), flags=(0, 0))
    with pytest.raises(ValueError, match="does not fit"):
        encode_frame(late)


@pytest.mark.parametrize(
    ("cmd", "line"),
    [(Ping(0), b"PING 0\n"), (Ping(4294967295), b"PING 4294967295\n"), (Info(), b"INFO\n"),
     (Rate(1000), b"RATE 1000\n"), (Batch(10), b"BATCH 10\n"), (Zero(), b"ZERO\n")],
)
def test_commands_are_printable_ascii_lines(cmd, line):
    out = encode_command(cmd)
    assert out == line
    assert all(0x20 <= b <= 0x7E for b in out[:-1])
    assert 0x03 not in out


@pytest.mark.parametrize("cmd", [Ping(-1), Ping(1 << 32), Rate(49), Rate(2001), Batch(0),
                                 Batch(101)])
def test_out_of_range_commands_are_refused(cmd):
    with pytest.raises(ValueError):
        encode_command(cmd)


def test_the_largest_samples_frame_fits_a_body_and_hello_batch_says_no_more() -> None:
    """A body is at most 1024 bytes, so a SAMPLES frame holds at most 247 records (protocol.md
    said 1-255: a dial sending 250 had its frame discarded as too long)."""
    from ratedial.wire import FrameDecoder, Hello, Samples, encode_frame
    from ratedial.wire.checks import field_problem

    def frame(n: int) -> Samples:
        return Samples(seq=1, first_index=0, period_us=1000, counts=tuple(range(n)),
                       times_us=tuple(1000 * k for k in range(n)), flags=(0,) * n)

    dec = FrameDecoder()
    (got,) = list(dec.feed(b"\x00" + encode_frame(frame(247))))
    assert isinstance(got, Samples) and len(got.counts) == 247
    with pytest.raises(ValueError, match="1-247"):
        encode_frame(frame(248))

    def hello(batch: int) -> Hello:
        return Hello(seq=0, boot_id=1, time_us=0, period_us=1000, rate_hz=1000, batch=batch,
                     tick_bits=30, flags=1, debounce_ms=5, uid=b"\x01" * 8, board="b",
                     firmware="f", backend="irq")

    assert field_problem(hello(247)) is None
    assert field_problem(hello(248)) == "batch 248 outside 1-247"
