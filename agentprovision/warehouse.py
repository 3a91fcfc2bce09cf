"""Moving ops-store data into the warehouse's raw schema, and publishing a copy for readers.

Two kinds of raw table:
- snapshots of the config entities (tenants, agents, ...), replaced whole on every load;
- append-only streams (events, audit records), loaded past a watermark on `seq`, plus any seqs
  below it that were not committed yet when it moved (see watermarks.py: on PostgreSQL seqs can
  commit out of order). The rows, the new watermark and the open gaps commit in one warehouse
  transaction, so a load that fails or is repeated never duplicates or skips a row.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import adbc_driver_manager
import adbc_driver_postgresql
import duckdb
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pyarrow import csv as pa_csv
from sqlalchemy import Engine, Select, Text, cast, or_, select

from agentprovision.bulk_memory import large_buffers_in_heap
from agentprovision.settings import Settings
from agentprovision.sqlite_columns import read_columns
from agentprovision.store import models as m
from agentprovision.watermarks import MAX_TRACKED_GAP, advance

RAW_SCHEMA = "raw"


@dataclass(frozen=True)
class RawTable:
    name: str
    model: type
    columns: dict[str, str]  # column -> DuckDB type, in order
    json_columns: tuple[str, ...] = ()
    streamed: bool = False  # append past a watermark on seq instead of replacing


RAW_TABLES: tuple[RawTable, ...] = (
    RawTable(
        "tenants",
        m.Tenant,
        {
            "tenant_id": "VARCHAR",
            "display_name": "VARCHAR",
            "region": "VARCHAR",
            "plan": "VARCHAR",
            "max_concurrent_runs": "INTEGER",
            "budget_hard_usd": "DECIMAL(18,8)",
            "budget_soft_usd": "DECIMAL(18,8)",
            "status": "VARCHAR",
            "config_version": "INTEGER",
            "updated_at": "TIMESTAMPTZ",
            "removed_at": "TIMESTAMPTZ",
        },
    ),
    RawTable(
        "departments",
        m.Department,
        {
            "tenant_id": "VARCHAR",
            "department_id": "VARCHAR",
            "name": "VARCHAR",
            "cost_centre": "VARCHAR",
            "budget_hard_usd": "DECIMAL(18,8)",
            "budget_soft_usd": "DECIMAL(18,8)",
            "status": "VARCHAR",
            "config_version": "INTEGER",
        },
    ),
    RawTable(
        "users",
        m.User,
        {
            "user_id": "VARCHAR",
            "tenant_id": "VARCHAR",
            "name": "VARCHAR",
            "role": "VARCHAR",
            "department_id": "VARCHAR",
            "status": "VARCHAR",
            "config_version": "INTEGER",
        },
    ),
    RawTable(
        "agents",
        m.Agent,
        {
            "agent_id": "VARCHAR",
            "tenant_id": "VARCHAR",
            "name": "VARCHAR",
            "agent_type": "VARCHAR",
            "version": "VARCHAR",
            "department_id": "VARCHAR",
            "owner": "VARCHAR",
            "schedule": "VARCHAR",
            "status": "VARCHAR",
            "config_version": "INTEGER",
            "updated_at": "TIMESTAMPTZ",
            "spec": "VARCHAR",
        },
        json_columns=("spec",),
    ),
    RawTable(
        "model_deployments",
        m.ModelDeployment,
        {
            "deployment_id": "VARCHAR",
            "tenant_id": "VARCHAR",
            "model_name": "VARCHAR",
            "provider": "VARCHAR",
            "tier": "VARCHAR",
            "regions": "VARCHAR",
            "context_window": "INTEGER",
            "status": "VARCHAR",
            "config_version": "INTEGER",
            "spec": "VARCHAR",
        },
        json_columns=("regions", "spec"),
    ),
    RawTable(
        "integrations",
        m.Integration,
        {
            "tenant_id": "VARCHAR",
            "integration_id": "VARCHAR",
            "kind": "VARCHAR",
            "schedule": "VARCHAR",
            "status": "VARCHAR",
            "config_version": "INTEGER",
            "spec": "VARCHAR",
        },
        json_columns=("spec",),
    ),
    RawTable(
        "config_versions",
        m.ConfigVersion,
        {
            "version": "INTEGER",
            "applied_at": "TIMESTAMPTZ",
            "applied_by": "VARCHAR",
            "fingerprint": "VARCHAR",
            "source": "VARCHAR",
            "rollback_of": "INTEGER",
            "summary": "VARCHAR",
            # The whole applied config: the platform-level budget lives only here.
            "content": "VARCHAR",
        },
        json_columns=("content",),
    ),
    RawTable(
        "audit_records",
        m.AuditRecord,
        {
            "seq": "BIGINT",
            "record_id": "VARCHAR",
            "tenant_id": "VARCHAR",
            "occurred_at": "TIMESTAMPTZ",
            "actor": "VARCHAR",
            "action": "VARCHAR",
            "target_type": "VARCHAR",
            "target_id": "VARCHAR",
            "details": "VARCHAR",
            "prev_hash": "VARCHAR",
            "record_hash": "VARCHAR",
        },
        json_columns=("details",),
        streamed=True,
    ),
    RawTable(
        "events",
        m.Event,
        {
            "seq": "BIGINT",
            "event_id": "VARCHAR",
            "tenant_id": "VARCHAR",
            "kind": "VARCHAR",
            "name": "VARCHAR",
            "occurred_at": "TIMESTAMPTZ",
            "recorded_at": "TIMESTAMPTZ",
            "agent_id": "VARCHAR",
            "run_id": "VARCHAR",
            "payload": "VARCHAR",
        },
        json_columns=("payload",),
        streamed=True,
    ),
)


# Written by the provider-invoice importer (not the ops store); created empty here so dbt always builds.
INVOICE_TABLE = "provider_invoice_lines"
INVOICE_COLUMNS: dict[str, str] = {
    "usage_date": "DATE",
    "provider": "VARCHAR",
    "model_name": "VARCHAR",
    "tenant_id": "VARCHAR",  # NULL when the invoice line is platform-wide
    "cost_usd": "DECIMAL(18,8)",
    "input_tokens": "BIGINT",
    "output_tokens": "BIGINT",
    "invoice_id": "VARCHAR",
    "imported_at": "TIMESTAMP",
}

POSTGRES_TYPES = {
    "VARCHAR": "text",
    "INTEGER": "integer",
    "BIGINT": "bigint",
    "TIMESTAMPTZ": "timestamptz",
    "TIMESTAMP": "timestamp",
    "DATE": "date",
    "DECIMAL(18,8)": "numeric(18,8)",
}

# The schemas dbt writes to (generate_schema_name uses the folder's schema as is).
WAREHOUSE_SCHEMAS = (RAW_SCHEMA, "staging", "intermediate", "marts", "snapshots")


def _table_columns(table: RawTable) -> dict[str, str]:
    return {**table.columns, "_loaded_at": "TIMESTAMPTZ"}


def ensure_raw_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {RAW_SCHEMA}")
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {RAW_SCHEMA}._watermarks (stream VARCHAR PRIMARY KEY, last_seq BIGINT NOT NULL)"
    )
    con.execute(GAPS_DDL.format(text="VARCHAR", bigint="BIGINT", timestamptz="TIMESTAMPTZ"))
    for table in RAW_TABLES:
        columns = _table_columns(table)
        if not table.streamed:
            # Snapshot tables are replaced on every load, so a layout change (a new column) is safe to
            # apply by rebuilding them; streamed tables keep their history and are never rebuilt.
            found = [
                row[0]
                for row in con.execute(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
                    [RAW_SCHEMA, table.name],
                ).fetchall()
            ]
            if found and found != list(columns):
                con.execute(f"DROP TABLE {RAW_SCHEMA}.{table.name}")
        ddl = ", ".join(f"{name} {kind}" for name, kind in columns.items())
        con.execute(f"CREATE TABLE IF NOT EXISTS {RAW_SCHEMA}.{table.name} ({ddl})")
    ddl = ", ".join(f"{name} {kind}" for name, kind in INVOICE_COLUMNS.items())
    con.execute(f"CREATE TABLE IF NOT EXISTS {RAW_SCHEMA}.{INVOICE_TABLE} ({ddl})")


ARROW_TYPES = {
    "VARCHAR": pa.string(),
    "INTEGER": pa.int32(),
    "BIGINT": pa.int64(),
    "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"),
    "TIMESTAMP": pa.timestamp("us"),
    "DATE": pa.date32(),
    "DECIMAL(18,8)": pa.decimal128(18, 8),
}

# Rows per Arrow batch: a load of any size holds a few batches in memory at a time. DuckDB's row
# group size: DuckDB appends a batch of exactly this length at the cost of a plain insert (_exact_batches).
LOAD_BATCH_ROWS = 122_880
# Bytes per batch the ADBC PostgreSQL driver reads before handing it on (see _postgres_batches).
POSTGRES_READ_BATCH_BYTES = 128 * 1024 * 1024

# Appends a table's batches to its raw table inside the load's transaction, reading them as it goes.
WriteBatches = Callable[[Iterator[pa.Table]], None]


def arrow_schema(table: RawTable) -> pa.Schema:
    """The Arrow layout of a raw table, `_loaded_at` included (what `SELECT * FROM batch` inserts)."""
    return pa.schema([(name, ARROW_TYPES[kind]) for name, kind in _table_columns(table).items()])


def _query(table: RawTable, after_seq: int | None, gaps: Iterable[int] = ()) -> Select:
    def column(name: str) -> Any:
        model_column = getattr(table.model, name)
        if name in table.json_columns:
            # Read as the text the store holds: parsing every payload only to serialise it again cost most
            # of a load. The CAST matters on PostgreSQL, where the driver would parse jsonb.
            return cast(model_column, Text).label(name)
        return model_column

    query = select(*(column(name) for name in table.columns))
    if after_seq is not None:
        wanted = table.model.seq > after_seq
        if gaps:
            wanted = or_(wanted, table.model.seq.in_(sorted(gaps)))
        query = query.where(wanted).order_by(table.model.seq)
    return query


def _batches(
    ops: Engine, table: RawTable, loaded_at: datetime, after_seq: int | None = None, gaps: Iterable[int] = ()
) -> Iterator[pa.Table]:
    """The rows of `table` (past `after_seq` or in `gaps`, for a stream) as Arrow tables of LOAD_BATCH_ROWS rows."""
    schema = arrow_schema(table)
    loaded = pa.repeat(pa.scalar(loaded_at, type=ARROW_TYPES["TIMESTAMPTZ"]), LOAD_BATCH_ROWS)
    if ops.dialect.name == "sqlite":
        chunks = _sqlite_batches(ops, table, after_seq, gaps)
    else:
        chunks = _postgres_batches(ops, table, after_seq, gaps)
    for columns in _exact_batches(chunks, LOAD_BATCH_ROWS):
        loaded_column = pa.chunked_array([loaded.slice(0, len(columns[0]))])
        yield pa.Table.from_arrays([*columns, loaded_column], schema=schema)


def _exact_batches(chunks: Iterable[list[pa.Array]], rows: int) -> Iterator[list[pa.ChunkedArray]]:
    """Regroup columns read in pieces of any length into batches of exactly `rows` rows (the last one
    shorter), slicing without copying. DuckDB appends a batch of exactly one row group at the cost of
    a plain insert; at 131,072 or 31,000 rows the same data cost it 1.2-1.8 times as much."""
    pending: list[list[pa.Array]] = []
    count = 0
    for columns in chunks:
        length, offset = len(columns[0]), 0
        while offset < length:
            take = min(rows - count, length - offset)
            pending.append([column.slice(offset, take) for column in columns])
            count, offset = count + take, offset + take
            if count == rows:
                yield _chunked(pending)
                pending, count = [], 0
    if pending:
        yield _chunked(pending)


def _chunked(pieces: list[list[pa.Array]]) -> list[pa.ChunkedArray]:
    return [pa.chunked_array([piece[i] for piece in pieces]) for i in range(len(pieces[0]))]


def _postgres_batches(
    ops: Engine, table: RawTable, after_seq: int | None, gaps: Iterable[int]
) -> Iterator[list[pa.Array]]:
    """From PostgreSQL through Arrow's ADBC driver: the rows arrive by binary COPY and become Arrow
    columns in C, cheaper than building Python row objects (docs/benchmarks.md). The driver is a
    separate libpq client on the same login as `ops`, so it sees exactly what the ops engine sees,
    row-level security included."""
    # literal_binds: the only parameters are seq numbers (ints), so the statement is safe to inline.
    statement = str(_query(table, after_seq, gaps).compile(ops, compile_kwargs={"literal_binds": True}))
    kinds = list(table.columns.values())
    uri = ops.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with (
        adbc_driver_postgresql.connect(uri) as database,
        adbc_driver_manager.AdbcConnection(database) as connection,
        adbc_driver_manager.AdbcStatement(connection) as query,
    ):
        # The driver sizes batches by bytes (16 MB by default: about 31,000 events). Batches of several
        # row groups let most of the exact LOAD_BATCH_ROWS batches be one slice instead of four pieces.
        batch_bytes = adbc_driver_postgresql.StatementOptions.BATCH_SIZE_HINT_BYTES.value
        query.set_options(**{batch_bytes: str(POSTGRES_READ_BATCH_BYTES)})
        query.set_sql_query(statement)
        handle, _ = query.execute_query()
        for batch in pa.RecordBatchReader.from_stream(handle):
            yield [_from_postgres(column, kind) for column, kind in zip(batch.columns, kinds, strict=True)]


def _from_postgres(column: pa.Array, kind: str) -> pa.Array:
    if isinstance(column, pa.ExtensionArray):  # numeric arrives as text in an opaque extension type
        column = column.storage
    return column.cast(ARROW_TYPES[kind])


def _sqlite_batches(
    ops: Engine, table: RawTable, after_seq: int | None, gaps: Iterable[int]
) -> Iterator[list[pa.Array]]:
    """From SQLite, whole columns at a time (agentprovision/sqlite_columns.py): building a Python object
    per value cost more than the DuckDB insert the load feeds. Values arrive as the bytes SQLite holds
    (timestamps are SQLAlchemy's naive UTC text) and become typed Arrow columns in C."""
    kinds = list(table.columns.values())
    streamed = after_seq is not None
    with ops.connect() as connection:
        for columns in read_columns(
            connection.connection.driver_connection,
            table.model.__tablename__,
            list(table.columns),
            key="seq" if streamed else "rowid",
            after=after_seq,
            listed=gaps if streamed else (),
            # One query per row group: DuckDB appends each as one contiguous batch, which it does at
            # the cost of a plain insert; 16k-row pieces regrouped cost it a third more.
            span=LOAD_BATCH_ROWS,
        ):
            yield [_from_sqlite(column, kind) for column, kind in zip(columns, kinds, strict=True)]


def _from_sqlite(column: pa.Array, kind: str) -> pa.Array:
    if pa.types.is_integer(column.type):  # a key column read_columns derived itself
        return column.cast(ARROW_TYPES[kind])
    text = column.cast(pa.string())  # validates UTF-8
    if kind == "TIMESTAMPTZ":
        return text.cast(pa.timestamp("us")).cast(ARROW_TYPES[kind])  # the store writes UTC
    return text.cast(ARROW_TYPES[kind])


@dataclass
class LoadReport:
    table: str
    rows: int
    watermark: int | None = None
    open_gaps: int = 0  # seqs below the watermark whose rows may still commit (see watermarks.py)
    late_rows: int = 0  # rows of earlier gaps that arrived in this load


# Seqs below a stream's watermark not seen yet: rows that may still commit (agentprovision/watermarks.py).
GAPS_DDL = (
    f"CREATE TABLE IF NOT EXISTS {RAW_SCHEMA}._watermark_gaps"
    " (stream {text} NOT NULL, seq {bigint} NOT NULL, noticed_at {timestamptz} NOT NULL, PRIMARY KEY (stream, seq))"
)


def _read_stream(con: Any, mark: str, ops: Engine, table: RawTable, now: datetime, write: WriteBatches) -> LoadReport:
    """Write a streamed table's rows past its watermark or in its open gaps; saves the new watermark and gaps.

    `con` is a DuckDB or psycopg connection inside the load's transaction; `mark` its parameter marker;
    `write` appends the Arrow batches to the raw table in that same transaction.
    """
    found = con.execute(f"SELECT last_seq FROM {RAW_SCHEMA}._watermarks WHERE stream = {mark}", [table.name]).fetchone()
    watermark = found[0] if found else 0
    gaps = {
        seq: noticed if noticed.tzinfo else noticed.replace(tzinfo=UTC)
        for seq, noticed in con.execute(
            f"SELECT seq, noticed_at FROM {RAW_SCHEMA}._watermark_gaps WHERE stream = {mark}", [table.name]
        ).fetchall()
    }
    # advance() only looks at the newest seq, at the open gaps read, and at every seq up to
    # watermark + MAX_TRACKED_GAP + 1 (beyond that it does not track gaps): keeping just those gives
    # the same result as passing every seq read, in bounded memory however big the load.
    bound = watermark + MAX_TRACKED_GAP + 1
    newest, kept, rows = watermark, [], 0

    def noting_seqs() -> Iterator[pa.Table]:
        nonlocal newest, rows
        for batch in _batches(ops, table, now, watermark, gaps):
            seqs = batch.column("seq")
            newest = max(newest, pc.max(seqs).as_py())
            kept.extend(pc.filter(seqs, pc.less_equal(seqs, bound)).to_pylist())
            rows += batch.num_rows
            yield batch

    write(noting_seqs())
    step = advance(watermark, [*kept, newest], gaps, now)
    con.execute(
        f"INSERT INTO {RAW_SCHEMA}._watermarks VALUES ({mark}, {mark})"
        " ON CONFLICT (stream) DO UPDATE SET last_seq = excluded.last_seq",
        [table.name, step.watermark],
    )
    con.execute(f"DELETE FROM {RAW_SCHEMA}._watermark_gaps WHERE stream = {mark}", [table.name])
    for seq, noticed in sorted(step.gaps.items()):
        con.execute(
            f"INSERT INTO {RAW_SCHEMA}._watermark_gaps VALUES ({mark}, {mark}, {mark})", [table.name, seq, noticed]
        )
    return LoadReport(table.name, rows, step.watermark, len(step.gaps), len(step.filled))


def _load_table(
    con: Any, mark: str, ops: Engine, table: RawTable, loaded_at: datetime, write: WriteBatches
) -> LoadReport:
    """Load one raw table batch by batch: a stream past its watermark, a snapshot table replaced whole."""
    if table.streamed:
        return _read_stream(con, mark, ops, table, loaded_at, write)
    con.execute(f"DELETE FROM {RAW_SCHEMA}.{table.name}")
    rows = 0

    def counting() -> Iterator[pa.Table]:
        nonlocal rows
        for batch in _batches(ops, table, loaded_at):
            rows += batch.num_rows
            yield batch

    write(counting())
    return LoadReport(table.name, rows)


def is_postgres_url(destination: Path | str) -> bool:
    return isinstance(destination, str) and destination.startswith(("postgresql://", "postgres://", "postgresql+"))


def warehouse_destination(settings: Settings) -> Path | str:
    """Where the configured warehouse target lives: the DuckDB file, or the PostgreSQL warehouse URL."""
    return settings.warehouse_url if settings.warehouse_target == "postgres" else settings.duckdb_path


def load_raw(ops: Engine, destination: Path | str) -> list[LoadReport]:
    """Copy the ops store into the raw schema; one transaction for everything, so readers never see half a load.

    `destination` is a DuckDB file path, or a postgresql:// URL of the warehouse database (created when missing).
    """
    with large_buffers_in_heap():  # batches of tens of MB, freed and allocated again (bulk_memory.py)
        if is_postgres_url(destination):
            return _load_postgres(ops, str(destination))
        return _load_duckdb(ops, Path(destination))


def _load_duckdb(ops: Engine, duckdb_path: Path) -> list[LoadReport]:
    duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    reports = []
    with duckdb.connect(str(duckdb_path)) as con:
        ensure_raw_schema(con)
        con.execute("BEGIN TRANSACTION")
        # Taken inside the transaction: a load that began earlier and commits later conflicts on the
        # watermark rows and aborts, so loads commit in `_loaded_at` order (dbt's incremental facts rely on it).
        loaded_at = datetime.now(UTC)
        try:
            for table in RAW_TABLES:

                def write(batches: Iterator[pa.Table], table: RawTable = table) -> None:
                    _insert_stream(con, table, batches)

                reports.append(_load_table(con, "?", ops, table, loaded_at, write))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return reports


def _insert_stream(con: duckdb.DuckDBPyConnection, table: RawTable, batches: Iterator[pa.Table]) -> None:
    """Append `batches` to the raw table in one INSERT that reads them as an Arrow stream.

    One statement rather than one per batch: DuckDB then reads the next batch from the ops store while
    it appends the last one, and spends less CPU on the whole (docs/benchmarks.md). A failure while
    reading is raised as itself, not as DuckDB's wrapper around it.
    """
    failure: list[BaseException] = []

    def record_batches() -> Iterator[pa.RecordBatch]:
        try:
            for batch in batches:
                yield from batch.to_batches()
        except BaseException as error:
            failure.append(error)
            raise

    stream = pa.RecordBatchReader.from_batches(arrow_schema(table), record_batches())
    con.register("_load_stream", stream)
    try:
        con.execute(f"INSERT INTO {RAW_SCHEMA}.{table.name} SELECT * FROM _load_stream")
    except duckdb.Error:
        # The transaction is aborted now (even unregistering would fail); the connection closes with it.
        if failure:
            raise failure[0] from None
        raise
    con.unregister("_load_stream")


# --- PostgreSQL target ------------------------------------------------------------------------------


def _psycopg_conninfo(url: str) -> str:
    # SQLAlchemy-style driver suffixes mean nothing to libpq.
    return url.replace("postgresql+psycopg://", "postgresql://").replace("postgresql+psycopg2://", "postgresql://")


def ensure_postgres_database(url: str) -> None:
    """Create the warehouse database when it does not exist yet (connecting to the server's `postgres` db)."""
    conninfo = _psycopg_conninfo(url)
    params = conninfo_to_dict(conninfo)
    dbname = str(params.get("dbname") or "")
    if not dbname:
        raise ValueError("the PostgreSQL warehouse URL must name a database, e.g. postgresql://host:5432/warehouse")
    try:
        with psycopg.connect(conninfo, connect_timeout=5):
            return
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            raise
    with psycopg.connect(make_conninfo(conninfo, dbname="postgres"), autocommit=True, connect_timeout=5) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone()
        if not exists:
            # Another loader may create it between the check and here: that is fine.
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))


