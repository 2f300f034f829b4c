"""What the rp2 and esp32 HW objects share (firmware/README.md, "The HW object").

``BoardHW`` builds the button, the link and the portable counters (``irq``, ``adc``); the
port modules add their own counter (``pio``, ``pcnt``) and sample clock. Only the port
modules and this one import machine.
"""

import gc
import os
import select
import sys
import time

import machine


class Button:
    """Debounced by the sampler; this only reads the level (IRQ-safe). The sampler reads
    ``pin_value() ^ invert`` itself (one native call per sample instead of this method)."""

    def __init__(self, pin, active_low, pin_id=None):
        self._v = self.pin_value = pin.value
        self._inv = self.invert = 1 if active_low else 0
        self.pin_id = pin_id  # GPIO number: the rp2 native sampler reads SIO GPIO_IN itself

    def value(self):
        return self._v() ^ self._inv


class BoardHW:
    tick_bits = 30
    # The sampler's "frame full" runs the app's frame job through micropython.schedule
    # (dial.aio.Scheduled): no asyncio round per frame. wake_flag() stays for other hosts.
    wake_scheduled = True
    TX_CHUNK = 64  # bytes per tx_write call; the port sets its own (see its module notes)
    PORT = "board"
    BACKENDS = "irq, adc"

    def __init__(self, cfg):
        self.board = cfg["board"]
        self.ticks_us = time.ticks_us
        self.ticks_diff = time.ticks_diff
        self._boot = int.from_bytes(os.urandom(4), "little")
        pull = machine.Pin.PULL_UP if cfg.get("pull_up", True) else None
        self.counter = self._make_counter(cfg, pull)
        pb = cfg.get("pin_button")
        if pb is None:
            self.button = None
        else:
            self.button = Button(machine.Pin(pb, machine.Pin.IN, pull),
                                 cfg.get("button_active_low", True), pb)
        self._out = sys.stdout.buffer
        self._wpoll = select.poll()
        self._wpoll.register(sys.stdout, select.POLLOUT)
        self.rx = sys.stdin.buffer

    def _port_counter(self, backend, cfg, pull):
        """The port's own counter for ``backend``, or None."""
        return None

    def _make_counter(self, cfg, pull):
        backend = cfg["backend"]
        counter = self._port_counter(backend, cfg, pull)
        if counter is not None:
            return counter
        if backend == "irq":
            from . import quad

            return quad.IrqCounter(machine.Pin(cfg["pin_a"], machine.Pin.IN, pull),
                                   machine.Pin(cfg["pin_b"], machine.Pin.IN, pull))
        if backend == "adc":
            from . import counter_adc

            opts = {}
            for key, name in (("adc_oversample", "oversample"), ("adc_hysteresis", "hysteresis"),
                              ("adc_settle", "settle"), ("adc_smooth", "smooth")):
                if key in cfg:
                    opts[name] = cfg[key]
            return counter_adc.make_adc_counter(cfg["pin_adc"], **opts)
        raise ValueError(self.PORT + " backends: " + self.BACKENDS)

    def unique_id(self):
        return machine.unique_id()

    def boot_id(self):
        return self._boot

    def disable_irq(self):
        return machine.disable_irq()

    def enable_irq(self, state):
        machine.enable_irq(state)

    def tx_write(self, buf):
        return self.tx_write_at(buf, 0, len(buf))

    def tx_write_at(self, buf, off, n):
        """``tx_write(buf[off:off + n])`` without making the slice: MicroPython streams take
        ``write(buf, off, n)``, so a frame is written with no allocation."""
        # ipoll, not poll: poll() allocates a list of tuples on every call.
        for _ in self._wpoll.ipoll(0):
            break
        else:
            return 0
        return self._out.write(buf, off, n if n < self.TX_CHUNK else self.TX_CHUNK) or 0

    def wake_flag(self):
        """What the sampling interrupt sets when a frame is full (see dial.sampler): an
        asyncio wake-up that allocates nothing per wait (dial.aio)."""
        from .aio import IrqFlag

        return IrqFlag()

    def mem_free(self):
        return gc.mem_free()
