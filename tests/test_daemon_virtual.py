"""The daemon against virtual dials (real firmware under MicroPython, real ptys), a real
mosquitto and real SQLite: exact accounting through unplugging, reboots, outages and kills."""

from __future__ import annotations

import bisect
import itertools
import json
import math
import os
import signal
import sqlite3
import time

import pytest

from brokers import mosquitto
from daemonrun import (
    assert_exact_accounting,
    epoch_indices,
    finish,
    gap_ranges,
    query,
    start_daemon,
    wait_until,
)
from ratedial.virtual import VirtualDial
from subscriber import Subscriber

pytestmark = pytest.mark.slow

# How long the two long runs last (test_daemon_thread_reader.py runs them again, shorter: what
# they prove about the reader does not need the full length twice)
TWO_DIALS_S = 30
CLOCK_RUN_S, CLOCK_SETTLED_S = 45, 30

N_SAMPLES = "SELECT count(*) FROM samples"


def recorded_set(path) -> set[tuple[str, int, int]]:
    return {(uid, boot, i) for (uid, boot), idx in epoch_indices(path).items() for i in idx}


def test_two_dials_for_30_s_every_sample_recorded_and_published_once(tmp_path):
    with mosquitto(tmp_path / "broker") as broker, \
            VirtualDial(seed=11, drift_ppm=50, subprocess=True) as a, \
            VirtualDial(seed=12, drift_ppm=-30, subprocess=True) as b:
        sub = Subscriber(broker.port)
        assert sub.started()
        path = tmp_path / "two.ratedial"
        proc = start_daemon("--port", a.port, "--port", b.port, "--broker", broker.url,
                            "--record", str(path), "--duration", str(TWO_DIALS_S),
                            "--rater", f"client={a.port}", "--rater", f"therapist={b.port}")
        out, _ = finish(proc)
        rec = recorded_set(path)
        assert sub.wait_for(lambda s: set(s.seen) >= rec, 20), len(rec - set(sub.seen))
        sub.stop()
    assert set(sub.seen) == rec
    assert sub.duplicates == 0
    per_dial = epoch_indices(path)
    assert len(per_dial) == 2
    spans = {(d, b): (lo, hi) for d, b, lo, hi in query(
        path, "SELECT d.uid, e.boot_id, min(s.device_us), max(s.device_us) FROM samples s "
              "JOIN epochs e USING (epoch_id) JOIN dials d ON d.dial_id = e.dial_id "
              "GROUP BY e.epoch_id")}
    # Nothing is lost between the dial and the recording and broker. The dial itself may drop
    # frames when the host is starved for longer than its queue holds (a CI machine running
    # other work: 77 samples once); it says so (DROP), and that is a device_drop gap of exactly
    # what it dropped, nothing else
    assert_exact_accounting(path)
    gaps = gap_ranges(path)
    assert {r for g in gaps.values() for _, _, r in g} <= {"device_drop"}, gaps
    for key, idx in per_dial.items():
        # the whole run on the dial's own clock with a sample at every period of it (1 kHz): a
        # starved simulator catches up late ticks as the hardware timer would have taken them
        lo, hi = spans[key]
        dropped = sum(b - a for a, b, _ in gaps.get(key, []))
        assert hi - lo >= (TWO_DIALS_S - 2) * 1_000_000, (key, (hi - lo) / 1e6, len(idx))
        assert dropped < len(idx) // 100, (key, dropped)  # a stall, not a lossy link
        assert len(idx) + dropped == (hi - lo) // 1000 + 1, (key, len(idx), (hi - lo) / 1e6)
    assert query(path, "SELECT count(*) FROM samples WHERE flags & 2")[0][0] == 0  # no overrun
    raters = dict(query(path, "SELECT rater, uid FROM dials"))
    assert set(raters) == {"client", "therapist"}
    summary = json.loads(out.strip().splitlines()[-1])
    assert sum(d["received"] for d in summary["dials"]) == len(rec)


