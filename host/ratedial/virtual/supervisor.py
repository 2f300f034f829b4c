"""The firmware of a virtual dial across reboots: one MicroPython process at a time.

``Supervisor`` starts the firmware (``device``), kills it for a reboot or at the end, reads
the interpreter's stderr (the simulated hardware's ``sim: boot`` lines: the ground truth of
each boot) and keeps its last words for when it dies.

Invariants:
- At most one firmware process runs; ``kill`` is SIGKILL (nothing more runs in it) and
  closes its pipes, so what was still in the stdout pipe (the device's FIFO) is lost.
- Rating time 0 is the first boot's: every later boot is started with the first boot's
  ``t0``, so one script runs on across reboots.
- ``reap`` turns a firmware that died on its own into a SimulatorError holding the
  interpreter's last words (stderr, and the traceback MicroPython prints on stdout).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess as sp
from collections import deque
from pathlib import Path

from ..errors import SimulatorError
from .device import DeviceProcess, spawn_device
from .options import DialOptions
from .truth import BootTruth

log = logging.getLogger("ratedial.virtual")


class Supervisor:
    """The current firmware process (``dev``), its boot (``boot``) and the boot count."""

    def __init__(self, options: DialOptions, *, firmware: Path, truth: Path | None) -> None:
        self.opts = options
        self.firmware = firmware
        self.truth_path = truth
        self.knots: Path | None = None  # the rating script's knots, written before the first boot

        self.dev: DeviceProcess | None = None
        self.alive = False  # first byte from the current firmware seen
        self.boot: BootTruth | None = None
        self.boots = 0
        self._t0_us: int | None = None  # rating time 0 (first boot), passed to later boots
        self._err_buf = bytearray()
        self._err_tail: deque[str] = deque(maxlen=20)
        self._out_tail = bytearray()  # last device output: the port prints tracebacks there

    def spawn(self) -> None:
        args = self.opts.sim_args(knots=self.knots, t0_us=self._t0_us, truth=self.truth_path,
                                  ctl=None)
        self.dev = spawn_device(args, firmware=self.firmware, heap_kb=self.opts.heap_kb)
        self.alive = False
        self.boot = None
        self._out_tail.clear()
        self.boots += 1
        log.info("firmware started (boot %d, pid %d)", self.boots, self.dev.pid)

    def kill(self) -> None:
        """Power off the current firmware, if any."""
        dev = self.dev
        if dev is not None:
            dev.kill()
            dev.close()
            self.dev = None

    def output(self, data: bytes) -> None:
        """Keep the tail of what the firmware wrote on stdout (its last words, if it dies)."""
        self._out_tail += data
        if len(self._out_tail) > 4096:
            del self._out_tail[:-2048]

    def read_stderr(self) -> None:
        if self.dev is None:
            return
        try:
            data = os.read(self.dev.err_r, 65536)
        except BlockingIOError:
            return
        if data:
            self._on_stderr(data)

    def reap(self) -> SimulatorError:
        """The firmware exited on its own: collect it, and what it said last."""
        dev = self.dev
        assert dev is not None
        try:
            rc = dev.proc.wait(timeout=5)
        except sp.TimeoutExpired:  # a stuck child is killed below either way
            rc = None
        # Drain what it said last.
        with contextlib.suppress(OSError):
            while chunk := os.read(dev.err_r, 65536):
                self._on_stderr(chunk)
        if self._err_buf:
            self._on_stderr(b"\n")
        dev.kill()
        dev.close()
        self.dev = None
        # MicroPython prints an uncaught exception on stdout (the board's console): the
        # text after the last frame delimiter.
        text = bytes(self._out_tail).rsplit(b"\0", 1)[-1].decode("ascii", "replace")
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        last = " | ".join([*self._err_tail, *lines[-4:]]) or "no output"
        return SimulatorError(f"the firmware exited (status {rc}): {last}")

    def _on_stderr(self, data: bytes) -> None:
        self._err_buf += data
        while (i := self._err_buf.find(b"\n")) >= 0:
            line = self._err_buf[:i].decode("utf-8", "replace").rstrip()
            del self._err_buf[: i + 1]
            if line.startswith("sim: boot "):
                try:
                    self.boot = BootTruth.from_json(json.loads(line[10:]))
                except (ValueError, KeyError) as exc:
                    log.warning("bad boot line %r: %s", line, exc)
                    continue
                if self._t0_us is None:
                    self._t0_us = self.boot.t0_ns // 1000
                log.info("boot id %08x", self.boot.boot_id)
                continue
            if line:
                self._err_tail.append(line)
                log.warning("firmware: %s", line)
