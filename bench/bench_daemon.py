"""The daemon end to end on virtual dials: clock error, latency to a subscriber, CPU per dial.

One run, one data set: a virtual dial (the real firmware under MicroPython) with 100 ppm
drift, a 30-bit tick that wraps during the run and the jittery USB link model is recorded
by ``ratedial run`` into a real mosquitto, while a subscriber stamps every batch it
receives. From that one recording:

* ``ratedial``: the recorded host times (the online clock model) against the simulator's
  ground truth, after 30 s;
* ``arrival_stamping``: the same samples stamped by their frame's arrival, as naive
  bridges do (from the recording's ``arrivals`` table);
* ``lsl_min_rtt``: an LSL-style min-round-trip offset without drift, fed the recording's
  own PING/SYNC exchanges (``sync_obs``) in the order they happened.

Latency is from a sample's true time (ground truth) to the subscriber receiving it.
CPU is the daemon process's user+system time per dial per second of recording, measured
with 1 and with 4 dials.

``one_sample_frames``: the closed-loop setting, one virtual dial at 1 kHz sending 1-sample
frames (``BATCH 1``, here the virtual dial's ``batch`` option), for ``ONE_S`` seconds: the
frames per second the daemon recorded (the ``arrivals`` table holds one row a frame), its
latency to the subscriber and its CPU per sample, against the default 10-sample frames of
the main run.
"""

from __future__ import annotations

import json
import math
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from brokers import Mosquitto  # noqa: E402
from ratedial.clock_baselines import LslMinRtt  # noqa: E402
from ratedial.virtual import VirtualDial  # noqa: E402

RUN_S = 45
WARMUP_S = 30
ONE_S = 20


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]


def _summary(errs_ns: list[int]) -> dict[str, float]:
    a = [abs(e) / 1000 for e in errs_ns]
    return {"rms_us": round(math.sqrt(sum(x * x for x in a) / len(a)), 1),
            "p50_us": round(_pct(a, 0.5), 1), "p99_us": round(_pct(a, 0.99), 1),
            "max_us": round(max(a), 1), "n": len(a)}


