# Raspberry Pi Pico W (RP2040 + CYW43 radio), MicroPython >= 1.23. Copied as dial_board.py.
#
# Pins as on the Pico (see pico.py): GP2/GP3 adjacent for the PIO counter, GP4 the switch.
# The radio driver claims a PIO1 state machine, so the sample clock takes PIO1's last (SM 7).
# Queue: 64 x 437 bytes = 28 KB (see pico.py).
CONFIG = {
    "board": "pico-w",
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
    "timer_sm": 7,
}
