"""Real mosquitto brokers for tests: spawned on a free port, with their own config and store.

mosquitto's persistence is a snapshot, written every ``autosave_interval`` seconds and on a
clean stop (SIGTERM), never per message. :meth:`Mosquitto.kill` (SIGKILL, a crash) therefore
loses whatever changed since the last snapshot, although the broker acknowledged it: a
persistent session younger than the snapshot (its subscriptions, so what is published for it
before it subscribes again is dropped) and QoS 1 messages queued for a subscriber. A test
that crashes the broker and needs a subscriber's session to survive calls :meth:`save` first.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mosquitto_exe() -> str:
    exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists(
        "/usr/sbin/mosquitto") else None)
    if exe is None:
        raise RuntimeError("mosquitto is not installed (make test installs it as root)")
    return exe


class Mosquitto:
    """One mosquitto process; :meth:`restart` keeps its port and its persistent store."""

    def __init__(self, workdir: Path, *, port: int | None = None, extra: str = "",
                 autosave_s: int = 1) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.extra = extra
        self.autosave_s = autosave_s  # mosquitto's own default is 1800
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf = self.dir / "mosquitto.conf"
        self.log = self.dir / "mosquitto.log"

    def write_conf(self) -> None:
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.dir}/\n"
            f"autosave_interval {self.autosave_s}\n"
            "max_queued_messages 0\n"
            "log_dest stderr\n"
            f"user {pwd.getpwuid(os.getuid()).pw_name}\n"  # as root, don't drop to 'mosquitto'
            f"{self.extra}\n"
        )

    def start(self) -> None:
        self.write_conf()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([mosquitto_exe(), "-c", str(self.conf)],
                                         stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=0.2):
                return
            time.sleep(0.02)  # polling for the listener, not synchronising the test
        raise RuntimeError("mosquitto did not start listening")

    def save(self, timeout: float = 10.0) -> None:
        """Have the broker write its store now (SIGUSR1) and return once it is on disk.

        mosquitto writes ``mosquitto.db.new`` and renames it over ``mosquitto.db``, so the
        store is complete when the file at that name is a new one."""
        assert self.proc is not None and self.proc.poll() is None
        db = self.dir / "mosquitto.db"

        def ident() -> tuple[int, int] | None:
            try:
                st = db.stat()
            except FileNotFoundError:
                return None
            return st.st_ino, st.st_mtime_ns

        before = ident()
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while ident() == before:
            if time.monotonic() > deadline:
                raise RuntimeError("mosquitto did not save its store")
            time.sleep(0.01)  # polling for the rename, not synchronising the test

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto saves its store
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


@contextlib.contextmanager
def mosquitto(workdir: Path, **kw: object) -> Iterator[Mosquitto]:
    m = Mosquitto(workdir, **kw)  # type: ignore[arg-type]
    m.start()
    try:
        yield m
    finally:
        m.stop()


def bridge_conf(name: str, remote_port: int, *, topic: str = "ratedial/#", qos: int = 1) -> str:
    """mosquitto.conf lines for a bridge to the broker on ``remote_port`` (for ``extra=``).

    Both directions, QoS 1, a persistent bridge session (``cleansession false``): what one
    side publishes while the bridge is down is queued and forwarded when it is back.
    """
    return (f"connection {name}\n"
            f"address 127.0.0.1:{remote_port}\n"
            f"topic {topic} both {qos}\n"
            "cleansession false\n"
            f"remote_clientid {name}\n"
            "bridge_protocol_version mqttv50\n"
            "keepalive_interval 5\n"
            "restart_timeout 1 2\n"
            "notifications false\n")


@contextlib.contextmanager
def bridged_pair(workdir: Path) -> Iterator[tuple[Mosquitto, Mosquitto]]:
    """Two brokers: ``edge`` bridges ``ratedial/#`` both ways to ``core``."""
    core = Mosquitto(workdir / "core")
    core.start()
    edge = Mosquitto(workdir / "edge", extra=bridge_conf("edge-to-core", core.port))
    try:
        edge.start()
        yield edge, core
    finally:
        edge.stop()
        core.stop()
