"""Media times as people read them: ``mm:ss`` (``h:mm:ss`` from one hour)."""

from __future__ import annotations

import math


def fmt_time(seconds: float | None, *, tenths: bool = False) -> str:
    """``75.0`` → ``"01:15"``; ``3725.4`` → ``"1:02:05"``; with ``tenths``: ``"01:15.0"``."""
    if seconds is None or not math.isfinite(seconds):
        return "--:--"
    sign = "-" if seconds < 0 else ""
    s = abs(seconds)
    if tenths:
        s = round(s, 1)
        whole, frac = int(s), round((s - int(s)) * 10)
        if frac == 10:
            whole, frac = whole + 1, 0
    else:
        whole, frac = round(s), 0
    h, rest = divmod(whole, 3600)
    m, sec = divmod(rest, 60)
    text = f"{h}:{m:02d}:{sec:02d}" if h else f"{m:02d}:{sec:02d}"
    return sign + text + (f".{frac}" if tenths else "")


def fmt_span(start_s: float, end_s: float) -> str:
    """``"04:10-04:40"``, with tenths when a bound is not a whole second."""
    tenths = any(abs(x - round(x)) > 1e-6 for x in (start_s, end_s))
    return f"{fmt_time(start_s, tenths=tenths)}-{fmt_time(end_s, tenths=tenths)}"
