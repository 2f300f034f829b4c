# ESP32-S3 DevKitC-1 on its native USB port (USB CDC), MicroPython >= 1.26.
# Copied to the board as dial_board.py.
#
# Rate: the official ESP32_GENERIC_S3 build also copies every byte written to the USB port
# onto UART0 at 115200 baud (MICROPY_HW_ENABLE_UART_REPL; ports/esp32/mphalport.c), waiting
# a FreeRTOS tick (10 ms) whenever the UART's FIFO is full: the S3 carries what a UART
# carries, ~11.5 kB/s, however fast its USB. So it runs as the DevKitC does: 500 Hz in
# frames of 20 samples (~2.8 kB/s, docs/protocol.md "Bandwidth"). A build without the UART
# REPL could run 1 kHz or more.
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
    "rate_hz": 500,
    "batch": 20,
    "debounce_ms": 5,
    "queue_frames": 64,
    "pcnt_unit": 0,
    "filter_ns": 1000,
    "timer_id": 0,
}
