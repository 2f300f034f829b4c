"""A deterministic simulated dial -> host USB link, for clock-model tests and benchmarks.

Pure Python, seeded, no I/O. :func:`simulate` returns every observation the host daemon would
make (SAMPLES arrivals and PING/SYNC exchanges) in the order the daemon makes them, plus the
ground truth: the true host ``CLOCK_MONOTONIC`` time of every sample.

What is modelled (all parameters in :class:`LinkConfig`; the defaults are the "nominal" link):

* Device clock: ``host = F(device)`` with an offset, a skew (default 100 ppm: the device's
  microsecond counter runs slow against the host) and an optional linear ramp of the skew
  (a temperature change of a few ppm over minutes). Device readings are ``floor`` of the
  continuous device time, so truth has sub-microsecond detail the device cannot report.
* Sampling at 1 kHz on the device clock (the timer is the device's crystal), a few µs of
  interrupt latency before the time is read, ``batch`` samples per SAMPLES frame.
* Packing: the firmware hands a frame to the USB driver soon after its last sample (uniform
  in ``pack_delay_us``: 20-250 µs when the sampler wakes the packer, 0.3-3 ms for a 4 ms
  packer poll, the ``poll_packing`` scenario).
* USB full-speed IN: data handed to the driver leaves at the next 1 ms USB frame boundary (the
  host controller's frame clock, itself ``usb_sof_ppm`` off the host clock), then the host's
  scheduling latency before the daemon's read returns (lognormal, mostly 50-300 µs, plus a
  heavy Pareto tail). Reads are ordered: a frame never arrives before the one written before it.
* Short stalls (the daemon not scheduled, 5-50 ms): frames queue in the kernel and then arrive
  in one burst, all stamped late.
* Long stalls (the link stops for seconds): frames queue on the device up to
  ``device_queue_frames`` (the oldest are dropped), a SYNC that cannot be written is discarded,
  PING lines wait in the host's driver, then everything arrives in a burst.
* PING/SYNC: the host stamps ``host_send_ns`` and writes the line; the OUT transfer happens at
  the next USB frame boundary; the firmware's asyncio loop reads the line 0.1-2 ms later (mostly
  fast, slow while another task runs) and stamps ``t_rx``; it answers 40-120 µs later (rarely
  much later: a garbage collection) and, since the firmware of 2026-12-04, waits for the next
  SAMPLES frame to be written and follows it 5-20 µs later (``sync_after_frame``; before,
  it left at once), with ``t_tx`` read just before the write; the SYNC then
  takes the IN path above. OUT and IN delays differ (asymmetry), as WALT measured on real USB.

Random streams are split by purpose (samples, IN latency of frames, pings, stalls) so that two
runs that differ only in the PING schedule (ours at 1 Hz, LSL's bursts) see identical SAMPLES.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class LinkConfig:
    duration_s: float = 120.0
    seed: int = 1
    # device clock: device time `device_start_us` happens at host time `host_start_ns`
    device_start_us: int = 7_654_321
    host_start_ns: int = 3_600_000_000_000
    skew_ppm: float = 100.0  # host ns per device µs = 1000 * (1 + skew_ppm * 1e-6)
    drift_change_ppm: float = 0.0  # skew ramps by this much ...
    drift_change_start_s: float = 60.0  # ... starting here ...
    drift_change_dur_s: float = 120.0  # ... over this long
    # sampling and packing (device µs)
    rate_hz: int = 1000
    batch: int = 10
    sample_latency_us: tuple[float, float] = (1.0, 5.0)
    # the sampler wakes the packer when a frame's last sample is stored (wake_flag);
    # the "poll_packing" scenario is the 4 ms packer poll of boards without a wake flag
    pack_delay_us: tuple[float, float] = (20.0, 250.0)
    # USB IN (host side)
    usb_frame_ns: int = 1_000_000
    usb_sof_ppm: float = 20.0
    host_latency_min_us: float = 40.0
    host_latency_median_us: float = 80.0  # of the lognormal part, added to the minimum
    host_latency_sigma: float = 0.6
    tail_prob: float = 0.02
    tail_scale_us: float = 300.0  # Pareto(alpha 1.5) scale
    tail_cap_us: float = 20_000.0
    burst_frames_per_usb_frame: int = 8  # a queue drains this fast after a stall
    # stalls
    short_stall_rate_hz: float = 0.1
    short_stall_ms: tuple[float, float] = (5.0, 50.0)
    long_stall_period_s: float = 0.0  # 0 = none; else one long stall in every such period
    long_stall_s: tuple[float, float] = (1.0, 5.0)
    device_queue_frames: int = 64
    # PING / SYNC
    ping_period_s: float = 1.0
    ping_burst: int = 1  # probes per PING round
    ping_burst_spacing_s: float = 0.064
    ping_timer_jitter_us: float = 300.0
    # the daemon adds a random 0..ping_phase_us to every interval (so PINGs meet every phase
    # of the 1 ms USB frame) and sends its first ``fast_pings`` ten times as often
    ping_phase_us: float = 0.0
    fast_pings: int = 0
    host_write_us: tuple[float, float] = (20.0, 60.0)
    usb_out_irq_us: float = 10.0
    device_poll_min_us: float = 100.0
    device_poll_fast_prob: float = 0.75  # loop idle: the line is read at once ...
    device_poll_fast_mean_us: float = 80.0  # ... (exponential above the minimum)
    device_poll_max_us: float = 2000.0  # ... else uniform up to this (another task ran)
    reply_us: tuple[float, float] = (40.0, 120.0)
    reply_gc_prob: float = 0.01
    reply_gc_us: tuple[float, float] = (1000.0, 8000.0)
    # the SYNC follows the next frame written (the firmware since 2026-12-04); False: it is
    # written as soon as it is ready (the firmware before)
    sync_after_frame: bool = True
    sync_follow_us: tuple[float, float] = (5.0, 20.0)
    sync_wait_us: float = 20_000.0  # no frame by then: the next 0.1 s ticker round sends it


@dataclass(frozen=True, slots=True)
class FrameArrival:
    host_recv_ns: int
    times_us: tuple[int, ...]  # device times of the frame's samples
    truth_ns: tuple[int, ...]  # true host time of each sample
    period_us: int


@dataclass(frozen=True, slots=True)
class SyncObs:
    host_send_ns: int
    device_rx_us: int
    device_tx_us: int
    host_recv_ns: int


Event = FrameArrival | SyncObs


@dataclass(frozen=True, slots=True)
class SimLink:
    config: LinkConfig
    events: tuple[Event, ...]  # in the order the host sees them
    frames_dropped: int = 0
    syncs_dropped: int = 0
    stalls: tuple[tuple[int, int, bool], ...] = field(default=())  # (start_ns, end_ns, long)

    @property
    def start_ns(self) -> int:
        return self.config.host_start_ns

    def frames(self) -> list[FrameArrival]:
        return [e for e in self.events if isinstance(e, FrameArrival)]

    def syncs(self) -> list[SyncObs]:
        return [e for e in self.events if isinstance(e, SyncObs)]


class DeviceClockTruth:
    """The true map between continuous device time (µs) and host time (ns)."""

    def __init__(self, cfg: LinkConfig) -> None:
        self.d0 = float(cfg.device_start_us)
        self.h0 = float(cfg.host_start_ns)
        self.skew = cfg.skew_ppm * 1e-6
        self.dskew = cfg.drift_change_ppm * 1e-6
        self.us = cfg.drift_change_start_s * 1e6
        self.udur = max(cfg.drift_change_dur_s * 1e6, 1.0)

    def _ramp_integral(self, u: float) -> float:
        if u <= self.us:
            return 0.0
        v = u - self.us
        if v < self.udur:
            return v * v / (2 * self.udur)
        return self.udur / 2 + (v - self.udur)

    def _rate(self, u: float) -> float:
        ramp = min(max((u - self.us) / self.udur, 0.0), 1.0)
        return 1000.0 * (1.0 + self.skew + self.dskew * ramp)

    def host_ns(self, device_us: float) -> float:
        u = device_us - self.d0
        return self.h0 + 1000.0 * (u + self.skew * u + self.dskew * self._ramp_integral(u))

    def device_us(self, host_ns: float) -> float:
        u = (host_ns - self.h0) / (1000.0 * (1.0 + self.skew))
        for _ in range(3):
            u -= (self.host_ns(u + self.d0) - host_ns) / self._rate(u)
        return u + self.d0


class _Usb:
    """Host-side USB timing: frame boundaries and link stalls."""

    def __init__(self, cfg: LinkConfig, rng: random.Random) -> None:
        self.period = cfg.usb_frame_ns * (1.0 + cfg.usb_sof_ppm * 1e-6)
        self.phase = cfg.host_start_ns + rng.uniform(0, self.period)
        end = cfg.host_start_ns + cfg.duration_s * 1e9
        self.short: list[tuple[float, float]] = []
        t = float(cfg.host_start_ns)
        if cfg.short_stall_rate_hz > 0:
            while True:
                t += rng.expovariate(cfg.short_stall_rate_hz) * 1e9
                if t >= end:
                    break
                self.short.append((t, t + rng.uniform(*cfg.short_stall_ms) * 1e6))
        self.long: list[tuple[float, float]] = []
        if cfg.long_stall_period_s > 0:
            p = cfg.long_stall_period_s * 1e9
            k = 0
            while cfg.host_start_ns + (k + 1) * p <= end:
                s = cfg.host_start_ns + k * p + rng.uniform(0.3, 0.7) * p
                self.long.append((s, s + rng.uniform(*cfg.long_stall_s) * 1e9))
                k += 1

    def boundary(self, t: float) -> float:
        return self.phase + math.ceil((t - self.phase) / self.period) * self.period

    def in_long_stall(self, t: float) -> float | None:
        """End of the long stall containing ``t``, else None."""
        for s, e in self.long:
            if s <= t < e:
                return e
        return None

    def after_short_stall(self, t: float) -> float:
        for s, e in self.short:
            if s <= t < e:
                return e
        return t


def _host_latency(cfg: LinkConfig, rng: random.Random) -> float:
    """Host scheduling latency (ns) from the USB transfer to the daemon's read returning."""
    us = cfg.host_latency_min_us + rng.lognormvariate(
        math.log(cfg.host_latency_median_us), cfg.host_latency_sigma)
    if rng.random() < cfg.tail_prob:
        us += min(cfg.tail_scale_us * rng.paretovariate(1.5), cfg.tail_cap_us)
    return us * 1000.0


