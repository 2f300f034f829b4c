"""Write hardware/bom.md (readable tables) from hardware/bom.csv (the source of truth).

``python hardware/bom.py`` rewrites bom.md; tests/test_hardware.py checks that it is current.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

HERE = Path(__file__).resolve().parent
COLUMNS = ["build", "item", "qty", "example_part", "specs", "approx_eur", "alternatives",
           "notes"]
TITLES = {
    "pico": "Raspberry Pi Pico build (encoder)",
    "esp32": "ESP32 build (encoder)",
    "pico_pot": "Potentiometer build (Pico, pointer dial)",
}


def read_bom(path: Path = HERE / "bom.csv") -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != COLUMNS:
            raise ValueError(f"bom.csv columns {reader.fieldnames}, expected {COLUMNS}")
        return list(reader)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").strip()


def render(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    out.write("# Bill of materials\n\n")
    out.write("Generated from [bom.csv](bom.csv) by `python hardware/bom.py`; edit the CSV.\n")
    out.write("~EUR is a rough price for the whole line in euros (2025, single units); part\n")
    out.write("numbers are examples:\n")
    out.write("check the datasheet (detents, pulses per revolution, bushing) before ordering.\n")
    for build, title in TITLES.items():
        part = [r for r in rows if r["build"] == build]
        total = sum(float(r["approx_eur"]) for r in part if "optional" not in r["item"])
        optional = sum(float(r["approx_eur"]) for r in part if "optional" in r["item"])
        out.write(f"\n## {title}\n\n")
        out.write("| item | qty | example part | specs | ~EUR | alternatives | notes |\n")
        out.write("|---|---:|---|---|---:|---|---|\n")
        for r in part:
            out.write("| " + " | ".join(_cell(r[c]) for c in COLUMNS[1:]) + " |\n")
        out.write(f"\nAbout {total:.0f} EUR, plus {optional:.2f} EUR for the optional parts.\n")
    return out.getvalue()


if __name__ == "__main__":
    (HERE / "bom.md").write_text(render(read_bom()), encoding="utf-8")
    print(HERE / "bom.md")
