"""MPRIS: the pure parts (reply parsing, player choice, the spec) and a real VLC followed over
its MPRIS interface on a D-Bus session bus of its own (``dbus-run-session``), VLC running as
user nobody as it requires, while a virtual dial records.

The ground truth is the one of the VLC HTTP test: the player's own reports, polled by the
test with send and receipt times. VLC refreshes ``Position`` in steps (0.25-0.5 s of media);
at every step (the first poll that shows a new value) the recorded media time must be within
the documented bound of that value, plus or minus half the poll window in which the step
happened.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest_media import Daemon, Dial, Timeline, free_port, have, make_test_video
from ratedial.errors import UsageError
from ratedial.players.identity import fingerprint
from ratedial.players.mpris import PREFIX, parse_player, pick_player, url_path
from ratedial.players.spec import parse_spec

dbus_fast = pytest.importorskip("dbus_fast")
from dbus_fast import Message, MessageType, Variant  # noqa: E402
from dbus_fast.aio import MessageBus  # noqa: E402

# --- pure parts ---------------------------------------------------------------------------


def vlc_props(status: str = "Playing", position_us: int = 2_150_197, rate: float = 1.0,
              url: str = "file:///tmp/a%20b/v.mp4") -> dict[str, Any]:
    """What VLC 3.0 answers to GetAll(org.mpris.MediaPlayer2.Player) (values as seen here)."""
    return {
        "Metadata": Variant("a{sv}", {
            "mpris:trackid": Variant("o", "/org/videolan/vlc/playlist/2"),
            "xesam:url": Variant("s", url),
            "mpris:length": Variant("x", 20_000_000),
            "vlc:length": Variant("x", 20_000)}),
        "Position": Variant("x", position_us), "PlaybackStatus": Variant("s", status),
        "Rate": Variant("d", rate), "CanSeek": Variant("b", True)}


def test_a_vlc_reply_parses_to_a_snapshot():
    s = parse_player(vlc_props())
    assert s.loaded and s.playing and not s.ended
    assert s.media_s == pytest.approx(2.150197) and s.duration_s == 20.0 and s.rate == 1.0
    assert s.path == "/tmp/a b/v.mp4"
    assert s.key == "/org/videolan/vlc/playlist/2:file:///tmp/a%20b/v.mp4"
    ended = parse_player(vlc_props("Paused", position_us=19_800_000))
    assert ended.loaded and not ended.playing and ended.ended
    assert not parse_player(vlc_props("Stopped")).loaded
    odd = parse_player(vlc_props(position_us=-5, rate=float("nan")))
    assert odd.media_s is None and odd.rate == 1.0


def test_player_choice_and_spec():
    names = ["org.freedesktop.DBus", ":1.4", PREFIX + "vlc", PREFIX + "chromium.instance42"]
    assert pick_player(names, None) == PREFIX + "chromium.instance42"
    assert pick_player(names, "vlc") == PREFIX + "vlc"
    assert pick_player(names, "chromium") == PREFIX + "chromium.instance42"
    assert pick_player(names, "mpv") is None
    assert parse_spec("mpris").name is None and parse_spec("mpris:vlc").name == "vlc"
    with pytest.raises(UsageError, match="bus name"):
        parse_spec("mpris:vlc/x")
    assert url_path("https://example.org/v.mp4") == "https://example.org/v.mp4"


@pytest.mark.parametrize("platform", ["darwin", "win32"])
def test_mpris_is_refused_in_one_line_off_linux(monkeypatch, platform):
    from ratedial.players import create_session

    monkeypatch.setattr("sys.platform", platform)
    with pytest.raises(UsageError, match=r"^--player mpris follows players on Linux's D-Bus "
                                         r"session bus; here use mpv, vlc, mpc or manual$"):
        create_session("mpris:vlc", video=None, latency_ms=0.0, osd=False, ratings=dict)


# --- real VLC -----------------------------------------------------------------------------

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:tmpdir=/tmp</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <!-- a session bus admits its owner only; this one also admits the test (root) -->
    <allow user="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""
VLC_NAME = PREFIX + "vlc"
STEP_BOUND_S = 0.080  # as VLC's HTTP position at its steps (docs/timing.md)


class VlcOnBus:
    """``cvlc`` as nobody inside ``dbus-run-session``; the bus address it was given. With
    ``password``, VLC's HTTP interface too (on :attr:`port`, read with :meth:`status`), so
    that one player is followed over both at once (bench/media_mpris.py)."""

    def __init__(self, video: Path, password: str | None = None) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="ratedial-mpris-"))
        os.chown(self.home, 65534, 65534)
        conf = self.home / "bus.conf"
        conf.write_text(BUS_CONFIG)
        conf.chmod(0o644)
        addr_file = self.home / "address"
        intf = "--intf dummy"
        if password is not None:
            self.port = free_port()
            self.auth = "Basic " + base64.b64encode(f":{password}".encode()).decode()
            intf = (f"--intf http --http-host 127.0.0.1 --http-port {self.port} "
                    f"--http-password {password}")
        self.proc = subprocess.Popen(
            ["dbus-run-session", f"--config-file={conf}", "--", "sh", "-c",
             f'echo "$DBUS_SESSION_BUS_ADDRESS" > {addr_file}; exec cvlc {intf} '
             "--vout dummy --aout dummy --no-media-library --play-and-pause --start-paused "
             f'"{video}"'],
            user="nobody", group="nogroup", extra_groups=[], start_new_session=True,
            env={"HOME": str(self.home), "PATH": "/usr/bin:/bin"},
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        try:
            while not (addr_file.exists() and addr_file.read_text().strip()):
                assert self.proc.poll() is None and time.monotonic() < deadline, "no bus"
                time.sleep(0.02)  # polling for the file, not synchronising
            self.address = addr_file.read_text().strip()
            while password is not None:
                try:
                    self.status()
                    break
                except OSError:
                    assert time.monotonic() < deadline, "VLC's HTTP interface did not answer"
                    time.sleep(0.05)  # polling for VLC's port, not synchronising
        except BaseException:
            self.close()
            raise

    def status(self, query: str = "") -> dict[str, Any]:
        """VLC's ``status.json`` (with ``password`` only)."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/requests/status.json{query}",
                                     headers={"Authorization": self.auth})
        with urllib.request.urlopen(req, timeout=2) as r:
            return dict(json.loads(r.read()))

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        shutil.rmtree(self.home, ignore_errors=True)