def _device_poll(cfg: LinkConfig, rng: random.Random) -> float:
    if rng.random() < cfg.device_poll_fast_prob:
        us = cfg.device_poll_min_us + rng.expovariate(1.0 / cfg.device_poll_fast_mean_us)
        return min(us, cfg.device_poll_max_us) * 1000.0
    return rng.uniform(cfg.device_poll_min_us, cfg.device_poll_max_us) * 1000.0


_Write = tuple[float, int, object]  # (host time handed to the USB driver, kind, payload)
_FRAME, _SYNC = 0, 1


def _frame_writes(cfg: LinkConfig, clock: DeviceClockTruth, rng: random.Random
                  ) -> tuple[list[_Write], list[float]]:
    """Samples on the device clock, packed ``batch`` to a frame, handed to the USB driver;
    and the device times of those writes."""
    writes: list[_Write] = []
    packs: list[float] = []
    period_us = round(1e6 / cfg.rate_hz)
    d_first = float(cfg.device_start_us) + 1000.0
    n_total = int(cfg.duration_s * cfg.rate_hz) - 2 * cfg.batch
    for f0 in range(0, n_total - cfg.batch + 1, cfg.batch):
        times: list[int] = []
        truth: list[int] = []
        for k in range(f0, f0 + cfg.batch):
            d = d_first + k * period_us + rng.uniform(*cfg.sample_latency_us)
            times.append(math.floor(d))
            truth.append(round(clock.host_ns(d)))
        d_pack = times[-1] + rng.uniform(*cfg.pack_delay_us)
        writes.append((clock.host_ns(d_pack), _FRAME, (tuple(times), tuple(truth), period_us)))
        packs.append(d_pack)
    return writes, packs


