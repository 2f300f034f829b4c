# Raspberry Pi Pico 2 (RP2350), MicroPython >= 1.24. Copied to the board as dial_board.py.
#
# Pins as on the Pico (see pico.py): GP2/GP3 adjacent for the PIO counter, GP4 the switch.
# The RP2350 has a third PIO block: the sample clock runs alone on PIO2 (SM 8).
# Queue: 64 x 437 bytes = 28 KB of a ~480 KB heap.
CONFIG = {
    "board": "pico2",
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
    "pio_sm": 0,
    "timer_sm": 8,
}
