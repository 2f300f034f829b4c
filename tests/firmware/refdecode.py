"""A small reference decoder of docs/protocol.md v1 for the firmware tests.

Written from the protocol document, independently of dial.protocol, and runnable under
both MicroPython and CPython. ``decode_stream(data)`` splits on 0x00, COBS-decodes, checks
length and CRC and returns (frames, rejected): frames are dicts with "type" (name), "seq"
and the fields named as in the protocol tables.
"""

import binascii
import struct

NAMES = {1: "HELLO", 2: "SAMPLES", 3: "SYNC", 4: "BUTTON", 5: "STATUS", 6: "ERROR",
         7: "DROP", 8: "ACK"}


def cobs_decode(enc):
    out = bytearray()
    i = 0
    n = len(enc)
    while i < n:
        code = enc[i]
        if code == 0 or i + code > n:  # a zero code, or a block running past the end
            return None
        block = enc[i + 1 : i + code]
        if 0 in block:
            return None
        out += block
        i += code
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


def _str(body, off):
    n = body[off]
    return body[off + 1 : off + 1 + n], off + 1 + n


def decode_body(body):
    """body = header + payload + crc (CRC already checked)."""
    ver, typ, seq = struct.unpack_from("<BBH", body, 0)
    p = 4
    f = {"type": NAMES.get(typ, typ), "seq": seq, "version": ver}
    if typ == 1:
        (f["boot_id"], f["time_us"], f["period_us"], f["rate_hz"], f["batch"],
         f["tick_bits"], f["flags"], f["debounce_ms"]) = struct.unpack_from(
            "<IQIHHBBH", body, p)
        uid, o = _str(body, p + 24)
        f["uid_hex"] = binascii.hexlify(uid).decode()
        board, o = _str(body, o)
        fw, o = _str(body, o)
        be, o = _str(body, o)
        f["board"] = board.decode()
        f["firmware"] = fw.decode()
        f["backend"] = be.decode()
    elif typ == 2:
        (f["first_index"], f["t_first_us"], f["period_us"], f["count_first"],
         n) = struct.unpack_from("<QQIiB", body, p)
        recs = []
        for k in range(n):
            recs.append(list(struct.unpack_from("<Bbh", body, p + 25 + 4 * k)))
        f["records"] = recs
        assert len(body) == 4 + 25 + 4 * n + 4, "SAMPLES length"
    elif typ == 3:
        f["token"], f["t_rx_us"], f["t_tx_us"] = struct.unpack_from("<IQQ", body, p)
    elif typ == 4:
        f["pressed"], f["index"], f["t_us"], f["t_edge_us"] = struct.unpack_from(
            "<BQQQ", body, p)
    elif typ == 5:
        (f["time_us"], f["samples_taken"], f["frames_dropped"], f["samples_dropped"],
         f["overruns"], f["jitter_max_us"], f["mem_free"], f["queue_depth"],
         f["queue_capacity"]) = struct.unpack_from("<QQIIIIIHH", body, p)
    elif typ == 6:
        f["code"] = body[p]
        text, _ = _str(body, p + 1)
        f["text"] = text.decode()
    elif typ == 7:
        f["first_index"], f["n_samples"], f["n_frames"] = struct.unpack_from("<QII", body, p)
    elif typ == 8:
        f["command"], f["index"], f["value"] = struct.unpack_from("<BQi", body, p)
    return f


def decode_stream(data):
    """All frames in ``data`` (must end with 0x00). Returns (frames, rejected)."""
    frames = []
    rejected = 0
    start = 0
    while True:
        end = data.find(b"\x00", start)
        if end < 0:
            break
        chunk = data[start:end]
        start = end + 1
        if not chunk:
            continue
        body = cobs_decode(chunk)
        if body is None or len(body) < 8:
            rejected += 1
            continue
        crc = struct.unpack_from("<I", body, len(body) - 4)[0]
        if binascii.crc32(body[:-4]) & 0xFFFFFFFF != crc:
            rejected += 1
            continue
        frames.append(decode_body(body))
    return frames, rejected


def samples(frames):
    """Expand SAMPLES frames into (index, count, t_us, flags) tuples in stream order."""
    out = []
    for f in frames:
        if f["type"] != "SAMPLES":
            continue
        c = f["count_first"]
        for k, (fl, dc, jit) in enumerate(f["records"]):
            c += dc
            out.append((f["first_index"] + k, c, f["t_first_us"] + k * f["period_us"] + jit,
                        fl))
    return out
