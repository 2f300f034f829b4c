"""How many dials one daemon carries, whether its memory stays flat, and the physical limits.

* ``capacity``: ``ratedial run`` pinned to core 0 records and publishes N scripted 1 kHz dials
  (``bench/diy/feeder.py``: real ptys, real frames, pinned with mosquitto and the subscriber
  to core 1), N = 1, 2, 4, 8, ... until a sample is lost or the p99 latency from a sample's
  generation to the subscriber passes ``LATENCY_LIMIT_MS`` (25 ms: a sample waits up to 9 ms
  for its 10-sample frame; the publisher sends a frame at once when idle and coalesces only
  under load, so the rest is the daemon's own backlog). Each step says what bounded it (the
  daemon's core, the broker or the bench's own core).
* ``memory_soak``: 4 dials for ``RATEDIAL_BENCH_SOAK_S`` seconds (default 600), the daemon's
  RSS sampled every 5 s, judged on the second half (:func:`soak_verdict`): "flat" when the
  slope of a least-squares line is below ``FLAT_MB_PER_H``; "flat between steps" when it is
  above only because of a few steps (memory a transient backlog took, which the allocator
  keeps: issue 16 found the Python heap and SQLite's cache flat under a staircase like
  that) and the slope with the steps taken out is below it; otherwise "growing".
* ``physical_limits``: computed from the real frame sizes (``ratedial.wire.encode_frame``)
  and the firmware's constants (read from ``firmware/dial/app.py``): what USB full-speed CDC
  and a 115200-baud UART carry with our framing and with text lines.

Environment: ``RATEDIAL_BENCH_CAPACITY_S`` (seconds per step, default 10),
``RATEDIAL_BENCH_CAPACITY_MAX`` (largest N tried, default 128), ``RATEDIAL_BENCH_SOAK_S``,
``RATEDIAL_BENCH_SOAK_DIALS`` (default 4).
"""

from __future__ import annotations

import ast
import json
import os
import sys
from itertools import pairwise
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from diy import harness  # noqa: E402
from ratedial.config import MqttConfig  # noqa: E402
from ratedial.wire import Hello, Samples, Status, encode_frame  # noqa: E402

STEP_S = float(os.environ.get("RATEDIAL_BENCH_CAPACITY_S", "10"))
MAX_DIALS = int(os.environ.get("RATEDIAL_BENCH_CAPACITY_MAX", "128"))
SOAK_S = float(os.environ.get("RATEDIAL_BENCH_SOAK_S", "600"))
SOAK_DIALS = int(os.environ.get("RATEDIAL_BENCH_SOAK_DIALS", "4"))
SOAK_EVERY_S = 5.0
FLAT_MB_PER_H = 10.0
STEP_MB = 0.25  # a rise this large between two samples (5 s: 180 MB/h) is part of a step
STEP_SAMPLES = 3  # a step rises over at most this many samples (a backlog of 15 s at most)
MAX_STEPS = 3  # more steps than this in the second half count as growth
SOAK_WARMUP_S = 150.0  # the 90 s clock windows and 4096-frame duplicate checks are full by then
BATCH_MS = MqttConfig().batch_ms
LATENCY_LIMIT_MS = 25.0


