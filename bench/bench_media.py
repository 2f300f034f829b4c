"""Media time of every sample: our media clock against poll-and-extrapolate (CARMA's method).

Both methods follow the same simulated playback (``ratedial.players.simulate``): a fake player
with an exact ground-truth clock plays a rater's session (play 30 s, pause 3 s, seek back
20 s, 1.5x for 10 s, three seeks 50 ms apart, a seek while paused, a seek near the end and
play-out; 90 s) while a 1 kHz dial records; errors are media time minus the true media time
on the screen, for every sample, pooled over three seeds.

Players (fakes with their measured behaviour):

* ``mpv``: ``time-pos`` pushed once per frame (30 fps) over the IPC socket, 0.5 ms + U(0, 3 ms)
  delivery. Baseline: polls ``get_property time-pos`` at 20 Hz and extrapolates.
* ``vlc``: ``status.json`` answered after 20 ms + U(0, 2 ms); ``position`` refreshed every
  0.25 s, 30 % of refreshes skipped but never two in a row (0.5 s steps, as measured);
  ``time``/``length`` whole seconds. Ours polls at 25 Hz and uses ``position`` x length
  (exact length from ffprobe or the file's ``mvhd`` box; ``vlc_whole_second_length``:
  neither available). Baseline: CARMA,
  polling at 25 Hz and extrapolating VLC's whole-second ``time`` with the PC clock while it
  has not changed (multiplied by the rate, which CARMA does not do).
* ``mpc``: ``variables.html`` answered after 3 ms + U(0, 3 ms), position in ms. Baseline:
  polls at 25 Hz and extrapolates the ms position.

Stable keys per player: ``ratedial`` and ``carma_poll``, each ``median_ms``, ``p99_ms``,
``max_ms`` (the max is a seek: until the next answer shows it, both methods are off by the
seek distance) and ``within_1_frame``.

``mpv_real``: the same figure against a **real headless mpv**, measured the way an outside
observer would (and as ``tests/test_players_real.py`` does): ``ratedial run`` records a
virtual dial and follows mpv while a separate connection (this process) stamps every
``time-pos`` mpv pushes on arrival; the error is the recording's media time at that arrival
minus the reported position (reports during a seek and within 5 ms of a media event are
transitions and left out). ``runs`` holds each run's ``median_ms`` / ``p99_ms`` / ``max_ms``
of |error|; ``pooled`` the same over all reports. Skipped without mpv and ffmpeg.

MPRIS (bench/media_mpris.py), beside VLC over HTTP:

* ``mpris_vlc``: the same keys as the fake players, but the session is played in real time by
  a fake VLC MPRIS service (dbus-fast, VLC's stepped position) on a private D-Bus bus and
  followed by ``ratedial run --player mpris:vlc``; truth is the fake's exact media time.
  Skipped without dbus-fast or dbus-daemon.
* ``vlc_real``: one real headless VLC followed over HTTP and over MPRIS at once (two daemons),
  scored at each step of VLC's position against one independent MPRIS observer, with
  CARMA-style polling of ``status.json`` at the same steps: ``vlc_http``, ``mpris_vlc``,
  ``carma_poll`` (``n``, ``median_ms``, ``p99_ms``, ``max_ms``), per run and pooled. Skipped
  without VLC, dbus-run-session, ffmpeg, dbus-fast or root (VLC runs as nobody).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from media_mpris import run_mpris_fake, run_vlc_side_by_side
from ratedial.players.simulate import SimResult, simulate

HERE = Path(__file__).resolve().parent
REAL_RUNS = 5
VLC_REAL_RUNS = 3

SEEDS = (1, 2, 3)


def _pooled(player: str, **kw: object) -> SimResult:
    pooled = SimResult(player)
    for seed in SEEDS:
        r = simulate(player, seed=seed, **kw)  # type: ignore[arg-type]
        pooled.ratedial += r.ratedial
        pooled.baseline += r.baseline
        pooled.samples += r.samples
        pooled.state_agree += r.state_agree
    return pooled


def run() -> dict[str, object]:
    out: dict[str, object] = {
        "what": "media time error of 1 kHz samples, ms, simulated rater session on fake "
                f"players with exact ground truth (90 s, seeds {list(SEEDS)}; mpris_vlc in "
                "real time over D-Bus)",
    }
    for player, name, kw in (("mpv", "mpv", {}), ("vlc", "vlc", {}), ("mpc", "mpc", {}),
                             ("vlc", "vlc_whole_second_length", {"exact_length": False})):
        r = _pooled(player, **kw)
        ours, base = r.stats("ratedial"), r.stats("baseline")
        out[name] = {
            "ratedial": ours,
            "carma_poll": base,
            "state_agreement": round(r.state_agree / r.samples, 4),
            "median_ratio_carma_over_ratedial": round(base["median_ms"]
                                                      / max(ours["median_ms"], 1e-3), 1),
        }
    out["mpris_vlc"] = run_mpris_fake(SEEDS)
    out["mpv_real"] = run_mpv_real(REAL_RUNS)
    out["vlc_real"] = run_vlc_side_by_side(VLC_REAL_RUNS, _abs_stats)
    return out


def _abs_stats(errors: list[float]) -> dict[str, float | int]:
    e = sorted(abs(x) * 1000 for x in errors)
    if not e:
        return {"n": 0}
    return {"n": len(e), "median_ms": round(e[len(e) // 2], 2),
            "p99_ms": round(e[min(len(e) - 1, int(len(e) * 0.99))], 2), "max_ms": round(e[-1], 2)}


def run_mpv_real(runs: int) -> dict[str, object]:
    """The rater session of tests/test_players_real.py ``runs`` times against real mpv."""
    if not (shutil.which("mpv") and shutil.which("ffmpeg")):
        return {"skipped": "needs mpv and ffmpeg"}
    sys.path.insert(0, str(HERE.parent / "tests"))
    from conftest_media import Daemon, Dial, MpvClient, Timeline, make_test_video
    from test_players_real import compare_mpv, rater_session_mpv

    per_run: list[dict[str, float | int]] = []
    pooled: list[float] = []
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ratedial-bench-media-") as d:
        video = make_test_video(Path(d) / "counter.mp4")
        for k in range(runs):
            tmp = Path(d) / f"run{k}"
            tmp.mkdir()
            sock = str(tmp / "mpv.sock")
            mpv = subprocess.Popen(
                ["mpv", "--vo=null", "--ao=null", "--idle=yes", "--pause", "--no-terminal",
                 "--keep-open=yes", f"--input-ipc-server={sock}", str(video)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            dial = Dial(60)
            daemon = client = None
            try:
                client = MpvClient(sock)
                duration = client.wait_duration()
                daemon = Daemon(tmp, dial.path, f"mpv:{sock}")
                daemon.wait_for("SELECT 1 FROM events WHERE kind = 'media_load'")
                daemon.wait_for("SELECT 1 FROM samples WHERE media_state = 2")
                rater_session_mpv(client, duration)
                daemon.stop()
                rec = daemon.recording
                try:
                    # every report counts here, those mpv told the daemon late included
                    errors, _, _ = compare_mpv(client.log, rec.events("media"),
                                               Timeline(rec.samples()), {})
                except AssertionError as exc:  # a report with no sample near it (a gap)
                    failed.append(f"run {k}: {str(exc)[:160]}")
                    continue
            finally:
                if daemon is not None:
                    daemon.stop()
                if client is not None:
                    client.close()
                mpv.terminate()
                mpv.wait(10)
                dial.close()
            per_run.append(_abs_stats(errors))
            pooled += errors
    if not per_run:
        return {"skipped": f"every run failed: {failed[0]}"}
    return {"what": "|recorded media time - mpv's time-pos| at the arrival of each report at "
                    "an independent observer, ms (real headless mpv, 150 s test video, "
                    f"{runs} runs)",
            "runs": per_run, "pooled": _abs_stats(pooled), "failed_runs": failed,
            "median_range_ms": [min(r["median_ms"] for r in per_run),
                                max(r["median_ms"] for r in per_run)]}


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1))
