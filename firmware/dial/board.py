"""The board the dial runs on: its config and its HW object.

Invariants:
- ``load_config()`` is ``dial_board.CONFIG`` (the file ``ratedial flash --board`` installs)
  or, without it, this platform's ``FALLBACK``, the same values as boards/pico.py and
  boards/esp32_devkitc.py (tests/firmware/app_checks.py checks that they agree).
- ``make_hw(cfg)`` imports only the port's own HW module (machine, rp2 and esp32 live
  there); other platforms have none (the virtual dial brings its own).
"""

import sys

FALLBACK = {
    "rp2": {
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
        "pio_sm": 0,
        "timer_sm": 4,
    },
    "esp32": {
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
        "filter_ns": 1000,
        "timer_id": 0,
    },
}


def load_config():
    """dial_board.CONFIG if installed, else the fallback for this platform."""
    try:
        import dial_board

        return dict(dial_board.CONFIG)
    except ImportError:
        cfg = FALLBACK.get(sys.platform)
        if cfg is None:
            raise
        return dict(cfg)


def make_hw(cfg):
    if sys.platform == "rp2":
        from . import hw_rp2

        return hw_rp2.HW(cfg)
    if sys.platform == "esp32":
        from . import hw_esp32

        return hw_esp32.HW(cfg)
    raise OSError("no dial hardware for platform " + sys.platform)
