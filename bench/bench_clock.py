"""Device clock -> host clock: mapping error of sample times on simulated USB links.

Every estimator sees the same simulated links (bench/clocksim.py: 1 kHz, 10 samples a frame,
100 ppm drift, USB 1 ms frames, host jitter, stalls) and maps each frame's samples when the
frame arrives, as the daemon does; errors are against the true host time of every sample.

* ``ratedial``: :class:`ratedial.clock.DeviceClock` with its defaults (PING every 1 s).
* ``arrival_stamping``: arrival time minus ``(n-1-k)`` periods (naive bridges).
* ``lsl_min_rtt``: liblsl ``time_correction`` (8 probes 64 ms apart every 2 s, offset of the
  smallest round trip, no drift fit). It is given its own probe schedule (4 probes/s against
  our 1/s) on the same link: the SAMPLES stream is identical (separate random streams).

Errors are reported after a 30 s warm-up and over the first 30 s, pooled over three seeds.
``candidates_after_warmup`` documents the estimators tried before choosing the default
(seeds 1 and 2).
"""

from __future__ import annotations

import time
from dataclasses import replace

from clocksim import (
    SCENARIOS,
    FrameArrival,
    Mapped,
    SimLink,
    error_stats,
    lsl_probes,
    replay,
    simulate,
)
from ratedial.clock import DeviceClock
from ratedial.clock_baselines import ArrivalStamping, LslMinRtt

DURATION_S = 180.0
SEEDS = (1, 2, 3)
WARMUP_S = 30.0


# --- adapters: one interface (clocksim.Estimator) over every estimator -----------------------
class Ours:
    """DeviceClock as the daemon uses it: arrival first, then map the frame."""

    def __init__(self, clock: DeviceClock | None = None, *, arrivals: bool = True,
                 syncs: bool = True) -> None:
        self.clock = DeviceClock() if clock is None else clock
        self.arrivals, self.syncs = arrivals, syncs

    def add_sync(self, host_send_ns: int, device_rx_us: int, device_tx_us: int,
                 host_recv_ns: int) -> None:
        if self.syncs:
            self.clock.add_sync(host_send_ns, device_rx_us, device_tx_us, host_recv_ns)

    def map_frame(self, frame: FrameArrival) -> tuple[list[int], int | None] | None:
        if self.arrivals:
            self.clock.add_arrival(frame.times_us[-1], frame.host_recv_ns)
        est = self.clock.current()
        if est is None:
            return None
        return est.to_host_ns_many(frame.times_us), est.uncertainty_at(frame.times_us[0])


class Arrival:
    def add_sync(self, host_send_ns: int, device_rx_us: int, device_tx_us: int,
                 host_recv_ns: int) -> None:
        pass

    def map_frame(self, frame: FrameArrival) -> tuple[list[int], int | None] | None:
        return ArrivalStamping.stamp(frame.host_recv_ns, len(frame.times_us),
                                     frame.period_us), None


class Lsl:
    def __init__(self) -> None:
        self.lsl = LslMinRtt()

    def add_sync(self, host_send_ns: int, device_rx_us: int, device_tx_us: int,
                 host_recv_ns: int) -> None:
        self.lsl.add_sync(host_send_ns, device_rx_us, device_tx_us, host_recv_ns)

    def map_frame(self, frame: FrameArrival) -> tuple[list[int], int | None] | None:
        mapped = [self.lsl.to_host_ns(t) for t in frame.times_us]
        if any(m is None for m in mapped):
            return None
        return [m for m in mapped if m is not None], None


