"""The analysis commands, one handler each: the table that ``ratedial`` adds to its group.

* :mod:`.cli_options` — the options the commands share, their checks, loading and pairing
* :mod:`.cli_tables` — ``analyze``, ``study``, ``export``, ``plot``: tables, files, figures
* :mod:`.cli_media` — ``review``, ``render``: the video again, replayed or with the traces
* :mod:`.cli_annotate` — ``annotate``: questionnaire scores kept in a recording

Only click and the standard library are imported by these modules, so ``ratedial --help``
stays fast; numpy, scipy, pandas and matplotlib (the ``analysis`` extra) load inside the
commands.
"""

from __future__ import annotations

from .cli_annotate import annotate
from .cli_media import render, review
from .cli_tables import analyze, export, plot, study

COMMANDS = (analyze, export, plot, review, annotate, render, study)
