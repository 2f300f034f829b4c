"""Scripted dials on real ptys: the same sample sequence as ratedial frames or as text lines.

Run as a process (so its pacing and CPU stay apart from what is measured)::

    python bench/diy/feeder.py --format frames|text --dials N --rate HZ --seconds S

It opens one pty per dial and prints ``{"ports": [...]}`` on one line. A dial starts streaming
when the host first writes to its port (ratedial sends ``INFO`` when it opens a port; the DIY
bridge sends ``start``), so no sample waits in a pty buffer for a reader that is not there.

Device time *is* this machine's ``CLOCK_MONOTONIC`` in µs (shared by all processes): sample
``k`` of a dial is generated at ``t0 + k * period`` and carries that time, so a subscriber can
measure the true time from a sample's generation to its arrival. Counts are a seeded random
walk, identical in both formats. ``frames``: SAMPLES frames of ``--batch`` samples written
as soon as their last sample is due (as the firmware does), HELLO at start, on
``INFO`` and every 5 s, SYNC replies to ``PING``. ``text``: one ``t_us,count\\n`` line per
sample, written when due, what most lab firmware prints.

When every dial has written all its samples the feeder prints ``{"written": [...],
"max_pending_bytes": [...], "late_ms_max": x}`` and keeps its ports open (answering the host)
until its stdin closes.
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import random
import select
import sys
import time
import tty

from ratedial.wire import Hello, Samples, Sync, encode_frame

TICK_NS = 1_000_000  # pacing period of the feeder loop


class Dial:
    def __init__(self, k: int, fmt: str, rate: int, n_total: int, batch: int, seed: int) -> None:
        self.k = k
        self.fmt = fmt
        self.period_us = round(1e6 / rate)
        self.n_total = n_total
        self.batch = batch
        self.master, self.slave = pty.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        self.rng = random.Random(seed * 1000 + k)
        self.count = 0
        self.sent = 0  # samples written so far
        self.t0_us: int | None = None
        self.pending = bytearray()
        self.pending_since_us: int | None = None  # when the oldest unwritten byte was made
        self.max_pending = 0
        self.inbuf = b""
        self.seq = 0
        self.uid = (0xB3_7C_00_00_00_00_00_00 + k).to_bytes(8, "big")
        self.boot = 0x5EED0000 + k
        self.next_hello_us = 0

    def _next_seq(self) -> int:
        s = self.seq
        self.seq = (self.seq + 1) & 0xFFFF
        return s

    def hello(self, now_us: int) -> bytes:
        return encode_frame(Hello(
            seq=self._next_seq(), boot_id=self.boot, time_us=now_us, period_us=self.period_us,
            rate_hz=min(65535, round(1e6 / self.period_us)), batch=self.batch, tick_bits=30,
            flags=0, debounce_ms=5, uid=self.uid, board="bench", firmware="0.1.0",
            backend="irq"))

    def host_input(self, tick_us: int) -> None:
        """Read what the host wrote; start on the first byte, answer INFO and PING.
        ``tick_us``: the nominal time of the feeder loop's current tick. Samples fall due on
        ticks (sample k at the tick k + 1 after the start): a sleep never ends early, so each
        frame is written on the tick it falls due, a wake-up's overshoot after it. Due times
        at a random phase of the tick made each run's latency 0-1 ms longer, by luck: the
        1-sample medians of two runs of the same code differed by 0.9 ms."""
        try:
            data = os.read(self.master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # the host closed its end (EIO): nothing to answer
            return
        now_us = time.monotonic_ns() // 1000
        if self.t0_us is None and data:
            # The first sample: the first tick after now, as the firmware's start() sends
            # its HELLO and then starts its sampler. When this loop runs late (a sleep that
            # overshot on a loaded machine), the tick after ``tick_us`` is already past:
            # samples from there, sent after a HELLO of "now", are frames a dial queued long
            # after their last sample, which never come after a HELLO (docs/protocol.md: a
            # boot's first frame ends no earlier than 50 ms before it). The daemon held them
            # and rejected them at the next HELLO (time_backwards, "(replay)": each of 24
            # dials' first 37 frames, the loop ~420 ms late).
            tick = TICK_NS // 1000
            self.t0_us = tick_us + tick * (max(0, now_us - tick_us) // tick + 1)
            if self.fmt == "frames":
                self.pending += self.hello(now_us)
                self.next_hello_us = now_us + 5_000_000
        if self.fmt != "frames":
            return
        self.inbuf += data
        *lines, self.inbuf = self.inbuf.split(b"\n")
        for raw in lines:
            words = raw.strip().split()
            if not words:
                continue
            if words[0] == b"INFO":
                # The firmware packs a frame when its last sample is taken: what fell due
                # before this HELLO goes before it in the queue, as on a dial.
                self.produce(now_us)
                self.pending += self.hello(now_us)
            elif words[0] == b"PING" and len(words) == 2 and words[1].isdigit():
                self.pending += encode_frame(Sync(seq=self._next_seq(), token=int(words[1]),
                                                  t_rx_us=now_us, t_tx_us=now_us))

    def produce(self, now_us: int) -> None:
        if self.t0_us is None or self.sent >= self.n_total:
            return
        due = min(self.n_total, (now_us - self.t0_us) // self.period_us + 1)
        if self.fmt == "text":
            out = []
            for i in range(self.sent, due):
                self.count += self.rng.choice((-1, 0, 0, 0, 1))
                out.append(f"{self.t0_us + i * self.period_us},{self.count}\n")
            self.pending += "".join(out).encode()
            self.sent = due
            return
        while due - self.sent >= self.batch or (due == self.n_total and due > self.sent):
            n = min(self.batch, due - self.sent)
            counts = []
            for _ in range(n):
                self.count += self.rng.choice((-1, 0, 0, 0, 1))
                counts.append(self.count)
            first = self.sent
            self.pending += encode_frame(Samples(
                seq=self._next_seq(), first_index=first, period_us=self.period_us,
                counts=tuple(counts),
                times_us=tuple(self.t0_us + (first + j) * self.period_us for j in range(n)),
                flags=(0,) * n))
            self.sent += n
        if now_us >= self.next_hello_us:  # after the frames due (the firmware's housekeeping
            # comes after its packing): a late loop's frames do not follow a later HELLO
            self.pending += self.hello(now_us)
            self.next_hello_us = now_us + 5_000_000

    def flush(self, now_us: int) -> None:
        self.max_pending = max(self.max_pending, len(self.pending))
        if not self.pending:
            self.pending_since_us = None
            return
        if self.pending_since_us is None:
            self.pending_since_us = now_us
        try:
            n = os.write(self.master, self.pending)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.pending.clear()  # the host went away
            return
        del self.pending[:n]
        if not self.pending:
            self.pending_since_us = None

    @property
    def done(self) -> bool:
        return self.sent >= self.n_total and not self.pending

    def late_ms(self, now_us: int) -> float:
        """How long the oldest byte not yet taken by the pty has waited (the host not reading,
        or this feeder running late, both show here)."""
        behind = 0
        if self.t0_us is not None and self.sent < self.n_total:  # frames fill by design
            behind = max(0, now_us - self.t0_us - (self.sent + self.batch) * self.period_us)
        if self.pending_since_us is None:
            return behind / 1000
        return max(behind, now_us - self.pending_since_us) / 1000


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--format", choices=("frames", "text"), required=True)
    ap.add_argument("--dials", type=int, default=1)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    n_total = round(a.rate * a.seconds)
    dials = [Dial(k, a.format, a.rate, n_total, a.batch, a.seed) for k in range(a.dials)]
    print(json.dumps({"ports": [d.path for d in dials]}), flush=True)
    late_max = 0.0
    next_tick = time.monotonic_ns()
    stdin_open = True
    reported = False
    while stdin_open:
        for d in dials:
            d.host_input(next_tick // 1000)
        now_us = time.monotonic_ns() // 1000
        for d in dials:
            d.produce(now_us)
            d.flush(now_us)
            late_max = max(late_max, d.late_ms(now_us))
        if not reported and all(d.done for d in dials):
            print(json.dumps({"written": [d.sent for d in dials],
                              "max_pending_bytes": [d.max_pending for d in dials],
                              "late_ms_max": round(late_max, 1)}), flush=True)
            reported = True
        next_tick += TICK_NS
        wait_ns = next_tick - time.monotonic_ns()
        if wait_ns < -50 * TICK_NS:  # far behind: do not try to catch up tick by tick
            next_tick = time.monotonic_ns()
        # pacing: wait for the next tick, or for the bench closing stdin (after the report)
        timeout = max(0.0, wait_ns / 1e9)
        if reported:
            ready, _, _ = select.select([sys.stdin], [], [], max(timeout, 0.05))
            if ready and not sys.stdin.buffer.read1(4096):
                stdin_open = False
        elif timeout > 0:
            time.sleep(timeout)
    for d in dials:
        os.close(d.master)
        os.close(d.slave)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
