"""The recall interview and the guess test (``ratedial review``). Procedure: docs/analysis.md.

* Review: a rater's top and bottom segments are replayed one by one (each with a lead-in) in
  the chosen order; after each the interviewer types notes, saved at once to the recording
  (``notes``, kind ``segment_note``). ``/replay`` on a line of its own replays the segment
  as soon as it is read; it is not part of the note (nor is one empty line right after it),
  and every other line typed for the segment, before it or after it, is.
* Guess: the client's segments are replayed to the therapist in a seeded random order,
  without saying which is which; the therapist answers helpful or hindering for each. The
  answers, the seed, the order and the score are saved as one note (kind ``guess``).

Invariants:

* The player and the terminal are passed in (:class:`Player`, :class:`Prompter`), so the same
  procedure runs with mpv and a person, or headless with scripted answers.
* The truth of a segment is its kind: a top segment is "helpful", a bottom one "hindering".
* Nothing of a guess test is saved unless every answer was given.
* The player closed by its user (:class:`PlayerClosed`) ends the interview with one line
  saying what was saved; a review goes on later by skipping the segments already noted
  (:func:`noted`, ``--skip-noted``).
"""

from __future__ import annotations

import functools
import io
import json
import random
import secrets
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TextIO

from .errors import PlayerClosed, ReviewAborted
from .mediatime import fmt_span, fmt_time
from .notes import add_note, read_notes
from .segments import Segment
from .stats import Band, off_side

Order = Literal["rank", "chronological", "random"]
ORDERS: tuple[Order, ...] = ("rank", "chronological", "random")
TRUTH = {"top": "helpful", "bottom": "hindering"}
_ANSWERS = {"helpful": "helpful", "help": "helpful", "+": "helpful", "h+": "helpful",
            "hindering": "hindering", "hinder": "hindering", "-": "hindering",
            "h-": "hindering"}


class Player(Protocol):
    def play(self, start_s: float, end_s: float) -> float:
        """Play the span and pause at its end."""


class NoVideo:
    """``--no-video``: the interview without replay (e.g. the video is shown elsewhere)."""

    plays = False

    def play(self, start_s: float, end_s: float) -> float:
        return end_s


class Prompter:
    """Plain-terminal prompts: works with a person, a pipe or a file of answers. No input at
    all (standard input closed) is input that has ended."""

    def __init__(self, inp: TextIO | None, out: TextIO) -> None:
        self.inp = inp if inp is not None else io.StringIO()
        self.out = out
        self.partial: list[str] = []  # the lines of the note being typed (lines())
        self._said_encoding = False

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def ask(self, prompt: str) -> str:
        self.out.write(prompt)
        self.out.flush()
        line = self.inp.readline()
        if not line:
            self.out.write("\n")  # out before the error line (stderr) is written
            self.out.flush()
            raise ReviewAborted("input ended before the interview was complete")
        return self._readable(line.rstrip("\r\n"))

    def _readable(self, line: str) -> str:
        """Bytes the terminal's decoder could not read as UTF-8 arrive as lone surrogates
        (Python's ``surrogateescape``), which no JSON or Unicode reader of the notes accepts:
        such a line is read again as Windows-1252 (Latin-1 and the Windows default), once
        said."""
        if not any("\udc80" <= ch <= "\udcff" for ch in line):
            return line
        if not self._said_encoding:
            self._said_encoding = True
            self.say("note: the terminal sent text that is not UTF-8; it is read as "
                     "Windows-1252 (Latin-1)")
        raw = line.encode("utf-8", "surrogateescape")
        return raw.decode("cp1252", errors="replace")

    def lines(self, prompt: str,
              commands: Mapping[str, Callable[[], object]] | None = None) -> list[str]:
        """Lines up to an empty line. A line that is one of ``commands`` (e.g. ``/replay``)
        runs it as soon as it is read and is left out; one empty line right after it is
        skipped (the way to end a command before it ran at once), so it does not end the
        lines. The end of input raises :class:`ReviewAborted`, with the lines typed so far in
        :attr:`partial`."""
        out: list[str] = []
        self.partial = out  # what was typed so far, if Ctrl+C ends the interview here
        after_command = False
        while True:
            line = self.ask(prompt)
            if not line.strip():
                if after_command:
                    after_command = False
                    continue
                return out
            command = (commands or {}).get(line.strip())
            after_command = command is not None
            if command is not None:
                command()
                continue
            out.append(line)


