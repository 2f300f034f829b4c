"""`ratedial devices` and `ratedial monitor` against a virtual dial and a real mosquitto."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as paho
import pytest
import serial
from paho.mqtt import publish

from brokers import Mosquitto, mosquitto
from daemonrun import finish, query, start_daemon
from ratedial.mqtt.topics import event_payload, samples_payload
from ratedial.virtual import VirtualDial

pytestmark = pytest.mark.slow


def ratedial(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ratedial", *args], capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_devices_lists_a_dial_by_its_id_and_explains_a_bad_port(tmp_path):
    with VirtualDial(seed=71, subprocess=True) as dial:
        missing = str(tmp_path / "ttyGONE")
        proc = ratedial("devices", "--port", dial.port, "--port", missing)
        found = ratedial("devices", "--port", dial.port)
    assert found.returncode == 0, found.stderr
    assert proc.returncode == 1, proc.stderr  # a port asked for has no dial: status 1
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    (row,) = [ln for ln in lines if dial.port in ln]
    uid = row.split()[0]
    assert len(uid) == 16 and int(uid, 16) >= 0  # the dial's hardware id, first
    assert "board=virtual" in row and "firmware=0.1.0" in row
    assert missing not in proc.stdout  # stdout is the list of dials alone
    assert f"ratedial: error: {missing}: no such port" in proc.stderr.splitlines()


def test_monitor_shows_every_dial_seen_on_the_broker(tmp_path):
    with mosquitto(tmp_path / "broker") as broker, VirtualDial(seed=72, subprocess=True) as dial:
        mon = subprocess.Popen([sys.executable, "-m", "ratedial", "monitor", "--broker",
                                broker.url, "--duration", "8"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        daemon = start_daemon("--port", dial.port, "--broker", broker.url, "--record",
                              str(tmp_path / "m.ratedial"), "--duration", "5",
                              "--rater", f"client={dial.port}")
        finish(daemon)
        out, err = mon.communicate(timeout=60)
    assert mon.returncode == 0, err
    uid = query(tmp_path / "m.ratedial", "SELECT uid FROM dials")[0][0]
    assert "Traceback" not in out + err
    assert uid[:8] in out and "client" in out
    assert "dial_connected" in out  # events are printed as they come


def test_monitor_without_a_broker_is_one_line(tmp_path):
    from brokers import free_port

    proc = ratedial("monitor", "--broker", f"mqtt://127.0.0.1:{free_port()}", "--duration", "2")
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "cannot subscribe" in lines[0], proc.stderr


class Lines:
    """A subprocess's stdout and stderr, line by line as it writes them, for waiting on."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.seen: dict[str, list[str]] = {"out": [], "err": []}
        self._q: queue.Queue[tuple[str, str | None]] = queue.Queue()
        self._open = 2
        for name, stream in (("out", proc.stdout), ("err", proc.stderr)):
            threading.Thread(target=self._read, args=(name, stream), daemon=True).start()

    def _read(self, name: str, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self._q.put((name, line.rstrip("\n")))
        self._q.put((name, None))

    def wait(self, name: str, test: Callable[[str], bool], timeout: float) -> bool:
        """True once a line of ``name`` (seen before or arriving within ``timeout``) passes
        ``test``; False on time-out; AssertionError (with the output) once both streams end."""
        if any(test(ln) for ln in self.seen[name]):
            return True
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            try:
                stream, line = self._q.get(timeout=left)
            except queue.Empty:
                return False
            if line is None:
                self._open -= 1
                if self._open == 0:
                    raise AssertionError(f"exited ({self.proc.wait()}) first: {self.seen}")
                continue
            self.seen[stream].append(line)
            if stream == name and test(line):
                return True
        return False

    def finish(self, timeout: float) -> None:
        """Wait for the process to end and both streams to be read to the end."""
        self.proc.wait(timeout)
        while self._open:
            stream, line = self._q.get(timeout=timeout)
            if line is None:
                self._open -= 1
            else:
                self.seen[stream].append(line)


DIAL = "e66038b7132f4a2c"


def _publish_until_shown(port: int, lines: Lines, phase: str, first: int,
                         rating: float) -> None:
    """Publish ten samples and a ``button`` event until the monitor prints the event: it
    shows nothing published before it (re)subscribed, so one publish could go unseen. The
    monitor subscribes to samples, then to events: a publish can fall between the two and
    show its event without its samples, so once the event is shown the samples go again,
    followed by a second event, and that one is waited for too (a copy seen twice counts
    as a duplicate, not as samples)."""
    n = 10
    batch = samples_payload(
        uid=DIAL, rater="client", daemon="dtest", boot_id=7, first_index=first,
        period_us=1000, device_us=[1000 * (first + k) for k in range(n)],
        host_ns=[None] * n, wall_ns=[None] * n, count=list(range(n)),
        rating=[rating] * n, flags=[0] * n, media_s=[None] * n, media_state=[0] * n)
    for tag, event_id in ((phase, first + 1), (f"{phase}-again", first + 2)):
        event = event_payload(event_id=event_id, kind="button", host_ns=1, wall_ns=2,
                              dial=DIAL, daemon="dtest", data={"phase": tag}, run="r1")
        end = time.monotonic() + 120
        while time.monotonic() < end:
            publish.multiple([{"topic": f"ratedial/v1/dials/{DIAL}/samples", "payload": batch,
                               "qos": 1},
                              {"topic": f"ratedial/v1/dials/{DIAL}/events", "payload": event,
                               "qos": 1}],
                             hostname="127.0.0.1", port=port, protocol=paho.MQTTv5)
            if lines.wait("out", lambda ln, t=tag: ln == f'button {{"phase": "{t}"}}', 1.0):
                break
        else:
            raise AssertionError(f"the monitor never showed {tag}: {lines.seen}")


def test_monitor_rides_out_broker_restarts(tmp_path):
    """A broker that restarts (stopped, then crashed) is one line each on stderr; the monitor
    subscribes again, shows what is published afterwards, and still ends at --duration with
    status 0 (it used to stop with "cannot subscribe ... Disconnected during message
    iteration")."""
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    mon = subprocess.Popen([sys.executable, "-m", "ratedial", "monitor", "--broker",
                            broker.url, "--duration", "20"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        lines = Lines(mon)
        _publish_until_shown(broker.port, lines, "before", 0, 20.0)
        for outage, (go, phase, rating) in enumerate(((broker.stop, "after-stop", 41.0),
                                                      (broker.kill, "after-kill", 62.0)), 1):
            go()  # SIGTERM (mosquitto says goodbye), then SIGKILL (the socket just closes)
            told = lines.wait("err", lambda _ln, k=outage: len(lines.seen["err"]) == k, 60)
            assert told, lines.seen  # the k-th line on stderr: the monitor noticed outage k
            broker.start()  # returns once the port accepts connections
            _publish_until_shown(broker.port, lines, phase, 100 * outage, rating)
        lines.finish(timeout=60)  # --duration ends it
    finally:
        if mon.poll() is None:
            mon.kill()
        broker.stop()
    assert mon.returncode == 0, lines.seen
    assert lines.seen["err"] == [f"ratedial: the broker at 127.0.0.1:{broker.port} went "
                                 "away; reconnecting"] * 2
    (row,) = [ln for ln in lines.seen["out"] if DIAL[:8] in ln]
    cells = [c.strip() for c in row.strip("│┃ ").split("│")]
    assert cells[:6] == [DIAL[:8], "client", "?", "62.0", "-", "30"], row  # 3 x 10 samples
    assert "reconnecting" not in "\n".join(lines.seen["out"])  # the table ends connected


@pytest.mark.skipif(sys.platform == "win32", reason="ptys are POSIX")
def test_devices_asks_again_once_the_stream_is_in_step():
    """The first frame after an open has no 0x00 before it and is discarded (protocol.md,
    "After opening the port"), and it is often the HELLO answering the first INFO. A dial
    played on a pty answers each INFO at once, its first answer as a dial whose port just
    opened sends it (no 0x00 before): devices must ask again as soon as a 0x00 arrives, so
    it finds the dial inside 0.25 s (before: never, as the second INFO went out after
    0.3 s). The dial answers at once, so the margin is the host's own two round trips."""
    import os
    import tty

    from ratedial.devices import ask_hello
    from ratedial.wire import Hello, encode_frame
    from scripted import hello

    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    frame = encode_frame(hello(boot=5, index=0))
    assert frame.endswith(b"\x00") and b"\x00" not in frame[:-1]
    infos: list[int] = []
    stop = threading.Event()

    def dial() -> None:
        buf = b""
        while not stop.is_set():
            try:
                buf += os.read(master, 4096)
            except OSError:
                return
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line.strip() == b"INFO":
                    infos.append(1)
                    os.write(master, frame)  # never a lone 0x00 first: as after an open

    t = threading.Thread(target=dial, daemon=True)
    t.start()
    try:
        got = ask_hello(path, 0.25)
    finally:
        stop.set()
        os.close(slave)
        os.close(master)
        t.join(5)
    assert isinstance(got, Hello), got
    assert got.boot_id == 5 and len(infos) == 2


@pytest.mark.skipif(sys.platform == "win32", reason="ptys are POSIX")
def test_devices_says_a_port_another_program_holds_is_busy():
    with VirtualDial(seed=73, subprocess=True) as dial, \
            serial.Serial(dial.port, 115200, exclusive=True):
        proc = ratedial("devices", "--port", dial.port, "--timeout", "1")
    assert proc.returncode == 1, proc.stderr
    assert f"{dial.port}: port is busy: another program has it open" in proc.stderr


def test_monitor_skips_malformed_messages_and_counts_by_ranges() -> None:
    """Anyone who can publish on the topics may send anything: a samples message with fields
    missing or of the wrong type is skipped and counted, never a traceback; indices are
    counted as ranges (a set of every index grew by a million entries in 17 minutes)."""
    import json as _json

    from ratedial.mqtt.monitor import Monitor

    mon = Monitor()
    topic = "ratedial/v1/dials/aa/samples"

    def feed(**msg: object) -> None:
        mon.feed(topic, _json.dumps({"dial": "aa", **msg}).encode())

    feed(boot=1, first=0, n=10, rating=[50.0] * 10, media_s=[1.0] * 10, rater="client")
    feed(boot=1, first=5, n=10, rating=[60.0] * 10, media_s=None)  # 5 seen before
    for bad in ({"first": 0, "n": 3}, {"boot": "x", "first": 0, "n": 3},
                {"boot": 1, "first": 0, "n": -1}, {"boot": 1, "first": 1.5, "n": 2},
                {"boot": 1, "first": 0, "n": True}):
        feed(**bad)
    feed(boot=1, first=20, n=2, rating=["high", 70], media_s=[2.0, 2.5])
    mon.feed("ratedial/v1/dials/aa/status", b'{"dial": "aa", "state": 3, "missing": "x"}')
    d = mon.dials["aa"]
    assert (d.samples, d.duplicates, mon.malformed) == (17, 5, 5)
    assert (d.rating, d.media_s, d.rater) == (70.0, 2.5, "client")
    assert (d.state, d.missing) == ("?", 0)
    mon.table()  # renders


def test_monitor_says_a_lost_daemon_may_still_record_and_when_it_is_back() -> None:
    """An audit (2026-12): after a broker restart (the broker publishes the daemons' wills
    as it goes down) the monitor said of live daemons "nothing of them is recorded by it",
    and nothing when they published again."""
    import json as _json

    from ratedial.mqtt.monitor import Monitor

    mon = Monitor()

    def daemon(state: str) -> str | None:
        return mon.feed("ratedial/v1/daemons/room01/status", _json.dumps(
            {"daemon": "room01", "state": state}).encode())

    def samples(first: int, leaf: str = "samples") -> str | None:
        return mon.feed(f"ratedial/v1/dials/aa/{leaf}", _json.dumps(
            {"dial": "aa", "daemon": "room01", "boot": 1, "first": first, "n": 1,
             "rating": [50.0], "media_s": [None]}).encode())

    assert daemon("online") is None
    assert samples(0) is None
    assert daemon("lost") == (
        "daemon room01 lost its broker connection (its last will: killed, cut off, or the "
        "broker went down): its dials' status here is stale; it may still be recording them")
    assert daemon("lost") is None  # said once
    assert samples(1) == "daemon room01 is back: publishing again"
    assert samples(2) is None
    assert mon.daemons["room01"] == "online"
    assert daemon("lost") is not None
    assert daemon("online") == "daemon room01 is back: publishing again"
    assert daemon("online") is None


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM and SIGHUP are POSIX")
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_monitor_stops_cleanly_on_sigterm_and_sighup(tmp_path, sig):
    """Like run and record: the last table is shown and the status is 0 (SIGTERM used to kill
    it with no table)."""
    import signal as _signal

    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    mon = subprocess.Popen([sys.executable, "-m", "ratedial", "monitor", "--broker",
                            broker.url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        lines = Lines(mon)
        _publish_until_shown(broker.port, lines, "before", 0, 33.0)
        mon.send_signal(getattr(_signal, sig))
        lines.finish(timeout=60)
    finally:
        if mon.poll() is None:
            mon.kill()
        broker.stop()
    assert mon.returncode == 0, lines.seen
    assert lines.seen["err"] == [], lines.seen
    rows = [ln for ln in lines.seen["out"] if DIAL[:8] in ln]
    assert rows and "33.0" in rows[-1], lines.seen["out"]


def test_the_mqtt_librarys_socket_errors_are_not_printed_raw():
    """aiomqtt hands paho its logger "mqtt"; the command line quieted "aiomqtt", so a reset
    connection printed paho's raw "failed to receive on socket" line beside the monitor's
    own one-line message (an audit, 2026-12-04)."""
    # aiomqtt imported after main() began, as the commands import it (it sets its logger's
    # level on import: seen in a CI preview, the first version of this fix missed that)
    code = ("import sys\nfrom ratedial.cli import main\n"
            "sys.argv = ['ratedial', '--version']\ntry:\n    main()\nexcept SystemExit:\n"
            "    pass\nfrom aiomqtt.client import MQTT_LOGGER\n"
            "MQTT_LOGGER.error('failed to receive on socket: [Errno 104]')\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=False)
    assert "failed to receive" not in res.stderr, res.stderr


def test_monitor_shows_the_dials_of_a_killed_daemon_as_such(tmp_path):
    """After ``kill -9`` of the daemon, its last will says "lost", but the dial's retained
    status still said "connected" (rating and all): the monitor showed a dial being recorded
    that nothing recorded any more. It now takes the daemon's status into account."""
    import json as _json
    import signal

    got: queue.Queue[tuple[str, dict[str, object]]] = queue.Queue()
    with mosquitto(tmp_path / "broker") as broker, VirtualDial(seed=79, subprocess=True) as dial:
        sub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="t-killed")
        sub.on_message = lambda _c, _u, m: got.put((m.topic, _json.loads(m.payload)))
        sub.connect("127.0.0.1", broker.port)
        sub.subscribe([("ratedial/v1/dials/+/status", 1), ("ratedial/v1/daemons/+/status", 1)])
        sub.loop_start()
        daemon = start_daemon("--port", dial.port, "--broker", broker.url, "--record",
                              str(tmp_path / "k.ratedial"), "--daemon-id", "killed1")

        def wait(pred: Callable[[str, dict[str, object]], bool]) -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    topic, msg = got.get(timeout=1)
                except queue.Empty:
                    continue
                if pred(topic, msg):
                    return
            raise AssertionError("not seen on the broker")

        try:
            wait(lambda t, m: "/dials/" in t and m.get("state") == "connected")
            daemon.send_signal(signal.SIGKILL)
            daemon.wait(30)
            wait(lambda t, m: "/daemons/killed1/" in t and m.get("state") == "lost")
        finally:
            sub.loop_stop()
            sub.disconnect()
            if daemon.poll() is None:
                daemon.kill()
        res = ratedial("monitor", "--broker", broker.url, "--duration", "2")
    assert res.returncode == 0, res.stderr
    rows = [ln for ln in res.stdout.splitlines() if "│" in ln and "daemon lost" in ln]
    assert len(rows) == 1, res.stdout  # the one dial, its state from its daemon's status
    assert "connected" not in res.stdout, res.stdout
    assert "daemon killed1 lost" in res.stdout + res.stderr, (res.stdout, res.stderr)



def test_monitor_counts_every_message_the_broker_delivers(tmp_path, monkeypatch):
    """Found by a black-box test: the monitor's redraw timeout cancelled aiomqtt's read and
    dropped messages it had already taken (5970 of 5990 samples shown, 'missing 0')."""
    import asyncio
    import contextlib
    import json as _json

    from rich.console import Console

    from ratedial.mqtt import monitor as mod
    from ratedial.mqtt.requests import parse_broker

    n_msgs, per, uid = 3000, 10, "aa00aa00aa00aa00"
    seen: dict[str, int] = {}
    real_feed = mod.Monitor.feed

    def feed(self: mod.Monitor, topic: str, payload: bytes) -> str | None:
        out = real_feed(self, topic, payload)
        seen["messages"] = seen.get("messages", 0) + 1  # the retained status comes first
        seen["samples"] = sum(d.samples for d in self.dials.values())
        return out

    monkeypatch.setattr(mod.Monitor, "feed", feed)

    with mosquitto(tmp_path / "broker") as broker:
        publish.single(f"ratedial/v1/dials/{uid}/status", _json.dumps(
            {"v": 1, "dial": uid, "state": "connected"}), qos=1, retain=True,
            hostname="127.0.0.1", port=broker.port)

        def publish_all() -> None:
            client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="mon-feed")
            client.connect("127.0.0.1", broker.port)
            client.loop_start()
            for k in range(n_msgs):
                first = k * per
                payload = samples_payload(
                    uid=uid, rater="client", daemon="d1", boot_id=7, first_index=first,
                    period_us=1000, device_us=[1000 * i for i in range(first, first + per)],
                    host_ns=[0] * per, wall_ns=[0] * per, count=[0] * per,
                    rating=[50.0] * per, flags=[0] * per, media_s=[None] * per,
                    media_state=[5] * per)
                client.publish(f"ratedial/v1/dials/{uid}/samples", payload,
                               qos=1).wait_for_publish(10)
            client.loop_stop()
            client.disconnect()

        async def run() -> None:
            task = asyncio.create_task(mod.monitor(
                parse_broker(broker.url), prefix="ratedial", duration=None,
                console=Console(quiet=True), on_message=lambda _m: None))
            deadline = time.monotonic() + 30
            while not seen.get("messages") and time.monotonic() < deadline:
                await asyncio.sleep(0.02)  # polling for the subscription's first message
            await asyncio.to_thread(publish_all)
            while seen.get("samples", 0) < n_msgs * per and time.monotonic() < deadline:
                await asyncio.sleep(0.02)  # polling for the count, bounded
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

        asyncio.run(run())
    assert seen.get("samples") == n_msgs * per


def test_monitor_shows_who_rates_a_dial_now() -> None:
    """Found by a black-box test: a null rater never replaced an old label, so a dial rated
    unlabelled after a labelled run was shown as the old run's 'client'."""
    import json as _json

    from ratedial.mqtt.monitor import Monitor

    mon = Monitor()
    base = {"dial": "aa", "boot": 1, "n": 1, "rating": [50.0], "media_s": [None]}
    mon.feed("ratedial/v1/dials/aa/status", _json.dumps(
        {"dial": "aa", "state": "offline", "rater": "client"}).encode())
    assert mon.dials["aa"].rater == "client"
    mon.feed("ratedial/v1/dials/aa/samples", _json.dumps({**base, "first": 0,
                                                          "rater": None}).encode())
    assert mon.dials["aa"].rater is None
    mon.feed("ratedial/v1/dials/aa/backfill", _json.dumps({**base, "first": 1,
                                                           "rater": "client"}).encode())
    assert mon.dials["aa"].rater is None  # an old run's replay does not relabel it
    mon.feed("ratedial/v1/dials/aa/status", _json.dumps(
        {"dial": "aa", "state": "connected", "rater": "therapist"}).encode())
    assert mon.dials["aa"].rater == "therapist"


def test_monitor_into_a_file_ends_its_last_line(tmp_path):
    """Piped or into a file, the table's last line had no newline: the next output was glued
    to its ┘."""
    with mosquitto(tmp_path / "broker") as broker:
        proc = ratedial("monitor", "--broker", broker.url, "--duration", "0.5")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith("┘\n"), repr(proc.stdout[-20:])
