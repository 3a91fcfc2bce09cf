"""Alerts raised from the warehouse marts: budgets heading over, error rates, policy denials.

The gateway alerts the moment a call crosses a budget; this module looks at what the marts say after
each build and raises what only the warehouse can see: a month forecast over its limit, a limit
already exceeded (a safety net for spend the gateway did not meter), a model failing on a day, a
tenant whose calls are being blocked or refused. It only *produces* alert events; the alert delivery
sensor routes them to the channels subscribed to each name (connectors/alerts.py).

Each alert has a dedupe key (rule, scope, period) carried in its payload. Before raising one, the
alert events already in the ops store for the same periods are read, so a rule fires once per scope
and period however often the marts are evaluated, and again only when the period (a new day or
month) or the status (soft, then hard) changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, select

from agentprovision.apply import applied_platform_settings
from agentprovision.config.schema import AlertingSettings
from agentprovision.events import PlatformEvent
from agentprovision.marts import MartReader, Scope
from agentprovision.store.db import session_factory, transaction
from agentprovision.store.models import Event

__all__ = ["RULES", "AlertingSettings", "configured_thresholds", "evaluate_mart_alerts"]

BUDGET_FORECAST_OVER = "budget_forecast_over"
BUDGET_STATUS_EXCEEDED = "budget_status_exceeded"
ERROR_RATE_HIGH = "error_rate_high"
POLICY_VIOLATION = "policy_violation"
RULES = (BUDGET_FORECAST_OVER, BUDGET_STATUS_EXCEEDED, ERROR_RATE_HIGH, POLICY_VIOLATION)
DENIED_ACTIONS = ("blocked", "refused")


@dataclass(frozen=True)
class _Candidate:
    name: str
    tenant_id: str | None
    dedupe_key: str
    payload: dict[str, Any]


def evaluate_mart_alerts(
    reader: MartReader, engine: Engine, now: datetime | None = None, thresholds: AlertingSettings | None = None
) -> list[PlatformEvent]:
    """The alert events the marts call for that have not been raised before (not written: the caller does).

    Reads every tenant's rows (the platform scope): each alert names its own tenant, and delivery
    sends it only to that tenant's channels and the platform's.
    """
    now = now or datetime.now(UTC)
    thresholds = thresholds or AlertingSettings()
    today = now.astimezone(UTC).date()
    candidates = [
        *_budget_candidates(reader, today),
        *_error_rate_candidates(reader, today, thresholds),
        *_policy_candidates(reader, today, thresholds),
    ]
    if not candidates:
        return []
    # Periods start no earlier than the month start or yesterday; an alert for them was raised after that.
    since = datetime.combine(min(today.replace(day=1), today - timedelta(days=1)), datetime.min.time(), UTC)
    raised = _raised_keys(engine, since - timedelta(days=1))
    events = []
    for candidate in candidates:
        if candidate.dedupe_key in raised:
            continue
        raised.add(candidate.dedupe_key)
        events.append(
            PlatformEvent(
                tenant_id=candidate.tenant_id,
                kind="alert",
                name=candidate.name,
                occurred_at=now,
                payload={**candidate.payload, "dedupe_key": candidate.dedupe_key},
            )
        )
    return events


def configured_thresholds(engine: Engine) -> AlertingSettings:
    """The `alerting` thresholds of the applied configuration; the defaults before any is applied."""
    return AlertingSettings.model_validate(applied_platform_settings(engine).get("alerting") or {})


def _raised_keys(engine: Engine, since: datetime) -> set[str]:
    with transaction(session_factory(engine)) as session:
        payloads = session.scalars(
            select(Event.payload).where(Event.kind == "alert", Event.name.in_(RULES), Event.occurred_at >= since)
        )
        return {p.get("dedupe_key") for p in payloads if isinstance(p, dict) and p.get("dedupe_key")}


# --- rules ------------------------------------------------------------------------------------------


def _budget_candidates(reader: MartReader, today: date) -> list[_Candidate]:
    """One alert per budget scope and month for a forecast over a limit, one per status once exceeded."""
    rows = reader.read(
        "fct_budget_status",
        Scope.platform(),
        where={"month_start": today.replace(day=1), "status": ["forecast_over", "soft_exceeded", "hard_exceeded"]},
        order_by=["budget_level", "scope_id"],
    )
    out = []
    for row in rows.iter_rows(named=True):
        status = row["status"]
        name = BUDGET_FORECAST_OVER if status == "forecast_over" else BUDGET_STATUS_EXCEEDED
        period = _iso(row["month_start"])
        out.append(
            _Candidate(
                name=name,
                tenant_id=row["tenant_id"],
                # The status is part of the key: soft_exceeded and later hard_exceeded both alert in a month.
                dedupe_key=f"{name}:{row['budget_level']}:{row['scope_id']}:{status}:{period}",
                payload={
                    "rule": name,
                    "tenant_id": row["tenant_id"],
                    "scope": {
                        "level": row["budget_level"],
                        "scope_id": row["scope_id"],
                        "department_id": row.get("department_id"),
                        "agent_id": row.get("agent_id"),
                    },
                    "status": status,
                    "period": {"month_start": period},
                    "figures": {
                        "spend_mtd_usd": _money(row.get("spend_mtd_usd")),
                        "forecast_month_end_usd": _money(row.get("forecast_month_end_usd")),
                        "soft_limit_usd": _money(row.get("soft_limit_usd")),
                        "hard_limit_usd": _money(row.get("hard_limit_usd")),
                        "daily_burn_usd": _money(row.get("daily_burn_usd")),
                        "projected_soft_cross_date": _iso(row.get("projected_soft_cross_date")),
                        "projected_hard_cross_date": _iso(row.get("projected_hard_cross_date")),
                    },
                },
            )
        )
    return out


def _error_rate_candidates(reader: MartReader, today: date, thresholds: AlertingSettings) -> list[_Candidate]:
    """One alert per tenant, agent, model and day (yesterday or today) with enough calls and too many errors."""
    rows = reader.select(
        "SELECT sla_date, tenant_id, agent_id, model_name, calls, error_rate, fallback_rate, guardrail_rate "
        "FROM marts.fct_sla_daily WHERE sla_date >= $since AND calls >= $min_calls AND error_rate >= $rate "
        "ORDER BY sla_date, tenant_id, agent_id, model_name",
        Scope.platform(),
        {
            "since": today - timedelta(days=1),
            "min_calls": thresholds.error_rate_min_calls,
            "rate": thresholds.error_rate,
        },
    )
    out = []
    for row in rows.iter_rows(named=True):
        period = _iso(row["sla_date"])
        out.append(
            _Candidate(
                name=ERROR_RATE_HIGH,
                tenant_id=row["tenant_id"],
                dedupe_key=f"{ERROR_RATE_HIGH}:{row['tenant_id']}:{row['agent_id']}:{row['model_name']}:{period}",
                payload={
                    "rule": ERROR_RATE_HIGH,
                    "tenant_id": row["tenant_id"],
                    "scope": {"agent_id": row["agent_id"], "model_name": row["model_name"]},
                    "period": {"date": period},
                    "figures": {
                        "calls": int(row["calls"]),
                        "error_rate": _rate(row["error_rate"]),
                        "fallback_rate": _rate(row.get("fallback_rate")),
                        "guardrail_rate": _rate(row.get("guardrail_rate")),
                        "threshold": thresholds.error_rate,
                    },
                },
            )
        )
    return out


def _policy_candidates(reader: MartReader, today: date, thresholds: AlertingSettings) -> list[_Candidate]:
    """One alert per tenant and day (yesterday or today) with at least the threshold of denied decisions."""
    rows = reader.select(
        "SELECT tenant_id, decision_date, decision, action, count(*) AS decisions "
        "FROM marts.fct_policy_decisions WHERE decision_date >= $since AND action IN ('blocked', 'refused') "
        "GROUP BY tenant_id, decision_date, decision, action",
        Scope.platform(),
        {"since": today - timedelta(days=1)},
    )
    per_day: dict[tuple[str | None, str], dict[str, int]] = {}
    for row in rows.iter_rows(named=True):
        counts = per_day.setdefault((row["tenant_id"], _iso(row["decision_date"])), {})
        key = f"{row['decision']}/{row['action']}"
        counts[key] = counts.get(key, 0) + int(row["decisions"])
    out = []
    for (tenant_id, period), counts in sorted(per_day.items(), key=lambda item: (item[0][1], item[0][0] or "")):
        denials = sum(counts.values())
        if denials < thresholds.policy_denials_per_day:
            continue
        out.append(
            _Candidate(
                name=POLICY_VIOLATION,
                tenant_id=tenant_id,
                dedupe_key=f"{POLICY_VIOLATION}:{tenant_id}:{period}",
                payload={
                    "rule": POLICY_VIOLATION,
                    "tenant_id": tenant_id,
                    "scope": {"tenant_id": tenant_id},
                    "period": {"date": period},
                    "figures": {
                        "denials": denials,
                        "by_decision": dict(sorted(counts.items())),
                        "threshold": thresholds.policy_denials_per_day,
                    },
                },
            )
        )
    return out


# --- values ---------------------------------------------------------------------------------------


def _money(value: Any) -> str | None:
    # Money travels as a decimal string, as in every other event payload: a float would round it.
    return None if value is None else str(Decimal(str(value)))


def _rate(value: Any) -> float | None:
    return None if value is None else round(float(value), 4)


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date().isoformat()
    return value.isoformat() if isinstance(value, date) else str(value)
