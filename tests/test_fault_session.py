"""One scripted fault session: a virtual dial with bit errors, a real mosquitto, an MQTT
subscriber and a headless mpv the daemon follows, through unplug/replug cycles, a reboot, a host
that stops reading, a broker restart, a player crash and restart, a SIGKILL of the daemon, a
disk that fills under the next run, and a last run after space was freed.

Three recordings, in one directory (a real tmpfs as root, so that it can fill):

1. ``1-faults``: unplug cycles, reboot, stall, broker kill and restart, mpv SIGKILLed and
   restarted; then the daemon is SIGKILLed.
2. ``2-diskfull``: a new daemon, same dial and boot; the disk fills (a ballast file): it stops
   with one line and exit code 1.
3. ``3-after``: the ballast is removed and a new daemon runs to its ``--duration``.

What it proves (docs/reliability.md), fault by fault:

* every recording accounts for every index from its first to its last (received, or in exactly
  one gap with the fault's reason); the three recordings never hold the same sample twice;
* player crash: no sample lost (no gap but bit-error ones while mpv was away); the samples
  recorded from ``player_lost`` to ``player_back`` have media state UNKNOWN and no media time;
  after ``player_back`` they are on the new mpv's timeline; both events reach the subscriber;
* SIGKILL: what the file lacks is the dial's indices between the two files, no more than the
  time no daemon ran; what the subscriber has beyond the recordings is the killed run's last
  commit interval;
* disk full: the file on the full disk is intact and keeps everything committed; what is lost
  is the index jump to the next run, no more than the time from the disk filling to the next
  run's start (the failed commit interval plus the restart);
* everything any recording holds reached the subscriber (deduplicated by dial, boot, index).

The short variant (3 unplug cycles, ~35-50 s) runs in ``make test``; the long one (20 cycles)
runs from ``make soak``. Without root the recordings are on the ordinary disk and run 2 ends
by ``--duration`` instead of a full disk.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from brokers import mosquitto
from conftest_media import have, make_test_video
from daemonrun import (
    assert_exact_accounting,
    epoch_indices,
    finish,
    gap_ranges,
    query,
    recorded,
    start_daemon,
    wait_until,
)
from ratedial.virtual import VirtualDial
from subscriber import Subscriber

N_SAMPLES = "SELECT count(*) FROM samples"
N_CONNECTED = "SELECT count(*) FROM events WHERE kind = 'dial_connected'"
# ~80 kbit/s of frames at 1 kHz: 2e-6 is a noisy UART bridge (a few damaged frames a
# minute); native USB has its own CRC and retries and sees far fewer.
BER = 2e-6
COMMIT_SAMPLES = 250 + 150  # commit interval 250 ms at 1 kHz, plus batching and slack
# Disk full: the failed commit (up to 250 ms) and what arrived until the daemon stopped.
DISKFULL_SAMPLES = 2 * 250 + 250
RESTART_SLACK_SAMPLES = 3000  # a new daemon's start-up until it reads the port
PLAYER_OUTAGE_S = 2.0
RESTART_AT_S = 40.0  # the restarted mpv starts here; the first one was near the start
DETECT_NS = 500_000_000  # SIGKILL of mpv -> player_lost (the socket closes with mpv)
FRAME = 1 / 30


def grows(path: Path, by: int, timeout: float = 30.0) -> None:
    n = query(path, N_SAMPLES)[0][0]
    wait_until(path, N_SAMPLES, lambda m: m >= n + by, timeout)


def count(path: Path, sql: str, at_least: int = 1, timeout: float = 30.0) -> None:
    wait_until(path, f"SELECT count(*) FROM ({sql})", lambda n: n >= at_least, timeout)


def events(path: Path, kind: str) -> list[tuple[int, dict[str, Any]]]:
    return [(t, json.loads(d)) for t, d in query(
        path, "SELECT host_ns, data FROM events WHERE kind = ? ORDER BY event_id", kind)]


@contextlib.contextmanager
def recording_dir(where: Path) -> Iterator[bool]:
    """The recordings' directory: a 64 MiB tmpfs when we may mount one (yields True)."""
    where.mkdir(parents=True)
    mounted = False
    if os.geteuid() == 0 and sys.platform == "linux":
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs",
                                  str(where)], capture_output=True, check=False).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(where)], check=False)


