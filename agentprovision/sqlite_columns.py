"""Read a SQLite table as Arrow columns without one Python object per value.

Python's sqlite3 cursor builds a tuple and one object per value for every row; for a warehouse load
that costs more than the DuckDB insert it feeds (docs/benchmarks.md). Here SQLite itself packs each
column of a run of rows into two values: the byte lengths as comma-separated text (-1 for NULL) and
the values' bytes end to end. Arrow turns those into offsets and a binary column in C, so Python
sees a few dozen objects per batch instead of millions.

Byte lengths rather than a separator keep any content intact (quotes, newlines, NUL, non-ASCII).
Every aggregate in one SELECT steps through the same rows in the same order, so the columns line up
(the order itself does not matter to a load).
Values come as the bytes SQLite holds (integers and reals as their text); callers cast them. The key
column of a range scan is the exception: it comes as int64, and is not even read when the range is full.
"""

from __future__ import annotations

import sqlite3
import warnings
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa

# Key values one SELECT covers by default. SQLite refuses values over SQLITE_MAX_LENGTH (1e9 bytes by default): a
# range whose column would be longer is retried half as wide.
DEFAULT_SPAN = 16_384
# Seqs of one `key IN (...)` query when reading listed keys.
KEYS_PER_QUERY = 1_000


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _packed_select(table: str, columns: Sequence[str], where: str) -> str:
    """count, then (lengths, bytes) per column, over the rows of `where`."""
    parts = ["count(*)"]
    for column in map(_quote, columns):
        # length() of a BLOB counts bytes (of text, characters). group_concat appends a value's bytes
        # as they are: the same bytes CAST(... AS BLOB) would give, without the extra copy.
        parts.append(f"CAST(group_concat(coalesce(length(CAST({column} AS BLOB)), -1)) AS BLOB)")
        parts.append(f"CAST(group_concat({column}, '') AS BLOB)")
    return f"SELECT {', '.join(parts)} FROM {_quote(table)} WHERE {where}"


def _binary_column(rows: int, lengths_text: bytes, data: bytes | None) -> pa.Array:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # text it cannot parse: caught by the count below
        lengths = np.fromstring(lengths_text, dtype=np.int32, sep=",")
    if len(lengths) != rows:
        raise RuntimeError(f"SQLite packed {len(lengths)} lengths for {rows} rows")
    # One SQLite value holds the whole column (at most SQLITE_MAX_LENGTH < 2**31 bytes): 32-bit offsets fit.
    offsets = np.zeros(rows + 1, dtype=np.int32)
    np.cumsum(np.maximum(lengths, 0), out=offsets[1:])
    missing = lengths < 0
    nulls = pa.array(~missing).buffers()[1] if missing.any() else None
    return pa.BinaryArray.from_buffers(pa.binary(), rows, [nulls, pa.py_buffer(offsets), pa.py_buffer(data or b"")])


def _columns_of(row: tuple, width: int) -> list[pa.Array]:
    rows = row[0]
    return [_binary_column(rows, row[1 + 2 * i], row[2 + 2 * i]) for i in range(width)]


def _range_keys(cursor: sqlite3.Cursor, sql: str, last: int, span: int, rows: int) -> pa.Array:
    """The keys of the rows in (last, last + span], in the order the packed aggregates saw them: a range
    scan of an integer primary key visits rows in key order."""
    if rows == span:
        return pa.array(np.arange(last + 1, last + span + 1, dtype=np.int64))
    (text,) = cursor.execute(sql, (last, last + span)).fetchall()[0]
    keys = np.fromstring(text, dtype=np.int64, sep=",")
    if len(keys) != rows:
        raise RuntimeError(f"SQLite listed {len(keys)} keys for {rows} rows")
    return pa.array(keys)


def _is_rowid(cursor: sqlite3.Cursor, table: str, key: str) -> bool:
    """Whether `key` is the table's rowid or its alias (a lone INTEGER PRIMARY KEY): the order of its
    range scans is then the order of the rows in the table's own B-tree."""
    if key.lower() in ("rowid", "_rowid_", "oid"):
        return True
    primary = [row for row in cursor.execute(f"PRAGMA table_info({_quote(table)})") if row[5]]
    return len(primary) == 1 and primary[0][1] == key and primary[0][2].upper() == "INTEGER"


def read_columns(
    connection: sqlite3.Connection,
    table: str,
    columns: Sequence[str],
    *,
    key: str = "rowid",
    after: int | None = None,
    listed: Iterable[int] = (),
    span: int | None = None,
) -> Iterator[list[pa.Array]]:
    """Binary Arrow columns of `table`'s rows with `key` above `after` (every row when None) or in `listed`,
    one list of columns per SELECT of `span` key values (default DEFAULT_SPAN), in one read transaction.
    Outside `listed`, the `key` column (when asked for) comes as int64 rather than text.

    `key` must be an integer key SQLite can seek on (the rowid or its alias). Rows are taken in ranges
    of key values, not with ORDER BY ... LIMIT: feeding the aggregates from a sorted, limited subquery
    cost a third more.
    """
    width = len(columns)
    cursor = connection.cursor()
    if not _is_rowid(cursor, table, key):
        cursor.close()
        raise ValueError(f"{table}.{key} is not the table's rowid or an INTEGER PRIMARY KEY alias of it")
    own_transaction = not connection.in_transaction
    if own_transaction:
        cursor.execute("BEGIN")  # deferred: a snapshot for reading, no write lock
    try:
        keys, per_query = sorted(set(listed)), KEYS_PER_QUERY
        while keys:
            chunk = ", ".join(str(int(k)) for k in keys[:per_query])
            try:
                row = cursor.execute(_packed_select(table, columns, f"{key} IN ({chunk})")).fetchall()[0]
            except sqlite3.DataError:  # "string or blob too big": fewer keys per query
                if per_query == 1:
                    raise
                per_query //= 2
                continue
            keys = keys[per_query:]
            if row[0]:
                yield _columns_of(row, width)

        low, high = cursor.execute(f"SELECT min({key}) - 1, max({key}) FROM {_quote(table)}").fetchall()[0]
        if high is None:
            return
        last = low if after is None else max(after, low)
        span = span or DEFAULT_SPAN
        # In a range where every key is present the key column is known without reading it.
        packed = [column for column in columns if column != key]
        ranged = _packed_select(table, packed, f"{key} > ? AND {key} <= ?")
        keys_in = f"SELECT CAST(group_concat({key}) AS BLOB) FROM {_quote(table)} WHERE {key} > ? AND {key} <= ?"
        while last < high:
            try:
                row = cursor.execute(ranged, (last, last + span)).fetchall()[0]
            except sqlite3.DataError:  # "string or blob too big": a narrower range
                if span == 1:
                    raise
                span //= 2
                continue
            if row[0]:
                values = dict(zip(packed, _columns_of(row, len(packed)), strict=True))
                if key in columns:
                    values[key] = _range_keys(cursor, keys_in, last, span, row[0])
                yield [values[column] for column in columns]
            last += span
    finally:
        if own_transaction:
            cursor.execute("ROLLBACK")
        cursor.close()
