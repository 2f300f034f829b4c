"""Shared pytest configuration."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

# tests/ holds helper modules (mpy.py) imported by test files.
sys.path.insert(0, str(Path(__file__).resolve().parent))

# The runs the tests start inherit how signals are handled, and a run keeps an ignored SIGHUP
# ignored (`nohup ratedial run`: a closed SSH session must not end it). Tests that send a
# run SIGHUP would hang under `nohup make test`: their runs get the default, as from a shell.
if hasattr(signal, "SIGHUP") and signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
