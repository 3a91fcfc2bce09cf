"""Retention: each tenant's data is kept only as long as its policy says (GDPR Art. 5(1)(e)).

Per tenant, from `policies.retention` in the applied config (kinds left unset follow
`policies.retention_days`):
- prompt and output text in usage events is stripped after `prompts_days` (the event stays, so
  usage and cost still add up);
- usage events are deleted after `usage_days` (13 months by default);
- every other event after `events_days`;
- the input of a finished task is emptied after `task_inputs_days` (the task row stays for its run).
The warehouse's raw events get the same treatment when a warehouse file is given, and the published
copy is refreshed; marts are rebuilt from raw by the next dbt build.

Audit records are never pruned: the chain cannot lose records without failing verification, and an
auditor needs the trail for as long as the tenant exists. Each run is itself an audit record per
tenant (`retention.apply`), which is what the compliance evidence reports.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
from pydantic import ValidationError
from sqlalchemy import Engine, Text, cast, delete, func, select, update

from agentprovision.apply import load_version
from agentprovision.config.schema import AdminConfig, TenantPolicies
from agentprovision.settings import Settings
from agentprovision.store import models as m
from agentprovision.store.audit import append_audit
from agentprovision.store.db import session_factory, transaction
from agentprovision.warehouse import RAW_SCHEMA, publish

ACTION = "retention.apply"
SYSTEM_ACTOR = "system:retention"
PROMPT_KEYS = ("prompt", "completion", "output")  # text a model call may have stored in its payload
UNFINISHED = ("queued", "running", "needs_approval")  # a task still in flight keeps its input


@dataclass(frozen=True)
class Cutoffs:
    """Anything that happened before these instants has outlived its policy."""

    prompts: datetime
    usage: datetime
    events: datetime
    task_inputs: datetime

    @classmethod
    def of(cls, policies: TenantPolicies, now: datetime) -> Cutoffs:
        days = policies.retention
        default = policies.retention_days
        return cls(
            prompts=now - timedelta(days=days.prompts_days),
            usage=now - timedelta(days=days.usage_days),
            events=now - timedelta(days=days.events_days or default),
            task_inputs=now - timedelta(days=days.task_inputs_days or default),
        )


@dataclass
class TenantRetention:
    tenant_id: str
    policy_days: dict[str, int]
    prompts_stripped: int = 0
    usage_events_deleted: int = 0
    other_events_deleted: int = 0
    task_inputs_emptied: int = 0
    warehouse_prompts_stripped: int = 0
    warehouse_events_deleted: int = 0
    warehouse_error: str | None = None  # the warehouse could not be pruned this time (e.g. a run held it)

    @property
    def total(self) -> int:
        return sum(v for k, v in asdict(self).items() if isinstance(v, int))


@dataclass
class RetentionReport:
    applied_at: datetime
    tenants: list[TenantRetention] = field(default_factory=list)

    def render(self) -> str:
        lines = [f"retention applied at {self.applied_at.isoformat()}"]
        for t in self.tenants:
            lines.append(
                f"  {t.tenant_id:<20} prompts stripped {t.prompts_stripped}, usage events deleted "
                f"{t.usage_events_deleted}, other events deleted {t.other_events_deleted}, task inputs emptied "
                f"{t.task_inputs_emptied}; warehouse: {t.warehouse_prompts_stripped} stripped, "
                f"{t.warehouse_events_deleted} deleted"
                + (f" (warehouse not pruned: {t.warehouse_error})" if t.warehouse_error else "")
            )
        return "\n".join(lines)


def apply_retention(
    config: AdminConfig,
    engine: Engine,
    now: datetime | None = None,
    warehouse: Settings | None = None,
    *,
    tenants: list[str] | None = None,
    actor: str = SYSTEM_ACTOR,
    source: str = "dagster",
) -> RetentionReport:
    """Enforce every tenant's retention policy (or only `tenants`'); one transaction and one audit record per tenant."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    report = RetentionReport(applied_at=now)
    factory = session_factory(engine)
    for tenant_file in config.tenants:
        tenant = tenant_file.tenant
        if tenants is not None and tenant.id not in tenants:
            continue
        cutoffs = Cutoffs.of(tenant.policies, now)
        result = TenantRetention(tenant.id, _policy_days(tenant.policies))
        if warehouse is not None and warehouse.duckdb_path.exists():
            try:
                _warehouse(warehouse.duckdb_path, tenant.id, cutoffs, result)
            except duckdb.Error as exc:  # recorded, and the next run catches up: the rules are idempotent
                result.warehouse_error = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        with transaction(factory) as session:
            # Deletions first, so an event about to go is not counted as stripped too.
            result.usage_events_deleted = _delete_events(session, tenant.id, cutoffs.usage, usage=True)
            result.other_events_deleted = _delete_events(session, tenant.id, cutoffs.events, usage=False)
            result.prompts_stripped = _strip_prompts(session, tenant.id, cutoffs.prompts)
            result.task_inputs_emptied = _empty_task_inputs(session, tenant.id, cutoffs.task_inputs)
            append_audit(
                session,
                actor=actor,
                action=ACTION,
                target_type="tenant",
                target_id=tenant.id,
                tenant_id=tenant.id,
                source=source,
                details={
                    "applied_at": now.isoformat(),
                    "policy_days": result.policy_days,
                    "cutoffs": {k: v.isoformat() for k, v in asdict(cutoffs).items()},
                    "counts": {k: v for k, v in asdict(result).items() if isinstance(v, int)},
                    "warehouse_error": result.warehouse_error,
                },
            )
        report.tenants.append(result)
    pruned = any(t.warehouse_error is None for t in report.tenants)
    if pruned and warehouse is not None and warehouse.duckdb_path.exists() and warehouse.published_duckdb_path.exists():
        try:
            publish(warehouse.duckdb_path, warehouse.published_duckdb_path)
        except duckdb.Error as exc:
            for t in report.tenants:
                t.warehouse_error = t.warehouse_error or f"publishing failed: {type(exc).__name__}"
    return report