def _sync_writes(cfg: LinkConfig, clock: DeviceClockTruth, usb: _Usb, rng: random.Random,
                 packs: list[float]) -> tuple[list[_Write], int]:
    """PINGs through the OUT path, the firmware's read and reply; SYNC writes (and how many
    were discarded because the link could not take them)."""
    writes: list[_Write] = []
    dropped = 0
    end_ns = cfg.host_start_ns + cfg.duration_s * 1e9
    starts = [i * cfg.ping_period_s for i in range(1, int(cfg.duration_s / cfg.ping_period_s))]
    if cfg.ping_phase_us or cfg.fast_pings:  # the daemon's schedule: each wait from the last
        starts, t = [], 0.0
        while True:
            t += cfg.ping_period_s / (10 if len(starts) < cfg.fast_pings else 1)
            t += rng.uniform(0, cfg.ping_phase_us) * 1e-6
            if t > cfg.duration_s - cfg.ping_period_s:
                break
            starts.append(t)
    for t0 in starts:
        for b in range(cfg.ping_burst):
            s = (cfg.host_start_ns + (t0 + b * cfg.ping_burst_spacing_s) * 1e9
                 + rng.uniform(0, cfg.ping_timer_jitter_us) * 1e3)
            t_out = usb.boundary(s + rng.uniform(*cfg.host_write_us) * 1e3)
            stall_end = usb.in_long_stall(t_out)
            if stall_end is not None:  # the line waits in the host's driver
                t_out = usb.boundary(stall_end)
            t_read = t_out + cfg.usb_out_irq_us * 1e3 + _device_poll(cfg, rng)
            d_rx = clock.device_us(t_read)
            d_tx = d_rx + rng.uniform(*cfg.reply_us)
            if rng.random() < cfg.reply_gc_prob:
                d_tx += rng.uniform(*cfg.reply_gc_us)
            follow = rng.uniform(*cfg.sync_follow_us)  # drawn either way: the same streams
            if cfg.sync_after_frame:
                k = bisect.bisect_left(packs, d_tx)
                if k < len(packs) and packs[k] - d_rx <= cfg.sync_wait_us:
                    d_tx = packs[k] + follow
                else:
                    # sent by the ticker (its round, up to 0.1 s later, is not modelled)
                    d_tx = d_rx + cfg.sync_wait_us + follow
            t_write = clock.host_ns(d_tx)
            if t_write >= end_ns - 0.5e9:
                continue
            if usb.in_long_stall(t_write) is not None:
                dropped += 1  # the link cannot take the reply: discarded (protocol.md)
                continue
            writes.append((t_write, _SYNC, (round(s), math.floor(d_rx), math.floor(d_tx))))
    return writes, dropped


