"""The dashboards' one way into the warehouse: read-only queries over the dbt marts.

Rules every function here keeps:
- it reads marts only (``dim_*`` / ``fct_*``), never the ``raw`` schema or staging models;
- it reads the *published* copy (``settings.published_duckdb_path``), which the pipeline replaces
  atomically (``os.replace``) after each dbt build, so the dashboards never meet the writer's lock;
- it takes the :class:`Warehouse` snapshot it reads and the ``tenant_id`` scope (``None`` = all
  tenants) as arguments; the scope goes into the SQL ``WHERE`` clause as a bound parameter, as does
  every other user-supplied value (nothing typed by a user is formatted into SQL text);
- it selects the columns it relies on by name, so a mart change fails here, in one place.

Connections are opened per query and closed straight away (DuckDB read-only opens of a small file
cost about a millisecond): a long-lived connection would keep reading the replaced file's old inode,
and a DuckDB connection must not be shared between Streamlit's session threads anyway. That is why
nothing here uses ``st.cache_resource``: there is no connection worth sharing. Query results are
cached with ``st.cache_data``; the :class:`Warehouse` argument carries the file's inode and mtime,
so a newly published warehouse is a new cache key and is read at once, while the TTL bounds how
long any result lives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import polars as pl
import streamlit as st

from agentprovision.settings import load_settings

TTL_SECONDS = 60
MAX_ENTRIES = 64
AUDIT_ROW_LIMIT = 500

# The marts the dashboards read. A mart missing from the published warehouse is reported by name.
MART_TABLES = (
    "dim_tenants",
    "dim_departments",
    "dim_users",
    "dim_agents",
    "dim_models",
    "fct_audit_events",
    "fct_config_versions",
)


# Where marts may live, searched in this order; and the layers beneath them, never read.
MART_SCHEMAS = ("marts", "main")
NON_MART_SCHEMAS = ("raw", "staging", "intermediate")


class WarehouseError(RuntimeError):
    """The published warehouse can't answer a query (missing file or mart); shown, not raised, by the app."""


@dataclass(frozen=True)
class Warehouse:
    """One published warehouse file as it was when the page ran; part of every cache key."""

    path: str
    inode: int
    mtime_ns: int

    @property
    def published_at(self) -> datetime:
        return datetime.fromtimestamp(self.mtime_ns / 1e9, tz=UTC)


def published_path() -> Path:
    return load_settings().published_duckdb_path


def current_warehouse() -> Warehouse | None:
    """The published warehouse now, or None when the pipeline has not published one yet."""
    path = published_path()
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return Warehouse(path=str(path), inode=stat.st_ino, mtime_ns=stat.st_mtime_ns)


# --- connection and query plumbing ---------------------------------------------------------------


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _use_mart_schemas(con: duckdb.DuckDBPyConnection) -> None:
    """Let the queries name marts unqualified wherever dbt placed them.

    The dbt project builds marts into schema ``marts``; dbt-duckdb's default would be ``main``. Any
    schema holding a mart-named table is searched, ``marts`` first, and never the layers below the marts.
    """
    rows = con.execute(
        "SELECT DISTINCT table_schema FROM information_schema.tables "
        "WHERE table_catalog = current_database() AND list_contains($names, table_name) "
        "AND NOT list_contains($skip, table_schema)",
        {"names": list(MART_TABLES), "skip": list(NON_MART_SCHEMAS)},
    ).fetchall()
    found = {schema for (schema,) in rows}
    preferred = [schema for schema in MART_SCHEMAS if schema in found]
    schemas = preferred + sorted(found - set(preferred))
    if schemas and schemas != ["main"]:
        search_path = ",".join(_quote_identifier(schema) for schema in schemas)
        con.execute("SET search_path = '" + search_path.replace("'", "''") + "'")


@contextmanager
def _connect(warehouse: Warehouse) -> Iterator[duckdb.DuckDBPyConnection]:
    try:
        con = duckdb.connect(warehouse.path, read_only=True)
    except duckdb.Error as exc:  # replaced by something unreadable, or removed
        raise WarehouseError(f"cannot open the published warehouse {warehouse.path}: {exc}") from exc
    try:
        con.execute("SET TimeZone = 'UTC'")  # timestamps reach the pages in UTC whatever the host's zone
        _use_mart_schemas(con)
        yield con
    finally:
        con.close()