def order_segments(segments: Sequence[Segment], order: Order,
                   rng: random.Random | None = None) -> list[Segment]:
    """``rank``: T1, T2, … then B1, B2, …; ``chronological``: by start; ``random``: shuffled
    by ``rng``."""
    if order == "rank":
        return sorted(segments, key=lambda s: (s.kind != "top", s.rank))
    if order == "chronological":
        return sorted(segments, key=lambda s: s.start_s)
    out = sorted(segments, key=lambda s: (s.kind != "top", s.rank))
    (rng or random.Random()).shuffle(out)
    return out


def _segment_json(s: Segment) -> dict[str, Any]:
    return {"label": s.label, "kind": s.kind, "rank": s.rank, "start_s": round(s.start_s, 3),
            "end_s": round(s.end_s, 3), "mean": round(s.mean, 4)}


def shown_lead_in(s: Segment, lead_in_s: float) -> float:
    """The lead-in a segment gets: ``lead_in_s``, or less when the video starts sooner."""
    return round(s.start_s - max(0.0, s.start_s - lead_in_s), 3)


def _play(player: Player, prompter: Prompter, s: Segment, lead_in_s: float) -> None:
    lead = shown_lead_in(s, lead_in_s)
    start = s.start_s - lead
    span = f"{fmt_time(start, tenths=True)} → {fmt_time(s.end_s, tenths=True)}"
    if not getattr(player, "plays", True):
        prompter.say(f"      not played (--no-video): {span} ({lead:g} s lead-in)")
        return
    prompter.say(f"      playing {span} ({lead:g} s lead-in)")
    player.play(start, s.end_s)


RUN_TIME_WARNING = ("timeline: RUN TIME. The recording followed no video: times are seconds "
                    "since its first sample, and a video shows these moments only if it started "
                    "with the recording and was never paused, sought or slowed.")


def _say_timeline(prompter: Prompter, params: Mapping[str, Any] | None) -> None:
    if (params or {}).get("timeline") == "run":
        prompter.say(RUN_TIME_WARNING)


