"""Property tests of the host decoder: random, truncated, bit-flipped and interleaved streams."""

from __future__ import annotations

import itertools
import zlib

from cobs import cobs
from hypothesis import given, settings
from hypothesis import strategies as st

from ratedial.wire import Drop, FrameDecoder, Samples, Sync, encode_frame


@st.composite
def samples_frames(draw: st.DrawFn) -> Samples:
    n = draw(st.integers(1, 40))
    period = draw(st.integers(1, 20000))
    first = draw(st.integers(0, 2**64 - 1 - n))
    t0 = draw(st.integers(0, 2**63))
    counts = [draw(st.integers(-(2**31), 2**31 - 1))]
    times = [t0]
    for k in range(1, n):
        counts.append(max(-(2**31), min(2**31 - 1, counts[-1] + draw(st.integers(-128, 127)))))
        times.append(t0 + k * period + draw(st.integers(-32768, 32767)))
    flags = [draw(st.integers(0, 7)) for _ in range(n)]
    return Samples(seq=draw(st.integers(0, 0xFFFF)), first_index=first, period_us=period,
                   counts=tuple(counts), times_us=tuple(times), flags=tuple(flags))


small_frames = st.one_of(
    samples_frames(),
    st.builds(Sync, seq=st.integers(0, 0xFFFF), token=st.integers(0, 2**32 - 1),
              t_rx_us=st.integers(0, 2**64 - 1), t_tx_us=st.integers(0, 2**64 - 1)),
    st.builds(Drop, seq=st.integers(0, 0xFFFF), first_index=st.integers(0, 2**64 - 1),
              n_samples=st.integers(0, 2**32 - 1), n_frames=st.integers(0, 2**32 - 1)),
)


def _valid_crc(frame_wire: bytes) -> bool:
    body = cobs.decode(frame_wire[:-1])
    return zlib.crc32(body[:-4]) == int.from_bytes(body[-4:], "little")


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@given(st.binary(max_size=4000), st.lists(st.integers(0, 10_000), max_size=20))
def test_random_bytes_never_raise_and_yield_only_crc_valid_frames(data, cuts):
    dec = FrameDecoder()
    for part in _chunks(data, cuts):
        for frame in dec.feed(part):
            assert _valid_crc(encode_frame(frame))
    assert dec.stats.bytes_in == len(data)


@given(st.lists(small_frames, min_size=1, max_size=20), st.lists(st.integers(0, 10**6)))
def test_round_trip_whatever_the_chunking(frames, cuts):
    wire = b"".join(encode_frame(f) for f in frames)
    dec = FrameDecoder(synced=True)
    out = []
    for part in _chunks(wire, cuts):
        out += dec.feed(part)
    assert out == frames


@settings(max_examples=300)
@given(st.lists(small_frames, min_size=2, max_size=12), st.data())
def test_bit_flips_lose_only_the_frames_they_hit(frames, data):
    wires = [encode_frame(f) for f in frames]
    hit = data.draw(st.sets(st.integers(0, len(frames) - 1), max_size=len(frames)))
    damaged = []
    for i, w in enumerate(wires):
        if i in hit:
            buf = bytearray(w)
            pos = data.draw(st.integers(0, len(w) - 2))  # flip a bit inside, not the delimiter
            buf[pos] ^= 1 << data.draw(st.integers(0, 7))
            damaged.append(bytes(buf))
        else:
            damaged.append(w)
    dec = FrameDecoder(synced=True)
    out = dec.feed(b"".join(damaged))
    survivors = [f for i, f in enumerate(frames) if i not in hit]
    # A flip can turn a byte into a delimiter and split a frame into two damaged chunks,
    # but it can never produce a frame, and untouched frames always come through.
    assert out == survivors
    assert dec.stats.frames == len(survivors)


@given(st.lists(small_frames, min_size=1, max_size=10), st.data())
def test_truncated_and_interleaved_streams_resync_at_next_delimiter(frames, data):
    wires = [encode_frame(f) for f in frames]
    pieces = []
    expected = []
    for f, w in zip(frames, wires, strict=True):
        if data.draw(st.booleans()):
            cut = data.draw(st.integers(1, len(w) - 2))  # keep the delimiter out
            pieces.append(w[:cut])  # truncated: its tail never arrives
            pieces.append(data.draw(st.binary(max_size=50)).replace(b"\x00", b""))
            pieces.append(b"\x00")  # the next delimiter ends the damaged chunk
        else:
            pieces.append(w)
            expected.append(f)
    dec = FrameDecoder(synced=True)
    assert dec.feed(b"".join(pieces)) == expected
