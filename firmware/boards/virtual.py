# The virtual dial: the firmware under the MicroPython unix port with simulated hardware
# (firmware/sim). "irq" is the pin-IRQ counter driven by simulated encoder edges.
# Queue: 64 x 437 bytes = 28 KB, as on the boards, so link stalls drop frames the same way.
CONFIG = {
    "board": "virtual",
    "backend": "irq",
    "pin_a": 0,
    "pin_b": 1,
    "pin_button": 2,
    "button_active_low": True,
    "pull_up": True,
    "rate_hz": 1000,
    "batch": 10,
    "debounce_ms": 5,
    "queue_frames": 64,
}
