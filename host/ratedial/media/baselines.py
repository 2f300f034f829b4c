"""Baselines for the media clock: what other tools do (benchmarks and tests only).

Invariants: pure, no I/O; fed the same polls as :class:`ratedial.media.MediaClock`.

* :class:`PollExtrapolate`: CARMA's way of following VLC: poll the player 10-30 times a
  second; whenever the reported time changes, take it as the media time *now* and extrapolate
  with the PC clock until it changes again. Fed VLC's whole-second ``time`` this is CARMA
  exactly; fed mpv's ``time-pos`` or MPC's millisecond ``position`` it is the same method on a
  finer value. Unlike CARMA it multiplies by the reported rate (CARMA never changes speed), so
  rate changes do not count against it.
"""

from __future__ import annotations

NS = 1_000_000_000


class PollExtrapolate:
    def __init__(self) -> None:
        self._value: float | None = None
        self._anchor_ns = 0
        self._anchor_s: float | None = None
        self._playing = False
        self._rate = 1.0

    def poll(self, recv_ns: int, value_s: float | None, *, playing: bool, rate: float) -> None:
        """One poll answer received at ``recv_ns``."""
        if value_s is None:
            self._value = self._anchor_s = None
            return
        changed = value_s != self._value or playing != self._playing or rate != self._rate
        if changed:
            if value_s == self._value and self._anchor_s is not None:
                # Play state or rate changed but the value did not: keep extrapolated time.
                self._anchor_s = self.at(recv_ns)
            else:
                self._anchor_s = value_s
            self._anchor_ns = recv_ns
        self._value = value_s
        self._playing = playing
        self._rate = rate

    def at(self, host_ns: int) -> float | None:
        if self._anchor_s is None:
            return None
        if not self._playing:
            return self._anchor_s
        return self._anchor_s + self._rate * (host_ns - self._anchor_ns) / NS
