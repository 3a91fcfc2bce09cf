"""The dashboards' queries over the warehouse marts, all read through ``agentprovision.marts``.

Rules every function here keeps:
- it reads marts only, through :class:`agentprovision.marts.MartReader`, the one read module the
  CLI reports and the agents' warehouse tool use too: it checks each statement (one SELECT over known
  marts), reads the *published* DuckDB copy read-only (replaced atomically after each build, so the
  dashboards never meet the writer's lock; a swap in progress is retried, not shown) or PostgreSQL;
- it takes the :class:`Warehouse` snapshot it reads and the ``tenant_id`` scope (``None`` = all
  tenants) as arguments and hands the scope to MartReader, which rewrites every mart the SQL names
  into a tenant-filtered subquery: no query here filters on tenant itself, and none can forget to;
- every user-supplied value is a bound ``$parameter``; nothing typed by a user is formatted into SQL;
- it selects the columns it relies on by name, so a mart change fails here, in one place.

Results are cached with ``st.cache_data`` (TTL and entry count bounded); the :class:`Warehouse`
argument carries the published file's inode and mtime, so a newly published warehouse is a new cache
key and is read at once, while the TTL bounds how long any result lives. A mart the warehouse does
not have yet raises :class:`MartMissing`, which pages show as an empty state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import polars as pl
import streamlit as st

from agentprovision import reports
from agentprovision.marts import MartQueryError, MartReader, Scope, UnsafeQuery, WarehouseUnavailable
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
    "dim_agent_versions",
    "fct_audit_events",
    "fct_config_versions",
    "fct_llm_calls",
    "fct_agent_runs",
    "fct_tool_calls",
    "fct_cost_daily",
    "fct_budget_status",
    "rpt_chargeback_monthly",
    "fct_sla_daily",
    "fct_policy_decisions",
    "fct_invoice_variance",
    "fct_cost_per_outcome",
)


class WarehouseError(RuntimeError):
    """The published warehouse can't answer a query (missing file or mart); shown, not raised, by the app."""


class MartMissing(WarehouseError):
    """A mart the query reads is not in the published warehouse (not built yet): an empty state, not an error."""

    def __init__(self, mart: str, detail: str) -> None:
        super().__init__(f"the mart `{mart}` is not in the published warehouse yet; run `dbt build` ({detail})")
        self.mart = mart


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


# --- query plumbing: every read goes through agentprovision.marts ---------------------------------


def _reader() -> MartReader:
    return MartReader(load_settings())


def _query(
    warehouse: Warehouse,
    tenant_id: str | None,
    sql: str,
    params: Mapping[str, Any] | None = None,
    *,
    keep_decimals: bool = False,
) -> pl.DataFrame:
    """One SELECT over the marts, scoped to `tenant_id` (None = platform-wide) by MartReader.

    MartReader checks the SQL and rewrites every mart it names into a tenant-filtered subquery, so
    the queries below never filter on tenant themselves. `warehouse` is not read here: it is part of
    the cache key of every cached caller, so a newly published file is a new key.
    """
    del warehouse
    scope = Scope.platform() if tenant_id is None else Scope.tenant(tenant_id)
    try:
        frame = _reader().select(sql, scope, params)
    except WarehouseUnavailable as exc:
        missing = _missing_mart(str(exc))
        if missing is not None:
            raise MartMissing(missing, str(exc)) from exc
        raise WarehouseError(str(exc)) from exc
    except UnsafeQuery as exc:  # our own SQL naming a mart this warehouse does not have (yet)
        missing = _missing_mart(str(exc).split(";")[0])
        if missing is not None:
            raise MartMissing(missing, "not built yet") from exc
        raise WarehouseError(f"a dashboard query was refused ({exc})") from exc
    except MartQueryError as exc:
        raise WarehouseError(
            f"the published warehouse is missing a mart or column the dashboards read ({exc}); "
            "has `dbt build` run since the last publish?"
        ) from exc
    if keep_decimals:
        return frame
    # Money is NUMERIC in the marts; pages chart and format it, and Vega reads a decimal column as its
    # unscaled integer, so display reads get floats. Exports (chargeback) keep the exact decimals.
    return frame.with_columns(pl.col(pl.Decimal).cast(pl.Float64))


