"""Shared machinery of bench_peers and bench_capacity: feeders, measured processes, a
latency-stamping subscriber, CPU and memory sampling, a broker.

Everything runs as real processes on this machine: the feeder (``feeder.py``) on real ptys,
``ratedial run`` or the DIY bridge reading them, a real mosquitto, and a paho subscriber in
the bench process. Latency is from a sample's generation time (its device time, which the
feeder takes from ``CLOCK_MONOTONIC``) to the subscriber receiving it.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests"))

CLK_TCK = os.sysconf("SC_CLK_TCK")
MEASURED_CORE = 0  # the process under test
OTHER_CORE = 1  # feeders, broker, subscriber
WARMUP_S = 1.0  # latency statistics skip each stream's first second (connects, HELLO)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]


def lat_stats(lat_ms: list[float]) -> dict[str, float | int | None]:
    if not lat_ms:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None, "n": 0}
    return {"p50_ms": round(statistics.median(lat_ms), 2), "p99_ms": round(pct(lat_ms, 0.99), 2),
            "max_ms": round(max(lat_ms), 2), "n": len(lat_ms)}


def pin(pid: int, core: int) -> bool:
    """Pin a process to one core if the machine has it (False when it cannot)."""
    try:
        if core < (os.cpu_count() or 1):
            os.sched_setaffinity(pid, {core})
            return True
    except OSError:
        pass
    return False


@contextlib.contextmanager
def pinned_self(core: int) -> Iterator[None]:
    before = os.sched_getaffinity(0)
    pin(0, core)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process (all its threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float | None:
    try:
        import psutil

        return float(psutil.Process(pid).memory_info().rss) / 2**20
    except ImportError:
        pass
    except Exception:  # the process is gone
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Sampler:
    """Samples (monotonic s, CPU s, RSS MB) of some processes every ``every_s`` seconds."""

    def __init__(self, pids: dict[str, int], every_s: float = 0.2, rss: bool = False) -> None:
        self.pids = pids
        self.every_s = every_s
        self.rss = rss
        self.rows: dict[str, list[tuple[float, float, float | None]]] = {k: [] for k in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            now = time.monotonic()
            for name, pid in self.pids.items():
                c = cpu_s(pid)
                if c is not None:
                    self.rows[name].append((now, c, rss_mb(pid) if self.rss else None))
            if self._stop.wait(self.every_s):  # the sampling period, not a synchronisation
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def cpu_between(self, name: str, t0: float, t1: float) -> tuple[float, float] | None:
        """CPU seconds used and wall seconds elapsed between the samples nearest t0 and t1."""
        rows = [r for r in self.rows[name] if t0 <= r[0] <= t1]
        if len(rows) < 2:
            return None
        return rows[-1][1] - rows[0][1], rows[-1][0] - rows[0][0]


class Stamper:
    """A paho subscriber that stamps samples on arrival.

    ``kind="ratedial"``: ratedial sample batches (``device_us`` columns), deduplicated by
    batch; ``kind="diy"``: one ``{"dial", "t_us", "count"}`` message per sample. Every
    ``keep_every``-th sample's latency is kept (1: all of them; more for long soaks).
    """

    def __init__(self, port: int, topic: str, kind: str, keep_every: int = 1) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.kind = kind
        self.keep_every = keep_every
        self.cond = threading.Condition()
        self.seen: set[tuple[str, int]] = set()
        self.received = 0
        self.dup = 0
        self.lat: list[tuple[int, int]] = []  # (generation ns, arrival ns)
        self.first_arrival: float | None = None  # time.monotonic() of the first sample
        self.messages = 0
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{kind}-{port}")
        self.client.on_connect = lambda c, *_: c.subscribe(topic, 0)
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self._subscribed = threading.Event()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("bench subscriber could not subscribe")

    def _on_subscribe(self, *_: Any) -> None:
        self._subscribed.set()

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        now = time.monotonic_ns()
        p = json.loads(msg.payload)
        with self.cond:
            if self.first_arrival is None:
                self.first_arrival = now / 1e9
            self.messages += 1
            if self.kind == "diy":
                key, first, times = (p["dial"], p["t_us"]), p["t_us"], [p["t_us"]]
            else:
                key, first, times = (p["dial"], p["first"]), p["first"], p["device_us"]
            if key in self.seen:
                self.dup += len(times)
                return
            self.seen.add(key)
            self.received += len(times)
            k = self.keep_every
            for j, dev_us in enumerate(times):
                if k == 1 or (first + j) % k == 0:
                    self.lat.append((dev_us * 1000, now))
            self.cond.notify_all()

    def wait_count(self, n: int, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.received >= n, timeout)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def kept(self) -> list[tuple[int, float]]:
        """(generation ns, latency ms) of the samples after the warm-up, in generation order."""
        with self.cond:
            rows = sorted(self.lat)
        if not rows:
            return []
        t_start = rows[0][0]
        return [(g, (a - g) / 1e6) for g, a in rows if g - t_start >= WARMUP_S * 1e9]


def latency_of(kept: list[tuple[int, float]]) -> dict[str, Any]:
    """Latency statistics of ``Stamper.kept()``, and their trend (first vs last fifth)."""
    out: dict[str, Any] = lat_stats([x for _, x in kept])
    if len(kept) >= 10:
        fifth = len(kept) // 5
        first = statistics.median(x for _, x in kept[:fifth])
        last = statistics.median(x for _, x in kept[-fifth:])
        out["trend_ms"] = round(last - first, 2)  # > 0 and large: a growing backlog
    else:
        out["trend_ms"] = None
    return out


# Every system under test gets the same broker. Without TCP_NODELAY mosquitto holds a small
# message to a subscriber until the subscriber ACKed the one before (Nagle), and a subscriber
# that has nothing to send delays its ACKs: at 100 messages/s that adds ~10 ms to every
# message; docs/mqtt.md recommends the same setting for low-latency deployments.
BROKER_CONF = "set_tcp_nodelay true\n"


def broker_or_skip(workdir: Path) -> tuple[Any, str | None]:
    """A started mosquitto, or (None, reason) when it cannot run here."""
    try:
        from brokers import Mosquitto

        m = Mosquitto(workdir / "broker", extra=BROKER_CONF)
        m.start()
    except (RuntimeError, OSError, ImportError) as exc:
        return None, f"mosquitto unavailable: {exc}"
    pin(m.proc.pid, OTHER_CORE)
    return m, None


class Feeder:
    """``feeder.py`` as a process pinned to the other core."""

    def __init__(self, fmt: str, dials: int, rate: int, seconds: float,
                 batch: int = 10) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "feeder.py"), "--format", fmt, "--dials", str(dials),
             "--rate", str(rate), "--seconds", str(seconds), "--batch", str(batch)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        pin(self.proc.pid, OTHER_CORE)
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        first = self._lines.get(timeout=30)
        self.ports: list[str] = json.loads(first)["ports"]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)

    def report(self, timeout: float) -> dict[str, Any] | None:
        """The feeder's report once every sample is written (None: not within timeout)."""
        try:
            return dict(json.loads(self._lines.get(timeout=timeout)))
        except queue.Empty:
            return None

    def close(self) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class StreamRun:
    """What one measured run produced."""

    system: str
    dials: int
    rate: int
    seconds: float
    expected: int
    received: int = 0
    duplicates: int = 0
    latency: dict[str, Any] = field(default_factory=dict)
    cpu: dict[str, float | None] = field(default_factory=dict)  # name -> CPU % of one core
    cpu_us_per_sample: dict[str, float | None] = field(default_factory=dict)
    feeder: dict[str, Any] = field(default_factory=dict)
    rss: list[tuple[float, float]] = field(default_factory=list)  # (s since start, MB)
    record: Path | None = None  # the recording ``ratedial run`` wrote
    extra: dict[str, Any] = field(default_factory=dict)
    lat_ms: list[float] = field(default_factory=list, repr=False)  # after the warm-up

    @property
    def loss(self) -> float:
        return round(1 - self.received / self.expected, 6) if self.expected else 0.0

    def summary(self) -> dict[str, Any]:
        return {"dials": self.dials, "rate_hz_per_dial": self.rate, "seconds": self.seconds,
                "expected": self.expected, "received": self.received, "loss": self.loss,
                "duplicates": self.duplicates, "latency_ms": self.latency,
                "cpu_percent_of_core": self.cpu, "cpu_us_per_sample": self.cpu_us_per_sample,
                "feeder": self.feeder, **self.extra}


