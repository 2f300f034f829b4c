"""Recording files: one SQLite file per run (docs/recording.md)."""

from .schema import DDL, FORMAT, FORMAT_VERSION, MediaState

__all__ = ["DDL", "FORMAT", "FORMAT_VERSION", "MediaState"]
