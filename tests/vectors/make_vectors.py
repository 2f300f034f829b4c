"""Regenerate tests/vectors/frames.json from the frame definitions below.

    python tests/vectors/make_vectors.py

The file is checked byte for byte by the host codec tests (CPython) and the firmware
encoder tests (MicroPython). ``tests/test_vectors.py`` fails if the file is out of date.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cobs import cobs

from ratedial.wire import (
    Ack,
    Button,
    Drop,
    Error,
    Frame,
    Hello,
    Samples,
    Status,
    Sync,
    encode_body,
    encode_frame,
)

HERE = Path(__file__).resolve().parent
OUT = HERE / "frames.json"


def _samples(seq: int, first: int, t0: int, period: int, recs: list[tuple[int, int, int]],
             count0: int) -> Samples:
    counts, times, flags = [count0], [t0], [recs[0][0]]
    for k, (fl, dc, jit) in enumerate(recs[1:], start=1):
        counts.append(counts[-1] + dc)
        times.append(t0 + k * period + jit)
        flags.append(fl)
    return Samples(seq=seq, first_index=first, period_us=period, counts=tuple(counts),
                   times_us=tuple(times), flags=tuple(flags))


FRAMES: list[tuple[str, Frame]] = [
    ("hello_pico", Hello(seq=0, boot_id=0x1234ABCD, time_us=1_048_576, period_us=1000,
                         rate_hz=1000, batch=10, tick_bits=30, flags=1, debounce_ms=5,
                         uid=bytes.fromhex("e66038b7132f4a2c"), board="pico",
                         firmware="0.1.0", backend="pio")),
    ("hello_esp32", Hello(seq=65535, boot_id=0xFFFFFFFF, time_us=(1 << 40) + 3,
                          period_us=2000, rate_hz=500, batch=20, tick_bits=30, flags=0,
                          debounce_ms=8, uid=bytes.fromhex("a0b1c2d3e4f5"),
                          board="esp32-devkitc", firmware="0.1.0", backend="pcnt")),
    ("samples_worked_example", _samples(7, 1000, 2_000_000, 1000,
                                        [(0, 0, 0), (1, 1, 3)], 5)),
    ("samples_single", _samples(1, 0, 123, 1000, [(0, 0, 0)], 0)),
    ("samples_extremes", _samples(300, (1 << 33) + 5, (1 << 35) + 7, 500,
                                  [(1, 0, 0), (3, 127, 32767), (5, -128, -32768),
                                   (0, -1, -1), (7, 0, 0)], -(1 << 31))),
    ("samples_count_max", _samples(301, 12, 99, 20000, [(0, 0, 0), (0, -5, 10)],
                                   (1 << 31) - 1)),
    ("samples_long_zero_free", _samples(0x0101, 0x0101, 0x0101, 0x0101,
                                        [(1, 0, 0)] + [(1, 1, 0x0101)
                                                       for k in range(1, 100)], 0x01010101)),
    ("sync", Sync(seq=42, token=4_294_967_295, t_rx_us=5_000_001, t_tx_us=5_000_017)),
    ("button_press", Button(seq=43, pressed=True, index=77_000, t_us=77_000_500,
                            t_edge_us=76_995_400)),
    ("button_release", Button(seq=44, pressed=False, index=78_000, t_us=78_000_500,
                              t_edge_us=77_995_500)),
    ("status", Status(seq=45, time_us=10_000_000, samples_taken=9_900, frames_dropped=3,
                      samples_dropped=30, overruns=1, jitter_max_us=17, mem_free=150_000,
                      queue_depth=2, queue_capacity=64)),
    ("error_unknown", Error(seq=46, code=1, text="unknown command")),
    ("error_empty_text", Error(seq=47, code=4, text="")),
    ("drop", Drop(seq=48, first_index=12_340, n_samples=520, n_frames=53)),
    ("drop_frames_only", Drop(seq=49, first_index=0, n_samples=0, n_frames=2)),
    ("ack_rate", Ack(seq=50, command=1, index=20_000, value=500)),
    ("ack_batch", Ack(seq=51, command=2, index=20_100, value=25)),
    ("ack_zero", Ack(seq=52, command=3, index=20_200, value=0)),
]

COBS_RAW = [b"", b"\x00", b"\x00\x00", b"\x11\x22\x00\x33", b"\x11\x00\x00\x00",
            bytes(range(1, 255)), bytes(range(1, 256)), bytes(range(0, 256)),
            bytes([1] * 508), bytes([1] * 253) + b"\x00" + bytes([2] * 300)]

# Expected results of the device's command parser; error codes per docs/protocol.md.
COMMANDS: list[dict[str, Any]] = [
    {"line": "PING 0", "ok": True, "cmd": "PING", "arg": 0},
    {"line": "PING 4294967295", "ok": True, "cmd": "PING", "arg": 4294967295},
    {"line": "PING 4294967296", "ok": False, "code": 2},
    {"line": "PING", "ok": False, "code": 2},
    {"line": "PING x1", "ok": False, "code": 2},
    {"line": "PING -1", "ok": False, "code": 2},
    {"line": "INFO", "ok": True, "cmd": "INFO", "arg": None},
    {"line": "RATE 1000", "ok": True, "cmd": "RATE", "arg": 1000},
    {"line": "RATE 50", "ok": True, "cmd": "RATE", "arg": 50},
    {"line": "RATE 2000", "ok": True, "cmd": "RATE", "arg": 2000},
    {"line": "RATE 49", "ok": False, "code": 2},
    {"line": "RATE 2001", "ok": False, "code": 2},
    {"line": "RATE", "ok": False, "code": 2},
    {"line": "BATCH 1", "ok": True, "cmd": "BATCH", "arg": 1},
    {"line": "BATCH 100", "ok": True, "cmd": "BATCH", "arg": 100},
    {"line": "BATCH 0", "ok": False, "code": 2},
    {"line": "BATCH 101", "ok": False, "code": 2},
    {"line": "ZERO", "ok": True, "cmd": "ZERO", "arg": None},
    {"line": "rate 100", "ok": False, "code": 1},
    {"line": "JUMP 3", "ok": False, "code": 1},
    {"line": "", "ok": False, "code": 1},
    {"line": "PING " + "1" * 40, "ok": False, "code": 3},
    {"line": "PING \t1", "ok": False, "code": 3},
    {"line": "PING \u00e91", "ok": False, "code": 3},
]


def _fields(frame: Frame) -> dict[str, Any]:
    d = asdict(frame)
    d.pop("seq")
    if isinstance(frame, Hello):
        d["uid_hex"] = d.pop("uid").hex()
    if isinstance(frame, Samples):
        body = encode_body(frame)
        recs = []
        for k in range(len(frame)):
            off = 4 + 25 + 4 * k
            flags = body[off]
            dcount = int.from_bytes(body[off + 1 : off + 2], "little", signed=True)
            jitter = int.from_bytes(body[off + 2 : off + 4], "little", signed=True)
            recs.append([flags, dcount, jitter])
        d = {"first_index": frame.first_index, "t_first_us": frame.times_us[0],
             "period_us": frame.period_us, "count_first": frame.counts[0], "records": recs}
    if isinstance(frame, Button):
        d["pressed"] = int(frame.pressed)
    return d


def build() -> dict[str, Any]:
    frames = []
    for name, frame in FRAMES:
        frames.append({
            "name": name,
            "type": type(frame).__name__.upper(),
            "seq": frame.seq,
            "fields": _fields(frame),
            "body_hex": encode_body(frame).hex(),
            "wire_hex": encode_frame(frame).hex(),
        })
    return {
        "protocol": 1,
        "frames": frames,
        "cobs": [{"raw_hex": r.hex(), "enc_hex": bytes(cobs.encode(r)).hex()} for r in COBS_RAW],
        "commands": COMMANDS,
    }


def render() -> str:
    return json.dumps(build(), indent=1) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
