"""Where the core's outputs go: the recording, MQTT, the live view.

Each sink takes lists of outputs (:mod:`ratedial.outputs`) and must not block.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat

from ..outputs import (
    ArrivalOut,
    ClockOut,
    EpochOut,
    EventOut,
    GapOut,
    Out,
    SamplesOut,
    SyncOut,
    hello_dict,
)
from ..recording import MediaState
from ..recording.writer import Recorder, RecordingError

_NO_MEDIA = int(MediaState.NONE)


@dataclass(slots=True)
class RecorderSink:
    """Turns outputs into recording rows. Allocates dial and epoch ids on first sight."""

    recorder: Recorder
    raters: Callable[[str], str | None]
    dial_ids: dict[str, int] = field(default_factory=dict)
    epoch_ids: dict[tuple[str, int], int] = field(default_factory=dict)

    def dial_id(self, uid: str, board: str = "", firmware: str = "", backend: str = "") -> int:
        if uid not in self.dial_ids:
            self.dial_ids[uid] = self.recorder.add_dial(uid, self.raters(uid), board, firmware,
                                                        backend)
        return self.dial_ids[uid]

    def handle(self, outs: list[Out]) -> None:
        # If the recorder failed (a full disk), it has reported that once through its
        # on_error callback, which stops the run; what arrives until the daemon has stopped
        # cannot be recorded, and must not end up as a traceback in the event loop.
        try:  # (a try costs nothing when nothing is raised; a suppress() is built each call)
            self._handle(outs)
        except RecordingError:
            return

    def _handle(self, outs: list[Out]) -> None:
        rec = self.recorder
        for o in outs:
            match o:  # a frame's two outputs, SAMPLES and its arrival, matched first
                case SamplesOut():
                    epoch = self.epoch_ids[(o.uid, o.boot_id)]
                    dial = self.dial_ids[o.uid]
                    n = len(o)
                    # one row per sample, zipped column-wise in C (strict: a short column is a bug)
                    rec.put_many("samples", list(zip(
                        repeat(epoch, n), range(o.first_index, o.first_index + n),
                        repeat(dial, n), o.device_us, o.host_ns, o.counts, o.ratings, o.flags,
                        o.media_ids or repeat(None, n), o.media_s or repeat(None, n),
                        o.media_states or repeat(_NO_MEDIA, n), strict=True)))
                case ArrivalOut():
                    rec.put("arrivals", (self.epoch_ids[(o.uid, o.boot_id)], o.last_index,
                                         o.device_us, o.host_recv_ns))
                case EpochOut() if (o.uid, o.boot_id) not in self.epoch_ids:
                    h = o.hello
                    dial = self.dial_id(o.uid, h.board, h.firmware, h.backend)
                    self.epoch_ids[(o.uid, o.boot_id)] = rec.add_epoch(dial, o.boot_id, o.host_ns,
                                                                       hello_dict(h))
                case GapOut():
                    rec.put("gaps", (self.epoch_ids[(o.uid, o.boot_id)], self.dial_ids[o.uid],
                                     o.gap.first_index, o.gap.end_index, str(o.gap.reason),
                                     o.first_host_ns, o.end_host_ns))
                case EventOut():
                    # A dial's first event (dial_connected) comes before its first epoch:
                    # its row is made here, from what the event says of the dial.
                    dial_id = None if not o.uid else self.dial_id(
                        o.uid, *(str(o.data.get(k) or "") for k in ("board", "firmware",
                                                                   "backend")))
                    rec.event(o.host_ns, dial_id, o.kind, o.data, o.event_id or None)
                case SyncOut():
                    rec.put("sync_obs", (self.epoch_ids[(o.uid, o.boot_id)], o.token,
                                         o.host_send_ns, o.device_rx_us, o.device_tx_us,
                                         o.host_recv_ns))
                case ClockOut():
                    e = o.estimate
                    rec.put("clock_models", (self.epoch_ids[(o.uid, o.boot_id)], o.host_ns,
                                             e.ref_device_us, e.ref_host_ns, e.skew_ppm,
                                             e.uncertainty_ns, e.n_obs,
                                             getattr(e, "skew_uncertainty_ppm", None)))
