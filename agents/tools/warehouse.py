"""warehouse_query: one read-only SELECT over the tenant's own mart rows.

The SQL is scoped by `sql_guard.scope_select` (parsed, checked, every mart reference rewritten to
the tenant's rows) and then run on a connection built so that even a guard bug reaches nothing:
an empty in-memory database with the published warehouse copy attached READ_ONLY under its own
name, external access (files, HTTP, extensions, other databases) switched off and the
configuration locked before the agent's statement runs, a row cap and a wall-clock timeout.

When the warehouse target is PostgreSQL the query goes through `agentprovision.marts.MartReader`
(the same guard, a read-only transaction with a statement timeout), wrapped so that at most the
row cap plus one rows ever leave the database.
"""

from __future__ import annotations

import threading
import time
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import sqlglot
from pydantic import Field
from sqlglot.errors import ParseError, TokenError

from agents.tools.base import Arguments, BuiltinTool, ToolContext, ToolError, ToolResult
from agents.tools.sql_guard import MARTS_SCHEMA, TENANT_COLUMN, SqlRefused, scope_select

WAREHOUSE_ALIAS = "warehouse"
DEFAULT_ROWS = 100
MAX_ROWS = 1_000
TIMEOUT_SECONDS = 20.0
MEMORY_LIMIT = "512MB"
OPEN_ATTEMPTS = 3  # the published copy is replaced atomically; a reader can race the rename once


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


def tenant_marts(con: duckdb.DuckDBPyConnection, catalog: str = WAREHOUSE_ALIAS) -> dict[str, list[str]]:
    """Marts in the attached warehouse that carry tenant_id, with their columns in table order."""
    rows = con.execute(
        "SELECT table_name, column_name FROM duckdb_columns() WHERE database_name = ? AND schema_name = ? "
        "ORDER BY table_name, column_index",
        [catalog, MARTS_SCHEMA],
    ).fetchall()
    marts: dict[str, list[str]] = {}
    for table, column in rows:
        marts.setdefault(table.lower(), []).append(column)
    return {name: columns for name, columns in marts.items() if TENANT_COLUMN in (c.lower() for c in columns)}


