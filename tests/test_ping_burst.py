"""docs/protocol.md, "Host -> device commands": a burst of PINGs may lose some of its own
replies when the link cannot take them as fast as the dial reads the PINGs, and every lost
reply is a DROP with n_samples 0; samples are never lost to it. An audit (2026-12-05) found
the doc promising every reply: on the virtual dial with its default link model, 300 PINGs in
one write gave 138-177 SYNCs and DROPs for the rest."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import serial

from ratedial.virtual import VirtualDial
from ratedial.wire import Drop, FrameDecoder, Samples, Sync

pytestmark = pytest.mark.slow

N = 300


def test_every_reply_to_a_ping_burst_arrives_or_is_reported_dropped() -> None:
    with VirtualDial(seed=83, subprocess=True) as dial, \
            serial.Serial(dial.port, timeout=0.02) as ser:
        dec = FrameDecoder()
        syncs: list[Sync] = []
        drops: list[Drop] = []
        indices: list[int] = []

        def pump() -> None:
            for f in dec.feed(ser.read(4096)):
                if isinstance(f, Sync):
                    syncs.append(f)
                elif isinstance(f, Drop):
                    drops.append(f)
                elif isinstance(f, Samples):
                    indices.extend(f.indices)

        def until(cond: Callable[[], bool], what: str) -> None:
            end = time.monotonic() + 30
            while not cond():
                assert time.monotonic() < end, f"timed out waiting for {what}"
                pump()

        until(lambda: len(indices) > 200, "samples")
        ser.write("".join(f"PING {t}\n" for t in range(N)).encode())
        until(lambda: len(syncs) + sum(d.n_frames for d in drops) >= N, "every reply")
        last = indices[-1]
        until(lambda: indices[-1] > last + 200, "samples after the burst")

    tokens = [s.token for s in syncs]
    assert tokens == sorted(set(tokens)) and set(tokens) <= set(range(N))  # in order, once
    assert len(syncs) + sum(d.n_frames for d in drops) == N  # each reply came or is a DROP
    assert all(d.n_samples == 0 for d in drops), drops  # no sample lost to the burst
    assert indices == list(range(indices[0], indices[-1] + 1))
