"""Parameter types shared by every command line (click only: importing this stays cheap).

Invariants: a path starting with ``~`` is in the home folder, as a shell would have made it
(a quoted ``'~/x'``, or a script's, reaches ratedial as written). A number option never takes
``nan`` or ``inf`` (click's ``FloatRange`` lets both through its bounds, as every comparison
with ``nan`` is false): they are refused in one line like any other value outside the range.
"""

from __future__ import annotations

import math
import os
from typing import Any

import click

__all__ = ["A_DAY_S", "LARGEST", "FiniteRange", "HomePath", "check_text"]


LARGEST = 1e9  # no option without a bound of its own means more (seconds: 31 years)
A_DAY_S = 86_400.0  # the bound of the analyses' seconds: no video or window is longer


class FiniteRange(click.FloatRange):
    """A number in a range, and a number: ``inf`` and ``nan`` are refused like any other
    value outside it (no bounds given: any finite number)."""

    def _describe_range(self) -> str:
        """No bounds: nothing to add to the help (click would print ``x<=None``)."""
        if self.min is None and self.max is None:
            return ""
        if self.max is None:  # the bound every option without one of its own has
            return f"{super()._describe_range()}, at most 1e9"
        return super()._describe_range()

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):  # said as such, before any range is
            self.fail(f"{value} is not a finite number.", param, ctx)
        rv = super().convert(number, param, ctx)
        if self.max is None and abs(rv) > LARGEST:
            self.fail(f"{value} is too large (at most 1e9).", param, ctx)
        return rv


def check_text(value: str, what: str) -> None:
    """Refuse an argument that is not text: a byte of another encoding (a Latin-1 terminal),
    which Python keeps as a lone surrogate that neither SQLite nor JSON readers can take."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raw = value.encode("utf-8", "surrogateescape")
        raise click.BadParameter(f"{raw!r} is not UTF-8 text (a byte of another encoding?): "
                                 "type it again in UTF-8", param_hint=what) from None


class HomePath(click.Path):
    """A path option or argument; a leading ``~`` or ``~USER`` is the home folder, as a shell
    makes it (quoted, ``--record '~/recs/'`` made a folder named ``~`` in the current one),
    before any check of what is there."""

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        if isinstance(value, str | os.PathLike):
            value = os.path.expanduser(value)
        return super().convert(value, param, ctx)
