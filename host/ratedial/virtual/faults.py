"""Faults of the virtual dial: the control commands and ``--fault`` schedules (pure).

A control command is one line ``KIND [ARG]``; a scheduled fault is ``KIND@T_S[:ARG]``
(``T_S`` seconds after the virtual dial started). The kinds:

========  ==============  ===========================================================
kind      argument        effect
========  ==============  ===========================================================
reboot    none            kill the firmware and start it again (new boot id)
unplug    seconds or none  the port disappears; it comes back after the seconds, or at
                          ``plug``
plug      none            bring an unplugged port back now
stall     seconds or none  the link stops taking device output (host not reading);
                          ends after the seconds, or at ``unstall``
unstall   none            end a stall now
corrupt   bit count       flip that many bits, one in each of the next bytes delivered
button    seconds         press the dial's button for that long
status    none            (control only) one JSON object of the bridge's state
quit      none            stop the virtual dial
========  ==============  ===========================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from ..errors import UsageError


class FaultError(UsageError):
    """A fault specification or control command is malformed."""


class ArgKind(Enum):
    NONE = "none"
    SECONDS_OPT = "seconds or none"
    SECONDS = "seconds"
    COUNT = "count"


KINDS: dict[str, ArgKind] = {
    "reboot": ArgKind.NONE,
    "unplug": ArgKind.SECONDS_OPT,
    "plug": ArgKind.NONE,
    "stall": ArgKind.SECONDS_OPT,
    "unstall": ArgKind.NONE,
    "corrupt": ArgKind.COUNT,
    "button": ArgKind.SECONDS,
    "status": ArgKind.NONE,
    "quit": ArgKind.NONE,
}
SCHEDULABLE = frozenset(KINDS) - {"status"}


@dataclass(frozen=True, slots=True)
class Command:
    kind: str
    arg: float | int | None = None

    def __str__(self) -> str:
        return self.kind if self.arg is None else f"{self.kind} {self.arg:g}"


@dataclass(frozen=True, slots=True)
class FaultSpec:
    at_s: float
    command: Command

    def __str__(self) -> str:
        c = self.command
        return f"{c.kind}@{self.at_s:g}" + ("" if c.arg is None else f":{c.arg:g}")


def _arg(kind: str, text: str | None, where: str) -> float | int | None:
    want = KINDS[kind]
    if text is None or text == "":
        if want in (ArgKind.SECONDS, ArgKind.COUNT):
            raise FaultError(f"{where}: {kind} needs an argument ({want.value})")
        return None
    if want is ArgKind.NONE:
        raise FaultError(f"{where}: {kind} takes no argument")
    if want is ArgKind.COUNT:
        try:
            n = int(text)
        except ValueError:
            raise FaultError(
                f"{where}: {kind} needs a whole number of bits, got {text!r}"
            ) from None
        if not 1 <= n <= 1_000_000:
            raise FaultError(f"{where}: {kind} count must be 1..1000000")
        return n
    try:
        s = float(text)
    except ValueError:
        raise FaultError(f"{where}: {kind} needs seconds, got {text!r}") from None
    if not math.isfinite(s) or s < 0 or (want is ArgKind.SECONDS and s == 0):
        raise FaultError(f"{where}: {kind} needs a positive number of seconds")
    return s


def parse_command(line: str) -> Command:
    """``KIND [ARG]`` as sent to the control socket."""
    parts = line.split()
    if not parts:
        raise FaultError("empty command")
    kind = parts[0].lower()
    if kind not in KINDS:
        raise FaultError(f"unknown command {parts[0]!r} (known: {', '.join(KINDS)})")
    if len(parts) > 2:
        raise FaultError(f"{kind}: too many arguments")
    return Command(kind, _arg(kind, parts[1] if len(parts) == 2 else None, kind))


def parse_fault(spec: str) -> FaultSpec:
    """``KIND@T_S[:ARG]`` from ``--fault``."""
    where = f"--fault {spec}"
    kind, at, rest = spec.strip().partition("@")
    kind = kind.lower()
    if not at:
        raise FaultError(f"{where}: expected KIND@SECONDS[:ARG], e.g. reboot@5 or unplug@10:1.5")
    if kind not in SCHEDULABLE:
        known = ", ".join(sorted(SCHEDULABLE))
        raise FaultError(f"{where}: unknown fault {kind!r} (known: {known})")
    t_text, _, arg_text = rest.partition(":")
    try:
        t = float(t_text)
    except ValueError:
        raise FaultError(f"{where}: time {t_text!r} is not a number of seconds") from None
    if not math.isfinite(t) or t < 0:
        raise FaultError(f"{where}: time must be zero or more seconds")
    return FaultSpec(t, Command(kind, _arg(kind, arg_text, where)))
