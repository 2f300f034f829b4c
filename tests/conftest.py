"""Shared pytest configuration."""

from __future__ import annotations

import sys
from pathlib import Path

# tests/ holds helper modules (mpy.py) imported by test files.
sys.path.insert(0, str(Path(__file__).resolve().parent))
