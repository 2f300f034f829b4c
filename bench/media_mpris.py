"""The MPRIS rows of bench_media: VLC over MPRIS beside VLC over HTTP and CARMA-style polling.

* :func:`run_mpris_fake` (``mpris_vlc``): the simulated rater session of the fake-player rows
  (``ratedial.players.simulate.STANDARD_SCRIPT``, 90 s, VLC's stepped position: refreshed
  every 0.25 s of host time, 30 % of refreshes skipped but never two in a row), played **in
  real time** by a fake VLC MPRIS service (dbus-fast) on a private D-Bus session bus
  (``dbus-daemon``), followed by ``ratedial run --player mpris:vlc`` recording a virtual
  dial. Ground truth is exact: the fake's own media time at each sample's host time
  (CLOCK_MONOTONIC, shared by all processes here). The CARMA-style baseline polls the same
  service's ``Position`` at 25 Hz over the same bus and extrapolates it with the PC clock
  while it has not changed. One run per seed.
* :func:`run_vlc_side_by_side` (``vlc_real``): one **real headless VLC** (as nobody, on a
  ``dbus-run-session`` bus of its own) with its HTTP interface and MPRIS at once, followed by
  two daemons at the same time (``--player vlc:...`` over HTTP and ``--player mpris:vlc``),
  each recording its own virtual dial, while an independent observer (this process) polls
  VLC's MPRIS ``Position`` at 25 Hz with send and receipt stamps (as
  ``tests/test_players_mpris.py`` does). At every step of VLC's position (the first poll
  showing a new value) each recording's media time minus VLC's value minus half the poll
  window is the error (VLC's value is exact only at its steps; +- half the window is the
  uncertainty of when the step happened); CARMA-style polling of ``status.json`` (whole
  seconds extrapolated, 25 Hz, by this process) is scored at the same steps.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ratedial.media import PollExtrapolate
from ratedial.players.fake_media import FakeMedia
from ratedial.players.simulate import SCRIPT_END_S, STANDARD_SCRIPT, TRUTH_STATE, SimResult

HERE = Path(__file__).resolve().parent
NS = 1_000_000_000
NAME = "org.mpris.MediaPlayer2.vlc"
PATH = "/org/mpris/MediaPlayer2"
PLAYER = "org.mpris.MediaPlayer2.Player"
TRACK = "/org/videolan/vlc/playlist/2"
POLL_S = 0.04  # the baseline's and the observer's polls (25 Hz)


def _tests_on_path() -> None:
    tests = str(HERE.parent / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)


# --- the fake VLC on a private session bus ----------------------------------------------------


class Truth:
    """The fake's media time as segments (start_ns, value at start, rate, moving, state)."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.segs: list[tuple[float | None, float, bool, str]] = []

    def record(self, start: int, value: float | None, rate: float, moving: bool,
               state: str, duration_s: float) -> None:
        """The media's state from ``start`` on (never before the last segment's start)."""
        if self.starts:
            start = max(start, self.starts[-1])
            predicted = self.at(start, duration_s)
            same = predicted is not None and predicted[1] == state \
                and self.segs[-1][1:3] == (rate, moving) \
                and (predicted[0] == value or (predicted[0] is not None and value is not None
                                               and abs(predicted[0] - value) < 1e-9))
            if same:
                return
            if start == self.starts[-1]:
                self.starts.pop()
                self.segs.pop()
        self.starts.append(start)
        self.segs.append((value, rate, moving, state))

    def at(self, t: int, duration_s: float) -> tuple[float | None, str] | None:
        i = bisect.bisect_right(self.starts, t) - 1
        if i < 0:
            return None
        value, rate, moving, state = self.segs[i]
        if value is None:
            return None, state
        if moving:
            value = min(value + rate * (t - self.starts[i]) / NS, duration_s)
        return value, state


