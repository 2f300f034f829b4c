"""``ratedial run`` against a hostile fake dial on a real pty: a session no frame can cost.

An honest 1 kHz dial (tests/hostile.py :class:`SimDial`) streams for about 11 s; between its
frames come the cases of docs/protocol.md "What a host does with ...": a replayed frame, a
duplicate with device time 2^40 µs ahead, the frame the dial will send 2 s later, the next
index from 4 s in the future, an index 2^31 ahead, a SYNC that ends before it
starts, impossible BUTTON, ERROR, ACK, STATUS and DROP frames, a HELLO of protocol v2, a
megabyte of 0x00, a damaged frame, 300 random frames with valid CRCs, another dial taking
the port and leaving it, a reboot whose HELLO comes late, and a soft reboot whose HELLO
comes later than the boot before it had run (its indices pass that boot's). The daemon must
exit 0 with every honest sample recorded or in a gap with the right reason, each case's
outcome in the recording, the boots never mixed, and its memory bounded.
"""

from __future__ import annotations

import collections
import json
import random
import signal
import sqlite3
import struct
from collections.abc import Iterator
from pathlib import Path

from daemonrun import finish, start_daemon, wait_until
from hostile import SimDial, accounted, gaps, recorded
from ratedial.wire import (
    Ack,
    Button,
    Drop,
    Error,
    Samples,
    Status,
    Sync,
    encode_frame,
)
from scripted import ScriptedPort

UID_A = bytes.fromhex("a1a2a3a4a5a6a7a8")
UID_B = bytes.fromhex("b1b2b3b4b5b6b7b8")
FRAME_S = 0.01


def _random_frame(rng: random.Random, dial: SimDial) -> bytes:
    """A frame with a valid CRC and random field values (full range, and near the dial's)."""
    def near(x: int) -> int:
        return rng.choice([rng.randrange(2**64), max(0, x + rng.randrange(-5000, 5000)),
                           rng.choice([0, 2**31, 2**53, 2**64 - 1])])

    t, i = dial.t_us(dial.next_index), dial.next_index
    kind = rng.randrange(7)
    f: object
    if kind == 0:
        n = rng.randrange(1, 12)
        t0 = near(t) + 2**40 * (rng.random() < 0.5)  # never one an honest dial could send
        t0 = min(t0, 2**63)
        f = Samples(seq=rng.randrange(2**16), first_index=min(near(i) + 10**7, 2**63),
                    period_us=rng.choice([1000, rng.randrange(2**32)]),
                    counts=(rng.randrange(-(2**31), 2**31),) * n,
                    times_us=tuple(t0 + k * 1000 for k in range(n)),
                    flags=tuple(rng.choice([0, 1, rng.randrange(256)]) for _ in range(n)))
    elif kind == 1:
        f = Sync(seq=1, token=rng.randrange(2**32), t_rx_us=near(t), t_tx_us=near(t))
    elif kind == 2:
        f = Button(seq=1, pressed=rng.random() < 0.5, index=near(i), t_us=near(t),
                   t_edge_us=near(t))
    elif kind == 3:
        f = Ack(seq=1, command=rng.randrange(256), index=near(i),
                value=rng.randrange(-(2**31), 2**31))
    elif kind == 4:
        f = Error(seq=1, code=rng.randrange(256),
                  text=bytes(rng.randrange(256) for _ in range(rng.randrange(80))).decode(
                      "latin-1"))
    elif kind == 5:
        f = Drop(seq=1, first_index=near(i), n_samples=rng.randrange(2**32),
                 n_frames=rng.randrange(2**32))
    else:
        f = Status(1, near(t), near(i), *(rng.randrange(2**32) for _ in range(5)),
                   rng.randrange(2**16), rng.randrange(2**16))
    try:
        return encode_frame(f)  # type: ignore[arg-type]
    except (ValueError, OverflowError, struct.error):
        return b""


