"""atheris fuzz target for the host frame decoder.

    python tests/fuzz/fuzz_codec.py tests/fuzz/corpus/codec -max_total_time=60

Checks the decoder's invariants on arbitrary input split at arbitrary points: it never
raises, everything it yields re-encodes to a frame with a valid CRC that decodes to itself,
and the byte count adds up.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from ratedial.wire import FrameDecoder, encode_frame


def check(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    synced = fdp.ConsumeBool()
    cuts = sorted(fdp.ConsumeIntInRange(0, 4096) for _ in range(fdp.ConsumeIntInRange(0, 8)))
    stream = fdp.ConsumeBytes(fdp.remaining_bytes())
    dec = FrameDecoder(synced=synced)
    prev = 0
    for point in [*cuts, len(stream)]:
        cut = min(max(point, prev), len(stream))
        for frame in dec.feed(stream[prev:cut]):
            again = FrameDecoder(synced=True).feed(encode_frame(frame))
            if again != [frame]:
                raise AssertionError(f"{frame!r} does not round-trip")
        prev = cut
    if dec.stats.bytes_in != len(stream):
        raise AssertionError("byte count mismatch")


def main() -> None:
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
