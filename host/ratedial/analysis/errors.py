"""Analysis failures, one class per meaning; the CLI shows ``str(exc)`` as one line."""

from __future__ import annotations

from ..errors import RatedialError, UsageError


class AnalysisError(RatedialError):
    """Base class of everything the analysis commands report."""


class NotARecording(AnalysisError):
    """The file is missing, not SQLite, or not a ratedial recording of a known version."""


class NothingToAnalyse(AnalysisError):
    """A recording holds no samples with a media time (e.g. recorded without a player)."""


class PairingError(AnalysisError):
    """Recordings cannot be grouped into dyads unambiguously."""


class PlayerError(AnalysisError):
    """mpv could not be started or stopped answering."""


class ReviewAborted(AnalysisError):
    """The interview ended before every answer was given (input closed)."""

    exit_code = 3


class PlayerClosed(ReviewAborted):
    """The player was closed (quit, its window closed, killed) during the interview."""


__all__ = ["AnalysisError", "NotARecording", "NothingToAnalyse", "PairingError", "PlayerClosed",
           "PlayerError", "ReviewAborted", "UsageError"]