def _capacity(broker: Any, work: Path) -> dict[str, Any]:
    """Two figures from one ramp: ``max_dials_ok`` (no loss and p99 within the limit) and
    ``max_dials_no_loss`` (no loss and no growing backlog, whatever the p99): on a shared
    machine the p99 is set by whoever else runs, the throughput by the daemon."""
    steps: list[dict[str, Any]] = []

    def step(n: int) -> tuple[list[str], bool]:
        """One step of ``n`` dials: why it failed (empty: it passed), and whether it kept up
        (no loss, no growing backlog, whatever the p99)."""
        run = harness.run_ratedial(broker, dials=n, rate=1000, seconds=STEP_S, workdir=work,
                                   tag="cap", keep_every=1 if n <= 8 else 4)
        p99 = run.latency.get("p99_ms")
        late = float(run.feeder.get("late_ms_max", 0.0))
        causes = []
        if run.received < run.expected:
            causes.append("loss")
        if p99 is None or p99 > LATENCY_LIMIT_MS:
            causes.append("latency")
        if late > 100:
            causes.append("feeder fell behind (the bench's own core was saturated)")
        d_cpu = run.cpu.get("daemon") or 0.0
        b_cpu = run.cpu.get("broker") or 0.0
        trend = run.latency.get("trend_ms")
        backlog = trend is None or trend > 50.0
        bound = ("the daemon's core (CPU)" if d_cpu >= 90 or (backlog and d_cpu >= 75) else
                 "the bench's other core (feeders, broker, subscriber)" if late > 100 or
                 b_cpu >= 60 else "not CPU: latency of the shared machine")
        flows = (run.received >= run.expected and trend is not None and trend <= 50.0
                 and late <= 100)
        steps.append({"dials": n, "ok": not causes, "failed_because": causes,
                      "no_loss_no_backlog": flows, "latency_trend_ms": trend,
                      "received": run.received, "expected": run.expected, "loss": run.loss,
                      "latency_p50_ms": run.latency.get("p50_ms"), "latency_p99_ms": p99,
                      "latency_max_ms": run.latency.get("max_ms"),
                      "daemon_cpu_percent_of_core": run.cpu.get("daemon"),
                      "daemon_cpu_us_per_sample": run.cpu_us_per_sample.get("daemon"),
                      "broker_cpu_percent_of_core": run.cpu.get("broker"),
                      "feeder_late_ms_max": late,
                      "bound_by": bound if causes else None,
                      "daemon_recorded": sum(d.get("received", 0) for d in _v_dials(run))
                      if _v_dials(run) else None,
                      "daemon_stderr_tail": run.extra.get("daemon_stderr")
                      or run.extra.get("daemon_error")})
        print(f"   capacity {n} dials: {causes or 'ok'} loss={run.loss} "
              f"p99={p99} ms cpu={run.cpu}", flush=True)
        return causes, flows

    # N doubles while steps pass, and past a step that fails on latency alone while it keeps
    # up (for the throughput figure); then one step halfway between the last N that passed
    # and the first that failed (e.g. 24 after 16 and 32).
    best: int | None = None
    best_flow: int | None = None
    first_fail: int | None = None
    n = 1
    while n <= MAX_DIALS:
        causes, flows = step(n)
        if flows:
            best_flow = n if best_flow is None else max(best_flow, n)
        if not causes and first_fail is None:
            best = n
        elif first_fail is None:
            first_fail = n
        if causes and (causes != ["latency"] or not flows):
            break
        n *= 2
    if best is not None and first_fail is not None:
        mid = (best + first_fail) // 2
        if mid not in (best, first_fail):
            causes, flows = step(mid)
            if flows:
                best_flow = mid if best_flow is None else max(best_flow, mid)
            if not causes:
                best = mid
    return {
        "criterion": f"no sample lost and p99 latency (generation to subscriber) <= "
                     f"{LATENCY_LIMIT_MS:g} ms with the default 10-sample frames (the publisher "
                     f"coalesces only under load, at most [mqtt] batch_ms = {BATCH_MS} ms)",
        "latency_limit_ms": LATENCY_LIMIT_MS,
        "step_s": STEP_S,
        "rate_hz_per_dial": 1000,
        "steps": steps,
        "max_dials_ok": best,
        "max_dials_no_loss": best_flow,
        "limit_reached": any(not s["ok"] for s in steps),
        "note": "The daemon alone is pinned to one core; N doubles until a step fails (and on "
                "past steps that keep up but are late, for the no-loss figure), then one step "
                "halfway between the last N that passed and the first that failed is tried; "
                "capacity is the larger of the two that passed. Feeders, mosquitto and the "
                "subscriber share the other core. Other work on the machine, if any, makes "
                "the figures a floor; ratios in the same run are what count.",
        "stopped_at": next(({"dials": s["dials"], "bound_by": s["bound_by"],
                             "failed_because": s["failed_because"]}
                            for s in steps if not s["ok"]), None),
    }


