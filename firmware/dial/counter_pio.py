"""rp2 backend: the quadrature encoder counted by a PIO state machine, zero CPU.

Invariants:
- The program is pico-examples' ``quadrature_encoder.pio`` (BSD-3-Clause, Raspberry Pi),
  instruction for instruction: a 16-entry jump table at addresses 0-15 indexed by
  ``(old << 2) | new`` two-bit pin states, ``mov(pc, isr)`` into it, the count kept in Y and
  offered to the RX FIFO with ``push(noblock)`` on every loop.
- It must load at address 0 (computed jumps) but rp2.asm_pio cannot set an origin: padding
  the program to all 32 instructions leaves 0 as the only offset where it fits. The whole
  instruction memory of that PIO block is used, so its other three state machines can only
  run this same program. Use PIO0 (sm_id 0-3): the Pico W radio driver prefers PIO1
  (pico-sdk cyw43_bus_pio_spi.c, CYW43_SPI_PIO_PREFERRED_PIO = 1).
- Pin B must be pin A + 1 (``in_(pins, 2)`` reads two adjacent pins from in_base).
- The sample loop takes at most 10 SM cycles, so every level held for 10 cycles is seen:
  max step rate = SM freq / 10 quarter-steps per second (12.5 M/s at 125 MHz). Bounce needs
  no filtering: each toggle is counted +1/-1 and cancels.
- The table's "read 01" is A=1 (A is the base pin, bit 0 of the sample), so the PIO counts
  DOWN when A leads B. value() negates it to the project convention (A leads B = +1, see
  dial.quad).
- Y is a 32-bit two's complement count; ``sm.get(buf)`` into an ``array('i')`` reads it as a
  signed value without allocating (plain ``sm.get()`` allocates a big int for words >= 2**30).
"""

from array import array

# Worst-case SM cycles from one pin sample to the next (the increment path).
LOOP_CYCLES = 10

# The assembled program, made once: rp2 keeps a program loaded while its list object is
# alive, so a second make_pio_counter() reuses it instead of failing to fit a second copy.
_program = None


def quadrature_program():
    # Body for rp2.asm_pio: while it runs, asm_pio replaces this module's globals with the
    # PIO DSL (jmp, mov, y, pc, ...), so it must use no other module-level name.
    #
    # 00 state
    jmp("update")  # read 00
    jmp("decrement")  # read 01
    jmp("increment")  # read 10
    jmp("update")  # read 11
    # 01 state
    jmp("increment")  # read 00
    jmp("update")  # read 01
    jmp("update")  # read 10
    jmp("decrement")  # read 11
    # 10 state
    jmp("decrement")  # read 00
    jmp("update")  # read 01
    jmp("update")  # read 10
    jmp("increment")  # read 11
    # 11 state: its last two entries are the decrement and update code themselves
    jmp("update")  # read 00
    jmp("increment")  # read 01
    label("decrement")
    # target is the next address: a pure "Y -= 1" whatever Y was
    jmp(y_dec, "update")  # read 10
    wrap_target()
    label("update")
    mov(isr, y)  # read 11
    push(noblock)
    # ISR = (last state from OSR) << 2 | pins: the 4-bit index of the jump table
    out(isr, 2)
    in_(pins, 2)
    mov(osr, isr)
    mov(pc, isr)
    # PIO has no increment: Y = ~(~Y - 1)
    label("increment")
    mov(y, invert(y))
    jmp(y_dec, "increment_cont")
    label("increment_cont")
    mov(y, invert(y))
    wrap()
    # 24 instructions so far; pad to 32 so the program can only load at offset 0.
    nop()
    nop()
    nop()
    nop()
    nop()
    nop()
    nop()
    nop()


class PioCounter:
    """Counter over a running quadrature state machine (see make_pio_counter).

    value() drains the RX FIFO the way pico-examples does: read rx_fifo() + 1 words and keep
    the last. The FIFO is usually full of stale counts (4 words, the SM pushes every loop and
    drops when full); the extra read waits for a fresh one, at most 10 SM cycles (80 ns at
    125 MHz). One ``sm.get`` into a preallocated array of exactly that many words: safe in a
    hard IRQ.
    CPU cost between reads is zero.
    """

    name = "pio"
    no_errors = True  # see errors(): the sampler then skips calling it

    def __init__(self, sm):
        self._sm = sm
        self._rx_fifo = sm.rx_fifo  # cached bound methods for the IRQ path
        self._get = sm.get
        # One buffer per FIFO level n (0-4): sm.get(bufs[n]) drains the n stale words and
        # the fresh one in ONE call (five separate calls cost ~80 us on the RP2040).
        self._bufs = [array("i", [0] * (k + 1)) for k in range(5)]
        # The zero offset as a one-word array: the native sampler (dial.fast) reads the FIFO
        # registers itself and subtracts raw counts from this word.
        self.fast_zero = array("i", [0])
        # The SM's first push comes before its first sample, which may still count one step
        # from the OSR's power-on state (00) to the pins' real state: a second fresh read
        # is pushed after that sample, so zero() then absorbs it.
        self._raw()
        self.zero()

    def _raw(self):
        n = self._rx_fifo()
        buf = self._bufs[n]
        self._get(buf)
        return buf[n]

    def value(self):
        # Negated: the PIO counts down when A leads B (module docstring). _raw inlined.
        n = self._rx_fifo()
        buf = self._bufs[n]
        self._get(buf)
        return self.fast_zero[0] - buf[n]

    def zero(self):
        self.fast_zero[0] = self._raw()

    def errors(self):
        # The program drops illegal transitions without telling: nothing to report.
        return 0

    def deinit(self):
        self._sm.active(0)


def make_pio_counter(sm_id, pin_a, freq=None, pull_up=True):
    """Start the quadrature program on state machine ``sm_id`` (0-7) reading GPIO ``pin_a``
    (A) and ``pin_a + 1`` (B). ``freq`` is the SM clock in Hz; None runs it at the system
    clock. Returns a started PioCounter.
    """
    global _program
    import rp2
    from machine import Pin

    if _program is None:
        # asm_pio defaults BOTH shift directions to left. IN must shift left (the new sample
        # lands in bits 0-1 under the old state) and OUT right (``out(isr, 2)`` must take
        # the LOW two bits of the saved state); pico-examples configures the same.
        _program = rp2.asm_pio(in_shiftdir=rp2.PIO.SHIFT_LEFT, out_shiftdir=rp2.PIO.SHIFT_RIGHT)(
            quadrature_program
        )
    pull = Pin.PULL_UP if pull_up else None
    a = Pin(pin_a, Pin.IN, pull)
    Pin(pin_a + 1, Pin.IN, pull)
    if freq is None:
        sm = rp2.StateMachine(sm_id, _program, in_base=a)
    else:
        sm = rp2.StateMachine(sm_id, _program, freq=freq, in_base=a)
    sm.active(1)
    return PioCounter(sm)