def open_locked(published: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory connection with the published warehouse attached read-only and everything else off."""
    if not published.exists():
        raise WarehouseUnavailable(
            "the warehouse has not been published yet; run a pass first (`agentprovision demo` or the "
            "full_pass job in Dagster)"
        )
    last: Exception | None = None
    for attempt in range(OPEN_ATTEMPTS):
        con = duckdb.connect(":memory:", config={"threads": 1, "memory_limit": MEMORY_LIMIT})
        try:
            quoted = str(published).replace("'", "''")
            con.execute(f"ATTACH '{quoted}' AS {WAREHOUSE_ALIAS} (READ_ONLY)")
            con.execute("SET enable_external_access = false")
            con.execute("SET autoinstall_known_extensions = false")
            con.execute("SET autoload_known_extensions = false")
            con.execute("SET lock_configuration = true")
            return con
        except duckdb.Error as exc:
            con.close()
            last = exc
            time.sleep(0.05 * (attempt + 1))
    raise WarehouseUnavailable(f"the published warehouse cannot be opened ({type(last).__name__})")


def run_query(
    published: Path, tenant_id: str, sql: str, *, max_rows: int = DEFAULT_ROWS, timeout: float = TIMEOUT_SECONDS
) -> dict[str, Any]:
    """Scope and run `sql`; returns {"columns", "rows", "row_count", "truncated"} or raises ToolError."""
    _parses(sql)
    con = open_locked(published)
    try:
        marts = tenant_marts(con)
        try:
            scoped = scope_select(sql, tenant_id, marts, catalog=WAREHOUSE_ALIAS)
        except SqlRefused as exc:
            raise ToolError(f"warehouse_query refused: {exc}", error_class="policy") from None
        timer = threading.Timer(timeout, con.interrupt)
        timer.start()
        try:
            cursor = con.execute(scoped)
            columns = [d[0] for d in cursor.description or []]
            rows = cursor.fetchmany(max_rows + 1)
        except duckdb.InterruptException:
            raise ToolError(f"warehouse_query: the query ran longer than {timeout:g}s and was stopped") from None
        except duckdb.Error as exc:
            raise ToolError(f"warehouse_query: the query failed: {_first_line(exc)}") from None
        finally:
            timer.cancel()
    finally:
        con.close()
    return {
        "columns": columns,
        "rows": [[_plain(v) for v in row] for row in rows[:max_rows]],
        "row_count": min(len(rows), max_rows),
        "truncated": len(rows) > max_rows,
    }


def _parses(sql: str) -> None:
    """SQL that does not parse is a mistake the model can fix (a tool error), unlike a refusal (policy)."""
    try:
        sqlglot.parse(sql, read="duckdb")
    except (ParseError, TokenError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ToolError(f"warehouse_query: the SQL does not parse: {first}") from None


def describe_marts(published: Path) -> dict[str, list[str]]:
    con = open_locked(published)
    try:
        return tenant_marts(con)
    finally:
        con.close()


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


def run_query_postgres(settings: Any, tenant_id: str, sql: str, *, max_rows: int = DEFAULT_ROWS) -> dict[str, Any]:
    """The same contract as run_query, through MartReader against the PostgreSQL warehouse."""
    from agentprovision.marts import MartQueryError, MartReader, Scope
    from agentprovision.marts import WarehouseUnavailable as MartsUnavailable

    try:
        tree = sqlglot.parse_one(sql, read="postgres")
    except (ParseError, TokenError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ToolError(f"warehouse_query: the SQL does not parse: {first}") from None
    if not isinstance(tree, sqlglot.exp.Query):
        raise ToolError(
            f"warehouse_query refused: only SELECT queries are allowed, not {type(tree).__name__.upper()}",
            error_class="policy",
        )
    # Built on the syntax tree, so nothing in the agent's text (a comment, a parenthesis) can escape the cap.
    capped = sqlglot.exp.select("*").from_(tree.subquery("agent_query")).limit(max_rows + 1)
    try:
        frame = MartReader(settings).select(capped.sql(dialect="postgres"), Scope.tenant(tenant_id))
    except SqlRefused as exc:
        raise ToolError(f"warehouse_query refused: {exc}", error_class="policy") from None
    except MartsUnavailable as exc:
        raise WarehouseUnavailable(str(exc)) from None
    except MartQueryError as exc:
        raise ToolError(f"warehouse_query: {exc}") from None
    rows = frame.rows()
    return {
        "columns": frame.columns,
        "rows": [[_plain(v) for v in row] for row in rows[:max_rows]],
        "row_count": min(len(rows), max_rows),
        "truncated": len(rows) > max_rows,
    }


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
        if getattr(ctx.settings, "warehouse_target", "duckdb") == "postgres":
            return self._postgres(ctx, args)
        published = ctx.settings.published_duckdb_path
        if not args.sql:
            marts = describe_marts(published)
            return ToolResult.of({"marts": {f"{MARTS_SCHEMA}.{k}": v for k, v in sorted(marts.items())}})
        return ToolResult.of(run_query(published, ctx.tenant_id, args.sql, max_rows=args.max_rows))

    def _postgres(self, ctx: ToolContext, args: QueryArgs) -> ToolResult:
        if args.sql:
            return ToolResult.of(run_query_postgres(ctx.settings, ctx.tenant_id, args.sql, max_rows=args.max_rows))
        from agentprovision.marts import MartReader, tenant_owned
        from agentprovision.marts import WarehouseUnavailable as MartsUnavailable

        try:
            catalog = MartReader(ctx.settings).marts()
        except MartsUnavailable as exc:
            raise WarehouseUnavailable(str(exc)) from None
        marts = {f"{MARTS_SCHEMA}.{k}": list(v) for k, v in sorted(catalog.items()) if tenant_owned(v)}
        return ToolResult.of({"marts": marts})
