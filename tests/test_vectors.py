"""The shared test vectors: up to date, and decoded/encoded byte for byte by the host codec."""

from __future__ import annotations

import json
import struct
import sys
import zlib
from pathlib import Path

import pytest

from ratedial.wire import FrameDecoder, encode_body, encode_frame

VECTORS = Path(__file__).resolve().parent / "vectors"
sys.path.insert(0, str(VECTORS))
import make_vectors  # noqa: E402

DATA = json.loads((VECTORS / "frames.json").read_text())


def test_vector_file_is_up_to_date():
    assert (VECTORS / "frames.json").read_text() == make_vectors.render()


def _cobs_encode(raw: bytes) -> bytes:
    """Textbook COBS (Cheshire & Baker), independent of the codec's library.

    A block of 254 non-zero bytes (code 0xFF) carries no implied zero; when such a block
    ends the input, no empty final block follows.
    """
    out = bytearray()
    block = bytearray()
    ended_full = False
    for b in raw:
        if b == 0:
            out += bytes([len(block) + 1]) + block
            block.clear()
            ended_full = False
        else:
            block.append(b)
            ended_full = False
            if len(block) == 254:
                out += b"\xff" + block
                block.clear()
                ended_full = True
    if not ended_full:
        out += bytes([len(block) + 1]) + block
    return bytes(out)


def test_worked_example_from_the_spec_computed_independently():
    unsealed = struct.pack("<BBH", 1, 2, 7) + struct.pack("<QQIiB", 1000, 2_000_000, 1000, 5, 2)
    unsealed += bytes([0, 0, 0, 0, 1, 1, 3, 0])
    body = unsealed + struct.pack("<I", zlib.crc32(unsealed))
    vec = next(f for f in DATA["frames"] if f["name"] == "samples_worked_example")
    assert vec["body_hex"] == body.hex()
    assert vec["wire_hex"] == (_cobs_encode(body) + b"\x00").hex()
    spec = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()
    assert " ".join(f"{b:02x}" for b in body[-4:]) in spec


@pytest.mark.parametrize("vec", DATA["cobs"], ids=lambda v: v["raw_hex"][:16] or "empty")
def test_cobs_vectors_match_textbook_cobs(vec):
    assert _cobs_encode(bytes.fromhex(vec["raw_hex"])).hex() == vec["enc_hex"]


@pytest.mark.parametrize("vec", DATA["frames"], ids=lambda v: v["name"])
def test_frame_vectors_decode_and_reencode(vec):
    wire = bytes.fromhex(vec["wire_hex"])
    assert wire.endswith(b"\x00") and wire.count(0) == 1
    assert wire[:-1] == _cobs_encode(bytes.fromhex(vec["body_hex"]))
    dec = FrameDecoder(synced=True)
    (frame,) = dec.feed(wire)
    assert type(frame).__name__.upper() == vec["type"]
    assert frame.seq == vec["seq"]
    assert encode_body(frame).hex() == vec["body_hex"]
    assert encode_frame(frame).hex() == vec["wire_hex"]
    fields = vec["fields"]
    if vec["type"] == "SAMPLES":
        assert frame.first_index == fields["first_index"]
        assert frame.period_us == fields["period_us"]
        count, t = fields["count_first"], fields["t_first_us"]
        for k, (flags, dcount, jitter) in enumerate(fields["records"]):
            count += dcount
            assert frame.counts[k] == count
            assert frame.times_us[k] == t + k * fields["period_us"] + jitter
            assert frame.flags[k] == flags
    else:
        for name, value in fields.items():
            got = frame.uid.hex() if name == "uid_hex" else getattr(frame, name)
            assert got == value, name
