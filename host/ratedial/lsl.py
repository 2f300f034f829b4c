"""Lab Streaming Layer outlet (``ratedial run --lsl``, the ``lsl`` extra: pylsl).

One ``Rating`` stream per dial and one ``Markers`` stream per daemon.

Invariants:

* A dial's stream is keyed by its unique id, which is also the LSL ``source_id``: the outlet
  lives for the whole run and survives unplugging (LabRecorder and any inlet resolved by
  ``source_id`` keep receiving after a replug). It is only re-created, with the same
  ``source_id``, when a new boot announces a different nominal rate.
* Every sample is pushed with its mapped host time, in seconds of LSL's ``local_clock()``
  (on Linux CLOCK_MONOTONIC, the clock of ``host_ns`` in the recording): ``host_ns / 1e9``,
  so an LSL timestamp equals ``samples.host_ns`` of the recording to the microsecond.
  (Elsewhere, if ``local_clock`` is another clock, the offset measured at start is added.)
  Samples whose host time is not yet known (the first arrivals of a boot, before the clock
  model has its first fit) are skipped, not guessed, and counted in :attr:`LslSink.skipped`.
* :meth:`LslSink.handle` never blocks: liblsl copies a chunk into its send buffer (~1 µs a
  sample here) and sends from its own threads.
* liblsl logs warnings and errors only (its INFO lines were noise on the daemon's stderr),
  unless this computer has an ``lsl_api.cfg`` of its own, which is left to say.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._paths import install_hint
from .errors import UsageError
from .outputs import ClockOut, EpochOut, EventOut, Out, SamplesOut, public_data

STREAM_TYPE = "Rating"
MARKER_TYPE = "Markers"
CHANNELS = (("count", "counts"), ("rating", "points"))

# Events that go into the marker stream (kind -> marker name); the rest (gaps, acks, the
# daemon's own bookkeeping) are in the recording and on MQTT only.
MARKER_KINDS: dict[str, str] = {
    "media_load": "media_load",
    "media_play": "media_play",
    "media_pause": "media_pause",
    "media_seek": "media_seek",
    "media_rate": "media_rate",
    "media_end": "media_end",
    "media_stop": "media_stop",
    "media_error": "media_error",
    "button": "button",
    "rating_reset": "rating_reset",
    "dial_connected": "dial_connected",
    "dial_lost": "dial_lost",
    "dial_reboot": "dial_reboot",
}

SYNC_DESCRIPTION = {
    # XDF meta-data conventions (sccn/xdf wiki, "synchronization").
    "time_source": "dial device clock mapped to the host clock (CLOCK_MONOTONIC) by ratedial",
    "time_processing": "two-way SYNC pings and per-frame arrival bounds; see docs/timing.md",
    "offset_mean": "0",
    "can_drop_samples": "true",
    "inlet_processing_options": "Clocksync",
    "outlet_processing_options": "None",
    "timestamps": "per-sample mapped host times, local_clock() seconds (= host_ns / 1e9)",
}


def clock_offset(pylsl: Any) -> float:
    """``local_clock() - monotonic`` in seconds: 0.0 where they are the same clock (Linux:
    both CLOCK_MONOTONIC, measured within ~0.1 µs), else the offset (other systems)."""
    best = None
    for _ in range(5):
        a = time.monotonic_ns()
        lsl = pylsl.local_clock()
        b = time.monotonic_ns()
        if best is None or b - a < best[0]:
            best = (b - a, lsl - (a + b) / 2e9)
    assert best is not None
    return 0.0 if abs(best[1]) < 1e-3 else best[1]


def _import_pylsl() -> Any:
    try:
        import pylsl  # no stubs; used through Any
    except ImportError:
        raise UsageError("--lsl needs pylsl: " + install_hint("lsl")) from None
    except (RuntimeError, OSError) as exc:  # pylsl there, its liblsl missing or not loadable
        raise UsageError(f"--lsl: pylsl cannot load liblsl ({str(exc).splitlines()[0]}): "
                         "install liblsl for this platform, or unset PYLSL_LIB if it names "
                         "the wrong file") from None
    _quiet_log(pylsl)
    return pylsl


LOG_LEVEL = -1  # liblsl's [log] level: warnings and errors (0 adds its INFO lines)


def lab_config() -> str | None:
    """The ``lsl_api.cfg`` liblsl reads on this computer, where it looks (``LSLAPICFG``, the
    current folder, ``~/lsl_api/``, ``/etc/lsl_api/``), or None: its defaults."""
    if os.environ.get("LSLAPICFG"):
        return os.environ["LSLAPICFG"]
    for name in ("lsl_api.cfg", os.path.expanduser("~/lsl_api/lsl_api.cfg"),
                 "/etc/lsl_api/lsl_api.cfg"):
        if os.path.isfile(name):
            return name
    return None


def _quiet_log(pylsl: Any) -> None:
    """liblsl's defaults with :data:`LOG_LEVEL`: it printed "Loaded default config" and its
    build at INFO on stderr, where a ``--json`` script reads the live view's URL. Given as
    the configuration's text, which liblsl takes before any file, so not where the lab has
    a file of its own (known peers, a session id, its own log level): that stays in force."""
    set_content = getattr(pylsl, "set_config_content", None)  # pylsl 1.17.7 and later
    if set_content is None or lab_config() is not None:
        return
    with contextlib.suppress(NotImplementedError):  # a liblsl before 1.17.7: INFO lines
        set_content(f"[log]\nlevel = {LOG_LEVEL}\n")


LINGER_S = 0.5  # on stop, how long outlets stay for the last samples to go out


@dataclass(slots=True)
class _DialStream:
    outlet: Any
    rate_hz: float
    pushed: int = 0


class LslSink:
    """A :class:`~ratedial.outputs.Sink` that publishes dials and markers over LSL."""

    def __init__(self, *, raters: Callable[[str], str | None],
                 scale: dict[str, Any] | None = None, daemon_id: str = "ratedial",
                 pylsl: Any = None) -> None:
        self._lsl = pylsl if pylsl is not None else _import_pylsl()
        self._raters = raters
        self._scale = scale or {}
        self._daemon_id = daemon_id
        self.streams: dict[str, _DialStream] = {}
        self._clocks: dict[tuple[str, int], Any] = {}
        self.skipped = 0  # samples without a host time (clock not yet known)
        self.markers_pushed = 0
        self._markers = self._lsl.StreamOutlet(self._marker_info())
        self.clock_offset_s = clock_offset(self._lsl)

    # --- the sink -------------------------------------------------------------------------

    def handle(self, outs: list[Out]) -> None:
        for o in outs:
            match o:
                case SamplesOut():
                    self._samples(o)
                case EpochOut():
                    self._epoch(o)
                case EventOut():
                    self._event(o)
                case ClockOut():
                    self._clocks[(o.uid, o.boot_id)] = o.estimate
                case _:
                    pass

    async def stop(self) -> None:
        """Close the outlets (inlets see the streams disappear), after :data:`LINGER_S`: the
        run's last frames, read while its ports close, are pushed too (the recording has
        them), and liblsl sends what it holds before its outlets go (it has no flush)."""
        if self.streams or self._markers is not None:
            await asyncio.sleep(LINGER_S)
        self.streams.clear()
        self._markers = None

    # --- parts ----------------------------------------------------------------------------

    def _epoch(self, o: EpochOut) -> None:
        rate = float(o.hello.rate_hz)
        for key in [k for k in self._clocks if k[0] == o.uid and k[1] != o.boot_id]:
            del self._clocks[key]
        have = self.streams.get(o.uid)
        if have is not None and have.rate_hz == rate:
            return
        info = self._dial_info(o, rate)
        self.streams[o.uid] = _DialStream(self._lsl.StreamOutlet(info), rate)

    def _samples(self, o: SamplesOut) -> None:
        st = self.streams.get(o.uid)
        if st is None:
            return  # samples always follow their boot's EpochOut
        rows: list[list[float]] = []
        stamps: list[float] = []
        for count, rating, t in zip(o.counts, o.ratings, o.host_ns, strict=True):
            if t is None:
                self.skipped += 1
                continue
            rows.append([float(count), rating])
            stamps.append(t / 1e9 + self.clock_offset_s)
        if rows:
            st.outlet.push_chunk(rows, stamps)
            st.pushed += len(rows)

    def _event(self, o: EventOut) -> None:
        name = MARKER_KINDS.get(o.kind)
        if name is None or self._markers is None:
            return
        t_ns = o.host_ns
        if o.kind == "button":
            # The press's own device time, mapped by the dial's clock model, beats its
            # arrival time by the USB latency.
            est = self._clocks.get((o.uid, o.data.get("boot_id") or -1))
            dev = o.data.get("device_us")
            if est is not None and isinstance(dev, int):
                t_ns = est.to_host_ns(dev)
        marker: dict[str, Any] = {"event": name}
        if o.uid:
            marker["dial"] = o.uid
            marker["rater"] = self._raters(o.uid) or None  # null: no label, as on MQTT
        marker.update(public_data(o.data))  # no file names off this computer
        marker["event_id"] = o.event_id
        self._markers.push_sample([json.dumps(marker, separators=(",", ":"), default=str)],
                                  t_ns / 1e9 + self.clock_offset_s)
        self.markers_pushed += 1

    # --- stream descriptions --------------------------------------------------------------

    def _dial_info(self, o: EpochOut, rate: float) -> Any:
        lsl = self._lsl
        rater = self._raters(o.uid)
        name = f"ratedial {rater}" if rater else f"ratedial {o.uid}"
        info = lsl.StreamInfo(name, STREAM_TYPE, len(CHANNELS), rate, lsl.cf_double64, o.uid)
        desc = info.desc()
        chans = desc.append_child("channels")
        for label, unit in CHANNELS:
            ch = chans.append_child("channel")
            ch.append_child_value("label", label)
            ch.append_child_value("unit", unit)
            ch.append_child_value("type", "Rating" if label == "rating" else "Count")
        scale = desc.append_child("scale")
        for key in ("minimum", "maximum", "start", "counts_per_point"):
            if key in self._scale:
                scale.append_child_value(key, f"{self._scale[key]:g}")
        anchors = scale.append_child("anchors")
        for value, label in (self._scale.get("anchors") or {}).items():
            a = anchors.append_child("anchor")
            a.append_child_value("value", str(value))
            a.append_child_value("label", str(label))
        desc.append_child_value("rater", rater or "")
        desc.append_child_value("dial", o.uid)
        desc.append_child_value("sample_rate", f"{rate:g}")
        acq = desc.append_child("acquisition")
        acq.append_child_value("manufacturer", "ratedial")
        acq.append_child_value("model", o.hello.board)
        acq.append_child_value("firmware", o.hello.firmware)
        acq.append_child_value("backend", o.hello.backend)
        acq.append_child_value("boot_id", str(o.boot_id))
        sync = desc.append_child("synchronization")
        for key, value in SYNC_DESCRIPTION.items():
            sync.append_child_value(key, value)
        return info

    def _marker_info(self) -> Any:
        lsl = self._lsl
        info = lsl.StreamInfo("ratedial markers", MARKER_TYPE, 1, lsl.IRREGULAR_RATE,
                              lsl.cf_string, f"ratedial-markers-{self._daemon_id}")
        desc = info.desc()
        desc.append_child("channels").append_child("channel").append_child_value(
            "label", "event")
        desc.append_child_value("format", "JSON object per marker: event, dial, rater, "
                                          "event_id and the event's own keys")
        sync = desc.append_child("synchronization")
        sync.append_child_value("time_source", SYNC_DESCRIPTION["time_source"])
        sync.append_child_value("timestamps", "event host time; button presses at their "
                                "mapped device time")
        return info