def fill(directory: Path) -> int:
    """A ballast file until the file system is full; returns when it was (monotonic ns)."""
    with open(directory / "ballast", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        with contextlib.suppress(OSError):
            while f.write(b"\0" * 4096):
                pass
    return time.monotonic_ns()


def start_mpv(sock: Path, video: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["mpv", "--vo=null", "--ao=null", "--idle=yes", "--no-terminal", "--keep-open=yes",
         f"--input-ipc-server={sock}", *extra, str(video)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def video() -> Iterator[Path]:
    if not have("mpv", "ffmpeg"):
        pytest.skip("the session follows mpv: apt-get install mpv ffmpeg")
    d = Path(tempfile.mkdtemp(prefix="ratedial-session-"))
    yield make_test_video(d / "session.mp4", seconds=240)
    shutil.rmtree(d, ignore_errors=True)


def run_session(tmp_path: Path, video: Path, *, cycles: int) -> None:
    t_start = time.monotonic()
    recdir = tmp_path / "recordings"
    rec1 = recdir / "1-faults.ratedial"
    rec2 = recdir / "2-diskfull.ratedial"
    rec3 = recdir / "3-after.ratedial"
    sock = tmp_path / "mpv.sock"
    player = ("--player", f"mpv:{sock}")
    mpvs: list[subprocess.Popen[bytes]] = []
    with contextlib.ExitStack() as stack:
        small = stack.enter_context(recording_dir(recdir))
        broker = stack.enter_context(mosquitto(tmp_path / "broker"))
        dial = stack.enter_context(VirtualDial(seed=91, ber=BER, subprocess=True))
        stack.callback(lambda: [(p.kill(), p.wait()) for p in mpvs if p.poll() is None])
        mpvs.append(start_mpv(sock, video))
        sub = Subscriber(broker.port)
        stack.callback(sub.stop)
        assert sub.started()

        # --- run 1: dial, link, broker and player faults; then SIGKILL ----------------------
        proc = start_daemon("--port", dial.port, "--broker", broker.url, "--record", str(rec1),
                            *player)
        try:
            wait_until(rec1, N_SAMPLES, lambda n: n >= 2000)
            count(rec1, "SELECT 1 FROM samples WHERE media_state = 1")  # following mpv
            for k in range(cycles):  # unplug and replug
                dial.control("unplug 1")
                wait_until(rec1, N_CONNECTED, lambda n, k=k: n >= k + 2)
                grows(rec1, 500)
            dial.control("reboot")
            wait_until(rec1, "SELECT count(*) FROM epochs", lambda n: n >= 2)
            grows(rec1, 1500)
            dial.control("stall 2")  # the host stops reading: the dial drops what it cannot hold
            time.sleep(2.0)  # the stall itself
            grows(rec1, 1500)
            broker.save()  # the subscriber's session survives the crash (tests/brokers.py)
            broker.kill()  # the broker dies; live samples since the save become backlog
            grows(rec1, 2000)
            broker.start()
            # Everything recorded so far, the outage included, reaches the subscriber. (The
            # set is read once: re-reading the file in the predicate, under the subscriber's
            # lock, starved its message thread in the 20-cycle session. The end of the
            # session checks every recorded sample again.)
            want = recorded(rec1)
            assert sub.wait_for(lambda s: set(s.seen) >= want, 30), len(want - set(sub.seen))
            # the player crashes and is restarted on the same socket
            mpv_killed = time.monotonic_ns()
            mpvs[0].kill()
            mpvs[0].wait()
            count(rec1, "SELECT 1 FROM events WHERE kind = 'player_lost'")
            wait_until(rec1, "SELECT max(host_ns) FROM samples",  # the outage itself
                       lambda t: t >= mpv_killed + PLAYER_OUTAGE_S * 1e9)
            mpv_restarted = time.monotonic_ns()
            mpvs.append(start_mpv(sock, video, f"--start={RESTART_AT_S}"))
            count(rec1, "SELECT 1 FROM events WHERE kind = 'player_back'")
            count(rec1, "SELECT 1 FROM samples WHERE media_state = 1 AND host_ns > "
                        "(SELECT host_ns FROM events WHERE kind = 'player_back')", 500)
            grows(rec1, 1000)
            killed = time.monotonic_ns()
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

        # --- run 2: the disk fills under it -------------------------------------------------
        restarted = time.monotonic_ns()
        proc = start_daemon("--port", dial.port, "--broker", broker.url, "--record", str(rec2),
                            *player, *(() if small else ("--duration", "5")))
        full_ns = None
        try:
            wait_until(rec2, N_SAMPLES, lambda n: n >= 2000)
            before_full = recorded(rec2)
            if small:
                full_ns = fill(recdir)
            out2, err2 = proc.communicate(timeout=60)
            stopped2 = time.monotonic_ns()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        if small:
            assert proc.returncode == 1, err2
            assert "Traceback" not in out2 + err2, err2
            errors = [ln for ln in err2.splitlines() if ln.startswith("ratedial: error:")]
            assert len(errors) == 1, err2
            said = f"ratedial: error: recording stopped: the disk holding {rec2} is full"
            # what SQLite could not fold into the file is in its -wal, and the line says so
            assert errors[0] == said or errors[0].startswith(
                f"{said}; its last part is in {rec2.name}-wal: keep {rec2.name}-wal"), err2
            assert err2.rstrip().splitlines()[-1] == errors[0], err2
            # read while the disk is still full: intact, nothing committed lost
            assert query(rec2, "PRAGMA integrity_check") == [("ok",)]
            assert_exact_accounting(rec2)
            assert before_full <= recorded(rec2)
            (last2_ns,) = query(rec2, "SELECT max(host_ns) FROM samples")[0]
            assert full_ns is not None and full_ns - last2_ns < 500_000_000, \
                (full_ns - last2_ns) / 1e6
            assert "ended_wall_ns" not in dict(query(rec2, "SELECT key, value FROM meta"))
            (recdir / "ballast").unlink()  # the operator frees space and starts again
        else:
            assert proc.returncode == 0, err2

        # --- run 3: continues on a disk with space -----------------------------------------
        restarted3 = time.monotonic_ns()
        proc = start_daemon("--port", dial.port, "--broker", broker.url, "--record", str(rec3),
                            *player, "--duration", "5")
        finish(proc)
        recs = (rec1, rec2, rec3)
        everything = set().union(*(recorded(r) for r in recs))
        sub.wait_for(lambda s: set(s.seen) >= everything, 30)
        seen = set(sub.seen)
        daemon_events = list(sub.payloads["daemon_events"])

        # the recordings' own checks, while the directory still exists
        for path in recs:
            assert_exact_accounting(path)
            assert query(path, "PRAGMA integrity_check") == [("ok",)]
        sets = [recorded(r) for r in recs]
        epochs = [epoch_indices(r) for r in recs]
        gaps1 = [g for gs in gap_ranges(rec1).values() for g in gs]
        gap_reasons = {r for (r,) in query(rec1, "SELECT reason FROM gaps")}
        kinds = [k for (k,) in query(rec1, "SELECT kind FROM events")]
        lost = events(rec1, "player_lost")
        back = events(rec1, "player_back")
        crash_gaps = query(rec1, "SELECT reason FROM gaps WHERE end_host_ns >= ? AND "
                                 "first_host_ns <= ?", mpv_killed, back[0][0] if back else 0)
        dead = query(rec1, "SELECT media_state, media_s, media_id, count(*) FROM samples "
                           "WHERE host_ns >= ? AND host_ns < ? GROUP BY 1, 2, 3",
                     lost[0][0], back[0][0])
        (resumed_at,) = query(rec1, "SELECT min(media_s) FROM samples WHERE media_state = 1 "
                                    "AND host_ns > ?", back[0][0])[0]
        media_ids = {i for (i,) in query(rec1, "SELECT DISTINCT media_id FROM samples "
                                               "WHERE media_state = 1")}
        later_lost = [len(events(r, "player_lost")) for r in (rec2, rec3)]
        later_gaps = {r for p in (rec2, rec3) for (r,) in query(p, "SELECT reason FROM gaps")}
        later_playing = [query(r, "SELECT count(*) FROM samples WHERE media_state = 1")[0][0]
                         for r in (rec2, rec3)]
        ends = [query(r, "SELECT host_ns FROM samples ORDER BY host_ns DESC LIMIT 1")[0][0]
                for r in recs]

    # --- each recording accounts for every index, gaps have the faults' reasons ------------
    reasons = [r for _, _, r in gaps1]
    assert set(reasons) <= {"unplugged", "crc", "device_drop", "link"}, reasons
    assert reasons.count("unplugged") >= cycles, gaps1
    assert "device_drop" in reasons, gaps1  # the stall: the dial reported what it dropped
    assert gap_reasons == set(reasons)
    assert kinds.count("dial_lost") >= cycles
    assert "dial_reboot" in kinds
    assert len(epochs[0]) == 2  # before and after the reboot
    assert later_gaps <= {"crc", "link"}, later_gaps  # runs 2 and 3: only bit errors
    # exactly once across the recordings: no sample is in two files
    assert not sets[0] & sets[1] and not sets[1] & sets[2] and not sets[0] & sets[2]

    # --- player crash: nothing lost, media unknown while it was gone, then followed again ---
    assert [d for _, d in lost] == [{"player": "mpv"}], lost
    assert [d for _, d in back] == [{"player": "mpv"}], back
    assert mpv_killed <= lost[0][0] < mpv_killed + DETECT_NS, (lost[0][0] - mpv_killed) / 1e6
    assert back[0][0] > mpv_restarted
    assert {r for (r,) in crash_gaps} <= {"crc", "link"}, crash_gaps  # no loss of its own
    assert [(s, m, i) for s, m, i, _ in dead] == [(0, None, None)], dead
    assert dead[0][3] >= PLAYER_OUTAGE_S * 1000 * 0.9, dead  # still recorded at ~1 kHz
    assert RESTART_AT_S <= resumed_at < RESTART_AT_S + 10, resumed_at  # the new mpv's time
    assert len(media_ids) == 1 and None not in media_ids, media_ids  # same file, same id
    assert later_lost == [0, 0] and min(later_playing) > 1000, (later_lost, later_playing)
    published = [(e["kind"], e["data"]) for e in daemon_events
                 if e["kind"] in ("player_lost", "player_back")]
    assert ("player_lost", {"player": "mpv"}) in published, published
    assert ("player_back", {"player": "mpv"}) in published, published

    # --- SIGKILL (run 1 -> run 2) and disk full (run 2 -> run 3): what is lost ------------
    (boot,) = set(epochs[1])  # the new runs pick up the same boot of the dial
    assert boot in epochs[0] and set(epochs[2]) == {boot}
    end1, start2 = epochs[0][boot][-1], epochs[1][boot][0]
    end2, start3 = epochs[1][boot][-1], epochs[2][boot][0]
    down1_ms = (restarted - killed) / 1e6
    assert start2 - end1 - 1 < down1_ms + RESTART_SLACK_SAMPLES, (start2 - end1, down1_ms)
    if full_ns is not None:
        down2_ms = (restarted3 - full_ns) / 1e6
        assert start3 - end2 - 1 < down2_ms + 500 + RESTART_SLACK_SAMPLES, \
            (start3 - end2, down2_ms)
        assert (stopped2 - full_ns) / 1e9 < 5.0  # stopped at the next commit, not later

    # --- MQTT: everything recorded arrived; the only extra samples are the lost windows ----
    # A daemon restarted after SIGKILL republishes what the killed run's recording says the
    # broker had not confirmed (docs/mqtt.md): nothing recorded anywhere is missing here.
    unpublished = sorted(everything - seen)
    assert not unpublished, (len(unpublished), unpublished[:3], unpublished[-3:])
    extra = seen - everything
    after_kill = {k for k in extra if k[:2] == boot and end1 < k[2] < start2}
    after_full = {k for k in extra if k[:2] == boot and end2 < k[2] < start3}
    assert extra == after_kill | after_full, sorted(extra - after_kill - after_full)[:5]
    assert len(after_kill) <= COMMIT_SAMPLES, len(after_kill)  # published, never committed
    assert len(after_full) <= DISKFULL_SAMPLES, len(after_full)  # published, commit failed
    assert start2 - end1 - 1 >= len(after_kill) and start3 - end2 - 1 >= len(after_full)
    print(f"fault session ({time.monotonic() - t_start:.0f} s): {len(everything)} samples "
          f"recorded in 3 files, gaps {sorted(set(reasons))}: {len(gaps1)}; player away "
          f"{(back[0][0] - lost[0][0]) / 1e6:.0f} ms, {dead[0][3]} samples media-unknown; "
          f"SIGKILL: {start2 - end1 - 1} indices between files ({down1_ms:.0f} ms down), "
          f"{len(after_kill)} published only; disk full: "
          f"{start3 - end2 - 1 if full_ns else '-'} indices between files, "
          f"{len(after_full)} published only, last commit "
          f"{(full_ns - ends[1]) / 1e6 if full_ns else 0:.0f} ms before full; subscriber "
          f"duplicates {sub.duplicates}, replayed {sub.replayed}, unpublished {len(unpublished)}")


# In make test (about 35-50 s here). It relies on the publisher resuming the killed run's
# unpublished tail (see the assertion on ``unpublished`` above).
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_fault_session_short(tmp_path, video):
    run_session(tmp_path, video, cycles=3)


@pytest.mark.soak
@pytest.mark.timeout(900)
def test_fault_session_long(tmp_path, video):
    run_session(tmp_path, video, cycles=20)