def test_unplug_and_replug_twice_gives_exact_gaps_and_the_run_goes_on(tmp_path):
    path = tmp_path / "unplug.ratedial"
    with VirtualDial(seed=21, subprocess=True) as dial:
        proc = start_daemon("--port", dial.port, "--broker", "none", "--record", str(path),
                            "--duration", "16")
        for k in (1, 2):
            wait_until(path, N_SAMPLES, lambda n, k=k: n >= 3000 * k)
            dial.control("unplug 1.5")
        out, _ = finish(proc)
    (summary_dial,) = json.loads(out.strip().splitlines()[-1])["dials"]
    assert summary_dial["lost_at_end"] is None  # lost twice, but back each time
    gaps = gap_ranges(path)
    (key,) = epoch_indices(path)
    unplugged = [g for g in gaps.get(key, []) if g[2] == "unplugged"]
    assert len(unplugged) == 2, gaps
    for a, b, _ in unplugged:
        assert 1000 <= b - a <= 6000  # 1.5 s unplugged plus reconnecting, at 1 kHz
    assert_exact_accounting(path)
    kinds = [k for (k,) in query(path, "SELECT kind FROM events ORDER BY event_id")]
    assert kinds.count("dial_lost") == 2
    assert kinds.count("dial_connected") == 3
    assert "frame_rejected" not in kinds  # the replugged dial's frames are honest
    idx = epoch_indices(path)[key]
    assert idx[-1] - idx[0] > 12_000  # the run went on after both unplugs


def test_a_dial_lost_and_not_back_by_the_end_is_in_the_summary(tmp_path):
    """The crash audit (2026-12-05, finding 2): a dial unplugged 2.5 s into a 7 s run and
    never back got "0 missing" and exit 0, and nothing in --json told it."""
    path = tmp_path / "lost.ratedial"
    with VirtualDial(seed=24, subprocess=True) as dial:
        proc = start_daemon("--port", dial.port, "--broker", "none", "--record", str(path),
                            "--rater", f"client={dial.port}")
        wait_until(path, N_SAMPLES, lambda n: n >= 2000)
        dial.control("unplug")  # and never plugged in again
        wait_until(path, "SELECT count(*) FROM events WHERE kind = 'dial_lost'", lambda n: n)
        proc.send_signal(signal.SIGINT)
        out, _ = finish(proc)
    summary = json.loads(out.strip().splitlines()[-1])
    (d,) = summary["dials"]
    (start_ns, lost_ns), = query(
        path, "SELECT (SELECT host_ns FROM events WHERE kind = 'run_start'), "
              "(SELECT host_ns FROM events WHERE kind = 'dial_lost')")
    lost = d["lost_at_end"]
    assert (d["rater"], lost["cause"]) == ("client", "unplugged")
    # the run's start is stamped just before run_start; the loss with dial_lost's own stamp
    assert lost["at_s"] == pytest.approx((lost_ns - start_ns) / 1e9, abs=0.01)
    assert lost["at_s"] >= 2.0  # after the 2000 samples at 1 kHz
    assert 0 < lost["for_s"] <= summary["seconds"] - lost["at_s"] + 0.002
    assert summary["ended"] == "stopped"
    # the time lost at the end has no sample indices: in no gap, not missing (as documented)
    in_gaps = query(path, "SELECT coalesce(sum(end_index - first_index), 0) FROM gaps")[0][0]
    assert d["missing"] == in_gaps < 100  # a device_drop on a starved machine at most
    assert_exact_accounting(path)


def test_a_reboot_starts_a_new_epoch_without_mixing_indices(tmp_path):
    path = tmp_path / "reboot.ratedial"
    with VirtualDial(seed=31, subprocess=True) as dial:
        proc = start_daemon("--port", dial.port, "--broker", "none", "--record", str(path),
                            "--duration", "10")
        wait_until(path, N_SAMPLES, lambda n: n >= 3000)
        dial.control("reboot")
        finish(proc)
    epochs = epoch_indices(path)
    assert len(epochs) == 2, list(epochs)
    (k1, i1), (k2, i2) = sorted(epochs.items(), key=lambda kv: min(
        query(path, "SELECT first_host_ns FROM epochs WHERE boot_id=?", kv[0][1])))
    assert k1[0] == k2[0] and k1[1] != k2[1]  # same dial, two boots
    assert i2[0] < 1000  # the new boot's indices start again near 0 ...
    assert i1[-1] > 2900  # ... while the old boot had gone well past that
    assert_exact_accounting(path)
    kinds = [k for (k,) in query(path, "SELECT kind FROM events")]
    assert "dial_reboot" in kinds
    # device times of one epoch never go backwards
    for (boot,) in query(path, "SELECT boot_id FROM epochs"):
        t = [d for (d,) in query(path, "SELECT s.device_us FROM samples s JOIN epochs e "
                                       "USING (epoch_id) WHERE e.boot_id=? "
                                       "ORDER BY s.sample_index", boot)]
        assert all(b > a for a, b in itertools.pairwise(t))