class _InPath:
    """USB IN and the host's read: frame boundaries, burst draining, host latency, stalls."""

    def __init__(self, cfg: LinkConfig, usb: _Usb) -> None:
        self.cfg, self.usb = cfg, usb
        self.rng_frames = random.Random(f"{cfg.seed}/in")
        self.rng_syncs = random.Random(f"{cfg.seed}/sync-in")
        self.events: list[Event] = []
        self.last_recv = -math.inf
        self.last_usb = -math.inf
        self.in_this_usb = 0

    def deliver(self, t_usb: float, kind: int, payload: object) -> None:
        if t_usb <= self.last_usb:  # a burst drains a few messages per USB frame
            self.in_this_usb += 1
            t_usb = self.last_usb
            if self.in_this_usb >= self.cfg.burst_frames_per_usb_frame:
                t_usb += self.usb.period
                self.in_this_usb = 0
        else:
            self.in_this_usb = 0
        self.last_usb = t_usb
        rng = self.rng_frames if kind == _FRAME else self.rng_syncs
        t_recv = self.usb.after_short_stall(t_usb + _host_latency(self.cfg, rng))
        self.last_recv = t_recv = max(t_recv, self.last_recv)  # reads keep the byte order
        if kind == _FRAME:
            times, truth, per = payload  # type: ignore[misc]
            self.events.append(FrameArrival(round(t_recv), times, truth, per))
        else:
            s, rx, tx = payload  # type: ignore[misc]
            self.events.append(SyncObs(s, rx, tx, round(t_recv)))