class BusClient(threading.Thread):
    """The test's own connection: drives VLC over MPRIS and polls its Position at 25 Hz with
    send and receipt times (on an asyncio loop in this thread)."""

    def __init__(self, address: str) -> None:
        super().__init__(daemon=True)
        self.address = address
        self.loop = asyncio.new_event_loop()
        self.log: list[tuple[int, int, dict[str, Any]]] = []
        self.polling = False
        self.bus: MessageBus | None = None
        self.ready = threading.Event()
        self.start()
        assert self.ready.wait(10)

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._connect())
        self.ready.set()
        self.loop.run_forever()

    async def _connect(self) -> None:
        self.bus = await MessageBus(bus_address=self.address).connect()

    async def _call(self, member: str, signature: str = "", body: list[Any] | None = None,
                    interface: str = "org.mpris.MediaPlayer2.Player") -> Any:
        assert self.bus is not None
        reply = await self.bus.call(Message(destination=VLC_NAME, path="/org/mpris/MediaPlayer2",
                                            interface=interface, member=member,
                                            signature=signature, body=body or []))
        assert reply is not None and reply.message_type != MessageType.ERROR, reply
        return reply.body

    def call(self, member: str, signature: str = "", *body: Any,
             interface: str = "org.mpris.MediaPlayer2.Player") -> Any:
        fut = asyncio.run_coroutine_threadsafe(
            self._call(member, signature, list(body), interface), self.loop)
        return fut.result(10)

    def get_all(self) -> dict[str, Any]:
        body = self.call("GetAll", "s", "org.mpris.MediaPlayer2.Player",
                         interface="org.freedesktop.DBus.Properties")
        return {k: v.value for k, v in body[0].items()}

    def set_rate(self, rate: float) -> None:
        self.call("Set", "ssv", "org.mpris.MediaPlayer2.Player", "Rate", Variant("d", rate),
                  interface="org.freedesktop.DBus.Properties")

    async def _poll(self) -> None:
        while self.polling:
            sent = time.monotonic_ns()
            body = await self._call("GetAll", "s", ["org.mpris.MediaPlayer2.Player"],
                                    interface="org.freedesktop.DBus.Properties")
            self.log.append((sent, time.monotonic_ns(),
                             {k: v.value for k, v in body[0].items()}))
            await asyncio.sleep(0.04)

    def start_polling(self) -> None:
        self.polling = True
        asyncio.run_coroutine_threadsafe(self._poll(), self.loop)

    def close(self) -> None:
        self.polling = False
        if self.bus is not None:
            self.loop.call_soon_threadsafe(self.bus.disconnect)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.join(5)


