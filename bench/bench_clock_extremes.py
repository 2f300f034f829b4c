"""The device clock model at the extremes, on virtual dials: ±100 and ±500 ppm, a tick wrap,
a 2 s stall and a reboot, several seeds; the worst seed is the figure.

Each seed is one ``ratedial run`` recording four virtual dials (the real firmware under
MicroPython behind the jittery USB link model) that run 100 ppm fast, 100 ppm slow, 500 ppm
fast and 500 ppm slow. Each dial reboots at 4 s, its 30-bit tick wraps about 14 s into the
run, and its link stalls for 2 s at 26 s (the host not reading). From the recording and the
simulator's ground truth, per dial:

* ``rms_us``: error of the recorded host times of the second boot's samples taken 30 s or
  more after that boot started (the steady state);
* ``skew_error_ppm``: the stored model's skew 30 s after the boot against the true one;
* ``coverage`` / ``coverage_first_5s``: the share of samples for which the stored model in
  effect when their frame arrived (``clock_models``) is within its stated bound of the
  truth, over the whole boot and over its first 5 s;
* ``max_from_stored_line_us``: the largest difference between a recorded host time and
  that stored line (a refit between stored models, or a correction being slewed in);
* ``backwards``: recorded host times that went back within an epoch (must be 0).

The whole is run three times, the passes interleaved seed by seed (the machine's load
changes by the minute): with the daemon's default PING interval, with ``ping_interval_s =
DENSE_PING_S`` (``dense_pings``) and with ``SPARSE_PING_S`` (the default until 2026-12,
``sparse_pings``) in its config; each recording is also replayed through this model and through the
arrivals' slope alone, and the default pass's recordings with only every 2nd and every 10th
SYNC after a boot's first ten (``replayed_worst_seed``: RMS and skew error frame by frame,
no slewing): estimators and PING intervals compared on the same observations.

Figures are reported per drift as the worst over the seeds (largest RMS, largest |skew
error|, lowest coverage). Per seed also what the error is made of, against the truth: the
fastest frame's, PING's and reply's delays, half the asymmetry of the first two (the bias
of the two-way band's centre) and the median frame latency (the host's load). And the same
model on the load-free simulated link (``bench/clocksim.py``), PINGs every 0.05, 0.1 and 1 s,
with the true skew given to the band as well (``true_skew_rms_us``: the bias that remains
is the link's asymmetry, which no two-way estimator sees): what the estimator does when this
machine's load is taken out.
"""

from __future__ import annotations

import math
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from clocksim import LinkConfig, feed, simulate
from ratedial.clock import DeviceClock
from ratedial.clock_bounds import Band, Point, solve
from ratedial.config import RunConfig
from ratedial.virtual import VirtualDial
from ratedial.virtual.faults import parse_fault

DRIFTS = (100.0, -100.0, 500.0, -500.0)
SEEDS = tuple(int(s) for s in os.environ.get("EXTREMES_SEEDS", "1,2,3").split(","))
REBOOT_S = 4.0
RUN_S = 4.0 + 30.0 + 16.0  # 16 s of steady state after the 30 s
STEADY_AFTER_S = 30.0
SIM_SEEDS = tuple(range(1, 9))
SIM_PING_PERIODS_S = (0.05, 0.1, 1.0)  # twice the daemon's PING rate, its rate, a tenth
DENSE_PING_S = 0.05  # the second pass: ``ping_interval_s`` in the daemon's config
SPARSE_PING_S = 1.0  # the third pass
THINNED = (2, 10)  # the default pass replayed with every 2nd / 10th SYNC (0.2 s / 1 s)
FAST_SYNCS = 10  # the daemon's first PINGs of a boot, ten times faster: always kept


