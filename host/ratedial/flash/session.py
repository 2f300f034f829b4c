"""Talking to a board that runs MicroPython: finding its port, the raw REPL session (through
mpremote) and the HELLO check at the end."""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterable
from typing import Any

import serial

from ..errors import PortError
from ..wire import FrameDecoder, Hello, Info, encode_command
from .board import (
    CHUNK,
    KNOWN_VIDS,
    PROBE,
    RAW_BANNER,
    RAW_REPL_TIMEOUT,
    BoardInfo,
    FlashError,
    NotMicroPython,
    parse_probe,
)

ENTER_SETTLE_S = (0.3, 1.0)  # s to let the firmware stop before each try at the raw REPL
READ_TIMEOUT_S = 5.0  # longest wait for the board's next byte during a transfer

# ------------------------------------------------------------------ finding the board


def find_port(ports: Iterable[Any]) -> str:
    """The device of the one port whose USB vendor id is in KNOWN_VIDS."""
    found = [p for p in ports if getattr(p, "vid", None) in KNOWN_VIDS]
    if not found:
        raise PortError(
            "no MicroPython board found (no serial port with a Raspberry Pi, Espressif, "
            "CP210x, CH340 or FTDI USB id): plug it in, or name it with --port")
    if len(found) > 1:
        names = ", ".join(f"{p.device} ({KNOWN_VIDS[p.vid]})" for p in found)
        raise PortError(f"several possible boards: {names}: choose one with --port")
    return str(found[0].device)


def _check_port_access(port: str) -> None:
    if os.name != "posix" or "://" in port:
        return
    if not os.path.exists(port):
        raise PortError(f"{port}: no such port")
    if not os.access(port, os.R_OK | os.W_OK):
        raise PortError(
            f"{port}: permission denied (on Linux, add yourself to the dialout group: "
            "sudo usermod -aG dialout $USER, then log in again; or install "
            "hardware/udev/70-ratedial.rules)")


# ------------------------------------------------------------------ the raw REPL session


