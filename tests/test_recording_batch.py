"""Rows go into SQLite many to a statement with the same effect as one by one."""

from __future__ import annotations

import sqlite3

import pytest

from ratedial.recording.batch import BATCH_ROWS, batched_sql, insert_many
from ratedial.recording.schema import DDL
from ratedial.recording.writer import SQL


def _db(tmp_path, name):
    con = sqlite3.connect(tmp_path / name, isolation_level=None)
    con.executescript(DDL)
    return con


def _row(epoch, i):
    return (epoch, i, 1, 1000 * i, None if i % 5 == 0 else 10**9 + i, i, 50.0 + i / 4, i % 2,
            None, None, 5)


@pytest.mark.parametrize("n", [0, 1, BATCH_ROWS - 1, BATCH_ROWS, 3 * BATCH_ROWS + 17])
def test_batched_inserts_store_what_one_by_one_stores(tmp_path, n):
    rows = [_row(1 + i % 3, i // 3) for i in range(n)]
    # duplicates of a key: in the same batch, in a later one, and in the tail
    rows += [(*r[:3], -1, *r[4:]) for r in rows[: min(n, BATCH_ROWS + 5)]]
    one, many = _db(tmp_path, "one.db"), _db(tmp_path, "many.db")
    one.executemany(SQL["samples"], rows)
    insert_many(many, "samples", SQL["samples"], rows)
    query = "SELECT * FROM samples ORDER BY epoch_id, sample_index"
    got = many.execute(query).fetchall()
    assert got == one.execute(query).fetchall()
    assert len(got) == n  # the first of a key stays (OR IGNORE), as one by one
    assert all(r[3] != -1 for r in got)


def test_rows_of_other_tables_and_a_bad_row_fail_as_before(tmp_path):
    con = _db(tmp_path, "x.db")
    arrivals = [(1, i, 1000 * i, 10**9 + i) for i in range(BATCH_ROWS + 3)]
    insert_many(con, "arrivals", SQL["arrivals"], arrivals)
    assert con.execute("SELECT epoch_id, last_index, device_us, host_recv_ns FROM arrivals "
                       "ORDER BY rowid").fetchall() == arrivals
    bad = [_row(2, i) for i in range(BATCH_ROWS)]
    bad[10] = (*bad[10][:3], 2**64, *bad[10][4:])  # beyond a 64-bit integer
    with pytest.raises(OverflowError):
        insert_many(con, "samples", SQL["samples"], bad)
    assert batched_sql("INSERT INTO t (a, b) VALUES (?,?)", 3) == \
        "INSERT INTO t (a, b) VALUES (?,?),(?,?),(?,?)"
