"""hardware/: wiring tables against the board configs, the generated schematic and enclosure,
the bill of materials, the udev rules and the systemd units."""

from __future__ import annotations

import ast
import csv
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HW = ROOT / "hardware"
BOARDS = ROOT / "firmware" / "boards"
if str(HW) not in sys.path:
    sys.path.insert(0, str(HW))

SIGNAL_KEYS = {"A": "pin_a", "B": "pin_b", "switch": "pin_button", "wiper": "pin_adc"}


def board_configs() -> dict[str, dict]:
    out = {}
    for path in sorted(BOARDS.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "CONFIG":
                out[path.stem] = ast.literal_eval(node.value)
    return out


def wiring_sections() -> dict[str, dict]:
    """board -> {"backend", "hello", "rows": {signal: (gpio text, header pin)}}."""
    text = (HW / "wiring.md").read_text()
    sections = {}
    parts = re.split(r"^### board `(\w+)`\s*$", text, flags=re.MULTILINE)
    for name, full in zip(parts[1::2], parts[2::2], strict=True):
        body = full.split("\n## ", 1)[0]
        backend = re.search(r"Backend: `(\w+)`", body)
        hello = re.search(r"Name in\s+HELLO: `([\w-]+)`", body)
        rows = {}
        for line in body.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if line.startswith("|") and len(cells) == 4 and cells[0] not in ("signal", "---"):
                rows[cells[0]] = (cells[1], cells[2])
        sections[name] = {"backend": backend and backend.group(1),
                          "hello": hello and hello.group(1), "rows": rows}
    return sections


def gpio_number(text: str) -> int:
    m = re.fullmatch(r"GP(?:IO)?(\d+)", text)
    assert m, f"not a GPIO: {text!r}"
    return int(m.group(1))


# ------------------------------------------------------------------ wiring vs configs


def test_every_hardware_board_has_a_wiring_table():
    configs = board_configs()
    sections = wiring_sections()
    assert set(sections) == set(configs) - {"virtual"}


@pytest.mark.parametrize("name", sorted(set(board_configs()) - {"virtual"}))
def test_wiring_matches_board_config(name):
    cfg = board_configs()[name]
    sec = wiring_sections()[name]
    assert sec["backend"] == cfg["backend"]
    assert sec["hello"] == cfg["board"]
    for signal, key in SIGNAL_KEYS.items():
        if cfg.get(key) is None:
            assert signal not in sec["rows"], f"{name}: {signal} wired but not configured"
        else:
            assert signal in sec["rows"], f"{name}: no row for {signal}"
            assert gpio_number(sec["rows"][signal][0]) == cfg[key], (name, signal)
    if cfg["backend"] == "pio":
        assert cfg["pin_b"] == cfg["pin_a"] + 1
    assert cfg["button_active_low"] is True  # the tables wire the switch to GND
    assert "GND" in sec["rows"]


def test_wiring_header_pins_match_the_schematic():
    import schematic

    for name, sec in wiring_sections().items():
        for signal in SIGNAL_KEYS:
            if signal in sec["rows"]:
                gpio, header = sec["rows"][signal]
                expected = schematic.physical(name, gpio_number(gpio))
                assert expected.removeprefix("pin ") == header, (name, signal)


def test_a_wrong_table_is_caught(monkeypatch, tmp_path):
    """The parser really reads the GPIO column: a swapped pin fails the comparison."""
    text = (HW / "wiring.md").read_text().replace("| A | GP2 | 4 |", "| A | GP5 | 4 |", 1)
    fake = tmp_path / "hardware"
    fake.mkdir()
    (fake / "wiring.md").write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "HW", fake)
    with pytest.raises(AssertionError):
        test_wiring_matches_board_config("pico")


# ------------------------------------------------------------------ schematic


