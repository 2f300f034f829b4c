"""The end of a ``ratedial run``: what it received and lost, as lines or one JSON object
(README, "Recording a session", lists every field)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from .._platform import shell_quote
from ..errors import NO_FIRMWARE_HINT, RatedialError
from .dialview import DialView, name_together

__all__ = ["LostAtEnd", "NoDialAnswered", "RunSummary", "json_summary", "name_together",
           "print_summary", "silent_ports_error"]


@dataclass(frozen=True, slots=True)
class LostAtEnd:
    """A dial lost before the run ended and not back by its end: ``at_s`` into the run (from
    its start), for its last ``for_s`` (to the moment it was stopped or its --duration ran
    out), and why (``unplugged``: its port went away; ``replaced``: another dial answered on
    it). No sample index is known for that time, so it is in no gap and not in ``missing``."""

    at_s: float
    for_s: float
    cause: str


@dataclass(slots=True)
class RunSummary:
    path: Path
    seconds: float
    dials: list[DialView] = field(default_factory=list)
    gaps: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)  # impossible frames by reason
    events: int = 0
    broker: str = "none"
    mqtt_refused: int = 0  # QoS 1 messages the broker refused (MQTT 5 reason codes)
    unpublished: tuple[int, int] = (0, 0)  # this run's samples, events not confirmed
    # earlier recordings' samples, events (and how many files) this run was republishing and
    # the broker has not confirmed yet: they stay in those files for the next run
    unpublished_earlier: tuple[int, int, int] = (0, 0, 0)
    daemon_id: str = ""
    silent_ports: list[str] = field(default_factory=list)  # --port with no dial all run
    # how it ended: "duration" (ran its --duration), "stopped" (a stop signal first: Ctrl+C,
    # SIGTERM, SIGHUP), "failed" (the recording stopped: the summary's error says why)
    ended: str = "stopped"
    kept: bool = True  # False: no file was kept (no dial answered on any --port): path null
    lost_at_end: dict[str, LostAtEnd] = field(default_factory=dict)  # by dial uid


class NoDialAnswered(RatedialError):
    """No dial answered on any ``--port``: nothing was kept. ``summary``: the run's, for
    ``--json`` (``kept`` false, ``silent_ports`` every port)."""

    summary: RunSummary | None = None


def print_summary(console: Console, s: RunSummary) -> None:
    console.print(f"recording: {s.path}  ({s.seconds:.1f} s)", highlight=False, soft_wrap=True)
    if not s.dials:
        console.print("  no dial was connected during the run: the recording holds no "
                      "samples (ratedial devices lists the dials this computer sees)",
                      highlight=False, soft_wrap=True)
    for v in s.dials:
        again = f", {v.duplicates} duplicate samples ignored" if v.duplicates else ""
        console.print(f"  dial {v.uid} rater={v.rater or '-'}: {v.received} samples received, "
                      f"{v.missing} missing, {v.rejected} damaged frames, "
                      f"{v.rejected_content} impossible frames{again}", highlight=False,
                      soft_wrap=True)
    for v in s.dials:
        lost = s.lost_at_end.get(v.uid)
        if lost is not None:
            how = "its port went away" if lost.cause == "unplugged" else \
                "another dial answered on its port"
            share = f" ({lost.for_s / s.seconds:.0%} of the run)" if s.seconds > 0 else ""
            console.print(f"  dial {v.uid} rater={v.rater or '-'}: lost {lost.at_s:.1f} s into "
                          f"the run ({how}) and not back: its last {lost.for_s:.1f} s{share} "
                          "have no samples (in no gap, not counted as missing)",
                          highlight=False, soft_wrap=True)
    for v in s.dials:
        if v.stalls:  # an overrun, never a gap: no sample was taken then, none is missing
            console.print(f"  dial {v.uid}: took no samples {v.stalls} time(s), "
                          f"{v.stalled_s:.1f} s in all (its sampler stopped; dial_stalled "
                          "events): the rating is unknown there", highlight=False,
                          soft_wrap=True)
    if any(s.gaps.values()):
        console.print("  missing by reason: " + ", ".join(
            f"{k} {n}" for k, n in s.gaps.items() if n), highlight=False, soft_wrap=True)
    if s.rejected:
        console.print("  impossible frames rejected, by reason: " + ", ".join(
            f"{k} {n}" for k, n in sorted(s.rejected.items())), highlight=False, soft_wrap=True)
    if s.mqtt_refused:
        console.print(f"  MQTT broker {s.broker}: what it refused stays in the recording and "
                      "goes out with the next run of this daemon id", highlight=False,
                      soft_wrap=True)
    if any(s.unpublished):
        console.print(f"  not confirmed by the MQTT broker ({s.broker}): {s.unpublished[0]} "
                      f"samples and {s.unpublished[1]} events of this run; they are in the "
                      f"recording, and the next run of daemon {s.daemon_id} with this folder and "
                      "broker publishes them", highlight=False, soft_wrap=True)
    samples, events, files = s.unpublished_earlier
    if samples or events:
        console.print(f"  not yet republished from {files} earlier recording(s) of daemon "
                      f"{s.daemon_id}: {samples} samples and {events} events; they stay in "
                      "those recordings, and the next run with this folder and their broker "
                      "publishes them",
                      highlight=False, soft_wrap=True)
    for port in s.silent_ports:
        when = "before the run was stopped" if s.seconds < 3.0 else "during the run"
        console.print(f"  {port}: no dial answered {when}: its rater was not recorded",
                      highlight=False, soft_wrap=True)
    # quoted for this platform's shell, and alone on its line: the whole line is pasted as
    # it is (spaces, non-ASCII); the schema pointer after it broke the paste (an audit)
    console.print("  inspect it (schema: docs/recording.md):", highlight=False)
    console.print(f"    sqlite3 {shell_quote(os.fspath(s.path))} "
                  f"{shell_quote('SELECT count(*) FROM samples')}", highlight=False,
                  soft_wrap=True, markup=False)


def json_summary(s: RunSummary, *, error: str | None = None) -> str:
    """The ``--json`` summary; ``error``: the one line a run that failed ended with."""
    return json.dumps({**({"error": error} if error else {}),
                       "path": os.fspath(s.path) if s.kept else None,
                       "seconds": round(s.seconds, 3),
                       "ended": s.ended,
                       "dials": [{"uid": v.uid, "rater": v.rater, "received": v.received,
                                  "missing": v.missing, "rejected": v.rejected,
                                  "rejected_content": v.rejected_content,
                                  "duplicates": v.duplicates,
                                  "stalled_s": round(v.stalled_s, 6),
                                  "lost_at_end": _lost_json(s.lost_at_end.get(v.uid))}
                                 for v in s.dials], "gaps": s.gaps,
                       "rejected_content": s.rejected, "broker": s.broker,
                       "mqtt_refused": s.mqtt_refused,
                       "unpublished": {"samples": s.unpublished[0],
                                       "events": s.unpublished[1]},
                       "unpublished_earlier": {"samples": s.unpublished_earlier[0],
                                               "events": s.unpublished_earlier[1],
                                               "recordings": s.unpublished_earlier[2]},
                       "silent_ports": s.silent_ports})


def _lost_json(lost: LostAtEnd | None) -> dict[str, object] | None:
    if lost is None:
        return None
    return {"at_s": round(lost.at_s, 3), "for_s": round(lost.for_s, 3), "cause": lost.cause}


def silent_ports_error(s: RunSummary, *, handshake_s: float = 3.0) -> str | None:
    """The one line a run ends with when a ``--port`` had no dial all run beside dials that
    did (their recording is kept): None when every port answered. A run that ended within
    ``handshake_s`` (a dial's first answer may take that long) says it stopped first."""
    if not s.silent_ports:
        return None
    ports = ", ".join(s.silent_ports)
    if s.seconds < handshake_s:
        return (f"stopped before a dial answered on {ports}; the recording {s.path} holds "
                "the other dials")
    return (f"no dial answered on {ports} during the run ({NO_FIRMWARE_HINT}); the "
            f"recording {s.path} holds the other dials")