def test_a_native_usb_reboot_accounts_for_the_new_boot_from_index_0(tmp_path):
    """A Pico's port is gone while it reboots, and it keeps only its newest 256 bytes until
    the port is open again: those first indices of the new boot are a gap (an audit found them
    in no gap, the summary saying 0 missing)."""
    path = tmp_path / "usb-reboot.ratedial"
    with VirtualDial(seed=37, native_usb=True, reenumerate_s=0.5, subprocess=True) as dial:
        proc = start_daemon("--port", dial.port, "--broker", "none", "--record", str(path),
                            "--duration", "9")
        wait_until(path, N_SAMPLES, lambda n: n >= 2000)
        dial.control("reboot")
        out, _ = finish(proc)
    summary = json.loads(out.strip().splitlines()[-1])
    epochs = epoch_indices(path)
    assert len(epochs) == 2, list(epochs)
    _, new_key = sorted(epochs, key=lambda k: query(
        path, "SELECT first_host_ns FROM epochs WHERE boot_id=?", k[1])[0][0])
    gaps = gap_ranges(path)
    assert new_key in gaps, (list(epochs), gaps)
    first, end, reason = gaps[new_key][0]
    assert first == 0
    assert reason == "unplugged" and end == min(epochs[new_key]) > 0  # at least the 0.5 s
    # every index of the new boot from 0 is recorded once or in one gap
    covered = set(epochs[new_key])
    for a, b, _ in gaps[new_key]:
        assert not covered & set(range(a, b))
        covered |= set(range(a, b))
    assert covered == set(range(0, max(epochs[new_key]) + 1))
    assert summary["dials"][0]["missing"] >= end


def test_broker_down_for_10_s_then_every_sample_reaches_the_subscriber(tmp_path):
    with mosquitto(tmp_path / "broker") as broker, VirtualDial(seed=41, subprocess=True) as dial:
        sub = Subscriber(broker.port)
        assert sub.started()
        path = tmp_path / "outage.ratedial"
        proc = start_daemon("--port", dial.port, "--broker", broker.url, "--record", str(path),
                            "--duration", "22")
        assert sub.wait_for(lambda s: len(s.seen) >= 2000, 30)
        # mosquitto keeps sessions only in snapshots: without one, the crash would forget the
        # subscriber's session and the broker would drop the backfill (tests/brokers.py)
        broker.save()
        broker.kill()
        time.sleep(10)  # the outage (scenario length, not synchronisation)
        broker.start()
        _, err = finish(proc)
        # the outage in two lines: down, and back (an audit saw no line when it came back)
        assert "unreachable" in err and "reachable again after" in err, err
        rec = recorded_set(path)
        assert sub.wait_for(lambda s: set(s.seen) >= rec, 30), len(rec - set(sub.seen))
        sub.stop()
    assert set(sub.seen) == rec
    assert sub.replayed >= 9000  # the outage's ~10 s came back from the recording
    assert_exact_accounting(path)
    # the outage is in the recording: one broker_down with the reason, one broker_up after it
    links = [(kind, json.loads(data)) for kind, data in query(
        path, "SELECT kind, data FROM events WHERE kind LIKE 'broker_%' ORDER BY event_id")]
    assert [k for k, _ in links] == ["broker_down", "broker_up"], links
    assert links[0][1]["reason"]
    assert 5 < links[1][1]["down_s"] < 30  # the 10 s outage, less the time to notice it


def test_sigkill_of_the_daemon_loses_at_most_the_commit_interval(tmp_path):
    path = tmp_path / "killed.ratedial"
    with VirtualDial(seed=51, subprocess=True) as dial:
        proc = start_daemon("--port", dial.port, "--broker", "none", "--record", str(path))
        wait_until(path, N_SAMPLES, lambda n: n >= 4000)
        killed_ns = time.monotonic_ns()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    last_ns = con.execute("SELECT max(host_ns) FROM samples").fetchone()[0]
    lost_ms = (killed_ns - last_ns) / 1e6
    # commit interval 250 ms + link and batching latency (~10-20 ms) + scheduling slack
    assert 0 < lost_ms < 250 + 100, lost_ms
    assert_exact_accounting(path)


