"""Read a SQLite table as Arrow columns without one Python object per value.

Python's sqlite3 cursor builds a tuple and one object per value for every row; for a warehouse load
that costs more than the DuckDB insert it feeds (docs/benchmarks.md). Here SQLite itself packs each
column of a run of rows into two values: the byte lengths as comma-separated text (-1 for NULL) and
the values' bytes end to end. Arrow turns those into offsets and a binary column in C, so Python
sees a few dozen objects per batch instead of millions.

Byte lengths rather than a separator keep any content intact (quotes, newlines, NUL, non-ASCII).
Every aggregate in one SELECT steps through the same rows in the same order, so the columns line up.
Values come as the bytes SQLite holds (integers and reals as their text); callers cast them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Rows one SELECT packs. SQLite refuses values over SQLITE_MAX_LENGTH (1e9 bytes by default): a run
# whose column would be longer is retried with half as many rows.
ROWS_PER_QUERY = 16_384
# Seqs of one `key IN (...)` query when reading listed keys.
KEYS_PER_QUERY = 1_000


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _packed_select(table: str, columns: Sequence[str], key: str, where: str) -> str:
    """count, last key, then (lengths, bytes) per column, over the rows of `where` in key order."""
    parts = ["count(*)", "max(_k)"]
    for index in range(len(columns)):
        value = f"CAST(_c{index} AS BLOB)"
        parts.append(f"CAST(group_concat(coalesce(length({value}), -1)) AS BLOB)")
        parts.append(f"CAST(group_concat({value}, '') AS BLOB)")
    inner = ", ".join([f"{key} AS _k", *(f"{_quote(c)} AS _c{i}" for i, c in enumerate(columns))])
    rows = f"SELECT {inner} FROM {_quote(table)} WHERE {where} ORDER BY {key} {{limit}}"
    return f"SELECT {', '.join(parts)} FROM ({rows})"


def _binary_column(rows: int, lengths_text: bytes, data: bytes | None) -> pa.Array:
    lengths = pc.split_pattern(pa.array([lengths_text], pa.binary()).cast(pa.string()), ",").flatten()
    lengths = lengths.cast(pa.int64()).to_numpy()
    if len(lengths) != rows:
        raise RuntimeError(f"SQLite packed {len(lengths)} lengths for {rows} rows")
    offsets = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(np.maximum(lengths, 0), out=offsets[1:])
    missing = lengths < 0
    nulls = pa.array(~missing).buffers()[1] if missing.any() else None
    column = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), rows, [nulls, pa.py_buffer(offsets), pa.py_buffer(data or b"")]
    )
    return column.cast(pa.binary())  # at most 1e9 bytes per query: always fits 32-bit offsets


def _run(cursor: sqlite3.Cursor, sql: str, params: Sequence[object], limit: int | None) -> tuple:
    cursor.execute(sql.format(limit="" if limit is None else f"LIMIT {int(limit)}"), params)
    return cursor.fetchone()


def _columns_of(row: tuple, width: int) -> list[pa.Array]:
    rows = row[0]
    return [_binary_column(rows, row[2 + 2 * i], row[3 + 2 * i]) for i in range(width)]


def read_columns(
    connection: sqlite3.Connection,
    table: str,
    columns: Sequence[str],
    *,
    key: str = "rowid",
    after: int | None = None,
    listed: Iterable[int] = (),
) -> Iterator[list[pa.Array]]:
    """Binary Arrow columns of `table`'s rows with `key` above `after` (every row when None) or in `listed`,
    one list of columns per SELECT (at most ROWS_PER_QUERY rows).

    `key` must be an integer key SQLite can seek on (the rowid or its alias).
    """
    width = len(columns)
    cursor = connection.cursor()
    try:
        keys, per_query = sorted(set(listed)), KEYS_PER_QUERY
        while keys:
            chunk = ", ".join(str(int(k)) for k in keys[:per_query])
            try:
                row = _run(cursor, _packed_select(table, columns, key, f"{key} IN ({chunk})"), (), None)
            except sqlite3.DataError:  # "string or blob too big": fewer keys per query
                if per_query == 1:
                    raise
                per_query //= 2
                continue
            keys = keys[per_query:]
            if row[0]:
                yield _columns_of(row, width)

        sql = _packed_select(table, columns, key, f"{key} > ?")
        last = after if after is not None else -(2**63)
        limit = ROWS_PER_QUERY
        while True:
            try:
                row = _run(cursor, sql, (last,), limit)
            except sqlite3.DataError:  # "string or blob too big": fewer rows per query
                if limit == 1:
                    raise
                limit //= 2
                continue
            if not row[0]:
                break
            last = row[1]
            yield _columns_of(row, width)
    finally:
        cursor.close()
