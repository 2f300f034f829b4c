"""Real mosquitto brokers for tests: spawned on a free port, with their own config and store."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
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

    def __init__(self, workdir: Path, *, port: int | None = None, extra: str = "") -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf = self.dir / "mosquitto.conf"
        self.log = self.dir / "mosquitto.log"

    def write_conf(self) -> None:
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.dir}/\n"
            "autosave_interval 1\n"
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
