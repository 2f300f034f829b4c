"""Baselines for the device clock model: what other tools do (benchmarks and tests only).

Invariants: pure, no I/O; same observations as :class:`ratedial.clock.DeviceClock`, so a
benchmark can feed both the same simulated link.

* :class:`ArrivalStamping`: each sample is stamped with its frame's arrival time minus
  ``(n - 1 - k)`` periods, what naive serial bridges do. Every sample is late by the whole
  device -> host latency (packing, USB, scheduling, stalls).
* :class:`LslMinRtt`: liblsl's ``time_correction``: bursts of probes, the offset of the probe
  with the smallest round trip (NTP's clock filter), ``((t_rx - host_send) + (t_tx -
  host_recv)) / 2``, replaced after each burst (every 2 s), no drift fit; probes whose round
  trip exceeds 128 ms are ignored (liblsl's ``TimeProbeMaxRTT``).
"""

from __future__ import annotations

_NS_PER_US = 1000


class ArrivalStamping:
    """Stamp samples by arrival: sample ``k`` of ``n`` gets ``host_recv - (n-1-k) * period``."""

    @staticmethod
    def stamp(host_recv_ns: int, n: int, period_us: int) -> list[int]:
        return [host_recv_ns - (n - 1 - k) * period_us * _NS_PER_US for k in range(n)]


class LslMinRtt:
    """liblsl ``time_correction``: ``probe_count`` probes per round, one round every
    ``update_interval``; after a round the offset of its smallest-round-trip probe replaces
    the previous offset (liblsl defaults: 8 probes 64 ms apart, every 2 s)."""

    def __init__(self, *, probe_count: int = 8, update_interval_s: float = 2.0,
                 max_rtt_s: float = 0.128) -> None:
        self._count = probe_count
        self._max_rtt_ns = round(max_rtt_s * 1e9)
        self._interval_ns = round(update_interval_s * 1e9)
        self._round_start: int | None = None
        self._round: list[tuple[int, float]] = []  # (round trip ns, offset ns)
        self._offset_ns: float | None = None

    def add_sync(self, host_send_ns: int, device_rx_us: int, device_tx_us: int,
                 host_recv_ns: int) -> None:
        if self._round_start is not None and (
                host_send_ns - self._round_start >= self._interval_ns // 2):
            self._close_round()
        if self._round_start is None:
            self._round_start = host_send_ns
        rx, tx = device_rx_us * _NS_PER_US, device_tx_us * _NS_PER_US
        rtt = (host_recv_ns - host_send_ns) - (tx - rx)
        # host minus device time, NTP's midpoint form
        offset = ((host_send_ns - rx) + (host_recv_ns - tx)) / 2
        if rtt <= self._max_rtt_ns:
            self._round.append((rtt, offset))
        if len(self._round) >= self._count:  # (a round of timed-out probes closes later)
            self._close_round()

    def _close_round(self) -> None:
        if self._round:
            self._offset_ns = min(self._round)[1]
        self._round = []
        self._round_start = None

    def to_host_ns(self, device_us: int) -> int | None:
        if self._offset_ns is None:
            return None
        return device_us * _NS_PER_US + round(self._offset_ns)
