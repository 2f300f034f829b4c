"""The virtual dial: the real firmware under MicroPython on simulated hardware, behind a
pseudo-terminal exactly as a USB CDC port is.

Data path: ``firmware/sim`` (rater -> encoder edges -> pin IRQs, timer, drifting clock) ->
firmware stdout pipe (4 KB, non-blocking) -> ``bridge`` (``supervisor``: the MicroPython
process across reboots; ``usb``: the link on ``linkmodel``'s timing, 1 ms USB frames, jitter,
stalls, bit errors; ``control``: the fault and command socket) -> ``port`` (pty + symlink)
-> the host.

Pure parts: ``script`` (rating curves), ``faults`` (commands and schedules), ``linkmodel``,
``truth`` (device time -> host time), ``options``.
"""

from .dial import VirtualDial
from .faults import Command, FaultSpec, parse_command, parse_fault
from .linkmodel import LinkParams
from .options import DialOptions
from .script import Script, load_script, parse_script
from .truth import BootTruth, read_truth

__all__ = [
    "BootTruth",
    "Command",
    "DialOptions",
    "FaultSpec",
    "LinkParams",
    "Script",
    "VirtualDial",
    "load_script",
    "parse_command",
    "parse_fault",
    "parse_script",
    "read_truth",
]