def ensure_postgres_schema(conn: Any) -> None:
    for schema in WAREHOUSE_SCHEMAS:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {RAW_SCHEMA}._watermarks (stream text PRIMARY KEY, last_seq bigint NOT NULL)"
    )
    conn.execute(GAPS_DDL.format(text="text", bigint="bigint", timestamptz="timestamptz"))
    layouts = [(t.name, _table_columns(t), not t.streamed) for t in RAW_TABLES] + [
        (INVOICE_TABLE, INVOICE_COLUMNS, False)
    ]
    for name, columns, rebuildable in layouts:
        if rebuildable:
            found = [
                row[0]
                for row in conn.execute(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                    [RAW_SCHEMA, name],
                ).fetchall()
            ]
            if found and found != list(columns):
                # CASCADE: dbt's staging views over the old layout are rebuilt by the next dbt run.
                conn.execute(f"DROP TABLE {RAW_SCHEMA}.{name} CASCADE")
        ddl = ", ".join(f"{column} {POSTGRES_TYPES[kind]}" for column, kind in columns.items())
        conn.execute(f"CREATE TABLE IF NOT EXISTS {RAW_SCHEMA}.{name} ({ddl})")


def _copy_batch(conn: Any, table: RawTable, batch: pa.Table) -> None:
    # CSV written by Arrow in C rather than row by row from Python: strings are always quoted and NULLs
    # left empty and unquoted, which is exactly how PostgreSQL's CSV COPY tells '' from NULL.
    columns = ", ".join(_table_columns(table))
    buffer = pa.BufferOutputStream()
    pa_csv.write_csv(batch, buffer, write_options=pa_csv.WriteOptions(include_header=False))
    with conn.cursor().copy(f"COPY {RAW_SCHEMA}.{table.name} ({columns}) FROM STDIN (FORMAT csv)") as copy:
        copy.write(buffer.getvalue().to_pybytes())