class Script:
    """The session: honest frames of A (and B, then A rebooted), with the hostile cases."""

    def __init__(self) -> None:
        self.a = SimDial(UID_A, boot=42)
        self.b = SimDial(UID_B, boot=77, t0_us=50_000_000)
        self.a43_first_frame = 0
        self.a44_first_frame = 0
        self.damaged: list[range] = []

    def chunks(self) -> Iterator[tuple[bytes, float]]:
        a, b = self.a, self.b
        rng = random.Random(12)
        for k in range(1400):
            at = k * FRAME_S
            if 600 <= k < 700:  # dial B has the port for a second
                announced = encode_frame(b.hello()) if k % 50 == 0 else b""
                yield announced + encode_frame(b.frame()), at
                continue
            if k == 700:
                a.next_index += 1000  # A was away a second: those samples never came
            if k == 800:  # A reboots; MicroPython starts in about a second
                a.reboot(43, at_host_ns=0)
            if 800 <= k < 900:
                continue
            if k == 900:
                self.a43_first_frame = len(a.sent)
            if k == 1100:  # a soft reboot (device time goes on) after 2 s of boot 43
                self.a44_first_frame = len(a.sent)
                a.reboot(44, t0_us=a.t_us(a.next_index) + 20_000, at_host_ns=0)
            # boot 43's HELLO comes 0.8 s late; boot 44's 2.5 s late, when its indices have
            # passed all of boot 43's
            announce = k % 50 == 0 and not 900 <= k < 980 and not 1100 <= k < 1350
            data = encode_frame(a.hello()) if announce else b""  # made first: a lower seq
            s = a.frame()
            data += encode_frame(s)
            if k == 450:  # a bit error in a frame: rejected by its CRC, a crc gap
                bad = bytearray(encode_frame(s))
                bad[12] ^= 0x04
                data = bytes(bad)
                a.sent.pop()
                self.damaged.append(s.indices)
            data += self._hostile(k, s, rng)
            yield data, at

    def _hostile(self, k: int, s: Samples, rng: random.Random) -> bytes:
        a = self.a
        if k == 100:
            return encode_frame(a.sent[20])  # a replay from 0.8 s before
        if k == 150:  # the newest frame again, its device times 2^40 µs ahead
            return encode_frame(Samples(s.seq, s.first_index, s.period_us, s.counts,
                                        tuple(t + 2**40 for t in s.times_us), s.flags))
        if k == 250:  # the next frame, its index 2^31 ahead
            return encode_frame(Samples(s.seq, s.end_index + 2**31, 1000, (0,) * 10,
                                        tuple(a.t_us(s.end_index + j) for j in range(10)),
                                        (0,) * 10))
        if k == 200:  # the frame the dial will send 2 s from now (index and device time)
            return encode_frame(Samples(s.seq, s.end_index + 2000, 1000, (0,) * 10,
                                        tuple(a.t_us(s.end_index + 2000 + j)
                                              for j in range(10)), (0,) * 10))
        if k == 220:  # the index the dial sends next, from 4 s in the future
            return encode_frame(Samples(s.seq, s.end_index, 1000, (0,) * 10,
                                        tuple(a.t_us(s.end_index + j) + 4_000_000
                                              for j in range(10)), (0,) * 10))
        if k == 300:
            return encode_frame(Sync(1, 1, t_rx_us=s.times_us[-1], t_tx_us=s.times_us[0]))
        if k == 350:
            return b"".join(encode_frame(f) for f in (
                Button(1, True, 2**64 - 1, s.times_us[-1], s.times_us[0]),
                Button(1, 7, s.first_index, s.times_us[0], s.times_us[0]),  # pressed 7
                Button(1, True, 2**40, s.times_us[-1], s.times_us[0]),  # index vs its time
                Button(1, True, 0, s.times_us[-1], s.times_us[0]),  # sample 0 was 3.5 s ago
                Error(1, 2, "\x00\x01\xfe\xffbinary"),
                Ack(1, 9, s.end_index, 0),
                Status(1, s.times_us[-1], s.end_index, 0, 0, 0, 0, 100_000, 200, 64),
                Drop(1, 0, 100, 1)))
        if k == 400:
            return encode_frame(a.hello(), version=2)
        if k == 420:
            return b"\x00" * (1 << 20)
        if 500 <= k < 530:
            return b"".join(_random_frame(rng, a) for _ in range(10))
        return b""