def _cpu_figures(run: StreamRun, sampler: Sampler, t0: float, t1: float) -> None:
    rate = run.rate * run.dials
    for name in sampler.pids:
        got = sampler.cpu_between(name, t0, t1)
        if got is None or got[1] <= 0:
            run.cpu[name] = run.cpu_us_per_sample[name] = None
            continue
        used, wall = got
        run.cpu[name] = round(100 * used / wall, 1)
        run.cpu_us_per_sample[name] = round(used / (wall * rate) * 1e6, 2)


def run_ratedial(broker: Any, *, dials: int, rate: int, seconds: float, workdir: Path,
                 rss_every_s: float | None = None, tag: str = "",
                 keep_every: int = 1, extra_args: tuple[str, ...] = (),
                 batch: int = 10) -> StreamRun:
    """``ratedial run`` on ``dials`` scripted ptys sending ``batch``-sample frames, pinned to
    the measured core."""
    run = StreamRun("ratedial", dials, rate, seconds, expected=dials * round(rate * seconds))
    run.extra["samples_per_frame"] = batch
    stamper = Stamper(broker.port, "ratedial/v1/dials/+/samples", "ratedial", keep_every)
    feeder = Feeder("frames", dials, rate, seconds, batch)
    record = run.record = workdir / f"ratedial-{tag}{dials}x{rate}b{batch}.ratedial"
    args = [sys.executable, "-m", "ratedial", "run", "--no-scan", "--broker", broker.url,
            "--record", str(record), "--duration", str(seconds + 30), "--json",
            "--daemon-id", f"bench{dials}x{rate}", *extra_args]
    for p in feeder.ports:
        args += ["--port", p]
    # Output to files, not pipes nobody reads while it runs: a full pipe would block the
    # daemon's event loop on its next log line and stall every port.
    out_path, err_path = record.with_suffix(".out"), record.with_suffix(".err")
    with open(out_path, "w") as out_f, open(err_path, "w") as err_f:
        daemon = subprocess.Popen(args, stdout=out_f, stderr=err_f, text=True, cwd=workdir)
    pin(daemon.pid, MEASURED_CORE)
    sampler = Sampler({"daemon": daemon.pid, "broker": broker.proc.pid,
                       "feeder": feeder.proc.pid},
                      every_s=rss_every_s or 0.2, rss=rss_every_s is not None)
    try:
        run.feeder = feeder.report(timeout=seconds + 60) or {"error": "feeder did not finish"}
        t_written = time.monotonic()
        stamper.wait_count(run.expected, timeout=5.0)
        daemon.terminate()  # SIGTERM: the daemon stops cleanly and prints its summary
        daemon.wait(timeout=60)
        out, err = out_path.read_text(), err_path.read_text()
        sampler.stop()
        if daemon.returncode != 0:
            run.extra["daemon_error"] = err.strip().splitlines()[-3:]
        elif err.strip():
            run.extra["daemon_stderr"] = err.strip().splitlines()[-5:]
        # with --json, stdout is the summary alone (status lines go to stderr)
        last = next((ln for ln in reversed(out.splitlines()) if ln.startswith("{")), "")
        try:
            run.extra["daemon_summary"] = json.loads(last)
        except json.JSONDecodeError:
            run.extra["daemon_stdout_tail"] = out.strip()[-300:]
        t_first = stamper.first_arrival
        if t_first is not None:
            _cpu_figures(run, sampler, t_first + WARMUP_S, min(t_written, t_first + seconds))
        if rss_every_s is not None and sampler.rows["daemon"]:
            t00 = sampler.rows["daemon"][0][0]
            run.rss = [(round(t - t00, 1), round(m, 2)) for t, _, m in sampler.rows["daemon"]
                       if m is not None]
    finally:
        _stop(daemon, feeder, stamper)
    return _delivered(run, stamper)


