"""Checks of dial.protocol and dial.commands that run unchanged under MicroPython and
CPython: the shared vectors (tests/vectors/frames.json) byte for byte, COBS round trips
and the command line rules. tests/test_firmware_protocol.py runs them under both.

Each function raises AssertionError on the first mismatch and returns how many cases it
checked, so the caller can also assert that nothing was skipped.
"""

import json

from refdecode import cobs_decode


def pack_fields(P, body, ftype, seq, x):
    """Call the pack function of ``ftype`` with the vector's fields (protocol.md names)."""
    if ftype == "HELLO":
        uid = bytes(int(x["uid_hex"][i : i + 2], 16) for i in range(0, len(x["uid_hex"]), 2))
        return P.pack_hello(body, seq, x["boot_id"], x["time_us"], x["period_us"],
                            x["rate_hz"], x["batch"], x["tick_bits"], x["flags"],
                            x["debounce_ms"], uid, x["board"], x["firmware"], x["backend"])
    if ftype == "SAMPLES":
        return P.pack_samples(body, seq, x["first_index"], x["t_first_us"], x["period_us"],
                              x["count_first"], x["records"])
    if ftype == "SYNC":
        return P.pack_sync(body, seq, x["token"], x["t_rx_us"], x["t_tx_us"])
    if ftype == "BUTTON":
        return P.pack_button(body, seq, x["pressed"], x["index"], x["t_us"], x["t_edge_us"])
    if ftype == "STATUS":
        return P.pack_status(body, seq, x["time_us"], x["samples_taken"],
                             x["frames_dropped"], x["samples_dropped"], x["overruns"],
                             x["jitter_max_us"], x["mem_free"], x["queue_depth"],
                             x["queue_capacity"])
    if ftype == "ERROR":
        return P.pack_error(body, seq, x["code"], x["text"])
    if ftype == "DROP":
        return P.pack_drop(body, seq, x["first_index"], x["n_samples"], x["n_frames"])
    if ftype == "ACK":
        return P.pack_ack(body, seq, x["command"], x["index"], x["value"])
    raise AssertionError("unknown frame type " + ftype)


def _hex(b):
    return "".join("%02x" % c for c in b)


def check_vectors(P, path):
    with open(path) as f:
        v = json.load(f)
    assert v["protocol"] == P.VERSION == 1
    body = bytearray(P.MAX_BODY)
    wire = bytearray(P.wire_size(P.MAX_BODY) + 3)
    n = 0
    for fr in v["frames"]:
        end = pack_fields(P, body, fr["type"], fr["seq"], fr["fields"])
        blen = P.seal(body, end)
        assert _hex(body[:blen]) == fr["body_hex"], fr["name"] + " body"
        # finish() at an offset into a dirty slot: only [off:o] may change and it must match
        for i in range(len(wire)):
            wire[i] = 0xAA
        o = P.finish(body, end, wire, 3)
        assert _hex(wire[3:o]) == fr["wire_hex"], fr["name"] + " wire"
        assert wire[2] == 0xAA and wire[o] == 0xAA, fr["name"] + " wrote outside its slot"
        assert o - 3 <= P.wire_size(blen)
        n += 1
    for c in v["cobs"]:
        raw = bytes(int(c["raw_hex"][i : i + 2], 16) for i in range(0, len(c["raw_hex"]), 2))
        o = P.cobs_encode(raw, len(raw), wire, 0)
        assert _hex(wire[:o]) == c["enc_hex"], c["raw_hex"][:20]
        n += 1
    return n


def _cases():
    cases = [b"", b"\x00", b"\x00\x00\x00", b"\x01", b"\x01\x00", b"\x00\x01"]
    for run in (1, 2, 253, 254, 255, 256, 507, 508, 509, 762):
        nz = bytes((i % 255) + 1 for i in range(run))
        cases += [nz, nz + b"\x00", b"\x00" + nz, nz + b"\x00" + nz, nz + b"\x00\x00"]
    cases.append(bytes(1000))  # zero-heavy
    cases.append(bytes(i & 0xFF for i in range(1020)))
    cases.append(bytes((i % 3 == 0) * 7 for i in range(700)))
    return cases