def _v_dials(run: harness.StreamRun) -> list[dict[str, Any]]:
    summary = run.extra.get("daemon_summary")
    return list(summary.get("dials", [])) if isinstance(summary, dict) else []


def _slope_mb_per_h(rows: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (s, MB) rows, in MB per hour (None: too few or no spread)."""
    n = len(rows)
    if n < 3:
        return None
    mx = sum(t for t, _ in rows) / n
    my = sum(m for _, m in rows) / n
    sxx = sum((t - mx) ** 2 for t, _ in rows)
    if sxx <= 0:
        return None
    sxy = sum((t - mx) * (m - my) for t, m in rows)
    return round(sxy / sxx * 3600, 2)


def soak_verdict(rows: list[tuple[float, float]], *, flat_mb_per_h: float = FLAT_MB_PER_H,
                 step_mb: float = STEP_MB, max_steps: int = MAX_STEPS,
                 warmup_s: float = SOAK_WARMUP_S) -> dict[str, Any]:
    """Tell a leak (a line) from an allocator's high-water mark (rare steps, flat between)
    in an RSS series ``rows`` of (s, MB), judged on its second half.

    A rise of ``step_mb`` or more between two samples (consecutive rises merged, over at most
    ``STEP_SAMPLES`` samples) is a *step*: memory a transient backlog took and the allocator
    kept (a longer rise is a line). The *between-steps slope* is the
    least-squares slope of the second half with the steps taken out. Verdicts: ``flat``
    (slope under ``flat_mb_per_h``), ``flat between steps`` (at most ``max_steps`` steps and
    the between-steps slope under it: bounded by the largest backlog, not by the session's
    length), ``growing`` (otherwise), ``too short`` (the second half starts before
    ``warmup_s``, while the clock models' windows and duplicate checks still fill).
    """
    half = rows[len(rows) // 2:]
    slope = _slope_mb_per_h(half)
    steps: list[list[float]] = []  # [time of the first rise, MB, samples it spans]
    level: list[tuple[float, float]] = []  # the second half less the steps before each row
    taken = 0.0
    rising = False
    for (t0, m0), (t1, m1) in pairwise(half):
        rise = m1 - m0
        if rise >= step_mb:
            if rising:
                steps[-1][1] += rise
                steps[-1][2] += 1
            else:
                steps.append([t0, rise, 1])
            taken += rise
        rising = rise >= step_mb
        level.append((t1, m1 - taken))
    # a rise lasting longer than STEP_SAMPLES samples is a line, not a step
    long_rise = any(n > STEP_SAMPLES for _, _, n in steps)
    between = _slope_mb_per_h(half[:1] + level)
    if not half or half[0][0] < warmup_s or slope is None or between is None:
        verdict = "too short"
    elif abs(slope) < flat_mb_per_h:
        verdict = "flat"
    elif len(steps) <= max_steps and not long_rise and abs(between) < flat_mb_per_h:
        verdict = "flat between steps"
    else:
        verdict = "growing"
    return {"verdict": verdict, "slope_mb_per_hour_second_half": slope,
            "slope_between_steps_mb_per_hour": between,
            "steps": [[round(t, 1), round(mb, 2)] for t, mb, _ in steps],
            "rss_mb_second_half_start": half[0][1] if half else None}


def _soak(broker: Any, work: Path) -> dict[str, Any]:
    run = harness.run_ratedial(broker, dials=SOAK_DIALS, rate=1000, seconds=SOAK_S,
                               workdir=work, rss_every_s=SOAK_EVERY_S, tag="soak",
                               keep_every=20)
    rows = run.rss
    record = run.record
    size = record.stat().st_size / 2**20 if record is not None and record.exists() else None
    judged = soak_verdict(rows)
    return {
        "dials": SOAK_DIALS, "rate_hz_per_dial": 1000, "seconds": SOAK_S,
        "expected": run.expected, "received": run.received, "loss": run.loss,
        "latency_ms": run.latency, "daemon_cpu_percent_of_core": run.cpu.get("daemon"),
        "rss_mb": {"start": rows[0][1] if rows else None, "end": rows[-1][1] if rows else None,
                   "max": max(m for _, m in rows) if rows else None},
        **judged,
        "flat_threshold_mb_per_hour": FLAT_MB_PER_H,
        "step_mb": STEP_MB,
        "flat": judged["verdict"] in ("flat", "flat between steps"),
        "recording_mb": round(size, 1) if size is not None else None,
        "rss_series": rows,
        "note": f"RSS every {SOAK_EVERY_S:g} s from the first second of the daemon process "
                "(start = just after its imports), judged on the second half (after the clock "
                "models' 90 s windows and the duplicate checks have filled): its least-squares "
                f"slope, and the same slope with the steps taken out (a rise of {STEP_MB:g} MB "
                "or more within one sample: memory a transient backlog, such as a stalled "
                "disk or a busy core, took and the allocator kept). The Python heap and "
                "SQLite's page cache were measured flat (issue 16), so steps are a high-water "
                "mark; a leak shows as a slope between them",
    }


def _firmware_constants() -> dict[str, Any]:
    """PACK_MS, MAX_BATCH and the per-board defaults, read (not run) from the firmware."""
    src = (HERE.parent / "firmware" / "dial" / "app.py").read_text()
    out: dict[str, Any] = {}
    for node in ast.parse(src).body:
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            continue
        name = getattr(node.targets[0], "id", "")
        value = node.value
        if isinstance(value, ast.Call) and getattr(value.func, "id", "") == "const":
            value = value.args[0]
        if name in ("PACK_MS", "MAX_BATCH", "STATUS_US", "HELLO_US", "FALLBACK"):
            out[name] = ast.literal_eval(value)
    return out


def _physical() -> dict[str, Any]:
    fw = _firmware_constants()
    boards = {k: {"rate_hz": v["rate_hz"], "batch": v["batch"]}
              for k, v in fw.get("FALLBACK", {}).items()}
    status = len(encode_frame(Status(seq=1, time_us=3_600_000_000, samples_taken=3_600_000,
                                     frames_dropped=0, samples_dropped=0, overruns=0,
                                     jitter_max_us=30, mem_free=120_000, queue_depth=1,
                                     queue_capacity=64)))
    hello = len(encode_frame(Hello(seq=1, boot_id=0x12345678, time_us=3_600_000_000,
                                   period_us=1000, rate_hz=1000, batch=10, tick_bits=30,
                                   flags=1, debounce_ms=5, uid=bytes(range(1, 9)),
                                   board="pico", firmware="0.1.0", backend="pio")))
    status_hz = 1e6 / fw.get("STATUS_US", 1_000_000)
    hello_hz = 1e6 / fw.get("HELLO_US", 5_000_000)
    overhead_bps = status * status_hz + hello * hello_hz

    def frame_bytes(batch: int) -> int:
        return len(encode_frame(Samples(
            seq=1, first_index=3_600_000, period_us=1000, counts=tuple(100 + k for k in
                                                                       range(batch)),
            times_us=tuple(3_600_000_000 + 1000 * k + (k % 3) * 7 for k in range(batch)),
            flags=(0,) * batch)))

    text_short = len(b"3600000123,-42\n")  # t_us,count
    text_long = len(b"3600000,3600000123,-42,0\n")  # index,t_us,count,button (bench_codec)
    usb_packet = 64
    usb_bulk_packets_per_frame = 19  # full-speed bulk, the most one 1 ms frame can carry
    usb_bps = usb_packet * usb_bulk_packets_per_frame * 1000
    uart_bps = 115200 // 10  # 8N1: 10 bits per byte

    rows = []
    for batch in sorted({10, 20, *(b["batch"] for b in boards.values())}):
        fb = frame_bytes(batch)
        per_sample = fb / batch
        rows.append({
            "framing": f"ratedial SAMPLES, {batch} samples a frame",
            "bytes_per_frame": fb,
            "bytes_per_sample": round(per_sample, 2),
            "usb_packets_per_frame": -(-fb // usb_packet),
            "max_samples_per_s_usb_fs_bulk": round(usb_bps / per_sample),
            "max_samples_per_s_uart_115200": round((uart_bps - overhead_bps) / per_sample),
        })
    for name, nbytes in (("text line t_us,count", text_short),
                         ("text line index,t_us,count,button", text_long)):
        rows.append({"framing": name, "bytes_per_frame": nbytes, "bytes_per_sample": nbytes,
                     "usb_packets_per_frame": 1,
                     "max_samples_per_s_usb_fs_bulk": round(usb_bps / nbytes),
                     "max_samples_per_s_uart_115200": round(uart_bps / nbytes)})
    pico = boards.get("rp2", {"rate_hz": 1000, "batch": 10})
    esp = boards.get("esp32", {"rate_hz": 500, "batch": 20})
    return {
        "usb_full_speed": {
            "frame_ms": 1, "bulk_max_packet_bytes": usb_packet,
            "bulk_max_bytes_per_s": usb_bps,
            "note": "CDC bulk IN at full speed: at most 19 64-byte packets per 1 ms frame; a "
                    "host polls each IN endpoint at most once per frame in practice, so a frame "
                    "of ours (2 packets) leaves the dial within the next 1 ms frame",
        },
        "uart_115200": {"bytes_per_s": uart_bps, "bits_per_byte": 10,
                        "status_and_hello_overhead_bytes_per_s": round(overhead_bps, 1)},
        "sampler": {"period_ms_default": 1000 / pico["rate_hz"],
                    "rate_hz_range": [50, 2000], "pack_ms": fw.get("PACK_MS"),
                    "max_batch": fw.get("MAX_BATCH"), "board_defaults": boards},
        "framings": rows,
        "frame_latency_floor_ms": {
            name: {"fill_ms": b["batch"] * 1000 / b["rate_hz"], "pack_ms_max": fw.get("PACK_MS"),
                   "usb_frame_ms_max": 1}
            for name, b in (("rp2", pico), ("esp32", esp))},
        "uart_load_esp32_default": round(
            (frame_bytes(esp["batch"]) * esp["rate_hz"] / esp["batch"] + overhead_bps)
            / uart_bps, 3),
        "uart_load_1khz_batch10": round(
            (frame_bytes(10) * 100 + overhead_bps) / uart_bps, 3),
        "uart_load_1khz_text_t_us_count": round(text_short * 1000 / uart_bps, 3),
        "note": "A load above 1 does not fit. ESP32 boards with a USB-UART bridge run at "
                "115200 baud, so their default is 500 Hz in 20-sample frames; 1 kHz in "
                "10-sample frames also fits, a 1 kHz text stream does not.",
    }


def run() -> dict[str, Any]:
    out: dict[str, Any] = {
        "what": "dials per daemon on one core, memory over a soak, physical link limits",
        "physical_limits": _physical(),
    }
    with harness.tempdir() as tmp, harness.pinned_self(harness.OTHER_CORE):
        work = Path(tmp)
        broker, why = harness.broker_or_skip(work)
        if broker is None:
            out["capacity"] = out["memory_soak"] = {"skipped": why}
            return out
        try:
            out["capacity"] = _capacity(broker, work)
            out["memory_soak"] = _soak(broker, work)
        finally:
            broker.stop()
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