def _load_postgres(ops: Engine, url: str) -> list[LoadReport]:
    ensure_postgres_database(url)
    reports = []
    # One transaction: the connection block commits on success and rolls back on any error.
    with psycopg.connect(_psycopg_conninfo(url)) as conn:
        ensure_postgres_schema(conn)
        # A second loader waits here rather than reading the same watermark and duplicating rows. The load's
        # time is taken once the lock is held, so loads commit in `_loaded_at` order: dbt's incremental
        # facts rely on that when they select the rows loaded since their last build.
        conn.execute(f"LOCK TABLE {RAW_SCHEMA}._watermarks IN EXCLUSIVE MODE")
        loaded_at = datetime.now(UTC)
        for table in RAW_TABLES:

            def write(batches: Iterator[pa.Table], table: RawTable = table) -> None:
                for batch in batches:
                    _copy_batch(conn, table, batch)

            reports.append(_load_table(conn, "%s", ops, table, loaded_at, write))
    return reports


def dbt_environment(settings: Settings) -> dict[str, str]:
    """The environment variables dbt's profile reads for the configured target (see dbt_project/profiles.yml)."""
    env = {
        "AGENTPROVISION_WAREHOUSE_TARGET": settings.warehouse_target,
        "AGENTPROVISION_DUCKDB_PATH": str(settings.duckdb_path),
    }
    if settings.warehouse_target == "postgres":
        params = conninfo_to_dict(_psycopg_conninfo(settings.warehouse_url))
        env.update(
            {
                "AGENTPROVISION_WAREHOUSE_PG_HOST": str(params.get("host") or "127.0.0.1"),
                "AGENTPROVISION_WAREHOUSE_PG_PORT": str(params.get("port") or "5432"),
                "AGENTPROVISION_WAREHOUSE_PG_USER": str(params.get("user") or "postgres"),
                "AGENTPROVISION_WAREHOUSE_PG_PASSWORD": str(params.get("password") or ""),
                "AGENTPROVISION_WAREHOUSE_PG_DBNAME": str(params["dbname"]),
            }
        )
    return env


