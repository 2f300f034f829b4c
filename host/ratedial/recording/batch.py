"""Many rows of one table into SQLite in few statements (the recorder's thread).

sqlite3's ``executemany`` lets go of the GIL around every statement it steps. On the
daemon's one core each of those was a hand-over to the event loop's thread and back: at 48
dials, two context switches a sample, and a quarter second's commit spread over the whole
interval between commits (issue 16). Rows of :data:`BATCHED` tables therefore go
:data:`BATCH_ROWS` to a statement, as one multi-row ``INSERT``.

Invariant: the same rows go in, in the same order, with the same effect: a multi-row
``VALUES`` inserts (or, with ``OR IGNORE``, ignores) row by row, in order, as the
single-row statement does; a row SQLite cannot take fails the statement, and with it the
commit, as before.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from itertools import chain
from typing import Any

# 64 rows of 11 columns: 704 parameters, under SQLite's oldest limit (999)
BATCH_ROWS = 64
BATCHED = frozenset({"samples", "arrivals"})  # the tables that take a row per sample, frame


def batched_sql(sql: str, rows: int = BATCH_ROWS) -> str:
    """``INSERT ... VALUES (?,...)`` made to insert ``rows`` rows at once."""
    head, sep, values = sql.partition(" VALUES ")
    if not sep:
        raise ValueError(f"not an INSERT ... VALUES statement: {sql}")
    return head + sep + ",".join([values] * rows)


def insert_many(con: sqlite3.Connection, table: str, sql: str,
                rows: Sequence[Sequence[Any]]) -> None:
    """``con.executemany(sql, rows)``: for a :data:`BATCHED` table, :data:`BATCH_ROWS`
    rows to a statement (the rest, fewer, one by one)."""
    if table not in BATCHED or len(rows) < BATCH_ROWS:
        con.executemany(sql, rows)
        return
    full = len(rows) - len(rows) % BATCH_ROWS
    flat = chain.from_iterable
    con.executemany(_batched(sql), (tuple(flat(rows[i:i + BATCH_ROWS]))
                                    for i in range(0, full, BATCH_ROWS)))
    if full < len(rows):
        con.executemany(sql, rows[full:])


_SQL: dict[str, str] = {}


def _batched(sql: str) -> str:
    out = _SQL.get(sql)
    if out is None:
        out = _SQL[sql] = batched_sql(sql)
    return out
