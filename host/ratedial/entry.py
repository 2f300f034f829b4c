"""The ``ratedial`` command's entry point (and ``python -m ratedial``).

Invariants:

* A stop signal is never a traceback or a silent kill, from the process's first moment: here,
  before the command's modules are imported (about half a second), SIGTERM and SIGHUP are
  made to raise like Ctrl+C does, and :func:`ratedial.cli.main` turns any of the three into
  one line and the shell's exit status for it (128 + the signal's number). A run replaces
  these handlers with its own as it starts (docs: a run stops the same clean way).
"""

from __future__ import annotations

from ._platform.stopsignal import exit_stopped, raise_on_terminate


def main() -> None:
    raise_on_terminate()
    try:
        from .cli import main as cli_main
    except KeyboardInterrupt as exc:  # while the command's modules were being imported
        exit_stopped(exc)
    cli_main()
