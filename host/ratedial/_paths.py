"""Where the firmware sources are: inside an installed wheel, or beside the source tree."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def firmware_dir() -> Path:
    """``ratedial/_firmware`` of an installed wheel when present, else the repository's
    ``firmware/`` (two levels above ``host/ratedial``)."""
    packaged = resources.files("ratedial") / "_firmware"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent.parent / "firmware"
