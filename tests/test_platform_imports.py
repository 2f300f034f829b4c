"""Windows has no fcntl, termios, tty or pty: every command but ``virtual-dial`` must load and
work without them. Each check runs in a fresh interpreter where importing any of the four
fails (``sys.modules[name] = None``), as it would on Windows.

pyserial is imported before the block: it chooses its own backend by OS (``serialposix``
here needs termios; ``serialwin32`` on Windows needs only ctypes), so blocking it would test
pyserial, not ratedial.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import ratedial
from ratedial.analysis.synth import SynthMedia, constant, simple_rater, write_recording
from ratedial.virtual import VirtualDial

BLOCKED = ("fcntl", "termios", "tty", "pty")
PRELUDE = textwrap.dedent(f"""
    import sys
    import serial, serial.tools.list_ports  # pyserial's own platform choice, see above
    for name in {BLOCKED!r}:
        sys.modules.pop(name, None)
        sys.modules[name] = None
""")


def blocked(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code), *args],
                          capture_output=True, text=True, timeout=120, check=False)


def ratedial_blocked(*args: str) -> subprocess.CompletedProcess[str]:
    return blocked("sys.argv = ['ratedial', *sys.argv[1:]]\n"
                   "from ratedial.cli import main\nmain()\n", *args)


def command_modules() -> list[str]:
    """Every module of the package (``daemon`` and ``mqtt`` are namespace packages, so the
    files are listed) but the virtual dial, a Linux simulator, and ``__main__``."""
    root = Path(ratedial.__file__).parent
    names = []
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[0] == "virtual" or parts[-1] == "__main__":
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(("ratedial", *parts)))
    return sorted(names)


def test_the_block_is_real():
    res = blocked("import fcntl")
    assert res.returncode == 1 and "ModuleNotFoundError" in res.stderr


def test_every_module_but_the_virtual_dial_imports_without_posix_terminals():
    modules = command_modules()
    assert "ratedial.recording.writer" in modules and "ratedial.daemon.app" in modules
    res = blocked("""
        import importlib
        failed = []
        for name in sys.argv[1:]:
            try:
                importlib.import_module(name)
            except ImportError as exc:
                failed.append(f"{name}: {exc}")
        print("\\n".join(failed))
    """, *modules)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == ""
    assert len(modules) > 60  # the listing found the package, not a stub


def test_help_run_help_and_virtual_dial_refusal():
    res = ratedial_blocked("--help")
    assert res.returncode == 0, res.stderr
    for command in ("run", "devices", "analyze", "export", "review", "record", "flash"):
        assert f"  {command} " in res.stdout
    res = ratedial_blocked("run", "--help")
    assert res.returncode == 0, res.stderr
    assert "--serial-io [asyncio|thread]" in res.stdout
    res = ratedial_blocked("virtual-dial", "--seed", "3")
    assert res.returncode == 1
    assert res.stderr.strip() == ("ratedial: error: virtual-dial runs on Linux only (it needs "
                                  "pseudo-terminals); use a real dial here, or run it on a "
                                  "Linux machine")


def test_analyze_and_export_without_posix_terminals(tmp_path):
    rec = tmp_path / "r.ratedial"
    write_recording(rec, [simple_rater("client", constant(60), 90)], rate_hz=50,
                    media=SynthMedia(duration_s=90.0))
    res = ratedial_blocked("analyze", str(rec), "--json")
    assert res.returncode == 0, res.stderr
    assert '"mean": 60' in res.stdout.replace(".0,", ",")
    res = ratedial_blocked("export", str(rec), "-o", str(tmp_path / "x"),
                           "--format", "csv-long")
    assert res.returncode == 0, res.stderr
    (csv,) = tmp_path.glob("x*.csv")
    lines = csv.read_text().splitlines()
    assert len(lines) > 90 and "60" in lines[1]


@pytest.mark.slow
def test_devices_finds_a_dial_without_posix_terminals():
    with VirtualDial(seed=7, subprocess=True) as dial:
        res = ratedial_blocked("devices", "--port", str(dial.port), "--timeout", "10")
        uid = dial.options.uid_bytes.hex()
    assert res.returncode == 0, res.stderr
    assert f"{uid}  {dial.port}  board=" in res.stdout
