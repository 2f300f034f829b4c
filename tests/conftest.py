"""Shared pytest configuration."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from hypothesis import settings

# tests/ holds helper modules (mpy.py) imported by test files.
sys.path.insert(0, str(Path(__file__).resolve().parent))

# The runs the tests start inherit how signals are handled, and a run keeps an ignored SIGHUP
# ignored (`nohup ratedial run`: a closed SSH session must not end it). Tests that send a
# run SIGHUP would hang under `nohup make test`: their runs get the default, as from a shell.
if hasattr(signal, "SIGHUP") and signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
    signal.signal(signal.SIGHUP, signal.SIG_DFL)

# Property tests (hypothesis) run the same examples every time in ``make test``: a run fails
# only when the code changed, never on an example no earlier run met (a CI run failed so,
# 2026-12-05). ``make fuzz`` searches at random (RATEDIAL_HYPOTHESIS=explore), and what it
# finds is kept as an ``@example``.
settings.register_profile("make-test", derandomize=True, deadline=None)  # a loaded machine
settings.register_profile("explore", derandomize=False, deadline=None)
settings.load_profile(os.environ.get("RATEDIAL_HYPOTHESIS", "make-test"))
