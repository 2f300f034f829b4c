"""The shared part of the rp2/esp32 HW objects, under MicroPython with a fake machine module."""

from mpy import FIRMWARE, TESTS, run_mpy

CODE = """
from dial.hw_board import BoardHW
hw = BoardHW({"board": "x", "backend": "irq", "pin_a": 0, "pin_b": 1, "pin_button": 2})
print(hw.counter.name, hw.button.value(), hw.unique_id().hex(), hw.board)
hw2 = BoardHW({"board": "y", "backend": "irq", "pin_a": 0, "pin_b": 1, "pin_button": 2,
               "button_active_low": False, "pull_up": False})
print(hw2.button.value(), hw2.button is not None)
try:
    BoardHW({"board": "z", "backend": "pio", "pin_a": 0, "pin_b": 1})
except ValueError as e:
    print("refused:", e)
"""


def test_board_hw_builds_counter_button_and_refuses_foreign_backends():
    out = run_mpy(CODE, paths=[TESTS / "firmware" / "fakemachine", FIRMWARE]).splitlines()
    assert out[0] == "irq 0 0102030405060708 x"  # active-low button at rest reads released
    assert out[1] == "1 True"  # active-high: the same level reads pressed
    assert out[2] == "refused: board backends: irq, adc"