def noted(recording: Path, rater: str, segments: Sequence[Segment],
          params: Mapping[str, Any] | None = None) -> frozenset[str]:
    """Labels of ``segments`` that already have a finished note of ``rater`` in the
    recording, made with the same ``params`` (so the same segments); a note cut short
    (``interrupted``) does not count."""
    same = json.loads(json.dumps(dict(params or {})))
    have = {json.dumps(n["data"].get("segment"), sort_keys=True)
            for n in read_notes(recording, "segment_note")
            if isinstance(n["data"], dict) and n["data"].get("rater") == rater
            and n["data"].get("params") == same and not n["data"].get("interrupted")}
    return frozenset(s.label for s in segments
                     if json.dumps(_segment_json(s), sort_keys=True) in have)


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def run_review(recording: Path, rater: str, segments: Sequence[Segment], *, player: Player,
               prompter: Prompter, order: Order = "rank", lead_in_s: float = 5.0,
               seed: int | None = None, params: Mapping[str, Any] | None = None,
               skip: Collection[str] = (), band: Band | None = None,
               partial: bool = False) -> list[dict[str, Any]]:
    """Replay each segment and save the interviewer's notes; returns the notes saved.
    Segments labelled in ``skip`` (already noted: :func:`noted`) keep their place in the
    order but are not shown. ``partial``: the recording was still being recorded (the
    segments are of what it held then): each note says so."""
    if order == "random" and seed is None:
        seed = secrets.randbelow(2**31)
    shown = order_segments(segments, order, random.Random(seed))
    how = f"random order (seed {seed})" if order == "random" else f"order {order}"
    skipped = sum(s.label in skip for s in shown)
    prompter.say(f"Review of {rater}'s segments in {recording.name}: "
                 f"{_count(len(shown), 'segment')}, {how}."
                 + (f" {skipped} already noted, skipped (--skip-noted)." if skipped else ""))
    _say_timeline(prompter, params)
    if shown and skipped == len(shown):
        prompter.say("Nothing left: every segment has a note.")
        return []
    saved: list[dict[str, Any]] = []
    cut_short = False  # the note being typed was saved marked interrupted
    at = ""  # the segment being shown, for the line saying the player was closed
    try:
        for i, s in enumerate(shown, start=1):
            if s.label in skip:
                continue
            at = f"{s.label} ({i} of {len(shown)})"
            what = "highest" if s.kind == "top" else "lowest"
            prompter.say(f"[{i}/{len(shown)}] {rater} {s.label} ({what} {s.rank}): "
                         f"{fmt_span(s.start_s, s.end_s)}, mean {s.mean:.1f}"
                         + _side_note(s, band))
            _play(player, prompter, s, lead_in_s)
            prompter.say(f"Notes for {s.label} (end with an empty line; /replay to watch "
                         "again):")
            data = {"rater": rater, "segment": _segment_json(s), "position": i,
                    "order": order, "seed": seed if order == "random" else None,
                    "lead_in_s": shown_lead_in(s, lead_in_s), "params": dict(params or {}),
                    **_partial(partial)}
            try:
                text = prompter.lines(
                    "> ", {"/replay": functools.partial(_play, player, prompter, s, lead_in_s)})
            except (KeyboardInterrupt, ReviewAborted):
                # Ctrl+C, the end of input or the player closed in the middle of a note: its
                # lines so far are kept, marked, so a note cut short is never taken for a
                # finished one
                if prompter.partial:
                    add_note(recording, "segment_note", {
                        **data, "text": "\n".join(prompter.partial), "interrupted": True})
                    cut_short = True
                raise
            data["text"] = "\n".join(text)
            add_note(recording, "segment_note", data)
            saved.append(data)
            prompter.say("      saved." if text else "      saved (no note).")
    except PlayerClosed:
        also = f", and {at.split()[0]}'s lines so far (marked interrupted)" if cut_short else ""
        raise PlayerClosed(
            f"mpv was closed during {at}: "
            f"{_count(len(saved), 'note')} saved in {recording.name}{also}; to go on with "
            "the segments not noted yet, run review again with the same options and "
            "--skip-noted") from None
    return saved


@dataclass(frozen=True, kw_only=True)
class GuessResult:
    seed: int
    shown: tuple[Segment, ...]
    answers: tuple[str, ...]
    correct: tuple[bool, ...]

    @property
    def score(self) -> int:
        return sum(self.correct)

    def score_of(self, kind: str) -> tuple[int, int]:
        pairs = [c for s, c in zip(self.shown, self.correct, strict=True) if s.kind == kind]
        return sum(pairs), len(pairs)


def parse_answer(text: str) -> str | None:
    return _ANSWERS.get(text.strip().lower())


