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
  blocks until the UART FIFO takes it (32 bytes = 2.8 ms). The S3's native USB is no faster
  in the official build: it copies every byte onto UART0 at 115200 baud too, waiting a
  FreeRTOS tick (10 ms) when that FIFO is full (boards/esp32_s3.py). Use rates within
  docs/protocol.md "Bandwidth".
- Ticks: time.ticks_us, 30 bits. ``rx`` is sys.stdin.buffer.
Only this module (with the counter modules) imports machine.
"""

import machine

from .hw_board import BoardHW


class HW(BoardHW):
    TX_CHUNK = 32  # through a 115200-baud bridge: 2.8 ms at most (see the notes above)
    PORT = "esp32"
    BACKENDS = "pcnt, irq, adc"

    def __init__(self, cfg):
        super().__init__(cfg)
        self._timer = machine.Timer(cfg.get("timer_id", 0))
        self._running = False

    def _port_counter(self, backend, cfg, pull):
        if backend == "pcnt":
            from . import counter_pcnt

            return counter_pcnt.make_pcnt_counter(cfg.get("pcnt_unit", 0), cfg["pin_a"],
                                                  cfg["pin_b"],
                                                  filter_ns=cfg.get("filter_ns", 1000),
                                                  pull_up=pull is not None)
        return None

    def start_timer(self, period_us, callback):
        self._timer.init(mode=machine.Timer.PERIODIC, period=period_us, tick_hz=1_000_000,
                         callback=callback)
        self._running = True

    def stop_timer(self):
        if self._running:
            self._timer.deinit()
            self._running = False
