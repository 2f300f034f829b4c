"""The reconnection back-off shared by the publisher, the collector and the monitor."""

from __future__ import annotations

import random

from ratedial.mqtt.backoff import Backoff


def test_pauses_double_to_the_cap_with_jitter_and_reset_after_a_success() -> None:
    random.seed(7)
    b = Backoff()
    steps = [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    pauses = [b.pause() for _ in steps]
    assert all(0.5 * s <= p < 1.5 * s for p, s in zip(pauses, steps, strict=True)), pauses
    assert len(set(pauses)) == len(pauses)  # drawn, not fixed
    b.reset()
    assert 0.25 <= b.pause() < 0.75