def run_diy(broker: Any, *, rate: int, seconds: float) -> StreamRun:
    """The DIY bridge (``bridge.py``) on one text-line pty, pinned to the measured core."""
    run = StreamRun("diy_paho", 1, rate, seconds, expected=round(rate * seconds))
    stamper = Stamper(broker.port, "diy/dial/#", "diy")
    feeder = Feeder("text", 1, rate, seconds)
    bridge = subprocess.Popen(
        [sys.executable, str(HERE / "bridge.py"), "--port", feeder.ports[0], "--broker-port",
         str(broker.port), "--topic", "diy/dial/0", "--samples", str(run.expected)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pin(bridge.pid, MEASURED_CORE)
    sampler = Sampler({"bridge": bridge.pid, "broker": broker.proc.pid,
                       "feeder": feeder.proc.pid})
    try:
        run.feeder = feeder.report(timeout=seconds + 60) or {"error": "feeder did not finish"}
        t_written = time.monotonic()
        # the bridge ends after the last line (or its 2 s read timeout); then the broker drains
        out, err = bridge.communicate(timeout=seconds + 120)
        stamper.wait_count(run.expected, timeout=5.0)
        sampler.stop()
        if bridge.returncode != 0:
            run.extra["bridge_error"] = err.strip().splitlines()[-3:]
        with contextlib.suppress(json.JSONDecodeError, IndexError):
            run.extra["bridge_summary"] = json.loads(out)
        t_first = stamper.first_arrival
        if t_first is not None:
            _cpu_figures(run, sampler, t_first + WARMUP_S, min(t_written, t_first + seconds))
    finally:
        _stop(bridge, feeder, stamper)
    return _delivered(run, stamper)


def _stop(proc: subprocess.Popen[str], feeder: Feeder, stamper: Stamper) -> None:
    """End a run: the process under test (if it is still going), its feeder, the stamper."""
    if proc.poll() is None:
        proc.kill()
        proc.communicate()
    feeder.close()
    stamper.stop()


def _delivered(run: StreamRun, stamper: Stamper) -> StreamRun:
    """What the subscriber received: counts, duplicates, latency."""
    run.received = stamper.received
    run.duplicates = stamper.dup
    kept = stamper.kept()
    run.latency = latency_of(kept)
    run.lat_ms = [x for _, x in kept]
    return run


def sustainable(run: StreamRun, *, trend_limit_ms: float = 50.0) -> bool:
    """No sample lost and no backlog building up (median latency of the last fifth of the
    stream within ``trend_limit_ms`` of the first fifth's, the feeder never held back)."""
    trend = run.latency.get("trend_ms")
    late = float(run.feeder.get("late_ms_max", 1e9))
    return (run.received >= run.expected and trend is not None and trend <= trend_limit_ms
            and late <= 500.0)


def tempdir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="ratedial-bench-")
