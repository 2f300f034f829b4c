"""Write docs/performance.md and its figures (docs/img/) from bench/results/latest.json.

``python bench/report.py [RESULTS.json]``; ``bench/run.py`` calls it after a full run.
Every section tolerates a benchmark that is missing or skipped (it says so).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DOC = ROOT / "docs" / "performance.md"
IMG = ROOT / "docs" / "img"


def _v(d: Any, *keys: str | int) -> Any:
    for k in keys:
        if isinstance(d, dict):
            d = d.get(k)
        elif isinstance(d, list) and isinstance(k, int) and -len(d) <= k < len(d):
            d = d[k]
        else:
            return None
    return d


def _f(x: Any, nd: int = 1, unit: str = "") -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}{unit}"
    if isinstance(x, float):
        return f"{x:,.{nd}f}{unit}"
    return f"{x}{unit}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    align = ["---"] + ["---:"] * (len(header) - 1)
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return [*out, ""]


def _what(section: dict[str, Any]) -> str:
    w = str(section.get("what", "")).strip()
    return (w[:1].upper() + w[1:] + ("" if w.endswith(".") else ".")) if w else ""


def _skipped(section: Any) -> str | None:
    if section is None:
        return "not run"
    if isinstance(section, dict) and "skipped" in section:
        return str(section["skipped"])
    return None


# --- figures --------------------------------------------------------------------------------

def _plots(res: dict[str, Any]) -> dict[str, str]:
    """Draw the figures that the results allow; return {name: relative path}."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}
    IMG.mkdir(parents=True, exist_ok=True)
    made: dict[str, str] = {}

    steps = _v(res, "capacity", "capacity", "steps") or []
    if steps:
        fig, ax = plt.subplots(figsize=(6.4, 3.8))
        n = [s["dials"] for s in steps]
        ax.plot(n, [s["latency_p99_ms"] for s in steps], "o-", label="p99 latency")
        ax.plot(n, [s["latency_p50_ms"] for s in steps], "s--", label="median latency")
        limit = _v(res, "capacity", "capacity", "latency_limit_ms")
        if limit:
            ax.axhline(limit, color="red", lw=1, ls=":", label=f"limit {limit:g} ms")
        for s in steps:
            if not s["ok"]:
                ax.annotate("failed", (s["dials"], s["latency_p99_ms"] or 0),
                            textcoords="offset points", xytext=(-30, -12), color="red")
        ax.set_xscale("log", base=2)
        ax.set_xticks(n, [str(x) for x in n])
        ax.set_yscale("log")
        ax.set_xlabel("1 kHz dials on one daemon (one core)")
        ax.set_ylabel("sample to subscriber (ms)")
        ax2 = ax.twinx()
        ax2.bar(n, [s["daemon_cpu_percent_of_core"] or 0 for s in steps],
                width=[x * 0.25 for x in n], alpha=0.25, color="gray", label="daemon CPU")
        ax2.set_ylabel("daemon CPU (% of one core)")
        ax2.set_ylim(0, 100)
        ax.set_zorder(ax2.get_zorder() + 1)
        ax.patch.set_visible(False)
        ax.legend(loc="upper left", fontsize=8)
        ax.set_title("Capacity: latency and CPU as dials are added")
        fig.tight_layout()
        fig.savefig(IMG / "capacity_latency.png", dpi=110)
        plt.close(fig)
        made["capacity"] = "img/capacity_latency.png"

    series = _v(res, "capacity", "memory_soak", "rss_series") or []
    if series:
        fig, ax = plt.subplots(figsize=(6.4, 3.4))
        ax.plot([t / 60 for t, _ in series], [m for _, m in series], "-", lw=1.2)
        ax.set_xlabel("minutes")
        ax.set_ylabel("daemon RSS (MB)")
        ax.set_ylim(bottom=0)
        soak = res["capacity"]["memory_soak"]
        between = soak.get("slope_between_steps_mb_per_hour")
        ax.set_title(f"Memory over the soak: {soak['dials']} dials at 1 kHz, slope "
                     f"{_f(soak.get('slope_mb_per_hour_second_half'), 1)} MB/h (2nd half)"
                     + ("" if between is None else f", {_f(between, 1)} between steps"),
                     fontsize=9)
        fig.tight_layout()
        fig.savefig(IMG / "soak_rss.png", dpi=110)
        plt.close(fig)
        made["soak"] = "img/soak_rss.png"

    peers = res.get("peers") or {}
    lines = [(k, _v(peers, k, "ramp")) for k in ("ratedial", "ratedial_1sample", "diy_paho",
                                                  "lsl")]
    if any(r for _, r in lines):
        fig, ax = plt.subplots(figsize=(6.4, 3.8))
        for (name, ramp), style in zip(lines, ("o-", "o--", "s-", "^-"), strict=True):
            if not ramp:
                continue
            ax.plot([s["rate_hz"] for s in ramp], [s["latency_p99_ms"] for s in ramp], style,
                    label=name)
            for s in ramp:
                if not s["sustainable"]:
                    ax.annotate("backlog/loss", (s["rate_hz"], s["latency_p99_ms"] or 1),
                                textcoords="offset points", xytext=(-40, 6), fontsize=8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("samples per second (one stream)")
        ax.set_ylabel("p99 sample to subscriber (ms)")
        ax.legend()
        ax.set_title("Rate ramp: ratedial vs a DIY pyserial+paho bridge vs LSL")
        fig.tight_layout()
        fig.savefig(IMG / "peers_ramp.png", dpi=110)
        plt.close(fig)
        made["peers"] = "img/peers_ramp.png"
    return made


# --- sections -------------------------------------------------------------------------------

def _machine(res: dict[str, Any]) -> list[str]:
    m = res.get("machine") or {}
    out = ["## Machine", ""]
    out += _table(["", "value"], [[k, str(m.get(k, "-"))] for k in
                                  ("cpu", "cores", "python", "platform", "commit", "date")])
    later = sorted(f"{name} (commit {r['ran'].get('commit', '?')}, {r['ran'].get('date', '?')})"
                   for name, r in res.items() if isinstance(r, dict)
                   and isinstance(r.get("ran"), dict) and r["ran"].get("commit") != m.get("commit"))
    if later:
        out += ["", "Run again after the full run, on the same machine: " + "; ".join(later)
                + ". Their figures and ratios come from that later run; the rest from the "
                "full run above.", ""]
    return out


def _codec(res: dict[str, Any]) -> list[str]:
    c = res.get("codec")
    out = ["## Codec: decoding the dial stream", ""]
    if _skipped(c):
        return [*out, f"Skipped: {_skipped(c)}", ""]
    out += [_what(c), ""]
    rows = []
    for k in ("ratedial", "text_lines"):
        r = c.get(k, {})
        rows.append([k, _f(r.get("bytes_per_sample"), 2), _f(r.get("samples_per_s")),
                     _f(r.get("cpu_us_per_sample"), 3)])
    out += _table(["decoder", "bytes/sample", "samples/s", "CPU µs/sample"], rows)
    out += [f"One core decodes {_f(c.get('realtime_dials_one_core_at_1khz'))} dials' worth of "
            "1 kHz frames: decoding is never the bottleneck. The binary frames are a third the "
            "size of text lines and carry a CRC and sample indices.", ""]
    return out


def _clock(res: dict[str, Any]) -> list[str]:
    c = res.get("clock")
    out = ["## Clock: device time to host time", ""]
    if _skipped(c):
        return [*out, f"Skipped: {_skipped(c)}", ""]
    out += [_what(c) + " Errors of every sample's host time against the truth; "
            "`arrival_stamping` is what naive bridges do, `lsl_min_rtt` is LSL's offset "
            "estimate.", ""]
    rows = []
    for scen, r in (c.get("scenarios") or {}).items():
        for est in ("ratedial", "arrival_stamping", "lsl_min_rtt"):
            a = _v(r, est, "after_warmup") or {}
            rows.append([scen if est == "ratedial" else "", est, _f(a.get("rms_us")),
                         _f(a.get("p50_us")), _f(a.get("p99_us")), _f(a.get("max_us"))])
    out += _table(["scenario", "estimator", "RMS µs", "p50 µs", "p99 µs", "max µs"], rows)
    cpu = c.get("cpu") or {}
    out += [f"Cost: {_f(cpu.get('cpu_percent_of_one_core_per_dial_at_1khz'), 2)} % of one "
            "core per 1 kHz dial, refits included.", ""]
    return out


def _clock_extremes(res: dict[str, Any]) -> list[str]:
    c = res.get("clock_extremes")
    out = ["## Clock at the extremes (virtual dials)", ""]
    if not c:
        return [*out, "Not run yet: `.venv/bin/python bench/run.py bench_clock_extremes`.", ""]
    if _skipped(c):
        return [*out, f"Skipped: {_skipped(c)}", ""]
    out += [_what(c) + " RMS is the steady-state error of the recorded host times; "
            "coverage is the share of samples within the stated uncertainty (whole boot, and "
            "its first 5 s); backwards counts recorded times that went back within an epoch "
            "(slewing makes it 0).", ""]
    rows = [[drift, _f(r.get("rms_us")), _f(r.get("skew_error_ppm"), 2),
             _f(r.get("coverage"), 4), _f(r.get("coverage_first_5s"), 4),
             str(r.get("backwards"))]
            for drift, r in (c.get("worst_seed") or {}).items()]
    out += _table(["dial clock", "RMS µs (worst seed)", "skew error ppm at 30 s",
                   "coverage", "coverage, first 5 s", "backwards"], rows)
    seeds = [[drift, seed, _f(f.get("rms_us")), _f(f.get("mean_us")),
              _f(f.get("half_asymmetry_us")), _f(f.get("skew_error_ppm"), 2),
              _f(f.get("arrival_median_us"))]
             for drift, per in (c.get("per_seed") or {}).items() for seed, f in per.items()]
    if seeds and any(r[4] != "-" for r in seeds):
        out += ["Every seed, with what its error is made of: the mean error (a constant bias), "
                "half the difference of the fastest frame's and the fastest PING's delays "
                "(the bias a two-way estimate cannot see), and the median frame latency "
                "(the host's load).", ""]
        out += _table(["dial clock", "seed", "RMS µs", "mean µs", "half asymmetry µs",
                       "skew error ppm", "median frame latency µs"], seeds)
    sim = c.get("simulated_link") or {}
    pings = [k for k in sim if k.startswith("ping_every_")]
    if pings:
        out += [str(sim.get("what", "")) + ".", ""]
        def cell(p: str, drift: str) -> str:
            return f"{_f(_v(sim, p, drift, 'rms_us'))} ({_f(_v(sim, p, drift, 'rms_us_median'))})"

        rows = [[drift, *(cell(p, drift) for p in pings),
                 _f(_v(sim, pings[0], drift, "skew_error_ppm"), 2)] for drift in sim[pings[0]]]
        out += _table(["dial clock", *(f"RMS µs, PING every {p.removeprefix('ping_every_')} "
                                       "(median seed)" for p in pings), "skew error ppm at 30 s"],
                      rows)
    return out


def _serial_io(res: dict[str, Any]) -> list[str]:
    c = res.get("serial_io")
    out = ["## Serial readers: asyncio against a reader thread", ""]
    if not c:
        return [*out, "Not run yet: `.venv/bin/python bench/run.py bench_serial_io`.", ""]
    if _skipped(c):
        return [*out, f"Skipped: {_skipped(c)}", ""]
    out += [_what(c) + " The thread reader is the default on Windows; here both run on "
            "Linux against the same virtual dial.", ""]
    rows = [[io, _f(_v(r, "ratedial", "rms_us")), _f(_v(r, "ratedial", "p99_us")),
             _f(r.get("cpu_percent"), 1, " %")]
            for io, r in (c.get("readers") or {}).items()]
    out += _table(["reader", "clock RMS µs", "p99 µs", "daemon CPU"], rows)
    out += [f"Thread over asyncio, RMS: {_f(c.get('ratio_rms_thread_vs_asyncio'), 2)}x.", ""]
    return out


def _daemon(res: dict[str, Any]) -> list[str]:
    d = res.get("daemon")
    out = ["## Daemon end to end (virtual dial, real firmware)", ""]
    if _skipped(d):
        return [*out, f"Skipped: {_skipped(d)}", ""]
    out += [_what(d), ""]
    rows = [[k, _f(_v(d, "clock", k, "rms_us")), _f(_v(d, "clock", k, "p50_us")),
             _f(_v(d, "clock", k, "p99_us")), _f(_v(d, "clock", k, "max_us"))]
            for k in ("ratedial", "arrival_stamping", "lsl_min_rtt")]
    out += _table(["sample times by", "RMS µs", "p50 µs", "p99 µs", "max µs"], rows)
    lat = d.get("latency_to_subscriber_ms") or {}
    cpu = d.get("daemon_cpu") or {}
    out += _table(["figure", "value"], [
        ["latency to subscriber p50", _f(lat.get("p50"), 1, " ms")],
        ["latency to subscriber p99", _f(lat.get("p99"), 1, " ms")],
        ["share of samples received", _f(lat.get("received_share"), 4)],
        ["daemon CPU, 1 dial", _f(cpu.get("one_dial_percent_of_core"), 1, " % of a core")],
        ["daemon CPU, 4 dials", _f(cpu.get("four_dials_percent_of_core"), 1, " % of a core")],
    ])
    one = d.get("one_sample_frames") or {}
    if one:
        ten = one.get("ten_sample_frames") or {}
        out += ["1-sample frames (`BATCH 1`, the closed-loop setting) on the same virtual dial "
                f"at 1 kHz for {_f(one.get('seconds'), 0)} s: {one.get('note', '')}.", ""]
        out += _table(["figure", "1-sample frames", "10-sample frames (main run)"], [
            ["frames recorded per second", _f(one.get("frames_per_s"), 1), "100 (by design)"],
            ["gaps", _f(one.get("gaps"), 0), ""],
            ["latency to subscriber p50", _f(_v(one, "latency_to_subscriber_ms", "p50"), 1,
                                             " ms"), _f(lat.get("p50"), 1, " ms")],
            ["latency to subscriber p99", _f(_v(one, "latency_to_subscriber_ms", "p99"), 1,
                                             " ms"), _f(ten.get("latency_p99_ms"), 1, " ms")],
            ["daemon CPU per sample (whole process, start-up included)",
             _f(one.get("cpu_us_per_sample"), 1, " µs"),
             _f(ten.get("cpu_us_per_sample"), 1, " µs")],
        ])
    return out


def _peers(res: dict[str, Any]) -> list[str]:
    p = res.get("peers")
    out = ["## Peers: ratedial vs a DIY bridge vs LSL", ""]
    if p is None:
        return [*out, "Not run.", ""]
    out += [_what(p), "", f"*Note:* {p.get('note', '')}", ""]
    rows = []
    for name, proc in (("ratedial", "daemon"), ("ratedial_1sample", "daemon"),
                       ("diy_paho", "bridge")):
        s = p.get(name) or {}
        if _skipped(s):
            rows.append([name, f"skipped: {_skipped(s)}", "", "", "", "", ""])
            continue
        a = s.get("at_1khz") or {}
        best = s.get("max_sustainable_rate_hz")
        best_s = "-" if best is None else (f"{best:,}" if s.get("limit_reached")
                                           else f"≥ {best:,}")
        rows.append([name, _f(_v(a, "latency_ms", "p50_ms"), 2),
                     _f(_v(a, "latency_ms", "p99_ms"), 2),
                     _f(_v(a, "cpu_us_per_sample", proc), 1),
                     _f(_v(a, "cpu_us_per_sample", "broker"), 1), _f(a.get("loss"), 4), best_s])
    lsl = p.get("lsl") or {}
    if _skipped(lsl):
        rows.append(["lsl", f"skipped: {_skipped(lsl)}", "", "", "", "", ""])
    else:
        cpu = lsl.get("cpu_us_per_sample") or {}
        lbest = lsl.get("max_sustainable_rate_hz")
        rows.append(["lsl (outlet → inlet)", _f(_v(lsl, "latency_ms", "p50_ms"), 2),
                     _f(_v(lsl, "latency_ms", "p99_ms"), 2),
                     f"{_f(cpu.get('outlet'), 1)} + inlet {_f(cpu.get('inlet'), 1)}", "no broker",
                     _f(lsl.get("loss"), 4),
                     "-" if lbest is None else (f"{lbest:,}" if lsl.get("limit_reached")
                                                else f"≥ {lbest:,}")])
    out += ["At 1 kHz (one dial):", ""]
    out += _table(["system", "p50 ms", "p99 ms", "CPU µs/sample (process)",
                   "broker CPU µs/sample", "loss", "max sustainable samples/s"], rows)
    ramp_rows = []
    for name in ("diy_paho", "ratedial", "ratedial_1sample", "lsl"):
        for s in _v(p, name, "ramp") or []:
            cpu = s.get("cpu_percent_of_core") or {}
            proc_cpu = next((v for k, v in cpu.items() if k not in ("broker", "inlet")), None)
            ramp_rows.append([name, f"{s['rate_hz']:,}", "yes" if s["sustainable"] else "**no**",
                              _f(s.get("loss"), 4), _f(s.get("latency_p50_ms"), 1),
                              _f(s.get("latency_p99_ms"), 1), _f(proc_cpu, 1)])
    if ramp_rows:
        out += ["Rate ramp (stops at the first step with loss or a growing backlog):", ""]
        out += _table(["system", "samples/s", "sustained", "loss", "p50 ms", "p99 ms",
                       "process CPU %"], ramp_rows)
    r = p.get("ratios") or {}
    out += _table(["ratio", "value"], [[k, _f(v, 2)] for k, v in r.items()
                                       if not k.endswith("note")])
    t = p.get("targets") or {}
    if t:
        out += ["Targets (issue 16), same run:", ""]
        out += _table(["target", "measured", "met"], [
            ["10-sample frames: p99 ≤ 15 ms", _f(t.get("ten_sample_frames_p99_ms"), 2, " ms"),
             _met(t.get("ten_sample_frames_p99_ms"), 15.0)],
            ["1-sample frames: p99 ≤ the DIY bridge's p99"
             + (" (pooled, interleaved runs)" if t.get("one_sample_note") else ""),
             f"{_f(t.get('one_sample_frames_p99_ms'), 2)} vs {_f(t.get('diy_p99_ms'), 2)} ms",
             _met(t.get("one_sample_frames_p99_ms"), t.get("diy_p99_ms"))],
            ["CPU per sample ≤ the DIY bridge's (recording included)",
             f"{_f(t.get('ratedial_cpu_us_per_sample'), 1)} vs "
             f"{_f(t.get('diy_cpu_us_per_sample'), 1)} µs",
             _met(t.get("ratedial_cpu_us_per_sample"), t.get("diy_cpu_us_per_sample"))],
        ])
    if p.get("lsl_vs_ratedial_mqtt"):
        out += [f"LSL against our MQTT path: {p['lsl_vs_ratedial_mqtt'].get('note', '')}", ""]
    return out


def _met(x: Any, limit: Any) -> str:
    if x is None or limit is None:
        return "-"
    return "yes" if x <= limit else "**no**"


def _peers_summary(res: dict[str, Any]) -> str:
    p = res.get("peers") or {}
    ours, diy = _v(p, "ratedial", "at_1khz") or {}, _v(p, "diy_paho", "at_1khz") or {}
    if not ours or not diy:
        return ""

    def best(name: str) -> str:
        b = _v(p, name, "max_sustainable_rate_hz")
        if b is None:
            return "none of the rates tried"
        return f"{b:,} samples/s" + ("" if _v(p, name, "limit_reached") else " (the most tried)")

    pooled = p.get("one_sample_vs_diy_pooled") or {}
    if _v(pooled, "ratedial_1sample", "p99_ms") is not None:
        one_sample = (
            f"With 1-sample frames, pooled over {len(_v(pooled, 'p99_ms_per_run', 'diy_paho'))} "
            f"interleaved runs each, ratedial's median was "
            f"{_f(_v(pooled, 'ratedial_1sample', 'p50_ms'), 2)} ms and its p99 "
            f"{_f(_v(pooled, 'ratedial_1sample', 'p99_ms'), 2)} ms (DIY "
            f"{_f(_v(pooled, 'diy_paho', 'p50_ms'), 2)} and "
            f"{_f(_v(pooled, 'diy_paho', 'p99_ms'), 2)} ms).")
    else:
        one_sample = (
            f"With 1-sample frames ratedial's median was "
            f"{_f(_v(p, 'ratedial_1sample', 'at_1khz', 'latency_ms', 'p50_ms'), 1)} ms and its "
            f"p99 {_f(_v(p, 'ratedial_1sample', 'at_1khz', 'latency_ms', 'p99_ms'), 1)} ms "
            f"(DIY p99 {_f(_v(diy, 'latency_ms', 'p99_ms'), 1)} ms).")

    return (f"Measured here at 1 kHz: the DIY bridge delivered a median sample after "
            f"{_f(_v(diy, 'latency_ms', 'p50_ms'), 1)} ms against ratedial's "
            f"{_f(_v(ours, 'latency_ms', 'p50_ms'), 1)} ms, and spent "
            f"{_f(_v(diy, 'cpu_us_per_sample', 'bridge'), 0)} µs of CPU per sample against "
            f"ratedial's {_f(_v(ours, 'cpu_us_per_sample', 'daemon'), 0)} µs (which includes "
            f"recording). {one_sample} The DIY bridge kept up "
            f"with {best('diy_paho')}, ratedial with {best('ratedial')}.")


def _media(res: dict[str, Any]) -> list[str]:
    m = res.get("media")
    out = ["## Media time: our media clock vs poll-and-extrapolate (CARMA's method)", ""]
    if _skipped(m):
        return [*out, f"Skipped: {_skipped(m)}", ""]
    out += [_what(m), ""]
    rows = []
    for player, r in m.items():
        if not isinstance(r, dict) or "ratedial" not in r:
            continue
        for k in ("ratedial", "carma_poll"):
            s = r.get(k) or {}
            rows.append([player if k == "ratedial" else "", k, _f(s.get("median_ms"), 2),
                         _f(s.get("p99_ms"), 2), _f(s.get("within_1_frame"), 4)])
    out += _table(["player", "method", "median ms", "p99 ms", "within one frame"], rows)
    mpris = m.get("mpris_vlc")
    if _skipped(mpris):
        out += [f"mpris_vlc: skipped: {_skipped(mpris)}", ""]
    elif isinstance(mpris, dict):
        out += ["`mpris_vlc` is not simulated: the same session is played in real time by a fake "
                "VLC MPRIS service (dbus-fast, VLC's stepped position) on a private D-Bus "
                "session bus, followed by `ratedial run --player mpris:vlc` recording a virtual "
                "dial, one run per seed; its CARMA-style baseline polls the same service's "
                "`Position` over the same bus at 25 Hz and extrapolates it. The other rows run "
                "the players' parsers in simulated time.", ""]
    out += ["The maximum (not shown) is a seek in every method: until the player's next "
            "answer shows the seek, every follower is off by the seek distance.", ""]
    return out + _media_real(m)


def _media_real(m: dict[str, Any]) -> list[str]:
    """Real headless players against an independent observer (mpv_real, vlc_real)."""
    out = ["### Real players, against an independent observer", ""]
    rows: list[list[str]] = []
    notes: list[str] = []

    def row(player: str, how: str, s: Any) -> None:
        s = s if isinstance(s, dict) else {}
        rows.append([player, how, _f(s.get("n")), _f(s.get("median_ms"), 2),
                     _f(s.get("p99_ms"), 2), _f(s.get("max_ms"), 2)])

    mpv, vlc = m.get("mpv_real"), m.get("vlc_real")
    if _skipped(mpv):
        notes.append(f"mpv: skipped: {_skipped(mpv)}")
    elif isinstance(mpv, dict):
        row("mpv", "ratedial (JSON IPC)", mpv.get("pooled"))
        notes.append(f"mpv: {_what(mpv)}")
        if mpv.get("failed_runs"):
            notes.append(f"{len(mpv['failed_runs'])} mpv run(s) not scored: an mpv report with "
                         "no recorded sample within 3 ms before it (a gap in the recording on "
                         "the loaded machine): "
                         + ", ".join(str(r).split(":")[0] for r in mpv["failed_runs"]) + ".")
    if _skipped(vlc):
        notes.append(f"VLC: skipped: {_skipped(vlc)}")
    elif isinstance(vlc, dict):
        row("VLC", "ratedial over HTTP (`--player vlc`)", vlc.get("vlc_http"))
        row("", "ratedial over MPRIS (`--player mpris:vlc`)", vlc.get("mpris_vlc"))
        row("", "CARMA-style polling of status.json", vlc.get("carma_poll"))
        notes.append(f"VLC: {_what(vlc)} The step happened somewhere in the observer's poll "
                     f"window (median {_f(vlc.get('poll_window_median_ms'), 1)} ms): each "
                     "figure is uncertain by half of it.")
    if rows:
        out += _table(["player", "followed by", "n", "median ms", "p99 ms", "max ms"], rows)
    return [*out, *(n for note in notes for n in (note, "")), ""][:-1]


def _bound(st: dict[str, Any]) -> str:
    """What bounded a failed capacity step: a growing backlog with a busy core is the
    daemon's CPU (what it got of a shared core), whatever the step recorded."""
    cpu = st.get("daemon_cpu_percent_of_core") or 0.0
    if st.get("no_loss_no_backlog") is False and cpu >= 75:
        return (f"the daemon's core (CPU: {cpu:.0f} % of it, a backlog growing by "
                f"{_f(st.get('latency_trend_ms'), 0)} ms over the step)")
    if cpu >= 60 and str(st.get("bound_by", "")).startswith("not CPU"):
        # The step's own label reads a core under 90 % as "not CPU"; with the core this busy
        # frames wait behind the daemon's own periodic work (profiled with py-spy at 16 and
        # 32 dials: the recorder's commits, 14-25 ms of CPU every 250 ms, and full garbage
        # collections), not behind other processes.
        return (f"the daemon's own pauses (its core {cpu:.0f} % busy; profiled: the "
                "recorder's commits and garbage collections hold frames back)")
    return str(st.get("bound_by"))


def _capacity(res: dict[str, Any], figs: dict[str, str]) -> list[str]:
    c = _v(res, "capacity", "capacity")
    out = ["## Capacity: dials per daemon on one core", ""]
    if c is None or _skipped(c):
        return [*out, f"Skipped: {_skipped(c)}", ""]
    out += [f"Criterion: {c.get('criterion')}. {c.get('note', '')}", ""]
    rows = [[str(s["dials"]), "yes" if s["ok"] else "**no** (" + ", ".join(
        s["failed_because"]) + ")", f"{s['received']:,}/{s['expected']:,}", _f(s["loss"], 4),
        _f(s["latency_p50_ms"], 1), _f(s["latency_p99_ms"], 1),
        _f(s["daemon_cpu_percent_of_core"], 1)] for s in c.get("steps", [])]
    out += _table(["dials", "ok", "received/expected", "loss", "p50 ms", "p99 ms",
                   "daemon CPU %"], rows)
    for st in c.get("steps", []):
        if not st["ok"]:
            out += [f"At {st['dials']} dials the step failed on "
                    f"{' and '.join(st['failed_because'])}: p99 {_f(st['latency_p99_ms'], 1)} ms, "
                    f"loss {_f(st['loss'], 4)}; the daemon recorded "
                    f"{_f(st.get('daemon_recorded'))} of {st['expected']:,} samples."
                    + (f" The daemon's core was not saturated "
                       f"({_f(st['daemon_cpu_percent_of_core'], 1)} %): this limit is not CPU."
                       if (st.get("daemon_cpu_percent_of_core") or 100) < 50 else "")
                    + (f" Bound by: {_bound(st)}." if st.get("bound_by") else ""), ""]
    best = c.get("max_dials_ok")
    out += [f"**One daemon on one core carried {best} dials at 1 kHz** within the criterion"
            + ("" if any(not s["ok"] for s in c.get("steps", []))
               else " (the largest step tried; no limit reached)")
            + ".", ""]
    if c.get("max_dials_no_loss") is not None:
        out += [f"Without the latency limit (no loss, no growing backlog) it carried "
                f"{c['max_dials_no_loss']} dials: beyond the latency limit it still keeps "
                "up, but samples wait longer.", ""]
    if "capacity" in figs:
        out += [f"![capacity]({figs['capacity']})", "",
                f"*What this figure means:* each point is a {_f(c.get('step_s'), 0)}-second "
                "recording with that many "
                "dials streaming at 1 kHz into one daemon that may use only one CPU core. The "
                "lines show how late a sample reaches a program listening on MQTT (median and "
                "the slowest 1 %); the grey bars how busy the daemon's core was. Latency stays "
                "near the frame's own 10 ms while the daemon keeps up (batches form only under "
                "load); the red line is our latency limit, and a step marked failed lost "
                "samples or crossed it.", ""]
    out += ["*Measured and not adopted* (2026-12-04, the same 10 s steps, alternated A/B): "
            "epoll instead of `select` for the daemon's loop, waiting to the microsecond with "
            "a `select` on the epoll descriptor alone (`select` scans every port on every "
            "wake): at 24 dials 72 % of the core against 57-63 % (each writer toggle is an "
            "`epoll_ctl` system call, and every wait two calls); at 48 dials no difference "
            "(19.1-19.3 µs a sample, saturated either way). Allowing 4 or 32 live messages in "
            "flight before batches form (instead of 1): p99 63 and 58 ms against 64 ms at 32 "
            "dials, within the run-to-run spread. What stops the daemon is CPU per sample "
            "(about 20-25 µs at 24-48 dials: recording 20-25 %, MQTT publish and PUBACKs "
            "about 25 %, frame handling and the clock model the rest).", ""]
    out += ["*Adopted since* (2026-12-05, measured in-process and per thread on a loaded "
            "machine, best of 3-4 runs; the table above predates them): the recorder writes "
            "samples and arrivals 64 rows to a statement (sqlite3 lets go of the GIL around "
            "every statement, and on one core each release was a hand-over to the event "
            "loop's thread and back): 2.20 to 1.65 µs a row alone, its share of the daemon's "
            "CPU 19-28 % to 14-24 % at 24-64 dials; without a player, samples are not "
            "annotated again with empty media columns, and the recorder sink matches a "
            "frame's two outputs first: frame handling at 32 dials 45-51 to 40-45 µs a "
            "frame. A regression over about 30 runs per version puts the daemon's cost at "
            "about 73 µs a frame plus 130-140 µs a live MQTT message: capacity is set by how "
            "many frames each message carries, and at 128 dials, with one message a frame, "
            "that is 2-3 times what one core holds within the latency limit. Next, in order: "
            "MQTT PUBLISH packets built and PUBACKs parsed in bulk without paho's "
            "per-message machinery, a fast path in the core for an in-order frame of a "
            "settled boot.", ""]
    return out


def _steps(steps: Any) -> str:
    if steps is None:
        return "-"
    if not steps:
        return "none"
    return ", ".join(f"+{mb:.1f} MB at {t:g} s" for t, mb in steps)


def _verdict(s: dict[str, Any]) -> str:
    """The soak's verdict; results from before ``verdict`` existed had ``flat`` alone."""
    verdict = s.get("verdict") or ("flat" if s.get("flat") else "growing")
    return verdict if verdict.startswith("flat") else f"**{verdict}**"


def _soak(res: dict[str, Any], figs: dict[str, str]) -> list[str]:
    s = _v(res, "capacity", "memory_soak")
    out = ["## Memory soak", ""]
    if s is None or _skipped(s):
        return [*out, f"Skipped: {_skipped(s)}", ""]
    rss = s.get("rss_mb") or {}
    out += _table(["figure", "value"], [
        ["dials x rate x duration", f"{s['dials']} x {s['rate_hz_per_dial']} Hz x "
                                     f"{s['seconds']:g} s"],
        ["samples received/expected", f"{s['received']:,}/{s['expected']:,}"],
        ["RSS start / end / max", f"{_f(rss.get('start'))} / {_f(rss.get('end'))} / "
                                  f"{_f(rss.get('max'))} MB"],
        ["slope, second half", _f(s.get("slope_mb_per_hour_second_half"), 2, " MB/h")],
        ["steps in the second half", _steps(s.get("steps"))],
        ["slope between the steps", _f(s.get("slope_between_steps_mb_per_hour"), 2, " MB/h")],
        ["verdict", _verdict(s) + f" (threshold {s.get('flat_threshold_mb_per_hour')} MB/h)"],
        ["latency p50 / p99", f"{_f(_v(s, 'latency_ms', 'p50_ms'))} / "
                              f"{_f(_v(s, 'latency_ms', 'p99_ms'))} ms"],
        ["daemon CPU", _f(s.get("daemon_cpu_percent_of_core"), 1, " % of a core")],
        ["recording size", _f(s.get("recording_mb"), 1, " MB")],
    ])
    out += [str(s.get("note", "")).rstrip(".") + ".", ""]
    if "soak" in figs:
        out += [f"![soak]({figs['soak']})", "",
                "*What this figure means:* the memory the running daemon holds, sampled every "
                "few seconds while it records. A daemon that leaks would show a line climbing "
                "steadily; a flat line after the first two minutes means a session of any "
                "length needs no more memory than a short one. A step (a moment when the disk "
                "or the core was busy and frames queued up) raises the line once: the memory "
                "is kept for reuse, not lost: a later backlog reuses it, and raises the line "
                "again only when it needs more.", ""]
    return out


def _analysis(res: dict[str, Any]) -> list[str]:
    a = res.get("analysis")
    out = ["## Analysis: loading and aligning a recorded session", ""]
    if a is None or _skipped(a):
        return [*out, f"Skipped: {_skipped(a)}", ""]
    rows = [[k, _f(v, 2)] for k, v in a.items() if k != "wall_s" and not isinstance(v, dict)]
    return out + _table(["figure", "value"], rows)


def _physical(res: dict[str, Any]) -> list[str]:
    p = _v(res, "capacity", "physical_limits")
    out = ["## Physical limits (computed)", ""]
    if p is None:
        return [*out, "Not run.", ""]
    rows = [[r["framing"], _f(r["bytes_per_frame"]), _f(r["bytes_per_sample"], 2),
             _f(r["usb_packets_per_frame"]), _f(r["max_samples_per_s_usb_fs_bulk"]),
             _f(r["max_samples_per_s_uart_115200"])] for r in p.get("framings", [])]
    out += _table(["framing", "bytes/frame", "bytes/sample", "64 B USB packets",
                   "max samples/s, USB FS bulk", "max samples/s, 115200 baud UART"], rows)
    sm = p.get("sampler") or {}
    out += [f"Sampler: period {_f(sm.get('period_ms_default'))} ms by default (rates "
            f"{sm.get('rate_hz_range')} Hz), a frame sent when its last sample is taken (a "
            f"{sm.get('pack_ms')} ms poll on a board without a wake flag), at "
            f"most {sm.get('max_batch')} samples a frame; board defaults "
            f"{json.dumps(sm.get('board_defaults'))}. UART load at 1 kHz: "
            f"{_f(p.get('uart_load_1khz_batch10'), 2)} with our 10-sample frames, "
            f"{_f(p.get('uart_load_1khz_text_t_us_count'), 2)} with `t_us,count` text lines; "
            f"ESP32 default (500 Hz, 20 a frame): {_f(p.get('uart_load_esp32_default'), 2)}. "
            f"{p.get('note', '')}", ""]
    return out


def _ms(us: Any) -> float | None:
    return None if us is None else float(us) / 1000


def _rp2(res: dict[str, Any]) -> list[str]:
    r = res.get("rp2")
    out = ["## The firmware on the RP2040 (emulated, real MicroPython rp2 port)", ""]
    if _skipped(r):
        return [*out, f"Skipped: {_skipped(r)}", ""]
    out += [_what(r) + " Busy = cycles not asleep in WFI/WFE; the sampling interrupt is the "
            "PIO timer's hard IRQ running the sampler (native viper code); the main loop "
            "packs, seals (CRC + COBS) and writes each full frame in a job the interrupt "
            "schedules (micropython.schedule; asyncio only for commands, STATUS and a 100 ms "
            "ticker). Garbage collections are counted by the emulator (entries to the "
            "interpreter's gc_collect), with no help from the firmware. Latency: a frame's "
            "last sample taken to the frame on the host, in emulated time. Cycle counts are "
            "optimistic against a physical Pico "
            "(rp2040js does not model XIP flash cache misses). Baseline: the previous firmware "
            f"(commit {str((r.get('baseline') or {}).get('commit', '?'))[:10]}) in the same run.",
            ""]
    rows = []
    runs = [("", r.get("rates") or {}),
            ("baseline ", ((r.get("baseline") or {}).get("rates")) or {})]
    for tag, rates in runs:
        for hz, x in rates.items():
            rows.append([f"{tag}{hz} Hz", _f(x.get("busy_pct"), 1, " %"),
                         _f(x.get("sampler_irq_pct"), 1, " %"),
                         _f(x.get("main_loop_pct"), 1, " %"), _f(x.get("usb_irq_pct"), 2, " %"),
                         _f(x.get("sampler_us_per_sample"), 0), _f(x.get("dropped_samples")),
                         _f(x.get("overruns")), _f(x.get("jitter_max_us")),
                         _f(x.get("emulated_s"), 0, " s"), _f(x.get("gc_runs")),
                         _f(_ms(x.get("latency_p99_us")), 1, " ms"),
                         _f(x.get("mem_free_min"))])
    out += _table(["rate", "CPU busy", "sampling IRQ", "main loop", "USB IRQ",
                   "IRQ µs/sample", "samples lost", "overruns", "jitter max µs",
                   "emulated time", "garbage collections", "latency p99",
                   "lowest free heap B"], rows)
    out += [f"Free heap after start: {_f(r.get('mem_free_after_start'))} bytes (STATUS "
            "`mem_free`; it falls between garbage collections and recovers). Highest rate with "
            f"CPU to spare: {_f(r.get('highest_rate_with_headroom_hz'))} Hz; highest without "
            f"loss or overruns: {_f(r.get('highest_rate_without_loss_hz'))} Hz (the firmware's "
            "maximum; a rate the CPU cannot keep up with drops frames, reported exactly by DROP "
            "frames). The emulator ran at "
            f"{_f(r.get('emulated_wall_ratio'), 2)}x real time.", ""]
    ratio = r.get("ratio_busy_vs_baseline") or {}
    if ratio:
        out += ["CPU busy against the baseline (ratio, lower is better): " + ", ".join(
            f"{hz} Hz {_f(v, 2)}" for hz, v in ratio.items()) + ".", ""]
    return out


def _wall(res: dict[str, Any]) -> list[str]:
    rows = [[k, _f(v.get("wall_s"), 0, " s")] for k, v in res.items()
            if isinstance(v, dict) and "wall_s" in v]
    total = sum(float(v.get("wall_s", 0)) for v in res.values() if isinstance(v, dict))
    out = ["## Wall time of `make bench`", ""]
    out += _table(["benchmark", "wall time (this run)"], [*rows, ["total", f"{total:,.0f} s"]])
    out += ["Expect about 45-55 minutes on a 2-core machine: the memory soak alone runs 10 "
            "minutes (`RATEDIAL_BENCH_SOAK_S=60 make bench` shortens it), the peer ramps and "
            "capacity steps about 10 s each. Other load on the machine changes latency and "
            "capacity figures; CPU per sample is steadier.", ""]
    return out


def render(res: dict[str, Any]) -> str:
    figs = _plots(res)
    out = [
        "# Performance",
        "",
        "Generated by `bench/report.py` from `bench/results/latest.json`; do not edit by hand.",
        "Reproduce everything with `make bench` (or one benchmark: "
        "`.venv/bin/python bench/run.py bench_peers`, then `.venv/bin/python bench/report.py`).",
        "Comparisons are made in one run, on the same machine and the same data.",
        "",
    ]
    if "peers" in figs:
        out += [f"![peers]({figs['peers']})", "",
                "*What this figure means:* one dial stream is pushed faster and faster through "
                "ratedial and through the serial-to-MQTT bridge a lab typically writes itself. "
                "The y axis is how late the slowest 1 % of samples reach a listening program. "
                "Where a line shoots up, that tool can no longer keep up and samples queue. "
                "ratedial sends each frame as soon as it arrives and groups samples only "
                "while a publish is in flight; with the default 10-sample frames a sample "
                "waits up to 9 ms on the dial, with 1-sample frames (the closed-loop setting) "
                "it does not. " + _peers_summary(res),
                ""]
    for part in (_machine(res), _peers(res), _capacity(res, figs), _soak(res, figs),
                 _physical(res), _rp2(res), _codec(res), _clock(res), _clock_extremes(res),
                 _daemon(res), _serial_io(res), _media(res), _analysis(res), _wall(res)):
        out += part
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str]) -> int:
    src = Path(argv[0]) if argv else HERE / "results" / "latest.json"
    res = json.loads(src.read_text())
    DOC.write_text(render(res))
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