def _record(seed: int, workdir: Path, ping_interval_s: float | None = None
            ) -> tuple[Path, dict[str, list[Any]], dict[str, float]]:
    dials = [VirtualDial(seed=10 * seed + k, drift_ppm=drift, wrap_bits=30,
                         tick_start_us=(1 << 30) - 18_000_000, subprocess=True,
                         faults=(parse_fault(f"reboot@{REBOOT_S}"), parse_fault("stall@26:2")))
             for k, drift in enumerate(DRIFTS)]
    for d in dials:
        d.start()
    name = f"extremes-{seed}" + ("" if ping_interval_s is None else f"-ping{ping_interval_s:g}")
    path = workdir / f"{name}.ratedial"
    try:
        args = [sys.executable, "-m", "ratedial", "run", "--no-scan", "--broker", "none",
                "--record", str(path), "--duration", str(RUN_S), "--json"]
        if ping_interval_s is not None:
            cfg = workdir / f"{name}.toml"
            cfg.write_text(f"ping_interval_s = {ping_interval_s}\n")
            args += ["--config", str(cfg)]
        for d in dials:
            args += ["--port", d.port]
        subprocess.run(args, capture_output=True, text=True, check=True, timeout=RUN_S + 120)
        truths = {d.options.uid_bytes.hex(): d.truth() for d in dials}
        drift_of = {d.options.uid_bytes.hex(): d.options.drift_ppm for d in dials}
    finally:
        for d in dials:
            d.close(check=False)
    return path, truths, drift_of


def _true_skew_ppm(drift_ppm: float) -> float:
    """The model's skew (host ns per device µs above 1000, ppm) of a dial ``drift_ppm`` fast."""
    return (1 / (1 + drift_ppm * 1e-6) - 1) * 1e6


