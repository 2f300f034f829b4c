"""The MicroPython process of a virtual dial, on pipes shaped like a USB CDC FIFO.

Invariants:
- The firmware's stdout is a pipe shrunk to 4096 bytes (F_SETPIPE_SZ, the minimum: one
  page) whose write end is O_NONBLOCK, so ``tx_write`` returns 0 instead of blocking when
  the host side does not take data: the firmware drops frames within about half a second,
  as with TinyUSB's FIFO. stdin's read end is O_NONBLOCK too. The flags are set here,
  before spawning, on the open file descriptions the child inherits.
- A fourth pipe, the "control pipe", carries ``button MS`` lines to the simulated hardware
  (not the firmware): it stands for a finger on the button.
- The child runs in its own session: a Ctrl-C on the terminal reaches the bridge, which
  kills the child itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .._paths import install_hint
from ..errors import SimulatorError

F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ (Linux), named in fcntl only from Python 3.10 on
PIPE_SIZE = 4096


def micropython_exe() -> str:
    here = Path(sys.executable).parent / "micropython"
    if here.exists():
        return str(here)
    found = shutil.which("micropython")
    if found is None:
        raise SimulatorError(
            "the virtual dial needs the MicroPython unix port: " + install_hint("sim")
        )
    return found


def _nonblock(fd: int) -> None:
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)


@dataclass
class DeviceProcess:
    proc: subprocess.Popen[bytes]
    out_r: int  # firmware stdout (device -> host)
    in_w: int  # firmware stdin (host -> device)
    err_r: int  # stderr of the interpreter and the simulator
    ctl_w: int  # control pipe to the simulated hardware
    killed: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def realtime_irqs(self, priority: int = 10) -> bool:
        """Give the simulated-interrupt thread (every thread but the main one) SCHED_FIFO
        priority, so it preempts the firmware's main loop and other processes like an
        interrupt does. Needs CAP_SYS_NICE (or an RLIMIT_RTPRIO); False when refused."""
        pid = self.proc.pid
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid]
            for tid in tids:
                os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(priority))
        except (OSError, AttributeError):
            return False
        return bool(tids)

    def kill(self) -> None:
        """Power off: SIGKILL, as a reset pin does (nothing in the firmware runs after)."""
        self.killed = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def close(self) -> None:
        for fd in (self.out_r, self.in_w, self.err_r, self.ctl_w):
            with contextlib.suppress(OSError):
                os.close(fd)


def spawn_device(sim_args: list[str], *, firmware: Path, heap_kb: int) -> DeviceProcess:
    run_py = firmware / "sim" / "run.py"
    if not run_py.exists():
        raise SimulatorError(f"firmware not found: {run_py} is missing")
    exe = micropython_exe()
    out_r, out_w = os.pipe()
    in_r, in_w = os.pipe()
    err_r, err_w = os.pipe()
    ctl_r, ctl_w = os.pipe()
    child_ends = (out_w, in_r, err_w, ctl_r)
    try:
        with contextlib.suppress(OSError):
            fcntl.fcntl(out_w, F_SETPIPE_SZ, PIPE_SIZE)
        _nonblock(out_w)
        _nonblock(in_r)
        for fd in (out_r, in_w, err_r, ctl_w):
            _nonblock(fd)
        argv = [exe, "-X", f"heapsize={heap_kb}k", str(run_py), *sim_args, f"ctl=/dev/fd/{ctl_r}"]
        proc = subprocess.Popen(
            argv,
            stdin=in_r,
            stdout=out_w,
            stderr=err_w,
            pass_fds=(ctl_r,),
            start_new_session=True,
            env={**os.environ, "MICROPYPATH": ".frozen"},  # no user libraries
        )
    except OSError as exc:
        for fd in (*child_ends, out_r, in_w, err_r, ctl_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        raise SimulatorError(f"cannot start MicroPython ({exe}): {exc.strerror}") from None
    for fd in child_ends:
        os.close(fd)
    return DeviceProcess(proc, out_r, in_w, err_r, ctl_w)
