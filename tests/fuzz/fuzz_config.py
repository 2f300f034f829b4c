"""atheris fuzz target for the config loader (:func:`ratedial.config.load_config`).

    python tests/fuzz/fuzz_config.py tests/fuzz/corpus/config -max_total_time=60

The contract: any bytes in a config file give a :class:`RunConfig` or a one-line
:class:`UsageError`, never another exception; a config that loads also yields its public
form (what recordings store) and its rating scale without raising.

:func:`check` needs no atheris, so the corpus replays in every test run
(tests/test_fuzz_targets.py).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

try:
    import atheris
except ImportError:  # replaying the corpus needs no atheris
    atheris = None

_instrument = (atheris.instrument_imports() if atheris is not None and __name__ == "__main__"
               else contextlib.nullcontext())
with _instrument:
    from ratedial.config import load_config
    from ratedial.errors import UsageError

# Crashes kept as regressions (corpus/config/regressions), tolerated only when
# RATEDIAL_FUZZ_SKIP_KNOWN=1 so that a bounded run looks for new ones. Found and fixed (now
# in the corpus as regressions): float() of a TOML integer beyond 1e308; tomllib recursing
# on nested arrays; a quoted key with a newline echoed into the "unknown key" message.


class NotOneLine(AssertionError):
    """A UsageError whose message spans lines (it echoes the input unescaped)."""


KNOWN: tuple[type[BaseException], ...] = ()  # the three crashes found are fixed

_DIR = Path(tempfile.mkdtemp(prefix="ratedial-fuzz-config-"))
_FILE = _DIR / "ratedial.toml"
atexit.register(shutil.rmtree, _DIR, ignore_errors=True)


def check(data: bytes) -> None:
    tolerated: tuple[type[BaseException], ...] = (
        KNOWN if os.environ.get("RATEDIAL_FUZZ_SKIP_KNOWN") else ())
    with contextlib.suppress(*tolerated):
        _check(data)


def _check(data: bytes) -> None:
    _FILE.write_bytes(data)
    try:
        cfg = load_config(_FILE)
    except UsageError as exc:
        if "\n" in str(exc):
            raise NotOneLine(f"UsageError is not one line: {exc!r}") from None
        return
    cfg.public()
    cfg.scale.scale()


def main() -> None:
    assert atheris is not None, "pip install atheris"
    os.environ.pop("RATEDIAL_MQTT_PASSWORD", None)
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