def simulate(cfg: LinkConfig) -> SimLink:
    clock = DeviceClockTruth(cfg)
    usb = _Usb(cfg, random.Random(f"{cfg.seed}/link"))
    writes, packs = _frame_writes(cfg, clock, random.Random(f"{cfg.seed}/samples"))
    syncs, syncs_dropped = _sync_writes(cfg, clock, usb, random.Random(f"{cfg.seed}/ping"),
                                        packs)
    writes.extend(syncs)
    writes.sort(key=lambda w: w[0])

    path = _InPath(cfg, usb)
    queue: list[_Write] = []  # the device's transmit queue during a long stall
    frames_dropped = 0
    for t_write, kind, payload in writes:
        stall_end = usb.in_long_stall(t_write)
        if stall_end is not None:
            queue.append((stall_end, kind, payload))
            if len(queue) > cfg.device_queue_frames:
                queue.pop(0)  # the oldest frame is discarded
                frames_dropped += 1
            continue
        for q_end, q_kind, q_payload in queue:
            path.deliver(usb.boundary(q_end), q_kind, q_payload)
        queue.clear()
        path.deliver(usb.boundary(t_write), kind, payload)
    for q_end, q_kind, q_payload in queue:
        path.deliver(usb.boundary(q_end), q_kind, q_payload)

    events = sorted(path.events, key=lambda e: e.host_recv_ns)  # stable: byte order kept
    stalls = tuple((round(s), round(e), False) for s, e in usb.short) + tuple(
        (round(s), round(e), True) for s, e in usb.long)
    return SimLink(cfg, tuple(events), frames_dropped, syncs_dropped, stalls)


# Scenarios shared by the tests and the benchmark.
NOMINAL = LinkConfig()
SCENARIOS: dict[str, LinkConfig] = {
    "nominal": NOMINAL,
    "drift_change": replace(NOMINAL, drift_change_ppm=6.0, drift_change_start_s=60.0,
                            drift_change_dur_s=120.0),
    "heavy_jitter": replace(NOMINAL, host_latency_median_us=250.0, host_latency_sigma=1.0,
                            tail_prob=0.08, device_poll_fast_prob=0.3,
                            short_stall_rate_hz=0.3),
    "long_stalls": replace(NOMINAL, long_stall_period_s=40.0, short_stall_rate_hz=0.3),
    "poll_packing": replace(NOMINAL, pack_delay_us=(300.0, 3000.0)),
}


def lsl_probes(cfg: LinkConfig) -> LinkConfig:
    """The same link, probed like liblsl: 8 probes 64 ms apart every 2 s."""
    return replace(cfg, ping_period_s=2.0, ping_burst=8, ping_burst_spacing_s=0.064)


def noise_free(cfg: LinkConfig) -> LinkConfig:
    """Latencies as small and constant as the model allows: bounds are nearly tight."""
    return replace(cfg, sample_latency_us=(0.0, 0.0), pack_delay_us=(0.0, 0.0),
                   usb_frame_ns=1, usb_sof_ppm=0.0, host_latency_min_us=0.0,
                   host_latency_median_us=1e-3, host_latency_sigma=0.0, tail_prob=0.0,
                   short_stall_rate_hz=0.0, ping_timer_jitter_us=0.0, host_write_us=(0.0, 0.0),
                   usb_out_irq_us=0.0, device_poll_min_us=0.0, device_poll_fast_prob=1.0,
                   device_poll_fast_mean_us=1e-3, reply_us=(1.0, 1.0), reply_gc_prob=0.0)


