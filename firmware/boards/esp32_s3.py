# ESP32-S3 DevKitC-1 on its native USB port (USB CDC, ~550 kB/s), MicroPython >= 1.26.
# Copied to the board as dial_board.py.
#
# Pins: GPIO4/5/6 have pull-ups and avoid the strapping pins (0, 3, 45, 46), USB (19, 20)
# and the flash/PSRAM pins (26-37).
# Queue: 64 x 437 bytes = 28 KB (see esp32_devkitc.py).
CONFIG = {
    "board": "esp32-s3",
    "backend": "pcnt",
    "pin_a": 4,
    "pin_b": 5,
    "pin_button": 6,
    "button_active_low": True,
    "pull_up": True,
    "rate_hz": 1000,
    "batch": 10,
    "debounce_ms": 5,
    "queue_frames": 64,
    "pcnt_unit": 0,
    "filter_ns": 1000,
    "timer_id": 0,
}
