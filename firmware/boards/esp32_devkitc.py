# ESP32-DevKitC (ESP32-WROOM, CP210x USB-UART bridge at 115200 baud), MicroPython >= 1.26
# (machine.Encoder). Copied to the board as dial_board.py.
#
# Rate: the bridge carries ~11.5 kB/s; 500 Hz in frames of 20 samples is ~2.8 kB/s on the
# wire (docs/protocol.md "Bandwidth"), leaving room for STATUS, HELLO and SYNC.
# Pins: GPIO25/26/27 have internal pull-ups and are neither strapping pins (0, 2, 5, 12, 15),
# input-only pins (34-39, no pull-ups) nor flash pins (6-11).
# Queue: 64 x 437 bytes = 28 KB of the ~110 KB heap (no PSRAM); 64 frames of 20 samples
# are 2.6 s of backlog at 500 Hz.
CONFIG = {
    "board": "esp32-devkitc",
    "backend": "pcnt",
    "pin_a": 25,
    "pin_b": 26,
    "pin_button": 27,
    "button_active_low": True,
    "pull_up": True,
    "rate_hz": 500,
    "batch": 20,
    "debounce_ms": 5,
    "queue_frames": 64,
    "pcnt_unit": 0,
    "filter_ns": 1000,  # removes spikes; bounce cancels in the count anyway
    "timer_id": 0,  # hardware timer (soft callback)
}