class MinRttRegression:
    """Candidate: PINGs only. In the last ``window_s``, keep the ``keep`` fraction with the
    smallest round trips and fit offset and skew by least squares to their NTP midpoints,
    weighted by 1/(rtt - min_rtt + 100 µs)^2 (no use of SAMPLES arrivals)."""

    def __init__(self, window_s: float = 60.0, keep: float = 0.5) -> None:
        self.window_us = window_s * 1e6
        self.keep = keep
        self.obs: list[tuple[float, float, int]] = []  # (x µs, y residual ns, rtt ns)
        self.line: tuple[float, float, float] | None = None  # (x0, y0, slope ns/µs)

    def add_sync(self, host_send_ns: int, device_rx_us: int, device_tx_us: int,
                 host_recv_ns: int) -> None:
        rtt = (host_recv_ns - host_send_ns) - (device_tx_us - device_rx_us) * 1000
        x = (device_rx_us + device_tx_us) / 2
        self.obs.append((x, (host_send_ns + host_recv_ns) / 2 - 1000 * x, rtt))
        self.obs = [o for o in self.obs if o[0] >= x - self.window_us]
        sel = sorted(self.obs, key=lambda o: o[2])[: max(1, round(len(self.obs) * self.keep))]
        w = [1.0 / (o[2] - sel[0][2] + 100_000) ** 2 for o in sel]
        sw = sum(w)
        mx = sum(wi * o[0] for wi, o in zip(w, sel, strict=True)) / sw
        my = sum(wi * o[1] for wi, o in zip(w, sel, strict=True)) / sw
        sxx = sum(wi * (o[0] - mx) ** 2 for wi, o in zip(w, sel, strict=True))
        sxy = sum(wi * (o[0] - mx) * (o[1] - my) for wi, o in zip(w, sel, strict=True))
        c = sxy / sxx if len(sel) >= 3 and sxx > 0 else 0.0
        self.line = (mx, my, c)

    def map_frame(self, frame: FrameArrival) -> tuple[list[int], int | None] | None:
        if self.line is None:
            return None
        mx, my, c = self.line
        return [round(t * 1000 + my + c * (t - mx) + 500) for t in frame.times_us], None


class Switching:
    """Candidate: cuckoo_time_translator's SwitchingOwt idea applied to our model: two models
    with unlimited windows, each restarted every ``2 * switch_s``, half a period apart; the
    older one maps."""

    def __init__(self, switch_s: float = 60.0) -> None:
        self.switch_ns = round(switch_s * 1e9)
        self.models = [DeviceClock(window_s=1e6), DeviceClock(window_s=1e6)]
        self.started: list[int | None] = [None, None]

    def _tick(self, host_ns: int) -> None:
        if self.started[0] is None:
            self.started = [host_ns, host_ns + self.switch_ns]
        for i, t0 in enumerate(self.started):
            if t0 is not None and host_ns >= t0 + 2 * self.switch_ns:
                self.models[i] = DeviceClock(window_s=1e6)
                self.started[i] = host_ns

    def add_sync(self, host_send_ns: int, device_rx_us: int, device_tx_us: int,
                 host_recv_ns: int) -> None:
        self._tick(host_recv_ns)
        for m, t0 in zip(self.models, self.started, strict=True):
            if t0 is not None and host_recv_ns >= t0:
                m.add_sync(host_send_ns, device_rx_us, device_tx_us, host_recv_ns)

    def map_frame(self, frame: FrameArrival) -> tuple[list[int], int | None] | None:
        h = frame.host_recv_ns
        self._tick(h)
        for m, t0 in zip(self.models, self.started, strict=True):
            if t0 is not None and h >= t0:
                m.add_arrival(frame.times_us[-1], h)
        live = [(t0, m) for m, t0 in zip(self.models, self.started, strict=True)
                if t0 is not None and h >= t0]
        est = min(live, key=lambda p: p[0])[1].current()
        if est is None:
            return None
        return est.to_host_ns_many(frame.times_us), None


CANDIDATES = {
    # the default: slope from the arrivals (the edge of their lower hull over mid-window),
    # offset from the centre of the two-way band at that slope, 90 s window
    "default_w90": lambda: Ours(DeviceClock()),
    "window_60s": lambda: Ours(DeviceClock(window_s=60)),
    "window_120s": lambda: Ours(DeviceClock(window_s=120)),
    "buckets_1s": lambda: Ours(DeviceClock(bucket_s=1.0)),
    # two-way convex hull (TICSync), arrivals as bounds, slope from the hull itself
    "twoway_hull_free_slope": lambda: Ours(DeviceClock(min_slope_span_s=1e9)),
    # two-way hull from PING/SYNC alone (arrivals ignored)
    "twoway_hull_pings_only": lambda: Ours(DeviceClock(), arrivals=False),
    # one-way hull from arrivals alone (TICSync one-way): late by the minimum latency
    "oneway_hull_arrivals_only": lambda: Ours(DeviceClock(prior_latency_us=0), syncs=False),
    "minrtt_regression_90s": lambda: MinRttRegression(90.0),
    # cuckoo_time_translator's SwitchingOwt restart scheme instead of a sliding window
    "switching_60s": lambda: Switching(60.0),
}
CANDIDATE_SEEDS = (1, 2)


def _split(rows: list[Mapped]) -> tuple[list[Mapped], list[Mapped]]:
    return [r for r in rows if r.t_s >= WARMUP_S], [r for r in rows if r.t_s < WARMUP_S]