def check_cobs_roundtrip(P):
    dst = bytearray(2200)
    n = 0
    for raw in _cases():
        o = P.cobs_encode(raw, len(raw), dst, 5)
        enc = bytes(dst[5:o])
        assert 0 not in enc, len(raw)
        assert len(enc) <= len(raw) + len(raw) // 254 + 1, len(raw)
        assert cobs_decode(enc) == raw, len(raw)
        n += 1
    # a full 254-byte block at the very end gets no empty trailing block
    o = P.cobs_encode(bytes(range(1, 255)), 254, dst, 0)
    assert o == 255 and dst[0] == 0xFF
    return n


# (line bytes including the terminator, expected (cmd, arg) or (0, error code))
COMMAND_RULES = [
    (b"PING 0\n", (1, 0)),
    (b"PING 007\n", (1, 7)),
    (b"PING 4294967295\r\n", (1, 4294967295)),
    (b"PING 4294967296\n", (0, 2)),
    (b"PING\n", (0, 2)),
    (b"PING \n", (0, 2)),
    (b"PING  1\n", (0, 2)),
    (b"PING 1 \n", (0, 2)),
    (b"PING +1\n", (0, 2)),
    (b"PING 12345678901\n", (0, 2)),
    (b"INFO\n", (2, None)),
    (b"INFO\r\n", (2, None)),
    (b"INFO x\n", (0, 2)),
    (b"INFO \n", (0, 2)),
    (b"RATE 50\n", (3, 50)),
    (b"RATE 2000\n", (3, 2000)),
    (b"RATE 49\n", (0, 2)),
    (b"RATE 2001\n", (0, 2)),
    (b"RATE 1e3\n", (0, 2)),
    (b"BATCH 1\n", (4, 1)),
    (b"BATCH 100\n", (4, 100)),
    (b"BATCH 101\n", (0, 2)),
    (b"ZERO\n", (5, None)),
    (b"ZERO 0\n", (0, 2)),
    (b"zero\n", (0, 1)),
    (b" PING 1\n", (0, 1)),
    (b"\n", (0, 1)),
    (b"\r\n", (0, 1)),
    (b"PINGS 1\n", (0, 1)),
    (b"PING 1\r\r\n", (0, 3)),
    (b"PI\rNG 1\n", (0, 3)),
    (b"PING \t1\n", (0, 3)),
    (b"PING \x7f1\n", (0, 3)),
    (b"PING \x001\n", (0, 3)),
    (b"PING \xc3\xa91\n", (0, 3)),
    (b"RATE 1000" + b" " * 31 + b"\n", (0, 2)),  # 40 characters: not too long
    (b"RATE 1000" + b" " * 32 + b"\n", (0, 3)),  # 41: too long
    (b"BATCH " + b"0" * 32 + b"10\n", (0, 2)),  # 40 characters, but > 10 digits
]


def _run_line(C, asm, data):
    results = [r for r in (asm.feed(c) for c in data) if r is not None]
    assert len(results) == 1, (data, results)
    return results[0]


def check_command_rules(C):
    asm = C.LineAssembler()
    n = 0
    for data, want in COMMAND_RULES:
        cmd, arg, text = _run_line(C, asm, data)
        assert (cmd, arg) == want, (data, cmd, arg, text)
        if cmd == C.ERROR:
            assert isinstance(text, str) and 0 < len(text) <= 60, text
        else:
            assert text is None
        n += 1
    # After a bad line, the rest up to \n is discarded and the next line is clean.
    got = [r for r in (asm.feed(c) for c in b"JUNK\x01 MORE JUNK\nPING 5\n") if r]
    assert [(r[0], r[1]) for r in got] == [(0, 3), (1, 5)], got
    got = [r for r in (asm.feed(c) for c in b"X" * 100 + b"\nRATE 100\n") if r]
    assert [(r[0], r[1]) for r in got] == [(0, 3), (3, 100)], got
    return n + 2


def check_command_vectors(C, path):
    with open(path) as f:
        v = json.load(f)
    names = {"PING": C.PING, "INFO": C.INFO, "RATE": C.RATE, "BATCH": C.BATCH, "ZERO": C.ZERO}
    asm = C.LineAssembler()
    n = 0
    for case in v["commands"]:
        cmd, arg, _text = _run_line(C, asm, case["line"].encode() + b"\n")
        if case["ok"]:
            assert (cmd, arg) == (names[case["cmd"]], case["arg"]), case
        else:
            assert (cmd, arg) == (C.ERROR, case["code"]), (case, cmd, arg)
        n += 1
    return n


def run_all(P, C, path):
    """Returns the counts, printed by the MicroPython caller."""
    return (check_vectors(P, path), check_cobs_roundtrip(P), check_command_rules(C),
            check_command_vectors(C, path))