class _Stamper:
    """A paho subscriber that notes when each sample index arrived (host monotonic ns)."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.arrived: dict[tuple[str, int, int], int] = {}
        self.lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-stamper")
        self.client.on_connect = lambda c, *_: c.subscribe("ratedial/v1/dials/+/samples", 0)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        now = time.monotonic_ns()
        p = json.loads(msg.payload)
        with self.lock:
            for k in range(p["n"]):
                self.arrived.setdefault((p["dial"], p["boot"], p["first"] + k), now)

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, clock ticks


def _record(n_dials: int, broker: Mosquitto, workdir: Path, seconds: float,
            stamper: _Stamper | None, batch: int | None = None) -> dict[str, Any]:
    dials = [VirtualDial(seed=100 + k, drift_ppm=100.0, wrap_bits=30,
                         tick_start_us=(1 << 30) - 10_000_000, subprocess=True, batch=batch)
             for k in range(n_dials)]
    for d in dials:
        d.start()
    try:
        path = workdir / f"bench-{n_dials}-{batch or 'default'}.ratedial"
        args = [sys.executable, "-m", "ratedial", "run", "--no-scan", "--broker", broker.url,
                "--record", str(path), "--duration", str(seconds), "--json"]
        for d in dials:
            args += ["--port", d.port]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        cpu = 0.0
        while proc.poll() is None:
            try:
                cpu = _cpu_seconds(proc.pid)
            except (OSError, IndexError):
                break
            time.sleep(0.5)
        proc.communicate()
        truths = {t.uid: t for d in dials for t in d.truth()}
    finally:
        for d in dials:
            d.close(check=False)
    return {"path": path, "cpu_s": cpu, "truths": truths}


def _clock_figures(path: Path, truths: dict[str, Any]) -> dict[str, Any]:
    con = sqlite3.connect(path)
    (uid,) = con.execute("SELECT uid FROM dials LIMIT 1").fetchone()
    truth = truths[uid]
    rows = con.execute("SELECT sample_index, device_us, host_ns FROM samples ORDER BY 1"
                       ).fetchall()
    arrivals = con.execute("SELECT last_index, host_recv_ns FROM arrivals ORDER BY 1"
                           ).fetchall()
    syncs = con.execute("SELECT host_send_ns, device_rx_us, device_tx_us, host_recv_ns "
                        "FROM sync_obs ORDER BY host_recv_ns").fetchall()
    period_ns = 1_000_000
    t_start = rows[0][2]
    true_ns = {i: truth.host_ns(d, near_ns=h) for i, d, h in rows}
    late = {i for i, _, h in rows if h - t_start > WARMUP_S * 1e9}
    ours = [h - true_ns[i] for i, _, h in rows if i in late]
    # arrival stamping: each sample = its frame's arrival minus the samples after it
    arrival_of: dict[int, int] = {}
    prev = -1
    for last, recv in arrivals:
        for i in range(prev + 1, last + 1):
            arrival_of[i] = recv - (last - i) * period_ns
        prev = last
    naive = [arrival_of[i] - true_ns[i] for i, _, _ in rows if i in late and i in arrival_of]
    # LSL-style: the offset known when the sample's frame arrived, no drift
    lsl = LslMinRtt()
    lsl_err = []
    frame_recv = {}
    prev = -1
    for last, recv in arrivals:
        for i in range(prev + 1, last + 1):
            frame_recv[i] = recv
        prev = last
    k = 0
    for i, d, _ in rows:
        recv = frame_recv.get(i)
        if recv is None:
            continue
        while k < len(syncs) and syncs[k][3] <= recv:
            lsl.add_sync(*syncs[k])
            k += 1
        mapped = lsl.to_host_ns(d)
        if mapped is not None and i in late:
            lsl_err.append(mapped - true_ns[i])
    out = {"ratedial": _summary(ours), "arrival_stamping": _summary(naive),
           "lsl_min_rtt": _summary(lsl_err)}
    out["ratio_rms_arrival_vs_ratedial"] = round(
        out["arrival_stamping"]["rms_us"] / out["ratedial"]["rms_us"], 1)
    out["ratio_rms_lsl_vs_ratedial"] = round(
        out["lsl_min_rtt"]["rms_us"] / out["ratedial"]["rms_us"], 1)
    out["device_time_wrapped"] = max(d for _, d, _ in rows) > (1 << 30)
    return out


def _latencies(path: Path, truths: dict[str, Any], stamper: _Stamper,
               skip_s: float = 0.0) -> tuple[list[float], int]:
    """Latency (ms) of every sample the subscriber got, from its true time; and the number
    of samples recorded. ``skip_s``: leave out the first seconds (start-up)."""
    con = sqlite3.connect(path)
    rows = con.execute("SELECT d.uid, e.boot_id, s.sample_index, s.device_us, s.host_ns "
                       "FROM samples s JOIN epochs e USING (epoch_id) JOIN dials d "
                       "ON d.dial_id = s.dial_id").fetchall()
    con.close()
    t0 = min((h for *_, h in rows if h is not None), default=0)
    lat = []
    for uid, boot, i, dev, h in rows:
        got = stamper.arrived.get((uid, boot, i))
        if got is not None and h is not None and h - t0 >= skip_s * 1e9:
            lat.append((got - truths[uid].host_ns(dev, near_ns=h)) / 1e6)
    return lat, len(rows)


def _one_sample_frames(broker: Mosquitto, work: Path, seconds: float) -> dict[str, Any]:
    """One dial at 1 kHz in 1-sample frames: frames/s held, latency, CPU per sample."""
    stamper = _Stamper(broker.port)
    try:
        got = _record(1, broker, work, seconds, stamper, batch=1)
    finally:
        stamper.stop()
    lat, n = _latencies(got["path"], got["truths"], stamper, skip_s=2.0)
    con = sqlite3.connect(got["path"])
    (frames, span_ns), = con.execute("SELECT count(*), max(host_recv_ns) - min(host_recv_ns) "
                                     "FROM arrivals").fetchall()
    (gaps,), = con.execute("SELECT count(*) FROM gaps").fetchall()
    con.close()
    span_s = (span_ns or 0) / 1e9
    return {
        "batch": 1, "seconds": seconds, "samples": n, "frames": frames,
        "frames_per_s": round(frames / span_s, 1) if span_s > 0 else None,
        "samples_per_frame": round(n / frames, 3) if frames else None, "gaps": gaps,
        "latency_to_subscriber_ms": {"p50": round(statistics.median(lat), 2),
                                     "p99": round(_pct(lat, 0.99), 2),
                                     "max": round(max(lat), 2), "n": len(lat)} if lat else None,
        "cpu_percent_of_core": round(100 * got["cpu_s"] / seconds, 1),
        "cpu_us_per_sample": round(got["cpu_s"] / n * 1e6, 1) if n else None,
    }


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "broker", extra="set_tcp_nodelay true\n")  # as in diy/harness
        broker.start()
        try:
            stamper = _Stamper(broker.port)
            one = _record(1, broker, work, RUN_S, stamper)
            stamper.stop()
            clock = _clock_figures(one["path"], one["truths"])
            lat, n1 = _latencies(one["path"], one["truths"], stamper)
            single = _one_sample_frames(broker, work, ONE_S)
            four = _record(4, broker, work, 20, None)
            n4 = sqlite3.connect(four["path"]).execute("SELECT count(*) FROM samples").fetchone()[0]
        finally:
            broker.stop()
    return {
        "what": f"virtual dial, 100 ppm drift, tick wrap, jittery USB link model; {RUN_S} s "
                f"run, errors after {WARMUP_S} s",
        "clock": clock,
        "latency_to_subscriber_ms": {
            "p50": round(statistics.median(lat), 2), "p99": round(_pct(lat, 0.99), 2),
            "max": round(max(lat), 2), "n": len(lat), "received_share": round(len(lat) / n1, 4),
            "note": "true sample time to a QoS 0 subscriber on the same machine, including "
                    "the 10-sample firmware frames, the USB link model and the MQTT publisher "
                    "(batches form only while a publish is in flight, at most [mqtt] batch_ms)"},
        "one_sample_frames": {
            **single,
            "ten_sample_frames": {"cpu_us_per_sample": round(one["cpu_s"] / n1 * 1e6, 1)
                                  if n1 else None,
                                  "latency_p99_ms": round(_pct(lat, 0.99), 2)},
            "note": "the closed-loop setting: BATCH 1 on the dial; every sample leaves the dial "
                    "at once and costs the daemon one frame (decode, clock, record) and, when "
                    "the publisher is idle, one MQTT message"},
        "daemon_cpu": {
            "one_dial_percent_of_core": round(100 * one["cpu_s"] / RUN_S, 1),
            "four_dials_percent_of_core": round(100 * four["cpu_s"] / 20, 1),
            "per_dial_percent_at_1khz": round(100 * four["cpu_s"] / 20 / 4, 1),
            "samples_per_s_four_dials": round(n4 / 20),
        },
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
