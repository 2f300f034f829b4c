"""Where a sample's time goes on the emulated Pico: runs ``profile_probe.py`` as main.py over
the firmware (this tree's, or another ``firmware/`` directory) and returns the stage costs
in emulated microseconds. ``python tests/rp2emu/profile.py [FIRMWARE_DIR]`` prints them."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from rp2emu import board as rp2board  # noqa: E402


def profile(firmware: Path | None = None, board: str = "pico",
            timeout_s: float = 900.0) -> dict[str, float]:
    import serial

    files = rp2board.firmware_files(board, firmware=firmware)
    files["main.py"] = (HERE / "profile_probe.py").read_bytes()
    with tempfile.TemporaryDirectory(prefix="ratedial-rp2prof-") as tmp:
        image = rp2board.make_image(files, Path(tmp))
        with rp2board.EmuPico(image=image, high=(2, 3, 4)) as emu:
            ser = serial.Serial(emu.port, timeout=0.5)
            try:
                text = b""
                deadline = time.monotonic() + timeout_s
                while b"PROF end" not in text and b"Traceback" not in text[-2000:] + b"":
                    if time.monotonic() > deadline:
                        raise TimeoutError(text.decode(errors="replace")[-2000:])
                    text += ser.read(4096)
                if b"Traceback" in text:
                    time.sleep(1)
                    text += ser.read(4096)
                    raise RuntimeError(text.decode(errors="replace")[-2000:])
            finally:
                ser.close()
    out: dict[str, float] = {}
    for ln in text.decode(errors="replace").splitlines():
        if ln.startswith("FASTWHY") and "None" not in ln:
            print(ln, file=sys.stderr)
        parts = ln.split()
        if len(parts) == 3 and parts[0] == "PROF":
            out[parts[1]] = float(parts[2])
    return out


if __name__ == "__main__":
    import json

    fw = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    print(json.dumps(profile(fw), indent=1))
