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


def install_hint(extra: str) -> str:
    """The command that installs ratedial's optional ``extra``: ratedial is installed from
    its source folder (it is not on PyPI), so the hint names that folder when this is it.
    Double quotes: the same line works in cmd.exe, PowerShell and POSIX shells."""
    root = Path(__file__).resolve().parent.parent.parent
    if (root / "pyproject.toml").is_file():  # running from the clone: an editable install
        return f'pip install -e "{root}[{extra}]"'
    return f'pip install ".[{extra}]" in the ratedial source folder'
