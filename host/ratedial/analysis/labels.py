"""How labels typed by people are compared: dyad labels, rater labels and roles, and the
dyad cells of a scores sheet (docs/analysis.md, 2): surrounding whitespace, Unicode normal
form and case do not count. Below :mod:`~ratedial.analysis.read` and
:mod:`~ratedial.analysis.groups`, which both compare by it."""

from __future__ import annotations

import unicodedata

__all__ = ["label_key", "same_label"]


def label_key(label: str) -> str:
    """What two dyad labels are compared by: without surrounding whitespace, in one Unicode
    normal form, without case (``"D01"``, ``"d01 "``, and ``"Ü03"`` typed as ``U`` plus a
    combining diaeresis are ``"d01"``, ``"d01"`` and ``"ü03"``)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", label.strip()).casefold())


def same_label(a: str, b: str) -> bool:
    """Whether two labels are one (``Client``, ``client `` and ``client``)."""
    return label_key(a) == label_key(b)
