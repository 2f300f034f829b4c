"""Which series belong together: the raters of one video in one dyad. Rules (also in
docs/analysis.md, "Pairing dyads"):

* Same video: the same ``media.fingerprint`` (``match="fingerprint"``; a video recorded
  without a fingerprint falls back to its file name), the same file name (``"path"``), or
  every recording is taken to show the same video (``"any"``).
* Dyad label: ``meta.session[dyad_key]`` (``ratedial run --session dyad=D07``), or
  ``--dyad RECORDING=LABEL``. Labels are compared by :func:`label_key` (surrounding
  whitespace, Unicode normal form and case do not count): ``D01``, ``d01 `` and ``D01``
  typed on another computer are one dyad, shown by the label given with ``--dyad`` or else
  the first seen, with the other spellings in ``Group.spellings``. Series of one video with
  different labels are different groups; series without a label join the one labelled
  group of their video (or form their own group, called after the video, when there is
  none; with several it is an error).
* The pair: the raters named by ``roles`` (default ``client`` then ``therapist``), so ``a``
  is the client and ``b`` the therapist; rater labels are compared with the roles, and with
  each other, by :func:`label_key` too (``Client`` and ``client `` are the client). A group
  of exactly two other raters is paired in the order of their labels (so compared). A rater
  label twice in one group is an error (relabel with ``--rater``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .errors import PairingError
from .labels import label_key
from .load import Series, distinct_names, recording_names
from .read import RUN_TIMELINE, Media

Match = Literal["fingerprint", "path", "any"]


@dataclass(frozen=True, kw_only=True)
class PairingOptions:
    dyad_key: str = "dyad"
    roles: tuple[str, str] = ("client", "therapist")
    match: Match = "fingerprint"
    dyads: Mapping[str, str] = field(default_factory=dict)  # recording path or name -> label


@dataclass(frozen=True, kw_only=True, eq=False)
class Group:
    label: str
    media_key: str
    series: tuple[Series, ...]  # the pair first (a, b), then any others by label
    pair: tuple[Series, Series] | None
    paired_by: str  # "roles", "label order" or "" (no pair)
    spellings: tuple[str, ...] = ()  # other spellings of the label, merged into this dyad

    @property
    def n_bins(self) -> int:
        return max(len(s.values) for s in self.series)

    @property
    def media(self) -> Media:
        return self.series[0].media

    @property
    def rate_hz(self) -> float:
        return self.series[0].rate_hz

    @property
    def duration_s(self) -> float:
        return max(s.duration_s for s in self.series)


def media_key(media: Media, match: Match) -> str:
    if media.timeline == RUN_TIMELINE:  # recordings on run time pair with each other only
        return "run-time"
    if match == "any":
        return "any"
    if match == "fingerprint" and media.fingerprint:
        return media.fingerprint
    if media.path:
        return "file:" + media.path.replace("\\", "/").rsplit("/", 1)[-1]
    return f"unknown:{media.media_id}"


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that puts D2 before D10."""
    return tuple((0, int(p)) if p.isdigit() else (1, p)
                 for p in re.split(r"(\d+)", text) if p)




def spelling(alt: str) -> str:
    """``alt``, another spelling of a dyad's label, written so that its difference shows
    (quoted when it has surrounding whitespace; its Unicode form named)."""
    text = repr(alt) if alt != alt.strip() else alt
    if unicodedata.normalize("NFC", alt) != alt:
        text += " (another Unicode form, NFD)" if unicodedata.is_normalized("NFD", alt) \
            else " (another Unicode form)"
    return text


def _override(s: Series, options: PairingOptions) -> str | None:
    for name in recording_names(s.recording):
        if name in options.dyads:
            return options.dyads[name]
    return None


def dyad_label(s: Series, options: PairingOptions) -> str | None:
    given = _override(s, options)
    if given is not None:
        return given
    value = s.recording.session.get(options.dyad_key)
    return None if value is None or value == "" else str(value)


def _rater_order(s: Series) -> tuple[str, str]:
    return label_key(s.rater), s.rater


def _pair(series: list[Series], roles: tuple[str, str]) -> tuple[tuple[Series, ...],
                                                                  tuple[Series, Series] | None,
                                                                  str]:
    # roles match labels as dyad labels do, by label_key: whatever their case, surrounding
    # whitespace and Unicode form ("Therapist" or "client " is a role: paired by label order
    # instead, a capital or a space reversed the dyad's truth and judge in Truth and Bias)
    by = {label_key(s.rater): s for s in series}
    roles = (label_key(roles[0]), label_key(roles[1]))
    others = sorted((s for s in series if label_key(s.rater) not in roles), key=_rater_order)
    if roles[0] in by and roles[1] in by:
        a, b = by[roles[0]], by[roles[1]]
        return (a, b, *others), (a, b), "roles"
    if len(series) == 2:
        a, b = sorted(series, key=_rater_order)
        return (a, b), (a, b), "label order"
    ordered = [by[r] for r in roles if r in by] + others
    return tuple(ordered), None, ""


