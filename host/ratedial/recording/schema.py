"""The recording file schema (docs/recording.md): one SQLite file per run.

This module is the single definition of the schema: the recorder creates files with
:data:`DDL`, readers check :data:`FORMAT` and :data:`FORMAT_VERSION` in ``meta``.

Invariants:

* A sample is stored once: ``(epoch_id, sample_index)`` is the primary key.
* A missing sample is never a row in ``samples``; it lies in exactly one row of ``gaps``.
* Times: ``*_ns`` columns are host ``CLOCK_MONOTONIC`` nanoseconds (``time.monotonic_ns()``),
  ``device_us`` is the dial's device time, ``wall_ns`` is Unix time in nanoseconds, and
  ``media_s`` is the position in the video in seconds.
"""

from __future__ import annotations

from enum import IntEnum

FORMAT = "ratedial-recording"
FORMAT_VERSION = 1


class MediaState(IntEnum):
    """``samples.media_state``: what the player was doing when the sample was taken."""

    UNKNOWN = 0  # a player is configured but its state is not known (not connected, lost)
    PLAYING = 1
    PAUSED = 2
    SEEKING = 3
    ENDED = 4
    NONE = 5  # no player: wall-clock-only recording (media_s is NULL)


DDL = """
PRAGMA journal_mode = WAL;

CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL                -- JSON
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS dials (
    dial_id   INTEGER PRIMARY KEY,
    uid       TEXT NOT NULL UNIQUE,    -- hex unique id from HELLO
    rater     TEXT,                    -- pseudonymous rater label, e.g. "client"
    board     TEXT,
    firmware  TEXT,
    backend   TEXT
);

CREATE TABLE IF NOT EXISTS epochs (
    epoch_id      INTEGER PRIMARY KEY,
    dial_id       INTEGER NOT NULL REFERENCES dials(dial_id),
    boot_id       INTEGER NOT NULL,
    first_host_ns INTEGER NOT NULL,    -- when the host first heard this boot
    hello         TEXT NOT NULL,       -- JSON of the first HELLO of this boot
    UNIQUE (dial_id, boot_id)
);

CREATE TABLE IF NOT EXISTS samples (
    epoch_id     INTEGER NOT NULL,
    sample_index INTEGER NOT NULL,
    dial_id      INTEGER NOT NULL,
    device_us    INTEGER NOT NULL,
    host_ns      INTEGER,              -- device time mapped by the online clock model
    count        INTEGER NOT NULL,     -- raw quarter-steps (or ADC units)
    rating       REAL NOT NULL,        -- on the recording's scale (meta "scale")
    flags        INTEGER NOT NULL,     -- bit 0 button, 1 timer overrun, 2 illegal transition
    media_id     INTEGER,              -- media(media_id) playing, NULL when none
    media_s      REAL,                 -- position in the video, NULL when unknown
    media_state  INTEGER NOT NULL,     -- MediaState
    PRIMARY KEY (epoch_id, sample_index)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS gaps (
    gap_id        INTEGER PRIMARY KEY,
    epoch_id      INTEGER NOT NULL,
    dial_id       INTEGER NOT NULL,
    first_index   INTEGER NOT NULL,
    end_index     INTEGER NOT NULL,    -- one past the last missing index
    -- device_drop | crc | link | unplugged | rejected | no_hello | absent | uncollected
    reason        TEXT NOT NULL,
    first_host_ns INTEGER,             -- estimated host time of the first missing sample
    end_host_ns   INTEGER              -- estimated host time of end_index
);

CREATE TABLE IF NOT EXISTS events (
    event_id  INTEGER PRIMARY KEY,
    host_ns   INTEGER NOT NULL,
    dial_id   INTEGER,                 -- NULL for events not about one dial
    kind      TEXT NOT NULL,           -- see docs/recording.md
    data      TEXT NOT NULL            -- JSON
);

CREATE TABLE IF NOT EXISTS sync_obs (
    epoch_id      INTEGER NOT NULL,
    token         INTEGER NOT NULL,
    host_send_ns  INTEGER NOT NULL,
    device_rx_us  INTEGER NOT NULL,
    device_tx_us  INTEGER NOT NULL,
    host_recv_ns  INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS arrivals (
    epoch_id      INTEGER NOT NULL,
    last_index    INTEGER NOT NULL,    -- last sample index of a SAMPLES frame
    device_us     INTEGER NOT NULL,    -- its device time
    host_recv_ns  INTEGER NOT NULL     -- when the frame's last byte was read
);

CREATE TABLE IF NOT EXISTS clock_models (
    epoch_id       INTEGER NOT NULL,
    host_ns        INTEGER NOT NULL,   -- when this model was fitted
    ref_device_us  INTEGER NOT NULL,
    -- host_ns = ref_host_ns + (device_us - ref_device_us) * 1000 * (1 + skew_ppm * 1e-6)
    ref_host_ns    INTEGER NOT NULL,
    skew_ppm       REAL NOT NULL,
    uncertainty_ns INTEGER NOT NULL,   -- bound on the error at ref_device_us
    n_obs          INTEGER NOT NULL,
    skew_uncertainty_ppm REAL          -- the bound grows by this much per µs from the reference
);

CREATE TABLE IF NOT EXISTS wall_anchors (
    host_ns  INTEGER NOT NULL,
    wall_ns  INTEGER NOT NULL          -- time.time_ns() read next to host_ns
);

CREATE TABLE IF NOT EXISTS media (
    media_id    INTEGER PRIMARY KEY,
    path        TEXT,
    duration_s  REAL,
    fps         REAL,
    fingerprint TEXT                   -- content fingerprint, see docs/recording.md
);

CREATE TABLE IF NOT EXISTS media_obs (
    host_ns  INTEGER NOT NULL,         -- host time the observation was received
    media_id INTEGER,
    media_s  REAL,
    rate     REAL,
    playing  INTEGER,
    source   TEXT NOT NULL             -- event or property name from the player
);

CREATE TABLE IF NOT EXISTS notes (
    note_id   INTEGER PRIMARY KEY,
    wall_ns   INTEGER NOT NULL,
    kind      TEXT NOT NULL,           -- segment_note | guess | annotation
    data      TEXT NOT NULL            -- JSON
);
"""
