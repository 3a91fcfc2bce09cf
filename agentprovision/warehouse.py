"""Moving ops-store data into the warehouse's raw schema, and publishing a copy for readers.

Two kinds of raw table:
- snapshots of the config entities (tenants, agents, ...), replaced whole on every load;
- append-only streams (events, audit records), loaded past a watermark on `seq`. The rows and the
  new watermark commit in one DuckDB transaction, so a load that fails or is repeated never
  duplicates or skips a row.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from sqlalchemy import Engine, select

from agentprovision.store import models as m

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
        },
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


def ensure_raw_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {RAW_SCHEMA}")
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {RAW_SCHEMA}._watermarks (stream VARCHAR PRIMARY KEY, last_seq BIGINT NOT NULL)"
    )
    for table in RAW_TABLES:
        columns = ", ".join(f"{name} {kind}" for name, kind in table.columns.items())
        con.execute(f"CREATE TABLE IF NOT EXISTS {RAW_SCHEMA}.{table.name} ({columns}, _loaded_at TIMESTAMPTZ)")


def _rows(ops: Engine, table: RawTable, after_seq: int | None) -> list[dict[str, Any]]:
    columns = [getattr(table.model, name) for name in table.columns]
    query = select(*columns)
    if after_seq is not None:
        query = query.where(table.model.seq > after_seq).order_by(table.model.seq)
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


def _arrow(table: RawTable, rows: list[dict[str, Any]], loaded_at: datetime) -> pa.Table:
    types = {
        "VARCHAR": pa.string(),
        "INTEGER": pa.int32(),
        "BIGINT": pa.int64(),
        "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"),
        "DECIMAL(18,8)": pa.decimal128(18, 8),
    }
    schema = pa.schema(
        [(name, types[kind]) for name, kind in table.columns.items()] + [("_loaded_at", types["TIMESTAMPTZ"])]
    )
    data = {name: [row[name] for row in rows] for name in table.columns}
    data["_loaded_at"] = [loaded_at] * len(rows)
    return pa.Table.from_pydict(data, schema=schema)


@dataclass
class LoadReport:
    table: str
    rows: int
    watermark: int | None = None


def load_raw(ops: Engine, duckdb_path: Path) -> list[LoadReport]:
    """Copy the ops store into the raw schema; one transaction for everything, so readers never see half a load."""
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
                    found = con.execute(
                        f"SELECT last_seq FROM {RAW_SCHEMA}._watermarks WHERE stream = ?", [table.name]
                    ).fetchone()
                    watermark = found[0] if found else 0
                    rows = _rows(ops, table, watermark)
                    new_watermark = max((row["seq"] for row in rows), default=watermark)
                    con.execute(
                        f"INSERT OR REPLACE INTO {RAW_SCHEMA}._watermarks VALUES (?, ?)", [table.name, new_watermark]
                    )
                    reports.append(LoadReport(table.name, len(rows), new_watermark))
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


def publish(duckdb_path: Path, published_path: Path) -> Path:
    """Copy the warehouse to where dashboards read it, atomically, so readers never meet the writer's lock."""
    staging = published_path.with_suffix(".tmp")
    with duckdb.connect(str(duckdb_path)) as con:
        con.execute("CHECKPOINT")  # fold the WAL into the file so the copy is complete
    shutil.copyfile(duckdb_path, staging)
    os.replace(staging, published_path)
    return published_path
