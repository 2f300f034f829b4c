"""What the media clock gives out: media events and the per-sample annotation (pure data).

:class:`MediaEvent` goes to the events table (``media_play``, ``media_seek``, ...);
:data:`Annotation` is the (media_id, media_s, MediaState) columns for one batch of samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Annotation = tuple[tuple[int | None, ...], tuple[float | None, ...], tuple[int, ...]]


@dataclass(frozen=True, slots=True)
class MediaEvent:
    """A media event for the events table: ``media_play``, ``media_seek``, ..."""

    kind: str
    data: dict[str, Any]
    host_ns: int