class FakeVlcMpris:
    """A :class:`FakeMedia` in real time behind VLC's MPRIS Player interface (its own asyncio
    loop in a thread), playing ``STANDARD_SCRIPT`` when :meth:`play_script` is called."""

    def __init__(self, address: str, seed: int) -> None:
        self.address = address
        self.media = FakeMedia(duration_s=150.0, fps=30.0, paused=True, t_ns=time.monotonic_ns(),
                               vlc_skip=0.3, seed=seed)
        self.truth = Truth()
        self.polls: list[tuple[int, float | None, bool, float]] = []  # the baseline's answers
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True, name="fake mpris vlc")
        self.thread.start()
        if not self.ready.wait(10) or self.error is not None:
            raise RuntimeError(f"fake MPRIS service did not start: {self.error}")

    # the service -----------------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._start())
        except BaseException as exc:
            self.error = exc
            self.ready.set()
            return
        self.ready.set()
        self.loop.run_forever()
        self.loop.close()

    async def _start(self) -> None:
        from dbus_fast.aio import MessageBus

        self.iface = _player_interface(self)
        self._status = self.status()
        self._rate = self.media.rate
        self.bus = await MessageBus(bus_address=self.address).connect()
        self.bus.export(PATH, self.iface)
        await self.bus.request_name(NAME)
        self.poll_bus = await MessageBus(bus_address=self.address).connect()
        self.step()
        self.tasks = [self.loop.create_task(self._drive())]

    def status(self) -> str:
        m = self.media
        return "Paused" if m.paused or m.eof else "Playing"

    def step(self) -> int:
        """Advance the media to now, note the truth, signal what changed (as VLC does)."""
        t = time.monotonic_ns()
        m = self.media
        m.advance(t)
        start = min(m._t0, t)  # transitions re-anchor the media at their own time
        if self.truth.starts:
            start = max(start, self.truth.starts[-1])
        self.truth.record(start, m.truth(start), m.rate, m.moving, m.state, m.duration_s)
        changed: dict[str, Any] = {}
        if self.status() != self._status:
            self._status = changed["PlaybackStatus"] = self.status()
        if m.rate != self._rate:
            self._rate = changed["Rate"] = m.rate
        if changed:
            self.iface.emit_properties_changed(changed)
        return t

    async def _drive(self) -> None:
        while True:
            self.step()
            await asyncio.sleep(0.002)

    # the script and the baseline ---------------------------------------------------------------

    def play_script(self) -> int:
        """Start the rater's session now and the baseline's polls; returns the start time."""
        t0 = time.monotonic_ns()

        def start() -> None:
            self.tasks += [self.loop.create_task(self._script(t0)),
                           self.loop.create_task(self._poll_baseline())]

        self.loop.call_soon_threadsafe(start)
        return t0

    async def _script(self, t0: int) -> None:
        m = self.media
        try:
            for a in STANDARD_SCRIPT:
                await _sleep_until(t0 + round(a.at_s * NS))
                t = time.monotonic_ns()
                m.advance(t)
                if a.name == "play":
                    m.play(t)
                elif a.name == "pause":
                    m.pause(t)
                elif a.name == "rate":
                    m.set_rate(t, a.arg)
                else:
                    m.seek(t, a.arg if a.name == "seek" else m.reported + a.arg)
                    self.iface.Seeked(round(m.reported * 1e6))
                self.step()
            await _sleep_until(t0 + round(SCRIPT_END_S * NS))
        finally:
            self.done.set()

    async def _poll_baseline(self) -> None:
        from dbus_fast import Message

        get_all = Message(destination=NAME, path=PATH, interface="org.freedesktop.DBus.Properties",
                          member="GetAll", signature="s", body=[PLAYER])
        while not self.done.is_set():
            reply = await self.poll_bus.call(get_all)
            recv = time.monotonic_ns()
            if reply is not None and reply.body:
                p = {k: v.value for k, v in reply.body[0].items()}
                self.polls.append((recv, p["Position"] / 1e6, p["PlaybackStatus"] == "Playing",
                                   float(p["Rate"])))
            await asyncio.sleep(POLL_S)

    async def _stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.bus.disconnect()
        self.poll_bus.disconnect()

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError):
            asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


