"""``ratedial virtual-dial``: run a virtual dial behind a pseudo-terminal.

The first line on stdout is the port's path (a stable symlink), printed once the firmware
runs; then the dial runs until Ctrl-C, SIGTERM, ``quit`` on the control socket or
``--duration``. Faults come from ``--fault KIND@T_S[:ARG]`` or the control socket.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import click

from .._paths import firmware_dir
from ..cli_types import FiniteRange, HomePath
from ..errors import RatedialError, UsageError
from .bridge import Bridge
from .faults import FaultSpec, parse_fault
from .linkmodel import LinkParams
from .options import MAX_DRIFT_PPM, WRAP_BITS_MAX, WRAP_BITS_MIN, DialOptions


class _OneLineErrors(click.Command):
    """Option errors become a ratedial UsageError: one line, exit status 2, no usage dump."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            raise UsageError(exc.format_message()) from None


def _stall_range(text: str) -> tuple[int, int]:
    lo, sep, hi = text.partition(":")
    try:
        a = float(lo)
        b = float(hi) if sep else a
    except ValueError:
        raise UsageError(f"--stall-ms {text!r}: expected MIN:MAX in ms, e.g. 5:30") from None
    return round(a * 1000), round(b * 1000)


@click.command("virtual-dial", cls=_OneLineErrors,
               context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--rate", "rate_hz", type=click.IntRange(50, 2000),
              help="Sample rate in Hz (default: the board's, 1000).")
@click.option("--batch", type=click.IntRange(1, 100),
              help="Samples per SAMPLES frame (default 10).")
@click.option("--debounce-ms", type=click.IntRange(0, 1000),
              help="Button debounce (default 5 ms).")
@click.option("--script", type=HomePath(path_type=Path, dir_okay=False),
              help="Rating curve, CSV t_s,value[,button] (value 0..100; the first row is "
                   "0,50: the knob starts at 50). "
                   "Default: a seeded random rater that rests, turns, overshoots.")
@click.option("--seed", type=int, default=1, show_default=True,
              help="Seed of the rater, the contact bounce and the link model.")
@click.option("--counts-per-point", type=FiniteRange(0, 100, min_open=True), default=1.0,
              show_default=True, help="Encoder quarter-steps per rating point.")
@click.option("--drift-ppm", type=FiniteRange(-MAX_DRIFT_PPM, MAX_DRIFT_PPM), default=0.0,
              show_default=True, help="Device crystal error: + runs fast.")
@click.option("--wrap-bits", type=click.IntRange(WRAP_BITS_MIN, WRAP_BITS_MAX), default=30,
              show_default=True, help="Width of the raw tick counter (30 as on rp2/esp32).")
@click.option("--tick-start-us", type=click.IntRange(min=0), default=0, show_default=True,
              help="Raw ticks at boot, 0 to 2**WRAP_BITS - 1 (e.g. 2**30 - 3000000 to wrap "
                   "3 s in).")
@click.option("--uid", help="Board unique id, hex (default: derived from --seed).")
@click.option("--truth", type=HomePath(path_type=Path, dir_okay=False),
              help="Append one JSON line of ground truth per boot to this file.")
@click.option("--duration", type=FiniteRange(min=0, min_open=True),
              help="Stop after this many seconds.")
@click.option("--link", type=HomePath(path_type=Path),
              help="Path of the port symlink (default: dial0 in a private temp dir).")
@click.option("--control", type=HomePath(path_type=Path),
              help="Unix socket for commands, one per line: reboot, unplug [S], plug, "
                   "stall [S], unstall, corrupt N, button S, status, quit (unplug and stall "
                   "without S, or with 0: until plug or unstall). Each gets one line back "
                   "when it is done: unplug S, stall S and button S after their seconds, "
                   "corrupt N once N bits went out (none while no program reads the port).")
@click.option("--fault", "faults", multiple=True, metavar="KIND@T_S[:ARG]",
              help="Schedule a fault, e.g. reboot@5, unplug@10:1.5, stall@3:2, corrupt@4:8.")
@click.option("--ber", type=FiniteRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="Bit-error rate on the device->host link.")
@click.option("--no-link-model", is_flag=True,
              help="Forward bytes at once (no 1 ms USB frames, jitter or stalls).")
@click.option("--jitter-us", type=click.IntRange(min=0), default=LinkParams().jitter_us,
              show_default=True,
              help="Host-side delay after each 1 ms USB frame: uniform 0..this.")
@click.option("--stall-rate", type=FiniteRange(min=0), default=LinkParams().stall_per_s,
              show_default=True,
              help="Mean host-side link stalls per second.")
@click.option("--stall-ms", default="5:30", show_default=True, metavar="MIN:MAX",
              help="Duration range of link stalls.")
@click.option("--baud", type=FiniteRange(min=0, min_open=True),
              help="Cap the link like a UART bridge (e.g. 115200).")
@click.option("--native-usb", is_flag=True,
              help="A reboot makes the port disappear and come back (rp2 native USB).")
@click.option("--reenumerate-s", type=FiniteRange(min=0), default=0.8, show_default=True,
              help="With --native-usb: how long the port is gone after a reboot.")
