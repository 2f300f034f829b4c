"""Draw the dial's schematics as SVG with schemdraw (``python hardware/schematic.py``).

Two drawings, written to ``hardware/images/``:

- ``schematic-encoder.svg``: the EC11-class encoder's three contacts (A, B, push switch)
  each with its pull-up to 3V3 and the optional RC filter (series resistor, capacitor to
  ground) in front of the GPIO, for every encoder board config;
- ``schematic-pot.svg``: the potentiometer variant, the track across the ADC reference and
  the wiper (with an optional capacitor) on the ADC pin.

The GPIO numbers are read from ``firmware/boards/*.py`` (never typed here), so the drawings
and the firmware cannot disagree; the physical header pins come from PHYSICAL_PIN. The output
is deterministic: the same configs give the same bytes.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import schemdraw
import schemdraw.elements as elm

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BOARDS = ROOT / "firmware" / "boards"
OUT = HERE / "images"

# Filter and pull-up values (reasoning in hardware/README.md, "The optional RC filter").
R_PULL = "10 kΩ"
R_SERIES = "10 kΩ"
C_FILTER = "10 nF"
C_WIPER = "100 nF"

# GPIO -> physical header pin, per board family (board config name prefix).
PHYSICAL_PIN: dict[str, dict[int, str]] = {
    # Pico, Pico W, Pico 2 share the pinout.
    "pico": {2: "pin 4", 3: "pin 5", 4: "pin 6", 26: "pin 31", 27: "pin 32", 28: "pin 34"},
    # ESP32-DevKitC V4 (38 pins): left header J2.
    "esp32_devkitc": {25: "J2-9", 26: "J2-10", 27: "J2-11"},
    # ESP32-S3-DevKitC-1: left header J1.
    "esp32_s3": {4: "J1-4", 5: "J1-5", 6: "J1-6", 7: "J1-7"},
}
ENCODER_BOARDS = ("pico", "pico_w", "pico2", "esp32_devkitc", "esp32_s3")


def board_config(name: str) -> dict[str, object]:
    tree = ast.parse((BOARDS / f"{name}.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "CONFIG":
            value = ast.literal_eval(node.value)
            assert isinstance(value, dict)
            return value
    raise ValueError(f"{name}: no CONFIG")


def physical(board: str, gpio: int) -> str:
    for prefix, table in PHYSICAL_PIN.items():
        if board.startswith(prefix):
            return table.get(gpio, "?")
    return "?"


def gpio_label(board: str, gpio: int) -> str:
    prefix = "GP" if board.startswith("pico") else "GPIO"
    return f"{prefix}{gpio} ({physical(board, gpio)})"


def _pin_lines(key: str) -> str:
    """One line per board family: e.g. 'Pico: GP2 (pin 4)'."""
    lines = []
    seen = set()
    for name in ENCODER_BOARDS:
        cfg = board_config(name)
        gpio = cfg[key]
        assert isinstance(gpio, int)
        label = gpio_label(name, gpio)
        family = {"pico": "Pico/W/2", "pico_w": "Pico/W/2", "pico2": "Pico/W/2",
                  "esp32_devkitc": "ESP32-DevKitC", "esp32_s3": "ESP32-S3"}[name]
        if (family, label) in seen:
            continue
        seen.add((family, label))
        lines.append(f"{family}: {label}")
    return "\n".join(lines)


def _channel(d: schemdraw.Drawing, x: float, title: str, switch_label: str, key: str) -> None:
    """Pull-up from 3V3, the contact to GND, series R and C to GND, then the GPIO."""
    elm.Vdd().at((x, 0)).label("3V3")
    elm.Resistor().down().at((x, 0)).label(f"R pull-up\n{R_PULL}", loc="bottom")
    node = elm.Dot()
    elm.Switch().down().label(switch_label, loc="bottom")
    elm.Ground()
    elm.Resistor().right().at(node.end).length(3).label(f"R series*\n{R_SERIES}")
    tap = elm.Dot()
    elm.Capacitor().down().at(tap.end).label(f"C*\n{C_FILTER}", loc="bottom")
    elm.Ground()
    elm.Line().right().at(tap.end).length(1)
    elm.Tag().right().label(title)
    elm.Label().at((x + 4.6, -4.6)).label(_pin_lines(key), fontsize=9, halign="left")


def encoder_svg() -> bytes:
    schemdraw.use("svg")
    with schemdraw.Drawing(show=False) as d:
        d.config(unit=3, fontsize=11)
        elm.Label().at((0, 3.2)).label(
            "ratedial encoder dial: EC11-class encoder with push switch (common pin C and "
            "switch pin to GND)", fontsize=13, halign="left")
        elm.Label().at((0, 2.2)).label(
            "* optional RC filter: " f"{R_SERIES} x {C_FILTER} = 0.1 ms. Without it, wire each "
            "contact straight to its GPIO; the internal pull-ups then suffice.",
            fontsize=10, halign="left")
        for i, (title, label, key) in enumerate(
                (("A", "encoder A-C", "pin_a"), ("B", "encoder B-C", "pin_b"),
                 ("SW", "push switch", "pin_button"))):
            x = i * 10.0
            _channel(d, x, title, label, key)
    return d.get_imagedata("svg")


def pot_svg() -> bytes:
    cfg = board_config("pico_pot")
    adc = cfg["pin_adc"]
    assert isinstance(adc, int)
    schemdraw.use("svg")
    with schemdraw.Drawing(show=False) as d:
        d.config(unit=3, fontsize=11)
        elm.Label().at((0, 3.2)).label(
            "ratedial pointer dial (pico_pot): 10 kΩ linear potentiometer on the ADC",
            fontsize=13, halign="left")
        elm.Vdd().at((0, 0)).label("ADC_VREF (pin 35)")
        pot = elm.Potentiometer().down().at((0, 0)).label("10 kΩ\nlinear", loc="top")
        elm.Line().down().at(pot.end).length(0.5)
        elm.Ground().label("AGND (pin 33)", loc="right")
        elm.Line().right().at(pot.tap).length(3)
        tap = elm.Dot()
        elm.Capacitor().down().at(tap.end).label(f"{C_WIPER}\n(optional)", loc="bottom")
        elm.Ground()
        elm.Line().right().at(tap.end).length(1.5)
        elm.Dot(open=True).label(f"GP{adc} = ADC0 ({physical('pico', adc)})", loc="right")
        sw_x = 15.0
        elm.Vdd().at((sw_x, 0)).label("internal pull-up")
        elm.Line().down().at((sw_x, 0)).length(1.5)
        sw_node = elm.Dot()
        elm.Switch().down().label("push button\n(optional)", loc="bottom")
        elm.Ground().label("GND (pin 3)", loc="right")
        elm.Line().right().at(sw_node.end).length(1.5)
        button = cfg["pin_button"]
        assert isinstance(button, int)
        elm.Dot(open=True).label(f"GP{button} ({physical('pico', button)})", loc="right")
    return d.get_imagedata("svg")


def generate(out: Path = OUT) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in (("schematic-encoder.svg", encoder_svg()), ("schematic-pot.svg", pot_svg())):
        path = out / name
        path.write_bytes(data)
        written.append(path)
    return written


if __name__ == "__main__":
    for p in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT):
        print(p)