async def _sleep_until(t_ns: int) -> None:
    await asyncio.sleep(max(0.0, (t_ns - time.monotonic_ns()) / NS))


def _player_interface(fake: FakeVlcMpris) -> Any:
    """VLC 3.0's org.mpris.MediaPlayer2.Player properties as read by ratedial (built lazily:
    dbus-fast is an optional dependency)."""
    from dbus_fast import PropertyAccess, Variant
    from dbus_fast.service import ServiceInterface, dbus_property
    from dbus_fast.service import signal as dbus_signal

    class Player(ServiceInterface):
        def __init__(self) -> None:
            super().__init__(PLAYER)

        @dbus_property(access=PropertyAccess.READ)
        def PlaybackStatus(self) -> "s":  # noqa: F821, UP037
            return fake.status()

        @dbus_property(access=PropertyAccess.READ)
        def Position(self) -> "x":  # noqa: F821, UP037
            fake.step()
            return round(fake.media.vlc_value * 1e6)  # VLC's stepped position

        @dbus_property(access=PropertyAccess.READ)
        def Rate(self) -> "d":  # noqa: F821, UP037
            return fake.media.rate

        @dbus_property(access=PropertyAccess.READ)
        def Metadata(self) -> "a{sv}":  # noqa: F722
            m = fake.media
            return {"mpris:trackid": Variant("o", TRACK),
                    "xesam:url": Variant("s", "file://" + m.path),
                    "mpris:length": Variant("x", round(m.duration_s * 1e6))}

        @dbus_signal()
        def Seeked(self, position_us: int) -> "x":  # noqa: F821, UP037
            return position_us

    return Player()


def _session_bus() -> tuple[subprocess.Popen[str], str]:
    """A private session bus (``dbus-daemon``) and its address."""
    proc = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--print-address"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    address = proc.stdout.readline().strip()
    if not address:
        proc.kill()
        raise RuntimeError("dbus-daemon printed no address")
    return proc, address


def mpris_missing() -> str | None:
    try:
        import dbus_fast  # noqa: F401
    except ImportError:
        return "needs dbus-fast (pip install 'ratedial[mpris]')"
    return None


def run_mpris_fake(seeds: tuple[int, ...]) -> dict[str, object]:
    """The fake-player row for MPRIS: one real-time run per seed, pooled."""
    missing = mpris_missing() or (None if shutil.which("dbus-daemon") else
                                  "needs dbus-daemon (apt-get install dbus-daemon)")
    if missing:
        return {"skipped": missing}
    _tests_on_path()
    from conftest_media import Daemon, Dial

    pooled = SimResult("mpris")
    with tempfile.TemporaryDirectory(prefix="ratedial-bench-mpris-") as d:
        for seed in seeds:
            tmp = Path(d) / f"seed{seed}"
            tmp.mkdir()
            bus, address = _session_bus()
            fake = daemon = dial = None
            try:
                fake = FakeVlcMpris(address, seed)
                dial = Dial(SCRIPT_END_S + 30)
                daemon = Daemon(tmp, dial.path, "mpris:vlc",
                                env={"DBUS_SESSION_BUS_ADDRESS": address})
                daemon.wait_for("SELECT 1 FROM events WHERE kind = 'media_load'")
                daemon.wait_for("SELECT 1 FROM samples WHERE media_state = 2")
                t0 = fake.play_script()
                if not fake.done.wait(SCRIPT_END_S + 30):
                    raise RuntimeError("the fake's script did not finish")
                daemon.stop()
                if daemon.proc.returncode != 0:
                    raise RuntimeError(f"daemon failed: {daemon.output()[-500:]}")
                _score(pooled, daemon.recording.samples(), fake, t0)
            finally:
                if daemon is not None:
                    daemon.stop()
                if fake is not None:
                    fake.close()
                if dial is not None:
                    dial.close()
                bus.terminate()
                bus.wait(10)
    ours, base = pooled.stats("ratedial"), pooled.stats("baseline")
    return {"ratedial": ours, "carma_poll": base,
            "state_agreement": round(pooled.state_agree / max(pooled.samples, 1), 4),
            "median_ratio_carma_over_ratedial": round(base["median_ms"]
                                                      / max(ours["median_ms"], 1e-3), 1),
            "samples": pooled.samples,
            "how": "real time: fake VLC MPRIS service (dbus-fast) on a private dbus-daemon, "
                   f"ratedial run --player mpris:vlc, virtual dial; one run per seed {list(seeds)}"}


