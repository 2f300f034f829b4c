"""Which asyncio loop a command runs on.

Invariant: everything that speaks MQTT (aiomqtt waits on paho's socket with ``add_reader``)
runs on a selector loop, on every OS. Windows' default loop (Proactor) has no
``add_reader``; its selector loop waits in ``select``, which takes sockets only, so the
serial ports, the keyboard and mpv's named pipe are read by threads there
(:mod:`ratedial.daemon.serial_thread`, :mod:`.keys`, :mod:`.pipes`).
"""

from __future__ import annotations

import asyncio


def selector_loop() -> asyncio.AbstractEventLoop:
    return asyncio.SelectorEventLoop()
