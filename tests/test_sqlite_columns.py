"""Reading SQLite tables as packed Arrow columns (agentprovision/sqlite_columns.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pyarrow as pa
import pytest

from agentprovision import sqlite_columns
from agentprovision.sqlite_columns import read_columns

AWKWARD = ["", None, "plain", 'quote " comma , newline \n tab \t', "é 🚀 ünïcode", "nul \x00 inside", "-1", ","]


def table_with(path: Path, rows: list[tuple]) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, label TEXT, amount REAL, count INTEGER)")
    connection.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", rows)
    return connection


def as_rows(batches: list[list[pa.Array]]) -> list[tuple]:
    rows = []
    for columns in batches:
        rows.extend(zip(*(column.to_pylist() for column in columns), strict=True))
    return sorted(rows, key=lambda row: int(row[0]))


def test_every_value_comes_back_as_the_bytes_sqlite_holds(tmp_path: Path) -> None:
    rows = [(i + 1, AWKWARD[i % len(AWKWARD)], None if i % 3 else i / 4, None if i % 4 else i) for i in range(50)]
    connection = table_with(tmp_path / "t.db", rows)

    got = as_rows(list(read_columns(connection, "t", ["seq", "label", "amount", "count"], key="seq")))

    expected = [
        (
            seq,  # the key comes as an integer
            None if label is None else label.encode(),
            None if amount is None else connection.execute("SELECT CAST(? AS TEXT)", [amount]).fetchone()[0].encode(),
            None if count is None else str(count).encode(),
        )
        for seq, label, amount, count in rows
    ]
    assert got == expected
    assert b"" in {row[1] for row in got} and None in {row[1] for row in got}  # '' and NULL stay apart


def test_ranges_follow_the_key_past_after_and_add_listed_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_columns, "DEFAULT_SPAN", 7)
    seqs = [1, 2, 3, 10, 11, 40, 41, 42, 43, 44, 45, 46, 47, 48, 200]  # gaps wider than a query's range
    connection = table_with(tmp_path / "t.db", [(s, f"row {s}", None, s) for s in seqs])

    batches = list(read_columns(connection, "t", ["seq", "label"], key="seq", after=10, listed=[2, 3, 999]))

    rows = as_rows(batches)
    assert [int(row[0]) for row in rows] == [2, 3, 11, 40, 41, 42, 43, 44, 45, 46, 47, 48, 200]
    assert all(label == f"row {int(seq)}".encode() for seq, label in rows)  # keys line up with their rows
    assert all(len(columns[0]) <= 7 for columns in batches)
    assert list(read_columns(connection, "t", ["seq"], key="seq", after=200)) == []


def test_a_range_too_long_for_one_sqlite_value_is_read_in_narrower_ranges(tmp_path: Path) -> None:
    connection = table_with(tmp_path / "t.db", [(i, "x" * 100, None, i) for i in range(1, 41)])
    connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 1_000)  # ten values per packed column at most

    batches = list(read_columns(connection, "t", ["seq", "label"], key="seq", listed=[], after=0))

    assert [int(row[0]) for row in as_rows(batches)] == list(range(1, 41))
    assert max(len(columns[0]) for columns in batches) <= 9


def test_reads_take_one_snapshot_and_leave_no_transaction_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_columns, "DEFAULT_SPAN", 10)
    path = tmp_path / "t.db"
    connection = table_with(path, [(i, "a", None, i) for i in range(1, 101)])
    connection.execute("PRAGMA journal_mode=WAL")
    writer = sqlite3.connect(path, isolation_level=None)
    reader = read_columns(connection, "t", ["seq", "label"], key="seq", after=0)

    batches = [next(reader)]
    # Committed while the read is open: a row past the end, and a change to a row not read yet.
    writer.execute("INSERT INTO t VALUES (101, 'late', NULL, 101)")
    writer.execute("UPDATE t SET label = 'changed' WHERE seq = 95")
    batches.extend(reader)

    rows = as_rows(batches)
    assert [int(s) for s, _ in rows] == list(range(1, 101))  # the late row waits for the next read
    assert {label for _, label in rows} == {b"a"}  # every range saw the snapshot of the first
    assert not connection.in_transaction


def test_an_empty_table_gives_no_batches(tmp_path: Path) -> None:
    connection = table_with(tmp_path / "t.db", [])
    assert list(read_columns(connection, "t", ["seq", "label"])) == []


def test_a_key_that_is_not_the_rowid_is_refused(tmp_path: Path) -> None:
    connection = table_with(tmp_path / "t.db", [(1, "a", None, 1)])
    with pytest.raises(ValueError, match=r"t\.count is not the table's rowid"):
        next(read_columns(connection, "t", ["seq"], key="count"))
    assert [int(row[0]) for row in as_rows(list(read_columns(connection, "t", ["seq"])))] == [1]  # rowid itself
