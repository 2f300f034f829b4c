"""What a collected recording's ``meta`` takes from the daemons' statuses (pure): the rating
scale their ratings are on.

Invariants:

* A daemon status's ``scale`` is taken only when it is a scale (finite ``minimum`` below a
  finite ``maximum``, ``start`` within them, ``anchors`` of text): anything else is ignored.
* The first daemon's scale is the recording's; one that differs is said, not mixed in.
"""

from __future__ import annotations

import math
from typing import Any


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def scale_of(msg: dict[str, Any]) -> dict[str, Any] | None:
    """The ``scale`` of a daemon status as ``meta.scale`` holds it, or None."""
    s = msg.get("scale")
    if not isinstance(s, dict):
        return None
    lo, hi, start = _number(s.get("minimum")), _number(s.get("maximum")), _number(s.get("start"))
    cpp = _number(s.get("counts_per_point"))
    anchors = s.get("anchors")
    if lo is None or hi is None or start is None or not lo < hi or not lo <= start <= hi:
        return None
    if not isinstance(anchors, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in anchors.items()):
        anchors = {}
    return {"minimum": lo, "maximum": hi, "start": start, "counts_per_point": cpp,
            "anchors": dict(anchors)}