def test_clock_mapping_after_30_s_beats_arrival_stamping(tmp_path):
    """The accuracy target itself (< 100 us RMS) is a benchmark figure (bench_daemon.py):
    on this 2-core machine it varies from run to run with scheduling. Here: the mapping is
    far better than stamping by arrival on the same data, and never grossly off."""
    path = tmp_path / "clock.ratedial"
    # 100 ppm drift, a 30-bit tick that wraps 5 s into the run, the jittery link model
    with VirtualDial(seed=61, drift_ppm=100, wrap_bits=30, tick_start_us=(1 << 30) - 5_000_000,
                     subprocess=True) as dial:
        proc = start_daemon("--port", dial.port, "--broker", "none", "--record", str(path),
                            "--duration", str(CLOCK_RUN_S))
        finish(proc)
        truth = dial.truth()
    (boot,) = truth
    rows = query(path, "SELECT s.device_us, s.host_ns, s.sample_index FROM samples s")
    t0 = min(h for _, h, _ in rows)
    true = {i: boot.host_ns(d, near_ns=h) for d, h, i in rows}
    late = {i for _, h, i in rows if h - t0 > CLOCK_SETTLED_S * 1e9}
    errs = [h - true[i] for _, h, i in rows if i in late]
    assert len(errs) > 10_000
    rms_us = math.sqrt(sum(e * e for e in errs) / len(errs)) / 1000
    naive = []
    prev = -1
    for last, recv in query(path, "SELECT last_index, host_recv_ns FROM arrivals ORDER BY 1"):
        naive += [recv - (last - i) * 1_000_000 - true[i] for i in range(prev + 1, last + 1)
                  if i in late]
        prev = last
    naive_rms_us = math.sqrt(sum(e * e for e in naive) / len(naive)) / 1000
    print(f"clock RMS after {CLOCK_SETTLED_S} s: {rms_us:.1f} us "
          f"(arrival stamping {naive_rms_us:.0f} us)")
    # never grossly off: within half a sample period even while other work loads both cores
    # (it measured 209 and 220 us so loaded; 14-113 us otherwise)
    assert rms_us < 500, rms_us
    # refits are slewed: recorded host times never go back
    hosts = [h for _, h, _ in sorted(rows, key=lambda r: r[2])]
    assert all(b >= a for a, b in itertools.pairwise(hosts))
    # Frames now leave when full, so arrival stamping itself is ~1 ms off (it was ~3 ms):
    # the mapping must still be several times better on the same data.
    assert naive_rms_us > 5 * rms_us
    # device time kept increasing across the tick wrap
    dev = [d for d, _, _ in sorted(rows, key=lambda r: r[2])]
    assert max(dev) > (1 << 30)
    assert all(b > a for a, b in itertools.pairwise(dev))


def test_a_link_slower_than_the_dial_keeps_every_time_within_its_stated_bound(tmp_path):
    """An audit (2026-12-05): a dial at 2 kHz on a 115200-baud link (an ESP32's UART) fills
    its queue and drops samples; the arrivals' hull rose with the queue, the skew stuck at
    +1000 ppm and 28 s in, times were 30 ms late while the model stated 6 ms. Now every
    recorded time is within the bound of the model in effect when it was mapped."""
    from ratedial.virtual.linkmodel import LinkParams
    from ratedial.virtual.options import DialOptions

    path = tmp_path / "slow.ratedial"
    slow = DialOptions(seed=21, rate_hz=2000, link=LinkParams(bytes_per_frame=115200 / 10000))
    with VirtualDial(slow, subprocess=True) as dial:
        proc = start_daemon("--port", dial.port, "--broker", "none", "--record", str(path),
                            "--duration", "20")
        finish(proc)
        (boot,) = dial.truth()
    drops = query(path, "SELECT count(*) FROM gaps WHERE reason = 'device_drop'")[0][0]
    assert drops > 0  # the link really was too slow
    models = query(path, "SELECT host_ns, ref_device_us, uncertainty_ns, "
                         "skew_uncertainty_ppm FROM clock_models ORDER BY host_ns")
    fitted = [m[0] for m in models]
    rows = query(path, "SELECT device_us, host_ns FROM samples WHERE host_ns IS NOT NULL "
                       "ORDER BY sample_index")
    t0 = rows[0][1]
    checked = worst = 0
    for d, h in rows:
        if h - t0 < 8e9:  # the queue fills in the first seconds
            continue
        k = bisect.bisect_right(fitted, h) - 1
        _, ref, unc, skew_unc = models[k]
        bound = unc + abs(d - ref) * (skew_unc or 0.0) * 1e-3
        err = abs(h - boot.host_ns(d, near_ns=h))
        worst = max(worst, err / bound)
        checked += 1
    assert checked > 5000
    assert worst <= 1.0, worst
