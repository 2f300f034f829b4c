"""A rater named by a port that the run will not open (``--rater client=/dev/pts/3`` with
no ``--port /dev/pts/3``): found before the run, so a session is not recorded without its
dial (README, "Recording a session")."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

from .._platform import is_com_port, port_key
from ..config import RunConfig
from .run import dial_ports

__all__ = ["names_port", "unopened_rater_error", "unopened_rater_port"]


def names_port(ident: str, platform: str = sys.platform) -> bool:
    """Whether a rater's dial is named by its port (a path, or COM3 on Windows), not its id."""
    if is_com_port(ident, platform):
        return True
    return os.path.exists(ident) or "/" in ident or os.sep in ident


def unopened_rater_port(cfg: RunConfig, *, usb_ports: Iterable[str] | None = None,
                        platform: str = sys.platform) -> tuple[str, str] | None:
    """The first ``(label, port)`` of a rater whose port this run never opens, or None.

    A port given with ``--port`` (or the config's ``ports``) is opened. Without one, the USB
    scan (when on) opens only dials' USB ports (``usb_ports``, by default those plugged in
    now): a port that exists but is not one of them (a virtual dial's pty, another device)
    is never opened; one that does not exist yet is left to the scan, which opens a dial's
    port when it is plugged in. With ``--no-scan`` only the given ports are opened."""
    opened = {port_key(p, platform) for p in cfg.ports}
    scanned: set[str] | None = None
    for label, ident in cfg.raters.items():
        if not names_port(ident, platform):
            continue
        key = port_key(ident, platform)
        if key in opened:
            continue
        if cfg.scan:
            if not os.path.exists(ident):
                continue  # not plugged in yet: the scan opens it when it comes
            if scanned is None:
                found = dial_ports() if usb_ports is None else usb_ports
                scanned = {port_key(p, platform) for p in found}
            if key in scanned:
                continue
        return label, ident
    return None


def unopened_rater_error(cfg: RunConfig) -> str | None:
    """The one line that refuses a run whose rater names a port it would not open."""
    unopened = unopened_rater_port(cfg)
    if unopened is None:
        return None
    label, port = unopened
    scanned = " (the USB scan opens only dials plugged in by USB)" if cfg.scan else ""
    return f"rater {label}={port} names a port this run does not open{scanned}: add --port {port}"