@click.option("--no-realtime", is_flag=True,
              help="Do not give the simulated interrupts real-time priority.")
@click.option("--spin-us", type=click.IntRange(0, 2000), default=0, show_default=True,
              help="Busy-wait before each simulated interrupt: less jitter, more CPU.")
@click.option("--heap-kb", type=int, default=512, show_default=True, hidden=True)
@click.option("--firmware", type=HomePath(path_type=Path, file_okay=False), hidden=True)
@click.option("-v", "--verbose", is_flag=True, help="Log link and port events.")
def virtual_dial(**kw: Any) -> None:
    """Run the real firmware under MicroPython on a simulated dial, behind a pty.

    Prints the port path first, then runs until stopped. Open the port like a real dial
    (e.g. ratedial run --port PATH).
    """
    ctx = click.get_current_context()
    if not kw["native_usb"] and \
            ctx.get_parameter_source("reenumerate_s") == click.core.ParameterSource.COMMANDLINE:
        raise UsageError("--reenumerate-s needs --native-usb (without it, a reboot keeps the "
                         "port)")
    opts = options_from_cli(kw)
    run(opts, link=kw["link"], control=kw["control"], duration=kw["duration"],
        firmware=kw["firmware"], verbose=kw["verbose"])


def options_from_cli(kw: dict[str, Any]) -> DialOptions:
    faults: tuple[FaultSpec, ...] = tuple(parse_fault(f) for f in kw["faults"])
    stall_lo, stall_hi = _stall_range(kw["stall_ms"])
    baud = kw["baud"]
    if baud is not None and baud <= 0:
        raise UsageError("--baud must be positive")
    link = LinkParams(
        jitter_us=kw["jitter_us"],
        stall_per_s=kw["stall_rate"],
        stall_min_us=stall_lo,
        stall_max_us=stall_hi,
        bytes_per_frame=None if baud is None else baud / 10 / 1000,
    )
    script = kw["script"]
    if script is not None and not script.is_file():
        raise UsageError(f"--script {script}: no such file")
    if kw["duration"] is not None and kw["duration"] <= 0:
        raise UsageError("--duration must be positive")
    truth = kw["truth"]
    if truth is not None and not truth.parent.is_dir():  # else the firmware's traceback
        raise UsageError(f"--truth {truth}: directory {truth.parent} does not exist")
    if truth is not None and not os.access(truth.parent, os.W_OK):
        raise UsageError(f"--truth {truth}: directory {truth.parent} cannot be written")
    return DialOptions(
        rate_hz=kw["rate_hz"], batch=kw["batch"], debounce_ms=kw["debounce_ms"],
        script=script, seed=kw["seed"], counts_per_point=kw["counts_per_point"],
        drift_ppm=kw["drift_ppm"], wrap_bits=kw["wrap_bits"],
        tick_start_us=kw["tick_start_us"], uid=kw["uid"], truth=kw["truth"],
        link_model=not kw["no_link_model"], link=link, ber=kw["ber"], faults=faults,
        native_usb=kw["native_usb"], reenumerate_s=kw["reenumerate_s"],
        realtime=not kw["no_realtime"], spin_us=kw["spin_us"], heap_kb=kw["heap_kb"],
    )


def run(opts: DialOptions, *, link: Path | None = None, control: Path | None = None,
        duration: float | None = None, firmware: Path | None = None,
        verbose: bool = False) -> None:
    """Run a virtual dial in this process until stopped. Raises SimulatorError if the
    firmware dies."""
    if link is not None and not link.parent.is_dir():
        raise UsageError(f"--link {link}: directory {link.parent} does not exist")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("virtual-dial: %(message)s"))
    logger = logging.getLogger("ratedial.virtual")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    workdir = Path(tempfile.mkdtemp(prefix="ratedial-vd-"))
    bridge = Bridge(opts, link=link or workdir / "dial0", firmware=firmware or firmware_dir(),
                    workdir=workdir, truth=opts.truth, control=control)

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        bridge.stop()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        bridge.start()
        if duration is not None:
            bridge.stop_at(time.monotonic_ns() + int(duration * 1e9))
        t = threading.Thread(target=bridge.run, name="virtual-dial", daemon=True)
        t.start()
        while not bridge.ready.wait(0.1):
            if not t.is_alive():
                break
        if bridge.error is None and bridge.ready.is_set():
            click.echo(str(bridge.link))
            sys.stdout.flush()
        while t.is_alive():
            t.join(0.2)
        if bridge.error is not None:
            raise bridge.error
    finally:
        bridge.close()
        for s, h in old.items():
            signal.signal(s, h)
        shutil.rmtree(workdir, ignore_errors=True)
        logger.removeHandler(handler)


def main() -> None:
    """``python -m ratedial.virtual``: the command on its own, with one-line errors."""
    try:
        virtual_dial.main(standalone_mode=False, prog_name="ratedial virtual-dial")
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"ratedial virtual-dial: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except RatedialError as exc:
        click.echo(f"ratedial virtual-dial: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        with contextlib.suppress(OSError):
            sys.stdout.close()
        sys.exit(1)