def test_daemon_against_a_hostile_dial(tmp_path: Path) -> None:
    script = Script()
    port = ScriptedPort(script.chunks, wait_for_host=True)
    path = tmp_path / "hostile.ratedial"
    proc = start_daemon("--port", port.path, "--broker", "none", "--record", str(path),
                        "--duration", "120")
    try:
        # until the last honest frame of boot 44 is in the recording
        wait_until(path, "SELECT count(*) FROM samples s JOIN epochs e USING (epoch_id) "
                         "WHERE e.boot_id = 44", lambda n: n == 3000, timeout=90)
        hwm_kb = _vm_hwm_kb(proc.pid)
        proc.send_signal(signal.SIGINT)
        out, err = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        port.close()
    summary = json.loads(out.strip().splitlines()[-1])
    con = sqlite3.connect(path)

    a, b = script.a, script.b
    rec = recorded(con)
    a42 = sorted(i for s in a.sent[:script.a43_first_frame] for i in s.indices)
    a43 = sorted(i for s in a.sent[script.a43_first_frame:script.a44_first_frame]
                 for i in s.indices)
    a44 = sorted(i for s in a.sent[script.a44_first_frame:] for i in s.indices)
    assert a44 == list(range(3000)) and a43 == list(range(2000))
    assert rec == {(UID_A.hex(), 42): a42, (UID_A.hex(), 43): a43, (UID_A.hex(), 44): a44,
                   (UID_B.hex(), 77): sorted(i for s in b.sent for i in s.indices)}
    (damaged,) = script.damaged
    assert gaps(con) == {(UID_A.hex(), 42): [(damaged.start, damaged.stop, "crc"),
                                              (6000, 7000, "unplugged")]}
    accounted(con)

    events = collections.Counter(
        (d["frame"], d["reason"]) for (d,) in (
            (json.loads(x),) for (x,) in con.execute(
                "SELECT data FROM events WHERE kind = 'frame_rejected'")))
    for case in [("SAMPLES", "time_jump"), ("SAMPLES", "index_jump"), ("SYNC", "field"),
                 ("BUTTON", "field"), ("ERROR", "field"), ("ACK", "field"),
                 ("STATUS", "field"), ("DROP", "drop"), ("BUTTON", "button")]:
        assert events[case] >= 1, case
    assert events[("BUTTON", "field")] >= 3
    assert events[("SAMPLES", "unconfirmed")] >= 2  # the frames ahead and from the future
    # Only the random frames can have passed as buttons, errors or ACKs: none of the
    # impossible values did.
    for kind, (d,) in ((k, (json.loads(x),)) for k, x in con.execute(
            "SELECT kind, data FROM events WHERE kind IN ('button', 'dial_error', 'dial_ack')")):
        assert d.get("index", 0) < 2**53 and d.get("command") != "?", (kind, d)
        assert d.get("pressed", False) in (True, False), (kind, d)
        assert all(" " <= ch <= "~" for ch in d.get("text", "")), (kind, d)
    lost = [json.loads(d)["cause"] for (d,) in con.execute(
        "SELECT data FROM events WHERE kind = 'dial_lost'")]
    assert lost == ["replaced", "replaced"]
    reboots = [json.loads(d) for (d,) in con.execute(
        "SELECT data FROM events WHERE kind = 'dial_reboot'")]
    assert [(r["old_boot_id"], r["new_boot_id"]) for r in reboots] == [(42, 43), (43, 44)]
    assert not con.execute("SELECT count(*) FROM events WHERE kind = 'dial_stalled'"
                           ).fetchone()[0]  # boot 44's frames were never boot 43's

    assert sum(1 for ln in (out + err).splitlines() if "protocol v2" in ln) == 1
    dials = {d["uid"]: d for d in summary["dials"]}
    assert dials[UID_A.hex()]["received"] == len(a42) + len(a43) + len(a44)
    assert dials[UID_A.hex()]["missing"] == 1010
    assert dials[UID_A.hex()]["duplicates"] == 10  # the replay of a frame 0.8 s old
    assert dials[UID_A.hex()]["stalled_s"] == 0
    assert summary["gaps"] == {"crc": 10, "unplugged": 1000} | {
        k: 0 for k in summary["gaps"] if k not in ("crc", "unplugged")}
    assert sum(summary["rejected_content"].values()) >= 8
    print(f"hostile session: {sum(events.values())} frames rejected {dict(events)}; "
          f"daemon peak RSS {hwm_kb / 1000:.0f} MB")
    assert hwm_kb < 400_000, f"the daemon's memory peaked at {hwm_kb / 1000:.0f} MB"


def _vm_hwm_kb(pid: int) -> int:
    """Peak resident memory of a process so far (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")