def test_schematic_generates_well_formed_svg(tmp_path):
    import schematic

    paths = schematic.generate(tmp_path)
    assert [p.name for p in paths] == ["schematic-encoder.svg", "schematic-pot.svg"]
    for p in paths:
        root = ET.parse(p).getroot()
        assert root.tag.endswith("svg")
        assert float(root.get("width").removesuffix("pt")) > 100
        text = " ".join(root.itertext())
        committed = HW / "images" / p.name
        assert committed.read_bytes() == p.read_bytes(), f"{p.name} is stale: regenerate"
        if p.name == "schematic-encoder.svg":
            for needle in ("GP2 (pin 4)", "GPIO25 (J2-9)", "GPIO6 (J1-6)", "10 nF", "3V3"):
                assert needle in text, needle
        else:
            assert "GP26 = ADC0 (pin 31)" in text
    again = schematic.generate(tmp_path / "again")
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in paths]


# ------------------------------------------------------------------ enclosure


def test_enclosure_meshes_are_closed_and_sane(tmp_path):
    import enclosure
    import mesh

    paths = enclosure.generate(tmp_path)
    stls = [p for p in paths if p.suffix == ".stl"]
    assert {p.stem for p in stls} == {"pico-base", "pico-lid", "pico-pot-lid"}
    params = enclosure.Params()
    for p in stls:
        m = mesh.read_stl(p)
        assert mesh.closed_mesh_problems(m) == [], p.name
        lo, hi = m.bounds()
        size = hi - lo
        assert size[0] == pytest.approx(params.length, abs=0.01)
        assert size[1] == pytest.approx(params.width, abs=0.01)
        assert 5 < size[2] < 60
        assert 200 < len(m.triangles) < 50_000
        assert m.volume() > 5_000  # mm^3: walls, not a shell of zero thickness
        # the committed file matches what the generator makes now
        committed = mesh.read_stl(HW / "enclosure" / p.name)
        assert len(committed.triangles) == len(m.triangles)
        assert committed.volume() == pytest.approx(m.volume(), rel=1e-4)
    base = mesh.read_stl(tmp_path / "enclosure" / "pico-base.stl")
    assert base.bounds()[1][2] == pytest.approx(params.height, abs=0.01)
    # the Pico fits between the walls
    assert params.length - 2 * params.wall > params.pico_length + 1
    assert params.width - 2 * params.wall > params.pico_width + 1


def test_enclosure_is_deterministic_and_preview_is_a_png(tmp_path):
    import enclosure

    a = enclosure.generate(tmp_path / "a")
    b = enclosure.generate(tmp_path / "b")
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    png = next(p for p in a if p.suffix == ".png")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (800, 560)
    assert (HW / "images" / png.name).exists()


def test_closed_mesh_check_finds_holes():
    import enclosure
    import mesh
    import numpy as np

    m = enclosure.to_mesh(enclosure.lid(enclosure.Params()))
    assert mesh.closed_mesh_problems(m) == []
    holed = mesh.Mesh(m.vertices, m.triangles[1:])
    assert any("holes" in p for p in mesh.closed_mesh_problems(holed))
    flipped = mesh.Mesh(m.vertices, np.vstack([m.triangles[:1, ::-1], m.triangles[1:]]))
    assert mesh.closed_mesh_problems(flipped) != []


# ------------------------------------------------------------------ bill of materials


def test_bom_csv_and_markdown_agree():
    import bom

    rows = bom.read_bom()
    assert (HW / "bom.md").read_text() == bom.render(rows), "stale: python hardware/bom.py"
    builds = {r["build"] for r in rows}
    assert builds == {"pico", "esp32", "pico_pot"}
    for r in rows:
        assert r["item"] and r["example_part"], r
        assert int(r["qty"]) >= 1
        assert 0 < float(r["approx_eur"]) < 100
    for build in builds:
        items = " ".join(r["item"].lower() for r in rows if r["build"] == build)
        for needle in ("microcontroller", "knob", "cable", "enclosure"):
            assert needle in items, (build, needle)
        assert "encoder" in items or "potentiometer" in items
    encoders = [r for r in rows if r["item"].startswith("Rotary encoder")]
    for r in encoders:  # detents and counts per revolution are stated
        assert re.search(r"\d+ detents", r["specs"])
        assert re.search(r"\d+ counts/rev", r["specs"])
    assert any("optional" in r["item"].lower() and "10 nF" in r["example_part"] for r in rows)


