"""The HW object (firmware/README.md) for rp2 boards: Pico, Pico W, Pico 2.

Invariants:
- Sample clock: a PIO state machine (``timer_sm``) clocked at exactly 1 MHz raises its IRQ
  flag every ``period_us`` cycles and the sampler runs as a HARD PIO interrupt. Not
  machine.Timer: on rp2 it is a soft timer with millisecond resolution (extmod soft timer,
  period rounded down to whole ms, minimum 1 ms), so 2000 Hz or 300 Hz would silently
  become 1000 Hz or 333 Hz. The PIO loop is crystal-timed and takes periods to the us.
- The counter PIO program fills all 32 instructions of its PIO block (dial.counter_pio), so
  the timer runs on another block: SM 4-7 (PIO1), or 8-11 (PIO2, RP2350 only). Pico W: the
  radio driver claims a PIO1 state machine; boards/pico_w.py uses SM 7.
- Link: USB CDC via sys.stdout.buffer. ``tx_write`` writes only when poll reports POLLOUT
  and at most 64 bytes (one USB full-speed packet) per call: TinyUSB's TX FIFO is 256 bytes
  and a write larger than its free space waits in 1 ms steps (up to 500 ms) for the host.
  POLLOUT on stdout: per the project's notes on v1.28/1.29; old ports (e.g. 2023) polled
  stdin only, and there the dial would send nothing.
- Ticks: time.ticks_us, 30 bits. ``rx`` is sys.stdin.buffer (Ctrl-C still interrupts).
Only this module (with the counter modules) imports machine/rp2.
"""

import machine
import rp2
from micropython import const

from .hw_board import BoardHW

PIO_HZ = const(1_000_000)  # 1 cycle = 1 us: 125 MHz / 125 or 150 MHz / 150, exact
_OVERHEAD = const(3)  # cycles per period besides the count loop (see _tick)


@rp2.asm_pio()
def _tick():
    # Period in cycles = Y + 3: mov (1) + jmp x_dec taken Y times and falling through once
    # (Y + 1) + irq (1); wrap costs nothing. Y is loaded once from the TX FIFO.
    pull(block)
    mov(y, osr)
    wrap_target()
    mov(x, y)
    label("count")
    jmp(x_dec, "count")
    irq(rel(0))
    wrap()


# Registers the native sampler (dial.fast) reads directly: the 1 MHz timer's raw low word
# (time.ticks_us is it masked to 30 bits), a PIO block's FSTAT/FLEVEL/RXF, SIO GPIO_IN.
_TIMERAWL = {"RP2040": 0x40054028, "RP2350": 0x400B0028}
_PIO0 = const(0x50200000)  # PIO1 +0x100000, PIO2 (RP2350) +0x200000
_SIO_GPIO_IN = const(-0x2FFFFFFC)  # 0xd0000004 as a signed 32-bit word


class HW(BoardHW):
    TX_CHUNK = 64  # one USB full-speed packet (see the notes above)
    PORT = "rp2"
    BACKENDS = "pio, irq, adc"

    def __init__(self, cfg):
        super().__init__(cfg)
        self._sm_id = cfg.get("timer_sm", 4)
        self._sm = None
        self._pio_sm = cfg.get("pio_sm", 0)

    def _port_counter(self, backend, cfg, pull):
        if backend == "pio":
            a = cfg["pin_a"]
            if cfg["pin_b"] != a + 1:
                raise ValueError("pio backend needs pin_b == pin_a + 1")
            from . import counter_pio

            return counter_pio.make_pio_counter(cfg.get("pio_sm", 0), a,
                                                pull_up=pull is not None)
        return None

    def fast_regs(self):
        """(timer register, counter PIO block base, SM index in it, SIO GPIO_IN) for the native
        sampler, or None. The timer register is checked against time.ticks_us first: a chip
        this module does not know keeps the calls."""
        import sys
        import time

        chip = "RP2350" if "RP2350" in sys.implementation._machine else "RP2040"
        treg = _TIMERAWL[chip]
        t0 = time.ticks_us()
        raw = machine.mem32[treg] & 0x3FFFFFFF
        if not 0 <= time.ticks_diff(raw, t0) < 1000:
            return None
        pio = 0
        sm = 0
        if getattr(self.counter, "fast_zero", None) is not None:
            sm_id = self._pio_sm
            pio = _PIO0 + 0x100000 * (sm_id // 4)
            sm = sm_id % 4
        return treg, pio, sm, _SIO_GPIO_IN

    def start_timer(self, period_us, callback):
        self.stop_timer()
        sm = rp2.StateMachine(self._sm_id, _tick, freq=PIO_HZ)
        sm.irq(handler=callback, hard=True)
        sm.put(period_us - _OVERHEAD)
        sm.active(1)
        self._sm = sm

    def stop_timer(self):
        sm = self._sm
        if sm is not None:
            sm.active(0)
            sm.irq(None)
            self._sm = None
