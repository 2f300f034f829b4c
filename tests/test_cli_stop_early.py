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
# as from an interactive shell (a pytest-xdist worker leaves SIGINT ignored in its children)
signal.signal(signal.SIGINT, signal.default_int_handler)
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
    if sig != "SIGINT":  # no empty line before it (click's, after a typed ^C, is for Ctrl+C)
        assert res.stderr == f"ratedial: stopped ({sig})\n", res.stderr
    assert res.stdout == "" and not rec.exists()


IGNORED = """
import signal, sys
signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as `nohup` leaves it
""" + SCRIPT


def test_nohup_keeps_a_hangup_ignored(tmp_path) -> None:
    """A review (2026-12-05): the entry point made an ignored SIGHUP raise like Ctrl+C, so
    `nohup ratedial render ...` stopped (and removed its output) at logout. An ignored
    SIGHUP stays ignored: this run goes on to its own end (no such port: exit 1)."""
    res = subprocess.run([sys.executable, "-c", IGNORED, "SIGHUP", "ratedial.cli",
                          str(tmp_path / "nodial"), str(tmp_path / "r.ratedial")],
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 1 and "stopped" not in res.stderr, res.stderr
    assert "no such port" in res.stderr or "nodial" in res.stderr, res.stderr


def test_nohup_ratedial_run_outlives_a_hangup(tmp_path) -> None:
    """`nohup ratedial run` over SSH: the hangup when the session closes ended the run (the
    daemon took SIGHUP as a stop even when it was ignored). It now records on to
    --duration."""
    import json
    import os
    import time

    from ratedial.virtual import VirtualDial

    rec = tmp_path / "r.ratedial"
    with VirtualDial(seed=82, subprocess=True) as dial:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ratedial", "run", "--port", dial.port, "--no-scan",
             "--broker", "none", "--duration", "4", "--record", str(rec), "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))  # noqa: PLW1509
        deadline = time.monotonic() + 60
        while not rec.exists():  # the run has started (its recording is there)
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGHUP)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["seconds"] >= 3.9, out


def test_the_summary_says_whether_the_run_ran_its_duration_or_was_stopped(tmp_path) -> None:
    """An audit: a run stopped by Ctrl+C mid-run exits 0 (a clean stop), as one that ran
    its --duration does, and nothing in the --json summary told a script which it was (the
    recording's run_end said "stopped" for both). Now ``ended`` and run_end's ``reason``:
    ``duration`` or ``stopped``; the exit status stays 0."""
    import json
    import os
    import sqlite3
    import time

    from ratedial.virtual import VirtualDial

    def run_end(rec) -> str:
        con = sqlite3.connect(rec)
        try:
            (data,) = con.execute("SELECT data FROM events WHERE kind = 'run_end'").fetchone()
        finally:
            con.close()
        return str(json.loads(data)["reason"])

    with VirtualDial(seed=83, subprocess=True) as dial:
        ran = tmp_path / "ran.ratedial"
        res = subprocess.run([sys.executable, "-m", "ratedial", "run", "--port", dial.port,
                              "--no-scan", "--broker", "none", "--duration", "2", "--record",
                              str(ran), "--json"], capture_output=True, text=True, timeout=120,
                             check=False)
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["ended"] == "duration"
        assert run_end(ran) == "duration"
        for sig in (signal.SIGINT, signal.SIGTERM):
            cut = tmp_path / f"cut-{sig.name}.ratedial"
            proc = subprocess.Popen(
                [sys.executable, "-m", "ratedial", "run", "--port", dial.port, "--no-scan",
                 "--broker", "none", "--duration", "600", "--record", str(cut), "--json"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                # as from an interactive shell (a background shell leaves SIGINT ignored)
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # noqa: PLW1509
            deadline = time.monotonic() + 60
            while True:  # until the run records (a sample committed), then stop it
                assert proc.poll() is None and time.monotonic() < deadline
                if cut.exists():
                    con = sqlite3.connect(f"file:{cut}?mode=ro", uri=True)
                    try:
                        if con.execute("SELECT 1 FROM samples LIMIT 1").fetchone():
                            break
                    except sqlite3.Error:
                        pass
                    finally:
                        con.close()
                time.sleep(0.05)
            os.kill(proc.pid, sig)
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err  # a clean stop: the exit status is unchanged
            summary = json.loads(out)
            assert summary["ended"] == "stopped" and summary["seconds"] < 600, summary
            assert run_end(cut) == "stopped"