# ------------------------------------------------------------------ udev


UDEV_KEY = re.compile(
    r'\s*(?P<key>[A-Z_]+)(?:\{(?P<attr>[^}]+)\})?\s*(?P<op>==|!=|\+=|-=|:=|=)\s*"(?P<value>[^"]*)"\s*')
MATCH_KEYS = {"ACTION", "DEVPATH", "KERNEL", "KERNELS", "NAME", "SYMLINK", "SUBSYSTEM",
              "SUBSYSTEMS", "DRIVER", "DRIVERS", "ATTR", "ATTRS", "ENV", "TAG", "TAGS", "TEST",
              "PROGRAM", "RESULT", "CONST", "SYSCTL"}
ASSIGN_KEYS = {"NAME", "SYMLINK", "OWNER", "GROUP", "MODE", "TAG", "ENV", "ATTR", "RUN",
               "LABEL", "GOTO", "IMPORT", "OPTIONS", "SECLABEL", "SYSCTL"}


def parse_udev_rule(line: str) -> list[tuple[str, str | None, str, str]]:
    """Split one rule into (key, attr, operator, value); raise ValueError on bad syntax."""
    out = []
    rest = line
    while rest.strip():
        m = UDEV_KEY.match(rest)
        if m is None:
            raise ValueError(f"cannot parse at: {rest[:40]!r}")
        key, op = m["key"], m["op"]
        if op in ("==", "!="):
            if key not in MATCH_KEYS:
                raise ValueError(f"{key} cannot be matched")
        elif key not in ASSIGN_KEYS:
            raise ValueError(f"{key} cannot be assigned")
        out.append((key, m["attr"], op, m["value"]))
        rest = rest[m.end():]
        if rest.strip():
            if not rest.startswith(","):
                raise ValueError(f"missing comma before: {rest[:40]!r}")
            rest = rest[1:]
    return out


