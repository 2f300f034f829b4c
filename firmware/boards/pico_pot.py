# Raspberry Pi Pico (RP2040) with a potentiometer instead of an encoder: an absolute dial with
# a felt centre (centre-detent pot), MicroPython >= 1.23. Copied to the board as dial_board.py.
#
# Pins: the wiper on GP26 = ADC0 (physical pin 31); the track between ADC_VREF (pin 35) and
# AGND (pin 33), the quiet analogue supply and ground. The optional push button on GP4
# (pin 6) to GND, as on the encoder build; with nothing fitted the pull-up reads "released".
# No encoder: pin_a/pin_b are None. Counts are ADC units 0-65535 (docs: hardware/README.md).
# ADC: 8 reads averaged per sample (~60 us of the 1 ms period), a dead band of +-96 units
# (0.15 % of the travel) against flicker, a snap to the true position after 64 quiet samples.
CONFIG = {
    "board": "pico-pot",
    "backend": "adc",
    "pin_a": None,
    "pin_b": None,
    "pin_adc": 26,
    "pin_button": 4,
    "button_active_low": True,
    "pull_up": True,
    "rate_hz": 1000,
    "batch": 10,
    "debounce_ms": 5,
    "queue_frames": 64,
    "adc_oversample": 8,
    "adc_hysteresis": 96,
    "adc_settle": 64,
    "timer_sm": 4,  # the 1 MHz sample clock on PIO1, as on the Pico
}