def _query(warehouse: Warehouse, sql: str, params: Mapping[str, Any] | None = None) -> pl.DataFrame:
    with _connect(warehouse) as con:
        try:
            return con.sql(sql, params=dict(params or {})).pl()
        except (duckdb.CatalogException, duckdb.BinderException) as exc:
            raise WarehouseError(
                f"the published warehouse is missing a mart or column the dashboards read ({exc}); "
                "has `dbt build` run since the last publish?"
            ) from exc


# Scope a query to one tenant, or to all when $tenant_id is NULL. Always a bound parameter.
TENANT_SCOPE = "($tenant_id IS NULL OR tenant_id = $tenant_id)"


F = TypeVar("F", bound=Callable[..., Any])


def _cached(func: F) -> F:
    """Every query's cache policy, in one place."""
    return st.cache_data(ttl=TTL_SECONDS, max_entries=MAX_ENTRIES, show_spinner=False)(func)


# --- tenants --------------------------------------------------------------------------------------


@_cached
def tenant_choices(warehouse: Warehouse) -> list[tuple[str, str, bool]]:
    """(tenant_id, display_name, is_active) for the sidebar's selector, active tenants first.

    Removed tenants stay selectable: their audit trail outlives them. Role-based scoping narrows this later.
    """
    frame = _query(
        warehouse,
        "SELECT tenant_id, display_name, is_active FROM dim_tenants ORDER BY is_active DESC, display_name, tenant_id",
    )
    return [
        (row["tenant_id"], row["display_name"] or row["tenant_id"], bool(row["is_active"]))
        for row in frame.iter_rows(named=True)
    ]


TENANT_COLUMNS = (
    "tenant_id",
    "display_name",
    "region",
    "plan",
    "status",
    "budget_hard_usd",
    "budget_soft_usd",
    "department_count",
    "agent_count",
    "active_agent_count",
    "user_count",
)


@_cached
def tenants(warehouse: Warehouse, tenant_id: str | None) -> pl.DataFrame:
    return _query(
        warehouse,
        f"""
        SELECT {", ".join(TENANT_COLUMNS)}
        FROM dim_tenants
        WHERE {TENANT_SCOPE}
        ORDER BY display_name, tenant_id
        """,
        {"tenant_id": tenant_id},
    )


# --- overview -------------------------------------------------------------------------------------
# Counting rules, the same as dim_tenants' own counts: tenants, departments and users count when
# active; agents unless retired. Platform users (no tenant) are staff, not a tenant's users.


@dataclass(frozen=True)
class FleetCounts:
    tenants: int
    departments: int
    agents: int
    active_agents: int
    users: int


@_cached
def fleet_counts(warehouse: Warehouse, tenant_id: str | None) -> FleetCounts:
    frame = _query(
        warehouse,
        f"""
        SELECT
            (SELECT count(*) FROM dim_tenants WHERE {TENANT_SCOPE} AND is_active) AS tenants,
            (SELECT count(*) FROM dim_departments WHERE {TENANT_SCOPE} AND is_active) AS departments,
            (SELECT count(*) FROM dim_agents WHERE {TENANT_SCOPE} AND status <> 'retired') AS agents,
            (SELECT count(*) FROM dim_agents WHERE {TENANT_SCOPE} AND is_active) AS active_agents,
            (SELECT count(*) FROM dim_users
             WHERE {TENANT_SCOPE} AND is_active AND tenant_id IS NOT NULL) AS users
        """,
        {"tenant_id": tenant_id},
    )
    return FleetCounts(**{name: int(value) for name, value in frame.row(0, named=True).items()})


@_cached
def agents_by_type(warehouse: Warehouse, tenant_id: str | None) -> pl.DataFrame:
    """agent_type, status, agents: one row per type and status (retired agents left out)."""
    return _query(
        warehouse,
        f"""
        SELECT agent_type, status, count(*) AS agents
        FROM dim_agents
        WHERE {TENANT_SCOPE} AND status <> 'retired'
        GROUP BY agent_type, status
        ORDER BY agent_type, status
        """,
        {"tenant_id": tenant_id},
    )


@_cached
def users_by_role(warehouse: Warehouse, tenant_id: str | None) -> pl.DataFrame:
    """role, users: active tenant users per role."""
    return _query(
        warehouse,
        f"""
        SELECT role, count(*) AS users
        FROM dim_users
        WHERE {TENANT_SCOPE} AND is_active AND tenant_id IS NOT NULL
        GROUP BY role
        ORDER BY users DESC, role
        """,
        {"tenant_id": tenant_id},
    )


