"""The ``ratedial`` command table (a click group): commands loaded lazily where they may not
load (``virtual-dial`` on Windows and macOS), and a stop signal carried past click.
"""

from __future__ import annotations

from typing import ClassVar

import click

from ._platform.stopsignal import StopSignal
from .errors import RatedialError


class Commands(click.Group):
    """The command table. ``virtual-dial`` (a Linux simulator: the firmware behind a
    pseudo-terminal) is imported only when asked for, so every other command loads on
    Windows and macOS; where it cannot load it answers with one line."""

    LAZY: ClassVar[dict[str, tuple[str, str]]] = {
        "virtual-dial": ("ratedial.virtual.command", "virtual_dial")}

    def invoke(self, ctx: click.Context) -> object:
        # SIGTERM or SIGHUP (ratedial.entry raises them like Ctrl+C): past click, which would
        # print an empty line for it (after a typed ^C, not after a signal from elsewhere)
        try:
            return super().invoke(ctx)
        except StopSignal as exc:
            raise Stopped(exc) from None

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.LAZY])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.LAZY:
            return super().get_command(ctx, cmd_name)
        import importlib

        module, attr = self.LAZY[cmd_name]
        try:
            command: click.Command = getattr(importlib.import_module(module), attr)
        except ImportError:
            return _unavailable(cmd_name)
        return command


class Stopped(Exception):  # not an error: a stop, said in one line by main
    """A :class:`StopSignal` carried past click's handling of KeyboardInterrupt."""

    def __init__(self, signal: StopSignal) -> None:
        super().__init__(signal.signum)
        self.signal = signal


def _unavailable(name: str) -> click.Command:
    def refuse(args: tuple[str, ...] = ()) -> None:
        raise RatedialError(f"{name} runs on Linux only (it needs pseudo-terminals); "
                            "use a real dial here, or run it on a Linux machine")

    return click.Command(name, callback=refuse, add_help_option=False,
                         context_settings={"ignore_unknown_options": True},
                         params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)],
                         help="The virtual dial (Linux only; not available here).")