def wait_name(client: BusClient, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.get_all()
        except (AssertionError, TimeoutError):
            assert time.monotonic() < deadline, "VLC did not appear on the bus"
            time.sleep(0.05)  # polling for VLC's name, not synchronising


def rater_session(c: BusClient, duration: float) -> None:
    """As the VLC HTTP test: seek, play, pause, seek back, play, 1.5x, seek near the end."""
    track = c.get_all()["Metadata"]["mpris:trackid"].value
    c.call("SetPosition", "ox", track, 30_000_000)
    time.sleep(0.5)
    c.call("Play")
    time.sleep(4)
    c.call("Pause")
    time.sleep(3)
    c.call("Seek", "x", -20_000_000)
    time.sleep(0.5)
    c.call("Play")
    time.sleep(3)
    c.set_rate(1.5)
    time.sleep(4)
    c.call("SetPosition", "ox", track, int((duration - 3) * 1e6))
    time.sleep(3.5)


@pytest.fixture(scope="module")
def video() -> Iterator[Path]:
    if not have("ffmpeg"):
        pytest.skip("ffmpeg is not installed (apt-get install ffmpeg)")
    d = Path(tempfile.mkdtemp(prefix="ratedial-media-"))
    d.chmod(0o755)
    path = make_test_video(d / "counter.mp4", seconds=60.0)
    path.chmod(0o644)
    yield path
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.skipif(os.geteuid() != 0, reason="starting VLC as user nobody needs root")
def test_vlc_over_mpris_recorded_media_times_within_the_step_bound(tmp_path, video):
    if not have("cvlc", "dbus-run-session"):
        pytest.skip("needs VLC and dbus-run-session (apt-get install vlc-bin "
                    "vlc-plugin-base dbus-bin)")
    from ratedial.players.identity import probe

    duration, _ = probe(str(video))
    assert duration is not None
    vlc = VlcOnBus(video)
    client = None
    dial = Dial(60)
    daemon = None
    try:
        client = BusClient(vlc.address)
        wait_name(client)
        daemon = Daemon(tmp_path, dial.path, "mpris:vlc",
                        env={"DBUS_SESSION_BUS_ADDRESS": vlc.address})
        daemon.wait_for("SELECT 1 FROM events WHERE kind = 'media_load'")
        daemon.wait_for("SELECT 1 FROM samples WHERE media_state = 2")
        client.start_polling()
        rater_session(client, duration)
        client.polling = False
        out = daemon.stop()
        assert daemon.proc.returncode == 0, out
    finally:
        if client is not None:
            client.close()
        if daemon is not None:
            daemon.stop()
        vlc.close()
        dial.close()

    rec = daemon.recording
    samples = rec.samples()
    assert len(samples) > 15_000, f"{len(samples)} samples ({dial.kind} dial)"
    events = rec.events("media")
    kinds = [k for _, k, _ in events]
    for kind in ("media_load", "media_play", "media_pause", "media_seek", "media_rate",
                 "media_end"):
        assert kind in kinds, kinds
    (path, dur, fp), = rec.query("SELECT path, duration_s, fingerprint FROM media")
    assert path == str(video) and abs(dur - duration) < 1e-3
    assert fp == fingerprint(str(video))

    timeline = Timeline(samples)
    transitions = [t for t, k, _ in events if k != "media_load"]
    prev: tuple[int, float] | None = None
    edge_errors: list[float] = []
    lags: list[float] = []
    for _, recv, s in client.log:
        if s.get("PlaybackStatus") != "Playing":
            prev = None
            continue
        p = s["Position"] / 1e6
        rate = float(s["Rate"])
        near = any(abs(recv - tt) < 150_000_000 for tt in transitions)
        got = timeline.at(recv, rate)
        if got is None or got[0] is None or near:
            prev = (recv, p)
            continue
        ours = got[0]
        lags.append(ours - p)  # VLC's value is stale by up to one step
        if prev is not None and p != prev[1]:
            window = rate * (recv - prev[0]) / 1e9  # the step happened in this poll window
            edge_errors.append(ours - p - window / 2)
            assert -STEP_BOUND_S - window / 2 <= ours - p - window / 2 \
                <= STEP_BOUND_S + window / 2, (ours, p, window)
        prev = (recv, p)
    assert len(edge_errors) > 20, len(edge_errors)
    med = sorted(map(abs, edge_errors))[len(edge_errors) // 2]
    print(f"mpris-vlc: {len(edge_errors)} steps, median |err| {med * 1000:.1f} ms, worst "
          f"{max(edge_errors, key=abs) * 1000:+.1f} ms (+- half the poll window); ahead of "
          f"VLC's stale value by {min(lags):+.3f}..{max(lags):+.3f} s; {dial.kind} dial")
    assert min(lags) >= -STEP_BOUND_S
    assert max(lags) <= 1.05 * 1.5 + STEP_BOUND_S
