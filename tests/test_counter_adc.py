"""The potentiometer backend (dial.counter_adc): oversampling, low-pass, dead band, settling.

The checks live in tests/firmware/adc_checks.py and run unchanged here under CPython and,
through run_mpy, under the real MicroPython unix port, where every value() call runs with the
heap locked (as in the sampling interrupt).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from mpy import run_mpy

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT / "firmware", ROOT / "tests" / "firmware"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import adc_checks  # noqa: E402
from dial import counter_adc  # noqa: E402

CHECKS = adc_checks.all_checks()


@pytest.mark.parametrize(("label", "fn", "args"), CHECKS, ids=[c[0] for c in CHECKS])
def test_check_under_cpython(label, fn, args):
    assert fn(*args) is None, label


def test_checks_under_micropython():
    out = run_mpy("import adc_checks\nadc_checks.main()\n")
    lines = [line for line in out.splitlines() if line.startswith(("PASS ", "FAIL "))]
    assert [line for line in lines if line.startswith("FAIL ")] == []
    assert sorted(line[5:] for line in lines) == sorted(label for label, _, _ in CHECKS)


# --- the checks can fail ---------------------------------------------------------------------


def test_without_dead_band_the_value_flickers():
    assert adc_checks.check_rest(hysteresis=0) is not None


def test_without_oversampling_the_noise_check_fails():
    assert adc_checks.check_oversampling(1) is not None


def test_without_low_pass_the_smoothing_check_fails():
    assert adc_checks.check_smoothing(0) is not None


def test_without_settling_the_rest_position_is_off(monkeypatch):
    """A dead band without the settling snap stops at the band's edge, 96 units short."""
    monkeypatch.setattr(counter_adc, "SETTLE", 10**9)
    real = counter_adc.AdcCounter.__init__

    def no_settle(self, adc, **kw):
        real(self, adc, **{**kw, "settle": 10**9})
        self._s[1] = 10**9  # start settled

    monkeypatch.setattr(counter_adc.AdcCounter, "__init__", no_settle)
    assert adc_checks.check_turn_exact() is not None


def test_an_allocating_value_fails_under_micropython():
    code = (
        "import adc_checks\n"
        "from dial import counter_adc\n"
        "real = counter_adc.AdcCounter.value\n"
        "def leaky(self):\n"
        "    self.trace = [1]\n"
        "    return real(self)\n"
        "counter_adc.AdcCounter.value = leaky\n"
        "print(adc_checks.check_turn_exact())\n"
    )
    with pytest.raises(AssertionError, match="MemoryError"):
        run_mpy(code)


# --- factory and board config ----------------------------------------------------------------


class _Pin:
    def __init__(self, pin_id):
        self.id = pin_id


class _Adc:
    def __init__(self, pin):
        self.pin = pin
        self.attn = None

    def read_u16(self):
        return 40000


class _Esp32Adc(_Adc):
    ATTN_11DB = 3

    def atten(self, a):
        self.attn = a


class _Machine:
    Pin = _Pin
    ADC = _Adc


class _MachineEsp32:
    Pin = _Pin
    ADC = _Esp32Adc


def test_make_adc_counter_rp2(monkeypatch):
    monkeypatch.setitem(sys.modules, "machine", _Machine)
    c = counter_adc.make_adc_counter(26, oversample=4, hysteresis=50, settle=10)
    assert c._adc.pin.id == 26
    assert c._adc.attn is None
    assert (c._n, c._h, c._settle) == (4, 50, 10)
    assert c.value() == 40000
    assert c.name == "adc"


def test_make_adc_counter_esp32_uses_full_range(monkeypatch):
    monkeypatch.setitem(sys.modules, "machine", _MachineEsp32)
    c = counter_adc.make_adc_counter(34)
    assert c._adc.attn == _Esp32Adc.ATTN_11DB


def test_pico_pot_config():
    cfg = ast.literal_eval(
        (ROOT / "firmware/boards/pico_pot.py").read_text().split("CONFIG =", 1)[1]
    )
    pico = ast.literal_eval((ROOT / "firmware/boards/pico.py").read_text().split("CONFIG =", 1)[1])
    assert cfg["backend"] == "adc"
    assert cfg["pin_adc"] in (26, 27, 28)  # ADC0-2 on the Pico header
    assert cfg["pin_a"] is None
    assert cfg["pin_b"] is None
    # everything not about the encoder matches the Pico build
    for key in ("pin_button", "button_active_low", "pull_up", "rate_hz", "batch",
                "debounce_ms", "queue_frames", "timer_sm"):
        assert cfg[key] == pico[key], key
    assert cfg["adc_oversample"] == counter_adc.OVERSAMPLE
    assert cfg["adc_hysteresis"] == counter_adc.HYSTERESIS
    assert cfg["adc_settle"] == counter_adc.SETTLE