def publish(duckdb_path: Path, published_path: Path) -> Path:
    """Copy the warehouse to where dashboards read it, atomically, so readers never meet the writer's lock.

    Each publication is a new file, `<name>.<ns>.duckdb`, and `published_path` a symlink swapped to it.
    A path must never name two contents: DuckDB shares one database instance per path within a
    process and keeps it while any connection to it is open, so a reading process whose reads overlap
    kept reading a file replaced under the same name for as long as they overlapped (a reader thread's
    "could not read enough bytes" in one CI run probably had the same cause). Readers resolve the link
    and connect to the version itself (agentprovision/marts.py). Older versions are removed, so erased
    data does not linger in them; a reader that resolved one just before retries on the current one.
    """
    with duckdb.connect(str(duckdb_path)) as con:
        con.execute("CHECKPOINT")  # fold the WAL into the file so the copy is complete
    published_path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = published_path.with_name(published_path.name + ".lock")
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one publisher at a time: each removes only what it replaced
        version = published_path.with_name(f"{published_path.stem}.{time.time_ns()}{published_path.suffix}")
        staging = version.with_suffix(".tmp")
        shutil.copyfile(duckdb_path, staging)
        os.replace(staging, version)  # complete before any reader can resolve to it
        link = published_path.with_name(published_path.name + ".link")
        link.unlink(missing_ok=True)
        os.symlink(version.name, link)  # relative, so the state directory can move
        os.replace(link, published_path)
        for old in published_versions(published_path):
            if old != version:
                old.unlink(missing_ok=True)
    return published_path


def published_versions(published_path: Path) -> list[Path]:
    """The version files `publish` wrote next to `published_path` (normally just the current one)."""
    prefix, suffix = published_path.stem + ".", published_path.suffix
    return sorted(
        path
        for path in published_path.parent.glob(f"{prefix}*{suffix}")
        if path.name[len(prefix) : len(path.name) - len(suffix)].isdigit()
    )