def _missing_mart(message: str) -> str | None:
    """The mart a 'not found' message names, when it is one the dashboards read."""
    for mart in MART_TABLES:
        if f"name {mart} does not exist" in message or f"'{mart}'" in message:
            return mart
    return None


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
        None,  # only platform users choose a tenant, from every tenant
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
        tenant_id,
        f"""
        SELECT {", ".join(TENANT_COLUMNS)}
        FROM dim_tenants
        ORDER BY display_name, tenant_id
        """,
        None,
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
        tenant_id,
        """
        SELECT
            (SELECT count(*) FROM dim_tenants WHERE is_active) AS tenants,
            (SELECT count(*) FROM dim_departments WHERE is_active) AS departments,
            (SELECT count(*) FROM dim_agents WHERE status <> 'retired') AS agents,
            (SELECT count(*) FROM dim_agents WHERE is_active) AS active_agents,
            (SELECT count(*) FROM dim_users
             WHERE is_active AND tenant_id IS NOT NULL) AS users
        """,
        None,
    )
    return FleetCounts(**{name: int(value) for name, value in frame.row(0, named=True).items()})


@_cached
def agents_by_type(warehouse: Warehouse, tenant_id: str | None) -> pl.DataFrame:
    """agent_type, status, agents: one row per type and status (retired agents left out)."""
    return _query(
        warehouse,
        tenant_id,
        """
        SELECT agent_type, status, count(*) AS agents
        FROM dim_agents
        WHERE status <> 'retired'
        GROUP BY agent_type, status
        ORDER BY agent_type, status
        """,
        None,
    )


@_cached
def users_by_role(warehouse: Warehouse, tenant_id: str | None) -> pl.DataFrame:
    """role, users: active tenant users per role."""
    return _query(
        warehouse,
        tenant_id,
        """
        SELECT role, count(*) AS users
        FROM dim_users
        WHERE is_active AND tenant_id IS NOT NULL
        GROUP BY role
        ORDER BY users DESC, role
        """,
        None,
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
        tenant_id,
        f"""
        SELECT {", ".join(AGENT_COLUMNS)}
        FROM dim_agents
        ORDER BY tenant_id, agent_name, agent_id
        """,
        None,
    )