# --- replaying a link through an estimator ---------------------------------------------------
class Estimator(Protocol):
    """What the evaluation needs: SYNCs in, and each frame mapped when it arrives."""

    def add_sync(self, host_send_ns: int, device_rx_us: int, device_tx_us: int,
                 host_recv_ns: int) -> None: ...

    def map_frame(self, frame: FrameArrival) -> tuple[list[int], int | None] | None:
        """Host times of the frame's samples and an uncertainty (ns) if the estimator has one;
        None while it cannot map yet."""
        ...


class LiveClock(Protocol):
    """What :func:`feed` drives: ``ratedial.clock.DeviceClock``'s observation methods."""

    def add_sync(self, host_send_ns: int, device_rx_us: int, device_tx_us: int,
                 host_recv_ns: int) -> None: ...

    def add_arrival(self, device_us: int, host_recv_ns: int) -> None: ...

    def current(self) -> Any: ...


def feed(link: SimLink, clock: LiveClock) -> Iterator[tuple[FrameArrival, Any]]:
    """Feed ``clock`` every observation of ``link`` in the order the daemon sees them; yield
    each SAMPLES frame with the estimate the daemon maps it with (``clock.current()`` right
    after its arrival; None before the first fit)."""
    for e in link.events:
        if isinstance(e, SyncObs):
            clock.add_sync(e.host_send_ns, e.device_rx_us, e.device_tx_us, e.host_recv_ns)
            continue
        clock.add_arrival(e.times_us[-1], e.host_recv_ns)
        yield e, clock.current()


@dataclass(frozen=True, slots=True)
class Mapped:
    t_s: float  # true time of the sample since the link started, s
    err_ns: int  # mapped minus true host time
    unc_ns: int | None


def replay(link: SimLink, est: Estimator) -> tuple[list[Mapped], int]:
    """Feed every observation in arrival order; map every frame's samples as it arrives (what
    the daemon does). Returns the mapped samples and how many could not be mapped."""
    out: list[Mapped] = []
    unmapped = 0
    start = link.start_ns
    for e in link.events:
        if isinstance(e, SyncObs):
            est.add_sync(e.host_send_ns, e.device_rx_us, e.device_tx_us, e.host_recv_ns)
            continue
        res = est.map_frame(e)
        if res is None:
            unmapped += len(e.times_us)
            continue
        mapped, unc = res
        for m, t in zip(mapped, e.truth_ns, strict=True):
            out.append(Mapped((t - start) / 1e9, m - t, unc))
    return out, unmapped


def error_stats(rows: list[Mapped]) -> dict[str, float | int | None]:
    """RMS, median, p99 and max of |error| in µs, the mean (bias) and, where the estimator
    reports one, how often the error was within its uncertainty."""
    if not rows:
        return {"n": 0}
    errs = [r.err_ns for r in rows]
    mags = sorted(abs(e) for e in errs)
    n = len(errs)
    stats: dict[str, float | int | None] = {
        "n": n,
        "rms_us": round(math.sqrt(sum(e * e for e in errs) / n) / 1e3, 1),
        "mean_us": round(sum(errs) / n / 1e3, 1),
        "p50_us": round(mags[n // 2] / 1e3, 1),
        "p99_us": round(mags[min(n - 1, int(0.99 * n))] / 1e3, 1),
        "max_us": round(mags[-1] / 1e3, 1),
    }
    with_unc = [r for r in rows if r.unc_ns is not None]
    if with_unc:
        covered = sum(abs(r.err_ns) <= r.unc_ns for r in with_unc)  # type: ignore[operator]
        stats["uncertainty_coverage"] = round(covered / len(with_unc), 4)
        stats["uncertainty_p50_us"] = round(
            sorted(r.unc_ns for r in with_unc)[len(with_unc) // 2] / 1e3, 1)  # type: ignore[type-var]
    return stats
