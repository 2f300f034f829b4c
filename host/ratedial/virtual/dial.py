"""``VirtualDial``: a virtual dial for tests, the demo and benchmarks.

::

    with VirtualDial(seed=3, rate_hz=1000) as dial:
        ser = serial.Serial(dial.port)          # a real pty, like /dev/ttyACM0
        dial.control("unplug 1.5")              # returns once the port is back
        dial.truth()[0].host_ns(t_dev_us)       # exact host time of a device time

In-process (the default) the bridge runs in a daemon thread of this process; with
``subprocess=True`` it runs as ``python -m ratedial.virtual`` and is driven through its
control socket. Both behave the same; the firmware is always its own MicroPython process.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess as sp
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from .._paths import firmware_dir
from ..errors import SimulatorError
from .bridge import Bridge
from .options import DialOptions
from .truth import BootTruth, read_truth

START_TIMEOUT_S = 30.0


class VirtualDial:
    """A running virtual dial. Options are DialOptions fields (or pass ``options=``)."""

    def __init__(
        self,
        options: DialOptions | None = None,
        *,
        subprocess: bool = False,
        link: Path | None = None,
        firmware: Path | None = None,
        **fields: Any,
    ) -> None:
        if options is not None and fields:
            raise TypeError("pass either options= or option fields, not both")
        self.options = options if options is not None else DialOptions(**fields)
        self._subprocess = subprocess
        self._workdir = Path(tempfile.mkdtemp(prefix="ratedial-vd-"))
        self.link = link if link is not None else self._workdir / "dial0"
        self.truth_path = self.options.truth or self._workdir / "truth.jsonl"
        self.control_path = self._workdir / "control.sock"
        self._firmware = firmware or firmware_dir()
        self._bridge: Bridge | None = None
        self._thread: threading.Thread | None = None
        self._proc: sp.Popen[str] | None = None
        self._started = False
        self._closed = False

    # ------------------------------------------------------------------ life cycle

    def __enter__(self) -> VirtualDial:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(check=exc_type is None)

    def start(self) -> VirtualDial:
        """Start the firmware and the port; returns once the firmware is running."""
        if self._started:
            return self
        self._started = True
        try:
            if self._subprocess:
                self._start_process()
            else:
                self._start_thread()
        except BaseException:
            self.close(check=False)
            raise
        return self

    def _start_thread(self) -> None:
        b = Bridge(self.options, link=self.link, firmware=self._firmware,
                   workdir=self._workdir, truth=self.truth_path, control=self.control_path)
        self._bridge = b
        b.start()
        self._thread = threading.Thread(target=b.run, name="virtual-dial", daemon=True)
        self._thread.start()
        if not b.ready.wait(START_TIMEOUT_S):
            raise SimulatorError(f"the virtual dial did not start within {START_TIMEOUT_S:g} s")
        if b.error is not None:
            raise b.error

    def _start_process(self) -> None:
        argv = [sys.executable, "-m", "ratedial.virtual", *self.options.to_argv(),
                "--link", str(self.link), "--control", str(self.control_path),
                "--truth", str(self.truth_path), "--firmware", str(self._firmware)]
        self._proc = sp.Popen(argv, stdout=sp.PIPE, text=True)
        assert self._proc.stdout is not None
        first = self._proc.stdout.readline().strip()
        if not first:
            rc = self._proc.wait()
            raise SimulatorError(f"ratedial virtual-dial exited ({rc}) before its port appeared")
        self.link = Path(first)

    def close(self, *, check: bool = True) -> None:
        """Stop the firmware, remove the port. With ``check``, raise if the firmware died."""
        if self._closed:
            return
        self._closed = True
        error: SimulatorError | None = None
        b = self._bridge
        if b is not None:
            b.stop()
            if self._thread is not None:
                self._thread.join(10)
            b.close()
            error = b.error
        if self._proc is not None:
            with contextlib.suppress(OSError, SimulatorError):
                self.control("quit", timeout=5)
            try:
                rc = self._proc.wait(10)
            except sp.TimeoutExpired:
                self._proc.kill()
                rc = self._proc.wait()
            if rc not in (0, None):
                error = SimulatorError(f"ratedial virtual-dial exited with status {rc}")
        shutil.rmtree(self._workdir, ignore_errors=True)
        if check and error is not None:
            raise error

    # ------------------------------------------------------------------ use

    @property
    def port(self) -> str:
        """Path of the port (a stable symlink to the current pty)."""
        return str(self.link)

    def control(self, command: str, *, timeout: float = 30.0) -> str:
        """Send one control command; return its reply line (``ok ...``).

        Raises SimulatorError when the reply is ``error ...`` or none comes in time.
        """
        b = self._bridge
        if b is not None:
            fut = b.submit(command)
            end = time.monotonic() + timeout
            while True:
                if b.error is not None:
                    raise b.error
                try:
                    reply = fut.result(0.05)
                    break
                except TimeoutError:
                    pass
                if self._thread is None or not self._thread.is_alive():
                    raise b.error or SimulatorError("the virtual dial has stopped")
                if time.monotonic() > end:
                    raise SimulatorError(f"no reply to {command!r} within {timeout:g} s")
        else:
            reply = self._control_socket(command, timeout)
        if not reply.startswith("ok"):
            raise SimulatorError(f"{command!r}: {reply}")
        return reply

    def _control_socket(self, command: str, timeout: float) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            try:
                s.connect(str(self.control_path))
                s.sendall(command.encode() + b"\n")
                buf = b""
                while not buf.endswith(b"\n"):
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    buf += chunk
            except OSError as exc:
                raise SimulatorError(f"control socket: {exc}") from None
        return buf.decode().strip()

    def status(self) -> dict[str, Any]:
        """The bridge's state: boots, boot_id, unplugged, stalled, byte counters, ..."""
        reply = self.control("status")
        obj: dict[str, Any] = json.loads(reply[3:])
        return obj

    def truth(self) -> list[BootTruth]:
        """One BootTruth per boot so far, in order."""
        return read_truth(self.truth_path)
