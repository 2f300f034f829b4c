# Raspberry Pi Pico (RP2040), MicroPython >= 1.23. Copied to the board as dial_board.py.
#
# Pins: GP2/GP3 are adjacent (the PIO counter reads pin_a and pin_a + 1) and sit on
# physical pins 4/5 beside the GND at pin 3; the push switch on GP4 (pin 6) wires to the
# same ground. GP0/GP1 (UART0) stay free for a debug console.
# Queue: 64 slots x 437 bytes (a SAMPLES frame of batch 100, the largest frame) = 28 KB of
# the ~190 KB heap; at the default 100 frames/s that is 0.64 s of host stall before the
# oldest frames are dropped.
CONFIG = {
    "board": "pico",
    "backend": "pio",
    "pin_a": 2,
    "pin_b": 3,
    "pin_button": 4,
    "button_active_low": True,
    "pull_up": True,
    "rate_hz": 1000,
    "batch": 10,
    "debounce_ms": 5,
    "queue_frames": 64,
    "pio_sm": 0,  # the counter fills PIO0's instruction memory
    "timer_sm": 4,  # the 1 MHz sample clock, on PIO1
}
