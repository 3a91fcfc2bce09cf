"""warehouse_query: one read-only SELECT over the tenant's own mart rows.

The query runs through `agentprovision.marts.MartReader.select`, the one reader of the marts, on
either warehouse target: the SQL is parsed and scoped by the shared guard (every mart reference
rewritten to the tenant's rows) and run on a connection that reaches nothing else. On DuckDB that is
the published copy opened read-only with external access and extension loading off; on PostgreSQL a
read-only transaction. Either way at most the row cap plus one rows leave the database, and the
query is stopped in the database at the timeout.

Errors are split for the model: a refusal by the guard or the database is `policy`; SQL that does not
parse, fails, or runs too long is `tool`, a mistake the model can correct and retry.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import Field

from agentprovision.marts import MartQueryError, MartReader, Scope, tenant_owned
from agentprovision.marts import WarehouseUnavailable as MartsUnavailable
from agentprovision.settings import Settings
from agentprovision.sql_guard import SqlSyntaxError
from agents.tools.base import Arguments, BuiltinTool, ToolContext, ToolError, ToolResult
from agents.tools.sql_guard import MARTS_SCHEMA, SqlRefused

DEFAULT_ROWS = 100
MAX_ROWS = 1_000
TIMEOUT_SECONDS = 20.0


class WarehouseUnavailable(ToolError):
    """No published warehouse yet, or it cannot be opened."""


class QueryArgs(Arguments):
    sql: str | None = Field(
        default=None,
        description="One SELECT over the marts (e.g. SELECT model_name, sum(cost_usd) FROM marts.fct_llm_calls "
        "GROUP BY 1). Leave out to list the readable marts and their columns.",
        max_length=20_000,
    )
    max_rows: int = Field(default=DEFAULT_ROWS, ge=1, le=MAX_ROWS, description="Most rows to return.")


def run_query(
    published: Path, tenant_id: str, sql: str, *, max_rows: int = DEFAULT_ROWS, timeout: float = TIMEOUT_SECONDS
) -> dict[str, Any]:
    """Scope and run `sql` on the DuckDB warehouse file `published`; see `query`."""
    return query(MartReader(duckdb_file=published), tenant_id, sql, max_rows=max_rows, timeout=timeout)


def query(
    reader: MartReader, tenant_id: str, sql: str, *, max_rows: int = DEFAULT_ROWS, timeout: float = TIMEOUT_SECONDS
) -> dict[str, Any]:
    """Run `sql` for `tenant_id`; returns {"columns", "rows", "row_count", "truncated"} or raises ToolError."""
    try:
        frame = reader.select(sql, Scope.tenant(tenant_id), limit=max_rows + 1, timeout_seconds=timeout)
    except SqlSyntaxError as exc:
        raise ToolError(f"warehouse_query: {exc}") from None
    except SqlRefused as exc:
        raise ToolError(f"warehouse_query refused: {exc}", error_class="policy") from None
    except MartsUnavailable as exc:
        raise WarehouseUnavailable(f"warehouse_query: {exc}") from None
    except MartQueryError as exc:  # also MartQueryTimeout: the model can narrow the query and retry
        raise ToolError(f"warehouse_query: {exc}") from None
    rows = frame.rows()
    return {
        "columns": frame.columns,
        "rows": [[_plain(v) for v in row] for row in rows[:max_rows]],
        "row_count": min(len(rows), max_rows),
        "truncated": len(rows) > max_rows,
    }


def describe_marts(reader: MartReader) -> dict[str, list[str]]:
    """The marts a tenant may read (those with tenant_id), as marts.<name> -> columns in table order."""
    try:
        catalog = reader.marts()
    except MartsUnavailable as exc:
        raise WarehouseUnavailable(f"warehouse_query: {exc}") from None
    return {
        f"{MARTS_SCHEMA}.{name}": list(columns) for name, columns in sorted(catalog.items()) if tenant_owned(columns)
    }


def run_query_postgres(settings: Settings, tenant_id: str, sql: str, *, max_rows: int = DEFAULT_ROWS) -> dict[str, Any]:
    """The same contract as run_query, against the PostgreSQL warehouse named by `settings`."""
    return query(MartReader(settings), tenant_id, sql, max_rows=max_rows)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


class WarehouseQuery(BuiltinTool):
    name = "warehouse_query"
    description = (
        "Read-only SQL (one SELECT, DuckDB dialect) over this tenant's warehouse marts, e.g. marts.fct_llm_calls, "
        "marts.fct_agent_runs, marts.fct_cost_daily. Only the tenant's own rows are visible. Call without sql to "
        "list the marts and their columns."
    )
    read_only = True
    Args = QueryArgs

    def call(self, ctx: ToolContext, args: QueryArgs) -> ToolResult:
        reader = MartReader(ctx.settings)
        if not args.sql:
            return ToolResult.of({"marts": describe_marts(reader)})
        return ToolResult.of(query(reader, ctx.tenant_id, args.sql, max_rows=args.max_rows))
