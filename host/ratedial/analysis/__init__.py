"""Research analysis of recordings: alignment, statistics, export, plots, interview.

The data path, one module each:

* :mod:`.read` — a recording file, read-only, samples aggregated by SQLite in bounded memory
* :mod:`.align` — samples to one value per grid bin of media time (passes, re-rating, fill)
* :mod:`.load` — recordings to rater :class:`~.load.Series`
* :mod:`.groups` — series paired into dyads (same video, same dyad label, client/therapist)
* :mod:`.stats`, :mod:`.segments`, :mod:`.lag` — the numbers (pure)
* :mod:`.truthbias` — West and Kenny's Truth-and-Bias model over many dyads
* :mod:`.analyse` — the figures of one dyad, as JSON and as a table row
* :mod:`.report`, :mod:`.export`, :mod:`.plots` — text, open files, figures
* :mod:`.spss`, :mod:`.elan`, :mod:`.xdf` — files for SPSS, ELAN and LSL/XDF
* :mod:`.render` — the video with the rating traces drawn over it (ffmpeg)
* :mod:`.mpvctl`, :mod:`.review`, :mod:`.notes` — replay, interview, guess test, annotations
* :mod:`.synth` — synthetic recordings with known ground truth (tests, benchmarks)
* :mod:`.cli` — the command table; the commands in :mod:`.cli_tables` (analyze, study,
  export, plot), :mod:`.cli_media` (review, render), :mod:`.cli_annotate`, with the options
  they share in :mod:`.cli_options`

Heavy dependencies (numpy, scipy, pandas, matplotlib: the ``analysis`` extra; pympi-ling,
pyreadstat, pyxdf, statsmodels: the ``research`` extra) are imported only by the modules
that need them; importing this package or :mod:`.cli` imports none.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .align import AlignOptions
    from .analyse import AnalysisOptions, GroupResult, analyse_group
    from .groups import Group, PairingOptions, group_series
    from .load import Series, load
    from .segments import Segment, SegmentOptions, find_segments
    from .stats import Band

_EXPORTS = {
    "AlignOptions": "align", "AnalysisOptions": "analyse", "GroupResult": "analyse",
    "analyse_group": "analyse", "Group": "groups", "PairingOptions": "groups",
    "group_series": "groups", "Series": "load", "load": "load", "Segment": "segments",
    "SegmentOptions": "segments", "find_segments": "segments", "Band": "stats",
}

__all__ = [
    "AlignOptions", "AnalysisOptions", "Band", "Group", "GroupResult", "PairingOptions",
    "Segment", "SegmentOptions", "Series", "analyse_group", "find_segments", "group_series",
    "load",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