def udev_rules() -> list[list[tuple[str, str | None, str, str]]]:
    lines = (HW / "udev" / "70-ratedial.rules").read_text().splitlines()
    return [parse_udev_rule(ln) for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def test_udev_rules_parse_and_cover_every_known_vid():
    from ratedial.flash import KNOWN_VIDS

    rules = udev_rules()
    assert len(rules) >= 4
    vids = set()
    for rule in rules:
        d = {(k, a): (op, v) for k, a, op, v in rule}
        assert d[("SUBSYSTEM", None)] == ("==", "tty")
        assert d[("MODE", None)] == ("=", "0660")
        assert d[("GROUP", None)] == ("=", "dialout")
        assert d[("TAG", None)] == ("+=", "uaccess")
        op, link = d[("SYMLINK", None)]
        assert op == "+="
        assert link.startswith("ratedial/")
        op, vid = d[("ATTRS", "idVendor")]
        assert op == "=="
        assert re.fullmatch(r"[0-9a-f]{4}", vid)  # sysfs prints lower-case hex
        vids.add(int(vid, 16))
    assert vids == set(KNOWN_VIDS)
    pico = next(r for r in rules if ("ATTRS", "idVendor", "==", "2e8a") in r)
    assert ("SYMLINK", None, "+=", "ratedial/pico-%s{serial}") in pico


@pytest.mark.parametrize("bad", [
    'SUBSYSTEM=="tty", MODE="0660" GROUP="dialout"',  # missing comma
    'SUBSYSTEM=="tty", MODE=0660',  # unquoted
    'SUBSYSTEM=="tty", OWNER=="me"',  # OWNER cannot be matched
    'SUBSYSTEM=="tty", ATTRS{idVendor}="2e8a"',  # ATTRS cannot be assigned
])
def test_udev_parser_rejects_bad_rules(bad):
    with pytest.raises(ValueError, match=r"parse|comma|cannot be"):
        parse_udev_rule(bad)


def _udevadm_verify_available() -> bool:
    exe = shutil.which("udevadm")
    if exe is None:
        return False
    proc = subprocess.run([exe, "verify", "--help"], capture_output=True, check=False)
    return proc.returncode == 0


@pytest.mark.skipif(not _udevadm_verify_available(), reason="udevadm verify (systemd >= 254)")
def test_udevadm_verify(tmp_path):
    proc = subprocess.run(["udevadm", "verify", str(HW / "udev" / "70-ratedial.rules")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ------------------------------------------------------------------ systemd


def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        m = re.fullmatch(r"\[(\w+)\]", line)
        if m:
            current = m.group(1)
            sections[current] = []
            continue
        assert current is not None, f"{path.name}: key outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z]+", key), f"{path.name}: bad line {line!r}"
        sections[current].append((key, value))
    return sections


def test_system_unit():
    unit = parse_unit(HW / "systemd" / "ratedial.service")
    service = dict(unit["Service"])
    assert "--config /etc/ratedial/ratedial.toml" in service["ExecStart"]
    assert service["ExecStart"].split()[1] == "run"
    assert service["User"] == "ratedial"
    assert service["SupplementaryGroups"] == "dialout"
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict",
                       "ProtectHome": "yes", "PrivateTmp": "yes",
                       "DevicePolicy": "closed"}.items():
        assert service[key] == value, key
    allowed = [v for k, v in unit["Service"] if k == "DeviceAllow"]
    assert "char-ttyACM rw" in allowed
    assert "char-ttyUSB rw" in allowed
    assert "PrivateDevices" not in service  # it would hide the serial ports
    assert dict(unit["Install"])["WantedBy"] == "multi-user.target"


def test_user_unit():
    unit = parse_unit(HW / "systemd" / "ratedial-user.service")
    service = dict(unit["Service"])
    assert "run --config %E/ratedial/ratedial.toml" in service["ExecStart"]
    # ExecStartPre makes the folder: a working directory that must already exist would fail
    # the first start (status 200/CHDIR) before it runs
    assert service["ExecStartPre"].endswith("mkdir -p %h/ratedial")
    assert service["WorkingDirectory"] == "-%h/ratedial"
    assert "User" not in service
    assert dict(unit["Install"])["WantedBy"] == "default.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
@pytest.mark.parametrize(("name", "user"), [("ratedial.service", False),
                                            ("ratedial-user.service", True)])
def test_systemd_analyze_verify(tmp_path, name, user):
    """systemd's own check. The ExecStart program is replaced by one that exists here."""
    text = (HW / "systemd" / name).read_text()
    text = re.sub(r"^ExecStart=\S+", "ExecStart=/bin/true", text, flags=re.MULTILINE)
    unit = tmp_path / "ratedial.service"
    unit.write_text(text)
    runtime = tmp_path / "run"
    runtime.mkdir()
    args = ["systemd-analyze", *(["--user"] if user else []), "verify", str(unit)]
    proc = subprocess.run(args, capture_output=True, text=True, check=False, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "XDG_RUNTIME_DIR": str(runtime)})
    ours = [ln for ln in (proc.stdout + proc.stderr).splitlines() if str(unit) in ln]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ours == []


def test_csv_header_is_what_the_guide_describes():
    with (HW / "bom.csv").open(newline="") as f:
        header = next(csv.reader(f))
    assert "approx_eur" in header
    assert "alternatives" in header


def test_the_example_config_the_units_install_is_valid():
    """The units' install steps copy hardware/systemd/ratedial.toml: it must load as is."""
    from ratedial.config import load_config

    cfg = load_config(HW / "systemd" / "ratedial.toml")
    assert cfg.scan and cfg.mqtt.broker == "mqtt://localhost:1883"
    for name in ("ratedial.service", "ratedial-user.service"):
        text = (HW / "systemd" / name).read_text()
        assert "hardware/systemd/ratedial.toml" in text, name
        assert "pip install ratedial" not in text, name  # not on PyPI