def _floors(con: sqlite3.Connection, epoch_id: int, truth: Any) -> dict[str, Any]:
    """What the model's bounds are made of, against the truth, over the whole boot: how late
    the fastest SAMPLES frame arrived (the upper bound's slack), how long the fastest PING
    took to be read (the lower bound's slack), the fastest SYNC reply, the median frame
    latency (the host's load), and half the difference of the two slacks: the offset bias of
    the band's centre, which no two-way method can see (docs/timing.md, "Asymmetry")."""
    arr = con.execute("SELECT device_us, host_recv_ns FROM arrivals WHERE epoch_id = ?",
                      (epoch_id,)).fetchall()
    syncs = con.execute("SELECT host_send_ns, device_rx_us, device_tx_us, host_recv_ns FROM "
                        "sync_obs WHERE epoch_id = ?", (epoch_id,)).fetchall()
    if not arr or not syncs:
        return {}
    lat = sorted(h - truth.host_ns(d, near_ns=h) for d, h in arr)
    fwd = min(truth.host_ns(rx, near_ns=hs) - hs for hs, rx, _, _ in syncs)
    back = min(hr - truth.host_ns(tx, near_ns=hr) for _, _, tx, hr in syncs)
    up = min(lat[0], back)
    return {"arrival_floor_us": round(lat[0] / 1000), "ping_floor_us": round(fwd / 1000),
            "reply_floor_us": round(back / 1000),
            "arrival_median_us": round(lat[len(lat) // 2] / 1000),
            "half_asymmetry_us": round((up - fwd) / 2000, 1)}


def _dial_figures(con: sqlite3.Connection, uid: str, boots: list[Any], drift: float
                  ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    by_boot = {b.boot_id: b for b in boots}
    epochs = con.execute("SELECT e.epoch_id, e.boot_id FROM epochs e JOIN dials d "
                         "USING (dial_id) WHERE d.uid = ? ORDER BY e.first_host_ns",
                         (uid,)).fetchall()
    cover = cover5 = n = n5 = back = slew = 0
    steady: list[int] = []
    skew_err = None
    for epoch_id, boot_id in epochs:
        truth = by_boot[boot_id]
        rows = con.execute("SELECT sample_index, device_us, host_ns FROM samples WHERE "
                           "epoch_id = ? AND "
                           "host_ns IS NOT NULL ORDER BY sample_index", (epoch_id,)).fetchall()
        models = con.execute("SELECT host_ns, ref_device_us, ref_host_ns, skew_ppm, "
                             "uncertainty_ns, skew_uncertainty_ppm FROM clock_models WHERE "
                             "epoch_id = ? ORDER BY host_ns", (epoch_id,)).fetchall()
        if not rows or not models:
            continue
        arrivals = con.execute("SELECT last_index, host_recv_ns FROM arrivals WHERE "
                               "epoch_id = ? ORDER BY 1", (epoch_id,)).fetchall()
        start_ns = truth.host_ns(rows[0][1], near_ns=rows[0][2])
        k = a = 0
        prev = None
        for index, d_us, h in rows:
            true = truth.host_ns(d_us, near_ns=h)
            while a < len(arrivals) and arrivals[a][0] < index:
                a += 1
            arrival = arrivals[a][1] if a < len(arrivals) else h
            while k + 1 < len(models) and models[k + 1][0] <= arrival:
                k += 1
            # the stored line in effect when the sample's frame arrived, and its bound
            _, ref_d, ref_h, skew, unc, skew_unc = models[k]
            line = ref_h + round((d_us - ref_d) * (1000 + skew * 1e-3))
            bound = unc + math.ceil(abs(d_us - ref_d) * (skew_unc or 0) * 1e-3)
            ok = abs(line - true) <= bound
            slew = max(slew, abs(h - line))
            since = (true - start_ns) / 1e9
            n += 1
            cover += ok
            if since < 5:
                n5 += 1
                cover5 += ok
            if since >= STEADY_AFTER_S and boot_id == epochs[-1][1]:
                steady.append(h - true)
            if prev is not None and h < prev:
                back += 1
            prev = h
        at30 = [m for m in models if (m[0] - start_ns) / 1e9 >= STEADY_AFTER_S]
        if at30 and boot_id == epochs[-1][1]:
            skew_err = at30[0][3] - _true_skew_ppm(drift)
    out["rms_us"] = round(math.sqrt(sum(e * e for e in steady) / len(steady)) / 1000, 1) \
        if steady else None
    out["mean_us"] = round(sum(steady) / len(steady) / 1000, 1) if steady else None
    out["n_steady"] = len(steady)
    out["skew_error_ppm"] = None if skew_err is None else round(skew_err, 2)
    out["coverage"] = round(cover / n, 5) if n else None
    out["coverage_first_5s"] = round(cover5 / n5, 5) if n5 else None
    out["backwards"] = back
    out["max_from_stored_line_us"] = round(slew / 1000, 1)
    out["epochs"] = len(epochs)
    if epochs:
        out.update(_floors(con, epochs[-1][0], by_boot[epochs[-1][1]]))
    return out


class _TrueSkewClock(DeviceClock):
    """The model with the band's slope set to the true skew once the arrivals span the
    ``min_slope_span_s`` (benchmark only): its error is the two-way band's bias alone, half
    the asymmetry of the fastest PING and the fastest frame or reply, which no two-way
    estimator can see. What is left above it in :class:`DeviceClock` is the skew's error."""

    def __init__(self, skew_ppm: float) -> None:
        super().__init__()
        self._true_c = skew_ppm * 1e-3

    def _band(self, arr: Any, ups: list[tuple[float, float]], lows: list[tuple[float, float]],
              start: int) -> Band | None:
        arrivals: list[Point] = arr
        if arrivals and arrivals[-1][0] - arrivals[0][0] >= self._min_slope_span:
            fixed = solve(ups, lows, self._true_c, self._true_c, self._prior_ns)
            if fixed is not None:
                return fixed
        return super()._band(arr, ups, lows, start)


def _simulated_one(drift_ppm: float, seed: int, ping_period_s: float, *,
                   true_skew: bool = False) -> dict[str, float]:
    """The model alone on the load-free simulated link (bench/clocksim.py, its nominal
    latencies), the first boot's first ``RUN_S - REBOOT_S`` s: skew error at 30 s, RMS and
    mean error of the samples from 30 s on (``true_skew``: with the band at the true slope)."""
    skew = _true_skew_ppm(drift_ppm)
    link = simulate(LinkConfig(duration_s=RUN_S - REBOOT_S, seed=seed, skew_ppm=skew,
                               ping_period_s=ping_period_s, ping_phase_us=1000.0,
                               fast_pings=10))
    skew_err = math.nan
    errs: list[int] = []
    clock = _TrueSkewClock(skew) if true_skew else DeviceClock()
    for frame, est in feed(link, clock):
        if est is None or (frame.truth_ns[0] - link.start_ns) / 1e9 < STEADY_AFTER_S:
            continue
        if math.isnan(skew_err):
            skew_err = est.skew_ppm - skew
        errs += [m - t for m, t in zip(est.to_host_ns_many(frame.times_us), frame.truth_ns,
                                       strict=True)]
    return {"rms_us": math.sqrt(sum(x * x for x in errs) / len(errs)) / 1000,
            "mean_us": sum(errs) / len(errs) / 1000, "skew_error_ppm": skew_err}


def _simulated() -> dict[str, Any]:
    """Worst over SIM_SEEDS per drift and PING interval: what the estimator does when the
    machine's load is taken out (the virtual dials share this host's CPU); and the same
    with the true skew (the asymmetry's share of the error)."""
    out: dict[str, Any] = {}
    for period in SIM_PING_PERIODS_S:
        per: dict[str, Any] = {}
        for drift in DRIFTS:
            figs = [_simulated_one(drift, seed, period) for seed in SIM_SEEDS]
            ideal = [_simulated_one(drift, seed, period, true_skew=True)["rms_us"]
                     for seed in SIM_SEEDS]
            worst = max(figs, key=lambda f: f["rms_us"])
            per[f"{drift:+.0f}ppm"] = {
                "rms_us": round(worst["rms_us"], 1), "mean_us": round(worst["mean_us"], 1),
                "skew_error_ppm": round(max((f["skew_error_ppm"] for f in figs), key=abs), 2),
                "rms_us_median": round(sorted(f["rms_us"] for f in figs)[len(figs) // 2], 1),
                "true_skew_rms_us": round(max(ideal), 1)}
        out[f"ping_every_{period:g}s"] = per
    return out


def _replayed(con: sqlite3.Connection, uid: str, boots: list[Any], drift: float,
              clock: DeviceClock, sync_every: int = 1) -> dict[str, Any]:
    """The last boot's observations (``arrivals``, ``sync_obs``) replayed into ``clock`` in
    receive order, each frame's last sample mapped as it arrives: RMS from 30 s after the
    boot and the skew error at 30 s (no slewing: a few µs from the recorded figures). Two
    estimators on the very same recording; with ``sync_every`` k, only the boot's first
    FAST_SYNCS SYNCs and every k-th after them (a k times longer PING interval, same frames)."""
    epoch_id, boot_id = con.execute(
        "SELECT e.epoch_id, e.boot_id FROM epochs e JOIN dials d USING (dial_id) WHERE d.uid = ? "
        "ORDER BY e.first_host_ns DESC LIMIT 1", (uid,)).fetchone()
    truth = {b.boot_id: b for b in boots}[boot_id]
    arrivals = con.execute("SELECT device_us, host_recv_ns FROM arrivals WHERE epoch_id = ?",
                           (epoch_id,)).fetchall()
    syncs = con.execute("SELECT host_send_ns, device_rx_us, device_tx_us, host_recv_ns FROM "
                        "sync_obs WHERE epoch_id = ? ORDER BY host_recv_ns", (epoch_id,)).fetchall()
    syncs = [x for i, x in enumerate(syncs)
             if i < FAST_SYNCS or (i - FAST_SYNCS) % sync_every == 0]
    events = sorted([(a[1], 0, a) for a in arrivals] + [(s[3], 1, s) for s in syncs],
                    key=lambda e: (e[0], e[1]))
    start = None
    errs: list[int] = []
    skew_err = None
    for h, kind, obs in events:
        if kind:
            clock.add_sync(*obs)
            continue
        clock.add_arrival(*obs)
        est = clock.current()
        true = truth.host_ns(obs[0], near_ns=h)
        start = true if start is None else start
        if est is not None and (true - start) / 1e9 >= STEADY_AFTER_S:
            if skew_err is None:
                skew_err = est.skew_ppm - _true_skew_ppm(drift)
            errs.append(est.to_host_ns(obs[0]) - true)
    return {"rms_us": round(math.sqrt(sum(e * e for e in errs) / len(errs)) / 1000, 1)
            if errs else None, "skew_error_ppm": None if skew_err is None else round(skew_err, 2)}


def _worst(per_seed: dict[str, dict[str, Any]]) -> dict[str, Any]:
    worst: dict[str, Any] = {}
    for drift, seeds in per_seed.items():
        figs = list(seeds.values())

        def pick(key: str, fn: Any, figs: list[dict[str, Any]] = figs) -> Any:
            vals = [f[key] for f in figs if f.get(key) is not None]
            return fn(vals) if vals else None

        worst[drift] = {
            "rms_us": pick("rms_us", max),
            "skew_error_ppm": pick("skew_error_ppm", lambda v: max(v, key=abs)),
            "coverage": pick("coverage", min),
            "coverage_first_5s": pick("coverage_first_5s", min),
            "backwards": pick("backwards", sum),
            # what the worst seed's error is made of (per_seed has every seed's)
            "mean_us": max(figs, key=lambda f: f["rms_us"] or 0.0).get("mean_us"),
            "half_asymmetry_us": max(figs, key=lambda f: f["rms_us"] or 0.0).get(
                "half_asymmetry_us"),
            "arrival_median_us": pick("arrival_median_us", max),
        }
    return worst


class _Pass:
    """One PING interval's recordings: per dial the recorded figures, and the same recording
    replayed through the model as shipped, through the one before dense PINGs counted and
    (the default pass) with its SYNCs thinned to every 2nd and every 10th."""

    def __init__(self, ping_interval_s: float | None) -> None:
        self.interval = ping_interval_s
        self.thin = THINNED if ping_interval_s is None else ()
        self.per_seed: dict[str, dict[str, Any]] = {}
        self.replays: dict[str, dict[str, dict[str, Any]]] = {
            "this_model": {}, "arrivals_slope": {}, **{f"syncs_every_{k}": {} for k in self.thin}}

    def record(self, tmp: Path, seed: int) -> None:
        path, truths, drift_of = _record(seed, tmp, self.interval)
        con = sqlite3.connect(path)
        for uid, boots in truths.items():
            drift = f"{drift_of[uid]:+.0f}ppm"
            self.per_seed.setdefault(drift, {})[f"seed{seed}"] = _dial_figures(
                con, uid, boots, drift_of[uid])
            clocks = [("this_model", DeviceClock(), 1),
                      ("arrivals_slope", DeviceClock(dense_syncs_per_s=math.inf), 1)]
            clocks += [(f"syncs_every_{k}", DeviceClock(), k) for k in self.thin]
            for name, clock, k in clocks:
                self.replays[name].setdefault(drift, {})[f"seed{seed}"] = _replayed(
                    con, uid, boots, drift_of[uid], clock, sync_every=k)
        con.close()

    def figures(self) -> dict[str, Any]:
        return {"worst_seed": _worst(self.per_seed), "per_seed": self.per_seed,
                "replayed_worst_seed": {n: _worst(r) for n, r in self.replays.items()}}


def run() -> dict[str, Any]:
    passes = [_Pass(None), _Pass(DENSE_PING_S), _Pass(SPARSE_PING_S)]
    with tempfile.TemporaryDirectory() as tmp:
        for seed in SEEDS:  # the passes interleaved: the machine's load changes by the minute
            for p in passes:
                p.record(Path(tmp), seed)
    default, dense, sparse = (p.figures() for p in passes)
    ping_s = RunConfig().ping_interval_s
    worst, per_seed = default["worst_seed"], default["per_seed"]
    return {"what": f"virtual dials at ±100 and ±500 ppm, reboot at {REBOOT_S:g} s, 30-bit "
                    f"tick wrap, 2 s stall; {RUN_S:g} s runs, seeds {list(SEEDS)}; steady "
                    f"state = samples {STEADY_AFTER_S:g} s or more after the reboot; worst "
                    f"seed per drift; the daemon's default PINGs (every {ping_s:g} s); "
                    "replayed_worst_seed: each recording replayed through this model, through "
                    "the arrivals' slope alone, and with every k-th SYNC after the first "
                    f"{FAST_SYNCS} (a PING every {ping_s * THINNED[0]:g} s and every "
                    f"{ping_s * THINNED[1]:g} s, the same frames)",
            "worst_seed": worst, "per_seed": per_seed,
            "replayed_worst_seed": default["replayed_worst_seed"],
            "dense_pings": {
                "what": f"the same runs with ping_interval_s = {DENSE_PING_S:g} in the daemon's "
                        "config; replayed_worst_seed: each recording replayed through this model "
                        "and through the arrivals' slope alone",
                **dense},
            "sparse_pings": {
                "what": f"the same runs with ping_interval_s = {SPARSE_PING_S:g} in the daemon's "
                        "config (the default until 2026-12); replayed_worst_seed: each recording "
                        "replayed through this model and through the arrivals' slope alone",
                **sparse},
            "simulated_link": {
                "what": f"the same model on bench/clocksim.py's load-free nominal link, first "
                        f"{RUN_S - REBOOT_S:g} s of a boot, seeds {list(SIM_SEEDS)}, worst seed "
                        "(largest RMS; skew: largest |error|), PINGs every "
                        f"{', '.join(f'{p:g}' for p in SIM_PING_PERIODS_S)} s; true_skew_rms_us: "
                        "the worst seed with the band at the true slope (the asymmetry's bias)",
                **_simulated()}}


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1))