# --- agents ---------------------------------------------------------------------------------------

AGENT_COLUMNS = (
    "agent_id",
    "agent_name",
    "tenant_id",
    "tenant_display_name",
    "agent_type",
    "agent_version",
    "status",
    "owner_user_id",
    "owner_name",
    "schedule",
    "department_id",
    "department_name",
    "cost_centre",
)
AGENT_DETAIL_COLUMNS = (
    *AGENT_COLUMNS,
    "is_active",
    "trigger_count",
    "tool_count",
    "required_tier",
    "min_context_window",
    "max_steps",
    "max_tokens",
    "max_wall_seconds",
    "budget_hard_usd",
    "budget_soft_usd",
    "config_version",
    "updated_at",
)


@_cached
def agents(warehouse: Warehouse, tenant_id: str | None) -> pl.DataFrame:
    """The fleet: one row per agent in scope. Type/status filters are applied by the page on this frame."""
    return _query(
        warehouse,
        f"""
        SELECT {", ".join(AGENT_COLUMNS)}
        FROM dim_agents
        WHERE {TENANT_SCOPE}
        ORDER BY tenant_id, agent_name, agent_id
        """,
        {"tenant_id": tenant_id},
    )


@_cached
def agent(warehouse: Warehouse, tenant_id: str | None, agent_id: str) -> dict[str, Any] | None:
    """One agent in scope, or None (also when it belongs to a tenant outside the scope)."""
    frame = _query(
        warehouse,
        f"""
        SELECT {", ".join(AGENT_DETAIL_COLUMNS)}
        FROM dim_agents
        WHERE {TENANT_SCOPE} AND agent_id = $agent_id
        """,
        {"tenant_id": tenant_id, "agent_id": agent_id},
    )
    return frame.row(0, named=True) if frame.height else None


# --- compliance -----------------------------------------------------------------------------------

AUDIT_COLUMNS = (
    "seq",
    "occurred_at",
    "tenant_id",
    "actor",
    "action",
    "target_type",
    "target_id",
    "record_id",
)


@_cached
def audit_actions(warehouse: Warehouse, tenant_id: str | None) -> list[str]:
    frame = _query(
        warehouse,
        f"SELECT DISTINCT action FROM fct_audit_events WHERE {TENANT_SCOPE} ORDER BY action",
        {"tenant_id": tenant_id},
    )
    return [action for action in frame["action"].to_list() if action is not None]


@dataclass(frozen=True)
class AuditPage:
    rows: pl.DataFrame  # newest first, at most `limit` rows
    matching: int  # how many records match the filters in all


@_cached
def audit_events(
    warehouse: Warehouse,
    tenant_id: str | None,
    *,
    actor: str = "",
    actions: Sequence[str] = (),
    limit: int = AUDIT_ROW_LIMIT,
) -> AuditPage:
    """Audit records in scope, newest first.

    ``actor`` matches as a case-insensitive substring, ``actions`` (empty = any) exactly. With a
    tenant selected, platform-level records (tenant_id NULL, such as config applies) are out of scope.
    """
    frame = _query(
        warehouse,
        f"""
        SELECT {", ".join(AUDIT_COLUMNS)}, count(*) OVER () AS _matching
        FROM fct_audit_events
        WHERE {TENANT_SCOPE}
          AND ($actor = '' OR strpos(lower(actor), lower($actor)) > 0)
          AND (len($actions) = 0 OR list_contains($actions, action))
        ORDER BY seq DESC
        LIMIT $limit
        """,
        {
            "tenant_id": tenant_id,
            "actor": actor.strip(),
            "actions": list(actions),
            "limit": int(limit),
        },
    )
    matching = int(frame["_matching"][0]) if frame.height else 0
    return AuditPage(rows=frame.drop("_matching"), matching=matching)


CONFIG_VERSION_COLUMNS = (
    "config_version",
    "applied_at",
    "applied_by",
    "summary",
    "change_count",
    "is_rollback",
    "rollback_of_version",
    "is_current",
)


@_cached
def config_versions(warehouse: Warehouse) -> pl.DataFrame:
    """Applied admin config versions, newest first. Platform-wide: one version covers every tenant."""
    return _query(
        warehouse,
        f"SELECT {', '.join(CONFIG_VERSION_COLUMNS)} FROM fct_config_versions ORDER BY config_version DESC",
    )


def clear_caches() -> None:
    """Forget every cached query (tests; a manual refresh)."""
    st.cache_data.clear()
