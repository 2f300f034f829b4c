"""A stop signal in a run's first half second, while ratedial starts (README: a run ends at
Ctrl+C, SIGTERM or SIGHUP the same clean way "from its first moment on"): an audit
(2026-12-05) got a KeyboardInterrupt traceback from the imports, a bare "aborted", or a
silent kill (SIGTERM, SIGHUP). Now one line and the shell's status for the signal.

The signal is sent by the process to itself at a chosen point of the start (the import of a
module), so the moment is exact, not a race with a timer."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

# Runs `ratedial run` (through the real entry point) and sends SIG to itself when MODULE is
# first imported.
SCRIPT = """
import builtins, os, signal, sys
sig, module = signal.Signals[sys.argv[1]], sys.argv[2]
real = builtins.__import__
def hook(name, globals=None, locals=None, fromlist=(), level=0):
    pkg = (globals or {}).get("__package__") or ""
    full = name if level == 0 else pkg.rsplit(".", level - 1)[0] + "." + name
    if full == module and module not in sys.modules:
        os.kill(os.getpid(), sig)
    return real(name, globals, locals, fromlist, level)
builtins.__import__ = hook
sys.argv = ["ratedial", "run", "--no-scan", "--broker", "none", "--port", sys.argv[3],
            "--duration", "5", "--json", "--record", sys.argv[4]]
from ratedial.entry import main
main()
"""


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM", "SIGHUP"])
@pytest.mark.parametrize("module", ["ratedial.cli", "ratedial.daemon.app"])
def test_a_stop_while_ratedial_starts_is_one_line(tmp_path, sig: str, module: str) -> None:
    rec = tmp_path / "r.ratedial"
    res = subprocess.run([sys.executable, "-c", SCRIPT, sig, module, str(tmp_path / "nodial"),
                          str(rec)], capture_output=True, text=True, timeout=60, check=False)
    number = signal.Signals[sig].value
    assert res.returncode == 128 + number, (res.returncode, res.stderr)
    assert res.stderr.strip() == f"ratedial: stopped ({sig})", res.stderr
    assert res.stdout == "" and not rec.exists()
