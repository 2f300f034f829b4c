"""What the daemon shows of one dial (the live view, status topics, the run's summary): a
record the daemon fills and the shells read."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..wire import Status

__all__ = ["DialView", "name_together"]


@dataclass(slots=True)
class DialView:
    """What the live view and status topics show about one dial."""

    uid: str
    rater: str | None
    conflict: tuple[str, ...] = ()  # rater labels that all name this dial (none is used)
    port: str | None = None
    state: str = "connecting"  # connecting | connected | lost
    lost_ns: int | None = None  # monotonic time it was lost, while lost (None once back)
    lost_cause: str = ""  # why: unplugged (its port went away) or replaced (another dial)
    board: str = ""
    firmware: str = ""
    received: int = 0
    missing: int = 0
    rejected: int = 0  # damaged chunks the decoder rejected
    rejected_content: int = 0  # well-formed frames rejected as impossible (docs/protocol.md)
    duplicates: int = 0  # samples that came again (duplicates: counted, never recorded twice)
    stalls: int = 0  # times the dial took no sample for 0.1 s or more (dial_stalled events)
    stalled_s: float = 0.0
    rate_hz: float = 0.0
    rating: float | None = None
    count: int | None = None
    boot: int | None = None  # current device epoch
    next_index: int | None = None  # one past the newest sample index received in it
    latency_ms: float | None = None  # arrival minus mapped time of the newest sample
    skew_ppm: float | None = None
    uncertainty_us: float | None = None
    last_status: Status | None = None
    _window: deque[tuple[int, int]] = field(default_factory=deque)
    _in_window: int = 0

    def note_rate(self, now_ns: int, n: int) -> None:
        """Samples per second over the last 2 s of arrivals, and the arrival before them (a
        dial sending a frame every 2 s or more, 100 samples at 50 Hz, showed 0/s); 0 until
        0.5 s are seen."""
        w = self._window
        w.append((now_ns, n))
        self._in_window += n
        while len(w) > 1 and w[1][0] <= now_ns - 2_000_000_000:
            self._in_window -= w.popleft()[1]
        span = (now_ns - w[0][0]) / 1e9
        self.rate_hz = (self._in_window - w[0][1]) / span if span >= 0.5 else 0.0



def name_together(labels: Sequence[str]) -> str:
    """``client and therapist both name`` / ``a, b and c all name``."""
    listed = " and ".join(labels) if len(labels) < 3 else \
        f"{', '.join(labels[:-1])} and {labels[-1]}"
    return f"{listed} {'both' if len(labels) == 2 else 'all'} name"