@_cached
def agent(warehouse: Warehouse, tenant_id: str | None, agent_id: str) -> dict[str, Any] | None:
    """One agent in scope, or None (also when it belongs to a tenant outside the scope)."""
    frame = _query(
        warehouse,
        tenant_id,
        f"""
        SELECT {", ".join(AGENT_DETAIL_COLUMNS)}
        FROM dim_agents
        WHERE agent_id = $agent_id
        """,
        {"agent_id": agent_id},
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
        tenant_id,
        "SELECT DISTINCT action FROM fct_audit_events ORDER BY action",
        None,
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
        tenant_id,
        f"""
        SELECT {", ".join(AUDIT_COLUMNS)}, count(*) OVER () AS _matching
        FROM fct_audit_events
        WHERE ($actor = '' OR strpos(lower(actor), lower($actor)) > 0)
          AND (len($actions) = 0 OR list_contains($actions, action))
        ORDER BY seq DESC
        LIMIT $limit
        """,
        {
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
        None,  # a platform-wide mart: the caller checks who may see config history
        f"SELECT {', '.join(CONFIG_VERSION_COLUMNS)} FROM fct_config_versions ORDER BY config_version DESC",
    )


# --- runs and monitoring (fct_agent_runs, fct_sla_daily) ------------------------------------------


@dataclass(frozen=True)
class RunsToday:
    runs: int
    succeeded: int
    failed: int

    @property
    def success_rate(self) -> float | None:
        finished = self.succeeded + self.failed
        return self.succeeded / finished if finished else None


@_cached
def runs_today(warehouse: Warehouse, tenant_id: str | None) -> RunsToday:
    frame = _query(
        warehouse,
        tenant_id,
        """
        SELECT count(*) AS runs,
               count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
               count(*) FILTER (WHERE status = 'failed') AS failed
        FROM fct_agent_runs
        WHERE run_date = current_date
        """,
        None,
    )
    return RunsToday(**{name: int(value or 0) for name, value in frame.row(0, named=True).items()})


@_cached
def runs_by_day(warehouse: Warehouse, tenant_id: str | None, days: int) -> pl.DataFrame:
    """run_date, status, runs over the last `days` days (today included)."""
    return _query(
        warehouse,
        tenant_id,
        """
        SELECT run_date, status, count(*) AS runs
        FROM fct_agent_runs
        WHERE run_date > current_date - $days::INTEGER
        GROUP BY run_date, status
        ORDER BY run_date, status
        """,
        {"days": int(days)},
    )


RUN_BREAKDOWNS = {"tenant": "tenant_id", "agent": "agent_id", "agent type": "agent_type", "department": "department_id"}


@_cached
def runs_breakdown(warehouse: Warehouse, tenant_id: str | None, days: int, by: str) -> pl.DataFrame:
    """Runs, success and error rate, p50/p95 duration and cost per tenant, agent, type or department."""
    column = RUN_BREAKDOWNS[by]  # a fixed column name from the table above, never user text
    return _query(
        warehouse,
        tenant_id,
        f"""
        SELECT {column} AS "group",
               count(*) AS runs,
               avg(CASE WHEN status = 'succeeded' THEN 1.0 ELSE 0.0 END) AS success_rate,
               avg(CASE WHEN status = 'failed' THEN 1.0 ELSE 0.0 END) AS error_rate,
               quantile_cont(duration_ms, 0.5) AS duration_p50_ms,
               quantile_cont(duration_ms, 0.95) AS duration_p95_ms,
               sum(llm_calls) AS llm_calls,
               sum(tool_calls) AS tool_calls,
               sum(cost_usd) AS cost_usd
        FROM fct_agent_runs
        WHERE run_date > current_date - $days::INTEGER
        GROUP BY 1
        ORDER BY runs DESC, 1
        """,
        {"days": int(days)},
    )


FAILED_RUN_COLUMNS = (
    "finished_at",
    "tenant_id",
    "agent_id",
    "agent_version",
    "status",
    "error_class",
    "steps",
    "duration_ms",
    "run_id",
)


@_cached
def latest_failed_runs(warehouse: Warehouse, tenant_id: str | None, limit: int = 50) -> pl.DataFrame:
    return _query(
        warehouse,
        tenant_id,
        f"""
        SELECT {", ".join(FAILED_RUN_COLUMNS)}
        FROM fct_agent_runs
        WHERE status = 'failed'
        ORDER BY finished_at DESC NULLS LAST, run_id
        LIMIT $limit
        """,
        {"limit": int(limit)},
    )


@_cached
def sla_daily(warehouse: Warehouse, tenant_id: str | None, days: int) -> pl.DataFrame:
    """Per day and model: calls, the worst agent's latency p50/p95, and call-weighted error, fallback and
    guardrail rates."""
    return _query(
        warehouse,
        tenant_id,
        """
        SELECT sla_date, model_name,
               sum(calls) AS calls,
               max(latency_p50_ms) AS latency_p50_ms,
               max(latency_p95_ms) AS latency_p95_ms,
               sum(error_rate * calls) / nullif(sum(calls), 0) AS error_rate,
               sum(fallback_rate * calls) / nullif(sum(calls), 0) AS fallback_rate,
               sum(guardrail_rate * calls) / nullif(sum(calls), 0) AS guardrail_rate
        FROM fct_sla_daily
        WHERE sla_date > current_date - $days::INTEGER
        GROUP BY sla_date, model_name
        ORDER BY sla_date, model_name
        """,
        {"days": int(days)},
    )


SLA_BREAKDOWNS = {"tenant": "tenant_id", "agent": "agent_id", "model": "model_name"}


@_cached
def sla_breakdown(warehouse: Warehouse, tenant_id: str | None, days: int, by: str) -> pl.DataFrame:
    """Model-call service levels per tenant, agent or model over the window.

    Percentiles of daily percentiles cannot be combined exactly, so the table shows the worst day's
    p50/p95 and call-weighted rates: enough to find the group to look at.
    """
    column = SLA_BREAKDOWNS[by]  # a fixed column name, never user text
    return _query(
        warehouse,
        tenant_id,
        f"""
        SELECT {column} AS "group",
               sum(calls) AS calls,
               max(latency_p50_ms) AS worst_day_p50_ms,
               max(latency_p95_ms) AS worst_day_p95_ms,
               sum(error_rate * calls) / nullif(sum(calls), 0) AS error_rate,
               sum(fallback_rate * calls) / nullif(sum(calls), 0) AS fallback_rate,
               sum(guardrail_rate * calls) / nullif(sum(calls), 0) AS guardrail_rate
        FROM fct_sla_daily
        WHERE sla_date > current_date - $days::INTEGER
        GROUP BY 1
        ORDER BY calls DESC, 1
        """,
        {"days": int(days)},
    )


# --- costs (fct_cost_daily, fct_budget_status, rpt_chargeback_monthly, fct_invoice_variance) -----

COST_DIMENSIONS = {
    "tenant": "tenant_id",
    "department": "department_id",
    "agent": "agent_id",
    "model": "model_name",
    "provider": "provider",
}


@_cached
def spend_by(warehouse: Warehouse, tenant_id: str | None, days: int, by: str) -> pl.DataFrame:
    """cost_date, group, calls, tokens and cost_usd per day for one dimension of COST_DIMENSIONS."""
    column = COST_DIMENSIONS[by]  # a fixed column name, never user text
    return _query(
        warehouse,
        tenant_id,
        f"""
        SELECT cost_date, coalesce({column}, '(none)') AS "group",
               sum(calls) AS calls, sum(prompt_tokens + completion_tokens) AS tokens, sum(cost_usd) AS cost_usd
        FROM fct_cost_daily
        WHERE cost_date > current_date - $days::INTEGER
        GROUP BY 1, 2
        ORDER BY 1, 2
        """,
        {"days": int(days)},
    )


@_cached
def spend_month_to_date(warehouse: Warehouse, tenant_id: str | None) -> float:
    frame = _query(
        warehouse,
        tenant_id,
        """
        SELECT coalesce(sum(cost_usd), 0) AS cost_usd FROM fct_cost_daily
        WHERE cost_date >= date_trunc('month', current_date)
        """,
        None,
    )
    return float(frame["cost_usd"][0])


BUDGET_COLUMNS = (
    "month_start",
    "budget_level",
    "scope_id",
    "tenant_id",
    "department_id",
    "agent_id",
    "soft_limit_usd",
    "hard_limit_usd",
    "spend_mtd_usd",
    "daily_burn_usd",
    "forecast_month_end_usd",
    "projected_soft_cross_date",
    "projected_hard_cross_date",
    "status",
    "days_elapsed",
    "days_in_month",
)


@_cached
def budget_status(warehouse: Warehouse, tenant_id: str | None) -> pl.DataFrame:
    """Every budget in scope for the latest month; the platform budget (no tenant) only platform-wide."""
    return _query(
        warehouse,
        tenant_id,
        f"""
        SELECT {", ".join(BUDGET_COLUMNS)}
        FROM fct_budget_status
        WHERE month_start = (SELECT max(month_start) FROM fct_budget_status)
        ORDER BY CASE budget_level WHEN 'platform' THEN 0 WHEN 'tenant' THEN 1 WHEN 'department' THEN 2 ELSE 3 END,
                 scope_id
        """,
        None,
    )


@_cached
def daily_spend_for_budget(
    warehouse: Warehouse, tenant_id: str | None, level: str, scope_tenant: str | None, scope_key: str | None
) -> pl.DataFrame:
    """cost_date, cost_usd this month for one budget's scope (level platform|tenant|department|agent)."""
    return _query(
        warehouse,
        tenant_id,
        """
        SELECT cost_date, sum(cost_usd) AS cost_usd
        FROM fct_cost_daily
        WHERE cost_date >= date_trunc('month', current_date)
          AND ($level = 'platform' OR tenant_id = $scope_tenant)
          AND ($level <> 'department' OR department_id = $scope_key)
          AND ($level <> 'agent' OR agent_id = $scope_key)
        GROUP BY cost_date
        ORDER BY cost_date
        """,
        {"level": level, "scope_tenant": scope_tenant, "scope_key": scope_key},
    )


@_cached
def chargeback_months(warehouse: Warehouse, tenant_id: str | None) -> list[Any]:
    frame = _query(
        warehouse,
        tenant_id,
        "SELECT DISTINCT billing_month FROM rpt_chargeback_monthly ORDER BY 1 DESC",
        None,
    )
    return frame["billing_month"].to_list()


@_cached
def chargeback(warehouse: Warehouse, tenant_id: str | None, billing_month: Any) -> pl.DataFrame:
    """The month's chargeback lines in FOCUS columns and types: exactly what the CLI export writes."""
    del warehouse  # part of the cache key only
    scope = Scope.platform() if tenant_id is None else Scope.tenant(tenant_id)
    try:
        return reports.chargeback(_reader(), billing_month, scope)
    except (WarehouseUnavailable, MartQueryError, reports.ReportError) as exc:
        raise WarehouseError(str(exc)) from exc


INVOICE_VARIANCE_COLUMNS = (
    "usage_date",
    "tenant_id",
    "provider",
    "model_name",
    "invoice_cost_usd",
    "gateway_cost_usd",
    "variance_usd",
    "variance_pct",
    "within_tolerance",
)


@_cached
def invoice_variances(warehouse: Warehouse, tenant_id: str | None) -> pl.DataFrame:
    """Invoice lines against the gateway's own costs; platform-wide lines (no tenant) only platform-wide."""
    return _query(
        warehouse,
        tenant_id,
        f"""
        SELECT {", ".join(INVOICE_VARIANCE_COLUMNS)}
        FROM fct_invoice_variance
        ORDER BY within_tolerance, abs(variance_usd) DESC NULLS LAST, usage_date DESC
        """,
        None,
    )


@_cached
def cost_per_outcome(warehouse: Warehouse, tenant_id: str | None) -> pl.DataFrame:
    return _query(
        warehouse,
        tenant_id,
        """
        SELECT tenant_id, agent_id, outcome, runs, outcomes, cost_usd, cost_per_outcome_usd
        FROM fct_cost_per_outcome
        ORDER BY cost_usd DESC, tenant_id, agent_id, outcome
        """,
        None,
    )


# --- agent activity (fct_agent_runs, dim_agent_versions) ------------------------------------------


@_cached
def agent_activity(warehouse: Warehouse, tenant_id: str | None) -> pl.DataFrame:
    """agent_id, last_run_at, last_status, runs_30d, cost_30d_usd: what the fleet table adds to dim_agents."""
    return _query(
        warehouse,
        tenant_id,
        """
        SELECT agent_id,
               max(started_at) AS last_run_at,
               arg_max(status, started_at) AS last_status,
               count(*) FILTER (WHERE run_date > current_date - 30) AS runs_30d,
               coalesce(sum(cost_usd) FILTER (WHERE run_date > current_date - 30), 0) AS cost_30d_usd
        FROM fct_agent_runs
        GROUP BY agent_id
        """,
        None,
    )


RECENT_RUN_COLUMNS = (
    "started_at",
    "status",
    "error_class",
    "agent_version",
    "steps",
    "llm_calls",
    "tool_calls",
    "duration_ms",
    "cost_usd",
    "outcomes_count",
    "run_id",
    "task_id",
)


@_cached
def recent_runs(warehouse: Warehouse, tenant_id: str | None, agent_id: str, limit: int = 20) -> pl.DataFrame:
    return _query(
        warehouse,
        tenant_id,
        f"""
        SELECT {", ".join(RECENT_RUN_COLUMNS)}
        FROM fct_agent_runs
        WHERE agent_id = $agent_id
        ORDER BY started_at DESC NULLS LAST, run_id
        LIMIT $limit
        """,
        {"agent_id": agent_id, "limit": int(limit)},
    )


@_cached
def agent_versions(warehouse: Warehouse, tenant_id: str | None, agent_id: str) -> pl.DataFrame:
    return _query(
        warehouse,
        tenant_id,
        """
        SELECT version, valid_from, valid_to, is_current
        FROM dim_agent_versions
        WHERE agent_id = $agent_id
        ORDER BY valid_from DESC
        """,
        {"agent_id": agent_id},
    )


# --- compliance (fct_policy_decisions, fct_llm_calls) ---------------------------------------------


@_cached
def policy_decisions_by_day(warehouse: Warehouse, tenant_id: str | None, days: int) -> pl.DataFrame:
    return _query(
        warehouse,
        tenant_id,
        """
        SELECT decision_date, decision, coalesce(action, '(none)') AS action, count(*) AS decisions
        FROM fct_policy_decisions
        WHERE decision_date > current_date - $days::INTEGER
        GROUP BY 1, 2, 3
        ORDER BY 1, 2, 3
        """,
        {"days": int(days)},
    )


# Decisions that stopped or changed something: what an auditor lists as violations.
VIOLATION_ACTIONS = ("blocked", "masked", "refused", "denied", "block", "mask", "refuse", "deny")


@_cached
def policy_violations(warehouse: Warehouse, tenant_id: str | None, limit: int = 200) -> pl.DataFrame:
    return _query(
        warehouse,
        tenant_id,
        """
        SELECT occurred_at, tenant_id, agent_id, decision, action, reason, kinds, run_id
        FROM fct_policy_decisions
        WHERE (decision IN ('refused', 'model_blocked') OR list_contains($actions, lower(action)))
        ORDER BY occurred_at DESC
        LIMIT $limit
        """,
        {"actions": list(VIOLATION_ACTIONS), "limit": int(limit)},
    )


# fct_llm_calls.guardrail_action is the strongest action on either side: clean | allowed | masked | blocked.
GUARDRAIL_INTERVENED = ("masked", "blocked", "mask", "block")


@_cached
def guardrail_stats(warehouse: Warehouse, tenant_id: str | None, days: int) -> pl.DataFrame:
    """guardrail_action, calls: how model calls fared against the PII and content guardrails."""
    return _query(
        warehouse,
        tenant_id,
        """
        SELECT coalesce(guardrail_action, 'clean') AS guardrail_action, count(*) AS calls
        FROM fct_llm_calls
        WHERE call_date > current_date - $days::INTEGER
        GROUP BY 1
        ORDER BY calls DESC, 1
        """,
        {"days": int(days)},
    )


@_cached
def oldest_call_by_tenant(warehouse: Warehouse, tenant_id: str | None) -> pl.DataFrame:
    """tenant_id, oldest_call_at, calls: what retention has to compare against."""
    return _query(
        warehouse,
        tenant_id,
        """
        SELECT tenant_id, min(occurred_at) AS oldest_call_at, count(*) AS calls
        FROM fct_llm_calls
        WHERE tenant_id IS NOT NULL
        GROUP BY tenant_id
        ORDER BY tenant_id
        """,
        None,
    )


# --- admin (dim_users) ----------------------------------------------------------------------------

USER_COLUMNS = ("user_id", "user_name", "role", "tenant_id", "department_id", "status", "is_active")


@_cached
def users(warehouse: Warehouse, tenant_id: str | None) -> pl.DataFrame:
    """Users in scope with their roles; platform staff (no tenant) only platform-wide."""
    return _query(
        warehouse,
        tenant_id,
        f"""
        SELECT {", ".join(USER_COLUMNS)}
        FROM dim_users
        ORDER BY tenant_id NULLS FIRST, role, user_id
        """,
        None,
    )


def clear_caches() -> None:
    """Forget every cached query (tests; a manual refresh)."""
    st.cache_data.clear()