def applied_config(engine: Engine) -> AdminConfig | None:
    """The config the platform runs with (the newest applied version): its policies are the ones enforced."""
    with transaction(session_factory(engine)) as session:
        newest = session.scalar(select(func.max(m.ConfigVersion.version)))
        try:
            return load_version(session, newest) if newest is not None else None
        except ValidationError as exc:
            raise RetentionError(
                f"config version {newest} in the ops store does not validate ({exc.error_count()} problems, first: "
                f"{exc.errors()[0]['msg']}); apply a valid config before enforcing retention"
            ) from None


class RetentionError(Exception):
    """Retention cannot run as asked; the message says why."""


def _policy_days(policies: TenantPolicies) -> dict[str, int]:
    days = policies.retention
    return {
        "prompts": days.prompts_days,
        "usage": days.usage_days,
        "events": days.events_days or policies.retention_days,
        "task_inputs": days.task_inputs_days or policies.retention_days,
    }


def _strip_prompts(session: Any, tenant_id: str, cutoff: datetime) -> int:
    candidates = session.execute(
        select(m.Event.seq, m.Event.payload).where(
            m.Event.tenant_id == tenant_id,
            m.Event.kind == "usage",
            m.Event.occurred_at < cutoff,
            cast(m.Event.payload, Text).like('%"prompt"%')
            | cast(m.Event.payload, Text).like('%"completion"%')
            | cast(m.Event.payload, Text).like('%"output"%'),
        )
    ).all()
    stripped = 0
    for seq, payload in candidates:
        kept = {k: v for k, v in payload.items() if k not in PROMPT_KEYS}
        if kept != payload:
            session.execute(update(m.Event).where(m.Event.seq == seq).values(payload=kept))
            stripped += 1
    return stripped


def _delete_events(session: Any, tenant_id: str, cutoff: datetime, *, usage: bool) -> int:
    kind = m.Event.kind == "usage" if usage else m.Event.kind != "usage"
    result = session.execute(
        delete(m.Event)
        .where(m.Event.tenant_id == tenant_id, kind, m.Event.occurred_at < cutoff)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0


def _empty_task_inputs(session: Any, tenant_id: str, cutoff: datetime) -> int:
    tasks = session.scalars(
        select(m.Task).where(
            m.Task.tenant_id == tenant_id,
            m.Task.status.not_in(UNFINISHED),
            func.coalesce(m.Task.finished_at, m.Task.created_at) < cutoff,
        )
    ).all()
    emptied = 0
    for task in tasks:
        if task.input:
            task.input = {}
            emptied += 1
    session.flush()
    return emptied


def _warehouse(path: Path, tenant_id: str, cutoffs: Cutoffs, result: TenantRetention) -> None:
    """The raw events copy in DuckDB: same rules, so an expired prompt does not live on in the warehouse."""
    with duckdb.connect(str(path)) as con:
        exists = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = 'events'",
            [RAW_SCHEMA],
        ).fetchone()[0]
        if not exists:
            return
        table = f"{RAW_SCHEMA}.events"
        has_prompt = " OR ".join(f"json_exists(payload, '$.{key}')" for key in PROMPT_KEYS)
        removal = "{" + ", ".join(f'"{key}": null' for key in PROMPT_KEYS) + "}"
        con.execute("BEGIN TRANSACTION")
        deleted = 0
        for condition, cutoff in (("kind = 'usage'", cutoffs.usage), ("kind <> 'usage'", cutoffs.events)):
            where = f"tenant_id = $t AND {condition} AND occurred_at < $c"
            params = {"t": tenant_id, "c": cutoff}
            deleted += con.execute(f"SELECT count(*) FROM {table} WHERE {where}", params).fetchone()[0]
            con.execute(f"DELETE FROM {table} WHERE {where}", params)
        result.warehouse_events_deleted = deleted
        where = f"tenant_id = $t AND kind = 'usage' AND occurred_at < $c AND ({has_prompt})"
        params = {"t": tenant_id, "c": cutoffs.prompts}
        result.warehouse_prompts_stripped = con.execute(
            f"SELECT count(*) FROM {table} WHERE {where}", params
        ).fetchone()[0]
        con.execute(
            f"UPDATE {table} SET payload = json_merge_patch(payload, '{removal}')::VARCHAR WHERE {where}", params
        )
        con.execute("COMMIT")
