"""``ratedial devices``: which dials are connected, asked with a HELLO handshake."""

from __future__ import annotations

import time

import serial

from .daemon.link import _reason
from .daemon.run import dial_ports
from .errors import NO_FIRMWARE_HINT
from .wire import FrameDecoder, Hello, Info, encode_command


def candidate_ports(extra: tuple[str, ...] = ()) -> list[str]:
    return list(dict.fromkeys([*dial_ports(), *extra]))


def ask_hello(port: str, timeout: float) -> Hello | str:
    """The dial's HELLO, or a one-line explanation of why there is none.

    INFO goes out as the port opens, again as soon as the first ``0x00`` arrives, then every
    0.3 s. The first frame after an open has no ``0x00`` before it and is discarded as a
    missed start (docs/protocol.md, "After opening the port"): it is often the HELLO that
    answers the first INFO, so the INFO after the first ``0x00`` is the one that counts. So
    a dial answers within one round trip after its first frame, well inside the shortest
    ``--timeout`` (0.2 s)."""
    try:
        with serial.Serial(port, 115200, timeout=0.02, exclusive=True) as ser:
            ser.reset_input_buffer()
            dec = FrameDecoder()
            deadline = time.monotonic() + timeout
            next_ask = 0.0
            in_step = False  # a 0x00 has come: the replies from here on are read whole
            while time.monotonic() < deadline:
                if time.monotonic() >= next_ask:  # again every 0.3 s: a dial may miss one
                    ser.write(encode_command(Info()))
                    next_ask = time.monotonic() + 0.3
                data = ser.read(4096)
                for f in dec.feed(data):
                    if isinstance(f, Hello):
                        return f
                if not in_step and 0 in data:
                    in_step = True
                    next_ask = 0.0  # the first reply may have been the discarded frame
            if dec.stats.last_foreign_version is not None:
                return (f"dial speaks protocol v{dec.stats.last_foreign_version}; "
                        "update it with ratedial flash")
            return f"no ratedial dial answered ({NO_FIRMWARE_HINT})"
    except (serial.SerialException, OSError) as exc:
        return _reason(exc)


def list_dials(*, extra_ports: tuple[str, ...] = (),
               timeout: float = 2.0) -> tuple[list[str], dict[str, str]]:
    """One row per dial that answered (its id first), and for each port without one why."""
    rows: list[str] = []
    problems: dict[str, str] = {}
    for port in candidate_ports(extra_ports):
        h = ask_hello(port, timeout)
        if isinstance(h, Hello):
            rows.append(f"{h.uid_hex}  {port}  board={h.board} firmware={h.firmware} "
                        f"backend={h.backend} rate={h.rate_hz}Hz boot={h.boot_id:08x}")
        else:
            problems[port] = h
    return rows, problems