def _both(a: Series, b: Series) -> str:
    """Two series of one rater label, told apart: by the shortest trailing parts of their
    paths that differ (``S01-client.ratedial`` and ``backup/S01-client.ratedial``), and by
    dial when they are in one recording."""
    pa, pb = a.recording.path, b.recording.path
    if pa.resolve() == pb.resolve():
        return (f"{a.rater} (dial {a.dial.uid} in {pa.name}) and {b.rater} "
                f"(dial {b.dial.uid} in {pb.name})")
    names = distinct_names([pa, pb])
    return f"{a.rater} ({names[pa]}) and {b.rater} ({names[pb]})"


def group_series(series: Sequence[Series], options: PairingOptions | None = None) -> list[Group]:
    opt = options or PairingOptions()
    by_media: dict[str, list[Series]] = {}
    for s in series:
        by_media.setdefault(media_key(s.media, opt.match), []).append(s)
    raw: list[tuple[str, str, list[Series]]] = []
    spellings: dict[tuple[str, str], tuple[str, ...]] = {}  # (video, label) -> other spellings
    for key, members in by_media.items():
        by_key: dict[str, list[tuple[str, Series]]] = {}  # label_key -> (label, series)
        unlabelled: list[Series] = []
        for s in members:
            label = dyad_label(s, opt)
            if label is None:
                unlabelled.append(s)
            else:
                by_key.setdefault(label_key(label), []).append((label, s))
        labelled: dict[str, list[Series]] = {}  # by the label shown
        for pairs in by_key.values():
            given = [lb for lb, s in pairs if _override(s, opt) is not None]
            first = (given or [pairs[0][0]])[0]  # a --dyad label, or the first seen
            label = first.strip() or first
            written = list(dict.fromkeys(lb for lb, _ in pairs))
            if len(written) > 1:
                spellings[(key, label)] = tuple(w for w in written if w != label)
            labelled[label] = [s for _, s in pairs]
        if key == "run-time":  # each run has its own time zero: an unlabelled one is a
            # group of its own (its file, named after it), never joined to another run's
            # dyad, nor to another file of the same name in another folder
            by_file: dict[Path, list[Series]] = {}
            for s in unlabelled:
                by_file.setdefault(s.recording.path, []).append(s)
            raw.extend((p.name, key, ss) for p, ss in by_file.items())
            unlabelled = []
        if unlabelled and len(labelled) > 1:
            names = ", ".join(s.recording.path.name for s in unlabelled)
            raise PairingError(f"{names}: no dyad label, and the video is in dyads "
                               f"{', '.join(sorted(labelled))}; give one with "
                               "--dyad RECORDING=LABEL")
        if unlabelled:
            if labelled:
                only = next(iter(labelled))
                labelled[only].extend(unlabelled)
            else:
                labelled[members[0].media.name] = unlabelled
        for label, ss in labelled.items():
            raw.append((label, key, ss))
    counts: dict[str, int] = {}  # label_key -> groups (videos): "D01" and "d01 " are one
    for label, _, _ in raw:
        counts[label_key(label)] = counts.get(label_key(label), 0) + 1
    groups = []
    used: set[str] = set()  # label_key of the names given
    for label, key, ss in raw:
        seen: dict[str, Series] = {}
        for s in ss:
            role = label_key(s.rater)  # "Client", "client " and "client" are one role
            if role in seen:
                raise PairingError(
                    f"rater {s.rater!r} appears twice for {label} ({_both(seen[role], s)}); "
                    "relabel one with --rater RECORDING[:DIAL]=LABEL or leave it out")
            seen[role] = s
        ordered, pair, how = _pair(ss, opt.roles)
        name = base = label if counts[label_key(label)] == 1 else f"{label} {ss[0].media.name}"
        k = 1
        while label_key(name) in used:  # one label, two videos of one file name: told apart
            k += 1
            name = f"{base} ({k})"
        used.add(label_key(name))
        groups.append(Group(label=name, media_key=key, series=ordered, pair=pair,
                            paired_by=how, spellings=spellings.get((key, label), ())))
    # by label_key first: the groups of one dyad written "D01" and "d01 " stay together
    return sorted(groups, key=lambda g: (natural_key(label_key(g.label)), natural_key(g.label)))