class _Expect:
    """Reads a serial port until a marker, each wait bounded in time. Bytes after a marker
    stay for the next wait; the first 256 bytes heard are kept for error messages."""

    def __init__(self, ser: Any) -> None:
        self.ser = ser
        self.pending = bytearray()
        self.heard = bytearray()

    def _read(self) -> None:
        chunk = self.ser.read(max(1, self.ser.in_waiting))
        if chunk:
            if len(self.heard) < 256:
                self.heard += chunk
            self.pending += chunk
            del self.pending[:-4096]

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._read()
        self.pending.clear()

    def expect(self, marker: bytes, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while True:
            i = self.pending.find(marker)
            if i >= 0:
                del self.pending[:i + len(marker)]
                return True
            if time.monotonic() >= deadline:
                return False
            self._read()


class _Session:
    """mpremote's SerialTransport, with its errors turned into one-line FlashErrors."""

    def __init__(self, port: str) -> None:
        # the optional "firmware" extra, imported only when flashing
        from mpremote.transport import (
            TransportError,
            TransportExecError,
        )
        from mpremote.transport_serial import (
            SerialTransport,
        )

        self.port = port
        self._error: type[Exception] = TransportError
        self._exec_error: type[Exception] = TransportExecError
        try:
            # timeout: pty ports read byte by byte without it and could block for ever. It
            # bounds each wait for the board (e.g. a raw-paste window): a Pico answers in
            # ms, an emulated one on a busy machine has taken over a second.
            self.t: Any = SerialTransport(port, baudrate=115200, timeout=READ_TIMEOUT_S)
        except TransportError as exc:
            raise PortError(f"{port}: cannot open it ({_open_reason(port) or exc})") from None

    def enter(self) -> None:
        """Interrupt whatever runs, raw REPL, soft reset; NotMicroPython if that fails.

        Done here with time limits rather than by mpremote's enter_raw_repl, whose waits
        never end while a device keeps sending (its time-out only counts silent periods)."""
        ser = self.t.serial
        saved = ser.timeout
        ser.timeout = 0.05
        rx = _Expect(ser)
        ok = False
        try:
            # Twice at most: a board still stopping the firmware when Ctrl-A came can miss it
            # (seen once on the emulated Pico, in CI: a traceback and no raw REPL in time).
            for settle_s in ENTER_SETTLE_S:
                ser.write(b"\r\x03\x03")  # Ctrl-C twice: stop the dial firmware (or anything)
                rx.drain(settle_s)
                ser.write(b"\r\x01")  # Ctrl-A: raw REPL
                ok = rx.expect(RAW_BANNER + b">", RAW_REPL_TIMEOUT)
                if ok:
                    break
            if ok:
                ser.write(b"\x04")  # Ctrl-D at the raw prompt: soft reset, stays raw
                ok = (rx.expect(b"soft reboot\r\n", RAW_REPL_TIMEOUT)
                      and rx.expect(RAW_BANNER + b">", RAW_REPL_TIMEOUT))
        except (OSError, serial.SerialException) as exc:
            raise PortError(f"{self.port}: {exc}") from None
        finally:
            ser.timeout = saved
        if not ok:
            heard = bytes(rx.heard[:24])
            text = heard.isascii() and all(32 <= b < 127 or b in b"\r\n\t" for b in heard)
            said = (" (it sent nothing)" if not heard else
                    f" (it sent {heard.decode('ascii')!r})" if text else
                    f" (it sends binary data, {heard.hex(' ')[:47]}...: a dial already running "
                    "the ratedial firmware, or another device)")
            raise NotMicroPython(f"{self.port} does not answer like a MicroPython REPL{said}: "
                                 "nothing was written")
        # A MicroPython raw REPL for sure now: mpremote re-enters it (Ctrl-A reprints the
        # banner) so that its own reader sees the ">" prompt it expects before each exec.
        try:
            self.t.enter_raw_repl(soft_reset=False, timeout_overall=RAW_REPL_TIMEOUT)
        except self._error as exc:
            raise NotMicroPython(f"{self.port} left the raw REPL ({exc})") from None

    def exec(self, code: str, what: str) -> str:
        try:
            out: bytes = self.t.exec(code)
        except self._exec_error as exc:
            last = str(exc).strip().splitlines()[-1:] or ["error"]
            raise FlashError(f"the board failed {what}: {last[0]}") from None
        except self._error as exc:
            raise FlashError(f"the board stopped answering while {what}: {exc}") from None
        return out.decode("utf-8", "replace")

    def write_file(self, path: str, data: bytes) -> None:
        try:
            self.t.fs_writefile(path, data, chunk_size=CHUNK)
        except (self._error, OSError) as exc:
            raise FlashError(f"writing {path} failed: {exc}") from None

    def soft_reset(self) -> None:
        """Leave the raw REPL and soft-reset from the friendly one: main.py then runs."""
        self.t.exit_raw_repl()
        self.t.read_until(1, b">>> ", timeout=2)
        self.t.serial.write(b"\x04")
        time.sleep(0.05)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.t.close()


def probe(session: _Session, paths: list[str]) -> BoardInfo:
    out = session.exec(f"PATHS = {paths!r}\n" + PROBE, "reading its version and files")
    try:
        return parse_probe(out.strip().splitlines()[-1])
    except (ValueError, SyntaxError, IndexError, TypeError) as exc:
        raise NotMicroPython(f"{session.port} gave an unexpected answer to the probe ({exc}): "
                             "nothing was written") from None


# ------------------------------------------------------------------ HELLO


def wait_hello(port: str, *, firmware: str, board: str, timeout: float) -> Hello:
    """Open the port, send INFO every 0.5 s, return the first HELLO with this firmware and
    board; FlashError naming what was heard instead."""
    dec = FrameDecoder()
    text = bytearray()
    other: Hello | None = None
    deadline = time.monotonic() + timeout
    next_info = 0.0
    try:
        with serial.Serial(port, 115200, timeout=0.05) as ser:
            while time.monotonic() < deadline:
                if time.monotonic() >= next_info:
                    ser.write(encode_command(Info()))
                    next_info = time.monotonic() + 0.5
                data = ser.read(4096)
                if len(text) < 65536:
                    text += data
                for frame in dec.feed(data):
                    if isinstance(frame, Hello):
                        if frame.firmware == firmware and frame.board == board:
                            return frame
                        other = frame
    except (serial.SerialException, OSError) as exc:
        raise FlashError(f"files written, but {port} could not be reopened: {exc}") from None
    if other is not None:
        raise FlashError(f"files written, but the dial says firmware {other.firmware} board "
                         f"{other.board}, not {firmware} {board}")
    if dec.stats.last_foreign_version is not None:
        raise FlashError(f"files written, but the dial speaks protocol v"
                         f"{dec.stats.last_foreign_version}")
    errors = [ln for ln in text.decode("ascii", "replace").splitlines()
              if re.match(r"\w*(Error|Exception|Interrupt)\b", ln.strip())]
    said = f"; the board printed: {errors[-1].strip()[:100]}" if errors else ""
    raise FlashError(f"files written, but the dial did not answer INFO within "
                     f"{timeout:g} s{said}")


def _open_reason(port: str) -> str | None:
    """Why ``port`` cannot be opened, as ``ratedial devices`` says it (mpremote only says
    "failed to access"): not there, not a serial port, a folder, busy, no permission."""
    import serial

    from ..daemon.link import _reason

    try:
        serial.Serial(port, exclusive=True).close()
    except (serial.SerialException, OSError, ValueError) as exc:
        return _reason(exc)
    return None