def _score(r: SimResult, samples: list[tuple[int, float | None, int, int | None]],
           fake: FakeVlcMpris, t0: int) -> None:
    """Every sample taken during the script (after its first 0.5 s, as the simulation)
    against the fake's truth; the baseline replayed from its poll log at the same times."""
    base = PollExtrapolate()
    polls = iter(fake.polls)
    nxt = next(polls, None)
    lo, hi = t0 + NS // 2, t0 + round(SCRIPT_END_S * NS)
    for host_ns, media_s, state, _ in samples:
        if not lo <= host_ns < hi:
            continue
        while nxt is not None and nxt[0] <= host_ns:
            base.poll(nxt[0], nxt[1], playing=nxt[2], rate=nxt[3])
            nxt = next(polls, None)
        got = fake.truth.at(host_ns, fake.media.duration_s)
        if got is None:
            continue
        truth, truth_state = got
        r.samples += 1
        r.state_agree += state == TRUTH_STATE[truth_state]
        if truth is None:
            continue
        if media_s is not None:
            r.ratedial.append(media_s - truth)
        b = base.at(host_ns)
        if b is not None:
            r.baseline.append(b - truth)


# --- real VLC: HTTP and MPRIS in one player, two daemons, one observer ----------------------


def _edge_errors(log: list[tuple[int, int, dict[str, Any]]], timeline: Any,
                 transitions: list[int]) -> tuple[list[float], list[tuple[int, float, float]]]:
    """(recording - VLC's value - half the window) at each step, and the steps themselves
    as (receipt, VLC's value, window) (the method of tests/test_players_mpris.py)."""
    prev: tuple[int, float] | None = None
    errors: list[float] = []
    steps: list[tuple[int, float, float]] = []
    for _, recv, s in log:
        if s.get("PlaybackStatus") != "Playing":
            prev = None
            continue
        p = s["Position"] / 1e6
        rate = float(s["Rate"])
        near = any(abs(recv - tt) < 150_000_000 for tt in transitions)
        got = timeline.at(recv, rate)
        if prev is not None and p != prev[1] and not near:
            window = rate * (recv - prev[0]) / 1e9
            steps.append((recv, p, window))
            if got is not None and got[0] is not None:
                errors.append(got[0] - p - window / 2)
        prev = (recv, p)
    return errors, steps


def _carma_at(http_log: list[tuple[int, int, dict[str, Any]]],
              steps: list[tuple[int, float, float]]) -> list[float]:
    """CARMA's extrapolated whole-second ``time`` at each step, scored as the recordings."""
    base = PollExtrapolate()
    polls = sorted((recv, s) for _, recv, s in http_log)
    i = 0
    out: list[float] = []
    for recv, p, window in steps:
        while i < len(polls) and polls[i][0] <= recv:
            r, s = polls[i]
            base.poll(r, float(s["time"]) if s.get("state") != "stopped" else None,
                      playing=s.get("state") == "playing", rate=float(s.get("rate", 1.0)))
            i += 1
        b = base.at(recv)
        if b is not None:
            out.append(b - p - window / 2)
    return out


