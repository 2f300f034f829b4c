"""The HW object (firmware/README.md) for esp32 boards (ESP32 with a USB-UART bridge,
ESP32-S3 with native USB).

Invariants:
- Sample clock: hardware machine.Timer ``timer_id`` with ``tick_hz=1_000_000`` so the
  period is exact to the us. esp32 timers are SOFT: the interrupt only schedules the
  callback, which runs between bytecodes of the main program. A garbage collection delays
  it (about 2 ms without PSRAM, up to ~290 ms with PSRAM); the sample time is read inside
  the callback, so late samples are reported exactly (jitter, overrun flag), never faked.
  The scheduler queue holds 8 callbacks: a longer stall loses ticks (fewer samples, flagged
  as overruns), never indices. For the same reason ``disable_irq`` does not hold off a
  callback that is already scheduled; dial.app orders its critical sections to allow that.
- Link: sys.stdout.buffer, at most 32 bytes per call. Through a 115200-baud bridge a write
  blocks until the UART FIFO takes it: 32 bytes = 2.8 ms at most. Native USB (S3) is far
  faster. Use rates within docs/protocol.md "Bandwidth".
- Ticks: time.ticks_us, 30 bits. ``rx`` is sys.stdin.buffer.
Only this module (with the counter modules) imports machine.
"""

import gc
import os
import select
import sys
import time

import machine
from micropython import const

TX_CHUNK = const(32)


class _Button:
    """Debounced by the sampler; this only reads the level."""

    def __init__(self, pin, active_low):
        self._v = pin.value
        self._inv = 1 if active_low else 0

    def value(self):
        return self._v() ^ self._inv


class HW:
    tick_bits = 30

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
            self.button = _Button(machine.Pin(pb, machine.Pin.IN, pull),
                                  cfg.get("button_active_low", True))
        self._timer = machine.Timer(cfg.get("timer_id", 0))
        self._running = False
        self._out = sys.stdout.buffer
        self._wpoll = select.poll()
        self._wpoll.register(sys.stdout, select.POLLOUT)
        self.rx = sys.stdin.buffer

    @staticmethod
    def _make_counter(cfg, pull):
        backend = cfg["backend"]
        if backend == "pcnt":
            from . import counter_pcnt

            return counter_pcnt.make_pcnt_counter(cfg.get("pcnt_unit", 0), cfg["pin_a"],
                                                  cfg["pin_b"],
                                                  filter_ns=cfg.get("filter_ns", 1000),
                                                  pull_up=pull is not None)
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
        raise ValueError("esp32 backends: pcnt, irq, adc")

    def unique_id(self):
        return machine.unique_id()

    def boot_id(self):
        return self._boot

    def start_timer(self, period_us, callback):
        self._timer.init(mode=machine.Timer.PERIODIC, period=period_us, tick_hz=1_000_000,
                         callback=callback)
        self._running = True

    def stop_timer(self):
        if self._running:
            self._timer.deinit()
            self._running = False

    def disable_irq(self):
        return machine.disable_irq()

    def enable_irq(self, state):
        machine.enable_irq(state)

    def tx_write(self, buf):
        if not self._wpoll.poll(0):
            return 0
        if len(buf) > TX_CHUNK:
            buf = buf[:TX_CHUNK]
        return self._out.write(buf) or 0

    def mem_free(self):
        return gc.mem_free()
