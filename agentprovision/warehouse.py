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
import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pyarrow as pa
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from sqlalchemy import Engine, or_, select

from agentprovision.settings import Settings
from agentprovision.store import models as m
from agentprovision.watermarks import advance

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


def _rows(ops: Engine, table: RawTable, after_seq: int | None, gaps: Iterable[int] = ()) -> list[dict[str, Any]]:
    columns = [getattr(table.model, name) for name in table.columns]
    query = select(*columns)
    if after_seq is not None:
        wanted = table.model.seq > after_seq
        if gaps:
            wanted = or_(wanted, table.model.seq.in_(sorted(gaps)))
        query = query.where(wanted).order_by(table.model.seq)
    with ops.connect() as connection:
        rows = [dict(row._mapping) for row in connection.execute(query)]
    for row in rows:
        for name in table.json_columns:
            row[name] = json.dumps(row[name], sort_keys=True, default=str)
        for name, kind in table.columns.items():
            value = row[name]
            if kind == "TIMESTAMPTZ" and isinstance(value, datetime) and value.tzinfo is None:
                row[name] = value.replace(tzinfo=UTC)  # SQLite drops the zone; the store writes UTC
    return rows


ARROW_TYPES = {
    "VARCHAR": pa.string(),
    "INTEGER": pa.int32(),
    "BIGINT": pa.int64(),
    "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"),
    "TIMESTAMP": pa.timestamp("us"),
    "DATE": pa.date32(),
    "DECIMAL(18,8)": pa.decimal128(18, 8),
}


def arrow_schema(table: RawTable) -> pa.Schema:
    """The Arrow layout of a raw table, `_loaded_at` included (what `SELECT * FROM batch` inserts)."""
    return pa.schema([(name, ARROW_TYPES[kind]) for name, kind in _table_columns(table).items()])


def _arrow(table: RawTable, rows: list[dict[str, Any]], loaded_at: datetime) -> pa.Table:
    data = {name: [row[name] for row in rows] for name in table.columns}
    data["_loaded_at"] = [loaded_at] * len(rows)
    return pa.Table.from_pydict(data, schema=arrow_schema(table))


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


def _read_stream(
    con: Any, mark: str, ops: Engine, table: RawTable, now: datetime
) -> tuple[list[dict[str, Any]], LoadReport]:
    """Rows of a streamed table past its watermark or in its open gaps; saves the new watermark and gaps.

    `con` is a DuckDB or psycopg connection inside the load's transaction; `mark` its parameter marker.
    """
    found = con.execute(f"SELECT last_seq FROM {RAW_SCHEMA}._watermarks WHERE stream = {mark}", [table.name]).fetchone()
    watermark = found[0] if found else 0
    gaps = {
        seq: noticed if noticed.tzinfo else noticed.replace(tzinfo=UTC)
        for seq, noticed in con.execute(
            f"SELECT seq, noticed_at FROM {RAW_SCHEMA}._watermark_gaps WHERE stream = {mark}", [table.name]
        ).fetchall()
    }
    rows = _rows(ops, table, watermark, gaps)
    step = advance(watermark, (row["seq"] for row in rows), gaps, now)
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
    return rows, LoadReport(table.name, len(rows), step.watermark, len(step.gaps), len(step.filled))


def is_postgres_url(destination: Path | str) -> bool:
    return isinstance(destination, str) and destination.startswith(("postgresql://", "postgres://", "postgresql+"))


def warehouse_destination(settings: Settings) -> Path | str:
    """Where the configured warehouse target lives: the DuckDB file, or the PostgreSQL warehouse URL."""
    return settings.warehouse_url if settings.warehouse_target == "postgres" else settings.duckdb_path


def load_raw(ops: Engine, destination: Path | str) -> list[LoadReport]:
    """Copy the ops store into the raw schema; one transaction for everything, so readers never see half a load.

    `destination` is a DuckDB file path, or a postgresql:// URL of the warehouse database (created when missing).
    """
    if is_postgres_url(destination):
        return _load_postgres(ops, str(destination))
    return _load_duckdb(ops, Path(destination))


def _load_duckdb(ops: Engine, duckdb_path: Path) -> list[LoadReport]:
    duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    loaded_at = datetime.now(UTC)
    reports = []
    with duckdb.connect(str(duckdb_path)) as con:
        ensure_raw_schema(con)
        con.execute("BEGIN TRANSACTION")
        try:
            for table in RAW_TABLES:
                target = f"{RAW_SCHEMA}.{table.name}"
                if table.streamed:
                    rows, report = _read_stream(con, "?", ops, table, loaded_at)
                    reports.append(report)
                else:
                    rows = _rows(ops, table, None)
                    con.execute(f"DELETE FROM {target}")
                    reports.append(LoadReport(table.name, len(rows)))
                if rows:
                    batch = _arrow(table, rows, loaded_at)  # noqa: F841 - read by name in the SQL below
                    con.execute(f"INSERT INTO {target} SELECT * FROM batch")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return reports


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


def _copy_rows(conn: Any, table: RawTable, rows: list[dict[str, Any]], loaded_at: datetime) -> None:
    columns = list(_table_columns(table))
    with conn.cursor().copy(f"COPY {RAW_SCHEMA}.{table.name} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([*(row[name] for name in table.columns), loaded_at])


def _load_postgres(ops: Engine, url: str) -> list[LoadReport]:
    ensure_postgres_database(url)
    loaded_at = datetime.now(UTC)
    reports = []
    # One transaction: the connection block commits on success and rolls back on any error.
    with psycopg.connect(_psycopg_conninfo(url)) as conn:
        ensure_postgres_schema(conn)
        # A second loader waits here rather than reading the same watermark and duplicating rows.
        conn.execute(f"LOCK TABLE {RAW_SCHEMA}._watermarks IN EXCLUSIVE MODE")
        for table in RAW_TABLES:
            if table.streamed:
                rows, report = _read_stream(conn, "%s", ops, table, loaded_at)
                reports.append(report)
            else:
                rows = _rows(ops, table, None)
                conn.execute(f"DELETE FROM {RAW_SCHEMA}.{table.name}")
                reports.append(LoadReport(table.name, len(rows)))
            if rows:
                _copy_rows(conn, table, rows, loaded_at)
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
    """Copy the warehouse to where dashboards read it, atomically, so readers never meet the writer's lock."""
    staging = published_path.with_suffix(".tmp")
    with duckdb.connect(str(duckdb_path)) as con:
        con.execute("CHECKPOINT")  # fold the WAL into the file so the copy is complete
    shutil.copyfile(duckdb_path, staging)
    os.replace(staging, published_path)
    return published_path