def run_vlc_side_by_side(runs: int, abs_stats: Any) -> dict[str, object]:
    """Real VLC over HTTP and over MPRIS in the same runs, against one observer."""
    missing = mpris_missing()
    if missing is None and not all(shutil.which(p) for p in ("cvlc", "dbus-run-session",
                                                              "ffmpeg")):
        missing = ("needs cvlc, dbus-run-session and ffmpeg (apt-get install vlc-bin "
                   "vlc-plugin-base dbus-bin ffmpeg)")
    if missing is None and os.geteuid() != 0:
        missing = "starting VLC as user nobody needs root"
    if missing:
        return {"skipped": missing}
    _tests_on_path()
    from conftest_media import Daemon, Dial, Timeline, make_test_video
    from ratedial.players.identity import probe
    from test_players_mpris import BusClient, VlcOnBus, rater_session, wait_name
    from test_players_real import VlcPoller

    pooled: dict[str, list[float]] = {"vlc_http": [], "mpris_vlc": [], "carma_poll": []}
    per_run: list[dict[str, object]] = []
    windows: list[float] = []
    d = Path(tempfile.mkdtemp(prefix="ratedial-bench-vlcboth-"))
    try:
        d.chmod(0o755)
        video = make_test_video(d / "counter.mp4", seconds=60.0)
        video.chmod(0o644)
        duration, _ = probe(str(video))
        assert duration is not None
        for k in range(runs):
            tmp = Path(d) / f"run{k}"
            (tmp / "http").mkdir(parents=True)
            (tmp / "mpris").mkdir()
            vlc = VlcOnBus(video, "bench-password")
            client = poller = None
            dials: list[Any] = []
            daemons: list[Any] = []
            try:
                client = BusClient(vlc.address)
                wait_name(client)
                dials = [Dial(60), Dial(60)]
                daemons = [
                    Daemon(tmp / "http", dials[0].path, f"vlc:127.0.0.1:{vlc.port}",
                           env={"RATEDIAL_VLC_PASSWORD": "bench-password"}),
                    Daemon(tmp / "mpris", dials[1].path, "mpris:vlc",
                           env={"DBUS_SESSION_BUS_ADDRESS": vlc.address})]
                for dm in daemons:
                    dm.wait_for("SELECT 1 FROM events WHERE kind = 'media_load'")
                    dm.wait_for("SELECT 1 FROM samples WHERE media_state = 2")
                poller = VlcPoller(vlc)
                poller.start()
                client.start_polling()
                rater_session(client, duration)
                client.polling = False
                poller.stop_flag.set()
                poller.join(5)
                for dm in daemons:
                    dm.stop()
                    if dm.proc.returncode != 0:
                        raise RuntimeError(f"daemon failed: {dm.output()[-500:]}")
            finally:
                if poller is not None:
                    poller.stop_flag.set()
                if client is not None:
                    client.close()
                for dm in daemons:
                    dm.stop()
                vlc.close()
                for dial in dials:
                    dial.close()
            recs = {"vlc_http": daemons[0].recording, "mpris_vlc": daemons[1].recording}
            transitions = sorted(t for r in recs.values() for t, kind, _ in r.events("media")
                                 if kind != "media_load")
            run_stats: dict[str, object] = {}
            steps: list[tuple[int, float, float]] = []
            for name, rec in recs.items():
                errors, steps = _edge_errors(client.log, Timeline(rec.samples()), transitions)
                pooled[name] += errors
                run_stats[name] = abs_stats(errors)
            carma = _carma_at(poller.log, steps)
            pooled["carma_poll"] += carma
            run_stats["carma_poll"] = abs_stats(carma)
            windows += [w for _, _, w in steps]
            per_run.append(run_stats)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    windows.sort()
    return {"what": "|recorded media time - VLC's position - half the poll window| at each "
                    "step of VLC's position seen by an independent observer polling MPRIS at "
                    f"25 Hz, ms (real headless VLC 3, HTTP and MPRIS followed at once by two "
                    f"daemons, 60 s test video, {runs} runs)",
            "runs": per_run, **{k: abs_stats(v) for k, v in pooled.items()},
            "poll_window_median_ms": round(windows[len(windows) // 2] * 1000, 1)
            if windows else None}