def run_guess(recording: Path, rater: str, segments: Sequence[Segment], *, player: Player,
              prompter: Prompter, answerer: str = "therapist", seed: int | None = None,
              lead_in_s: float = 5.0, params: Mapping[str, Any] | None = None,
              band: Band | None = None, partial: bool = False) -> GuessResult:
    """The guess test; saves one ``guess`` note with answers, seed, order and score
    (``partial`` as for :func:`run_review`)."""
    if seed is None:
        seed = secrets.randbelow(2**31)
    shown = tuple(order_segments(segments, "random", random.Random(seed)))
    prompter.say(f"Guess test: {_count(len(shown), 'segment')} of {rater}'s ratings in random "
                 f"order (seed {seed}). For each, {answerer}: was it helpful or hindering?")
    _say_timeline(prompter, params)
    one_kind = len({s.kind for s in shown}) == 1
    if one_kind:  # said without naming the kind: the test stays blind
        prompter.say(f"warning: {rater}'s segments are all of one kind (with these options "
                     "no window is left for the other): the score cannot show whether "
                     "helpful and hindering moments are told apart; a shorter --window "
                     "gives both")
    answers: list[str] = []
    try:
        for i, s in enumerate(shown, start=1):
            prompter.say(f"[{i}/{len(shown)}] {fmt_span(s.start_s, s.end_s)}")
            _play(player, prompter, s, lead_in_s)
            while True:
                text = prompter.ask("Helpful or hindering? (helpful / hindering, + / -, "
                                    "/replay) ")
                if text.strip() == "/replay":
                    _play(player, prompter, s, lead_in_s)
                    continue
                answer = parse_answer(text)
                if answer is not None:
                    answers.append(answer)
                    break
                prompter.say("  please answer helpful or hindering (or + / -)")
    except PlayerClosed:
        raise PlayerClosed(
            f"mpv was closed during segment {len(answers) + 1} of {len(shown)}: a guess test "
            "is saved only when every answer was given, so nothing was saved; run it again "
            f"(--order-seed {seed} shows the same order)") from None
    correct = tuple(a == TRUTH[s.kind] for s, a in zip(shown, answers, strict=True))
    result = GuessResult(seed=seed, shown=shown, answers=tuple(answers), correct=correct)
    top, bottom = result.score_of("top"), result.score_of("bottom")
    add_note(recording, "guess", {
        "rater": rater, "answered_by": answerer, "seed": seed,
        "order": [s.label for s in shown], "lead_in_s": lead_in_s,
        "segments": [_segment_json(s) for s in shown],
        "answers": [{"segment": s.label, "answer": a, "truth": TRUTH[s.kind], "correct": c}
                    for s, a, c in zip(shown, answers, correct, strict=True)],
        "score": result.score, "n": len(shown), "helpful_n": top[1],
        "helpful_correct": top[0], "hindering_n": bottom[1], "hindering_correct": bottom[0],
        "params": dict(params or {}), **_partial(partial),
    })
    if one_kind:  # "hindering 0 of 0" would read as a balanced test
        (have, got), none = ((("helpful", top[0]), "hindering") if top[1] else
                             (("hindering", bottom[0]), "helpful"))
        counts = (f"{have} {got} of {len(shown)}; no {none} segment, so not a test of "
                  "telling the two apart")
    else:
        counts = f"helpful {top[0]} of {top[1]}, hindering {bottom[0]} of {bottom[1]}"
    prompter.say(f"Score: {result.score} of {len(shown)} correct ({counts}). "
                 f"Saved to {recording.name}.")
    for i, (s, a, c) in enumerate(zip(shown, answers, correct, strict=True), start=1):
        prompter.say(f"  {i}  {fmt_span(s.start_s, s.end_s):<17} answered {a:<9} was {s.label} "
                     f"({TRUTH[s.kind]}, mean {s.mean:.1f})  {'correct' if c else 'wrong'}"
                     + _side_note(s, band))
    return result


def _partial(partial: bool) -> dict[str, bool]:
    """``"partial": true`` in a note made on a recording still being recorded (absent
    otherwise): its segments are of what the recording held then, maybe not its final ones."""
    return {"partial": True} if partial else {}


def _side_note(s: Segment, band: Band | None) -> str:
    """A segment whose mean is not on its kind's side of the neutral band (the lowest of a
    rater who never went below neutral): said, since its truth is its kind."""
    side = None if band is None else off_side(s.kind, s.mean, band)
    if side is None or band is None:
        return ""
    return f"  (note: {side} {band.low:g} to {band.high:g})"