def _report(rows: list[Mapped], unmapped: int) -> dict[str, object]:
    late, early = _split(rows)
    return {"after_warmup": error_stats(late), "first_30s": error_stats(early),
            "unmapped_samples": unmapped}


def _links(name: str, seed: int) -> tuple[SimLink, SimLink]:
    cfg = replace(SCENARIOS[name], duration_s=DURATION_S, seed=seed)
    return simulate(cfg), simulate(lsl_probes(cfg))


def _cpu() -> dict[str, float]:
    """CPU per call on the nominal link (process time, whole run, refits included)."""
    link = simulate(replace(SCENARIOS["nominal"], duration_s=120.0))
    clock = DeviceClock()
    t_arr = t_map = t_sync = 0.0
    n_arr = n_map = 0
    pc = time.process_time
    for e in link.events:
        if isinstance(e, FrameArrival):
            t0 = pc()
            clock.add_arrival(e.times_us[-1], e.host_recv_ns)
            t1 = pc()
            for t in e.times_us:
                clock.to_host_ns(t)
            t2 = pc()
            t_arr += t1 - t0
            t_map += t2 - t1
            n_arr += 1
            n_map += len(e.times_us)
        else:
            t0 = pc()
            clock.add_sync(e.host_send_ns, e.device_rx_us, e.device_tx_us, e.host_recv_ns)
            t_sync += pc() - t0
    # the refit alone
    t0 = pc()
    for _ in range(200):
        clock._dirty = True
        clock.estimate()
    t_fit = (pc() - t0) / 200
    est = clock.estimate()
    assert est is not None
    times = list(range(est.ref_device_us - 10_000, est.ref_device_us, 1))
    t0 = pc()
    est.to_host_ns_many(times)
    t_many = (pc() - t0) / len(times)
    return {
        "add_arrival_us": round(t_arr / n_arr * 1e6, 2),
        "to_host_ns_us_incl_refits": round(t_map / n_map * 1e6, 2),
        "to_host_ns_many_us_per_time": round(t_many * 1e6, 3),
        "refit_us": round(t_fit * 1e6),
        "cpu_percent_of_one_core_per_dial_at_1khz": round(
            (t_arr + t_map + t_sync) / link.config.duration_s * 100, 3),
    }


def run() -> dict[str, object]:
    scenarios: dict[str, object] = {}
    for name in SCENARIOS:
        rows: dict[str, list[Mapped]] = {"ratedial": [], "arrival_stamping": [],
                                         "lsl_min_rtt": []}
        unmapped = dict.fromkeys(rows, 0)
        for seed in SEEDS:
            link, lsl_link = _links(name, seed)
            for key, est, lk in (("ratedial", Ours(), link), ("arrival_stamping", Arrival(), link),
                                 ("lsl_min_rtt", Lsl(), lsl_link)):
                r, u = replay(lk, est)
                rows[key].extend(r)
                unmapped[key] += u
        res: dict[str, object] = {k: _report(v, unmapped[k]) for k, v in rows.items()}
        ours = error_stats(_split(rows["ratedial"])[0])
        for base in ("arrival_stamping", "lsl_min_rtt"):
            theirs = error_stats(_split(rows[base])[0])
            for stat in ("rms_us", "p99_us"):
                res[f"{stat.removesuffix('_us')}_ratio_{base}_over_ratedial"] = round(
                    float(theirs[stat] or 0) / float(ours[stat] or 1), 1)
        scenarios[name] = res

    candidates: dict[str, dict[str, float | int | None]] = {}
    for name in SCENARIOS:
        pooled: dict[str, list[Mapped]] = {c: [] for c in CANDIDATES}
        for seed in CANDIDATE_SEEDS:
            link = simulate(replace(SCENARIOS[name], duration_s=DURATION_S, seed=seed))
            for cand, make in CANDIDATES.items():
                pooled[cand].extend(_split(replay(link, make())[0])[0])
        for cand, rows in pooled.items():
            stats = error_stats(rows)
            candidates.setdefault(cand, {})[f"{name}_rms_us"] = stats["rms_us"]
            candidates[cand][f"{name}_p99_us"] = stats["p99_us"]

    return {
        "what": ("error of sample times mapped to host time, µs, on simulated USB links "
                 f"({DURATION_S:.0f} s, seeds {list(SEEDS)}, after a {WARMUP_S:.0f} s warm-up "
                 "and over the first 30 s)"),
        "scenarios": scenarios,
        "cpu": _cpu(),
        "candidates_after_warmup": candidates,
    }
