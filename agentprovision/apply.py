"""Applying admin config to the ops store: diff, numbered versions, rollback and history.

A version is written only for a config that validated and that differs from the current one;
the version row, the tenant/agent/user tables and the audit record all commit in one
transaction, so a failure leaves the store exactly as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, inspect, select
from sqlalchemy.orm import Session

from agentprovision.config import AdminConfig, config_fingerprint
from agentprovision.store import models as m
from agentprovision.store.audit import append_audit
from agentprovision.store.db import session_factory, transaction


@dataclass
class EntityChange:
    kind: str
    entity_id: str
    change: str  # added | removed | changed
    fields: list[str] = field(default_factory=list)

    def render(self) -> str:
        sign = {"added": "+", "removed": "-", "changed": "~"}[self.change]
        detail = f" ({', '.join(self.fields)})" if self.fields else ""
        return f"{sign} {self.kind} {self.entity_id}{detail}"


@dataclass
class ApplyResult:
    version: int | None
    changes: list[EntityChange]

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def entities(content: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Flatten a config document into (kind, id) -> fields, the unit the diff speaks in."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    if not content:
        return out
    platform = content["platform"]
    out[("platform", "settings")] = platform["platform"]
    for user in platform["users"]:
        out[("user", user["id"])] = user
    for channel in platform["alert_channels"]:
        out[("alert_channel", channel["id"])] = channel
    for deployment in content["models"]["model_list"]:
        out[("model", deployment["model_info"]["id"])] = deployment
    for tenant_file in content["tenants"]:
        tenant = dict(tenant_file["tenant"])
        tenant_id = tenant["id"]
        for department in tenant.pop("departments"):
            out[("department", f"{tenant_id}/{department['id']}")] = department
        out[("tenant", tenant_id)] = tenant
        for user in tenant_file["users"]:
            out[("user", user["id"])] = user
        for agent in tenant_file["agents"]:
            out[("agent", agent["id"])] = agent
        for connector in tenant_file["connectors"]:
            out[("connector", f"{tenant_id}/{connector['id']}")] = connector
        for channel in tenant_file["alert_channels"]:
            out[("alert_channel", f"{tenant_id}/{channel['id']}")] = channel
    return out


def diff(old: dict[str, Any], new: dict[str, Any]) -> list[EntityChange]:
    before, after = entities(old), entities(new)
    changes = []
    for key in sorted(before.keys() | after.keys()):
        kind, entity_id = key
        if key not in before:
            changes.append(EntityChange(kind, entity_id, "added"))
        elif key not in after:
            changes.append(EntityChange(kind, entity_id, "removed"))
        elif before[key] != after[key]:
            fields = sorted(
                k for k in before[key].keys() | after[key].keys() if before[key].get(k) != after[key].get(k)
            )
            changes.append(EntityChange(kind, entity_id, "changed", fields))
    return changes


def current_version(session: Session) -> m.ConfigVersion | None:
    return session.scalar(select(m.ConfigVersion).order_by(m.ConfigVersion.version.desc()).limit(1))


def applied_platform_settings(engine: Engine) -> dict[str, Any]:
    """The `platform` settings block of the applied configuration as stored; {} before any apply.

    The stored content passed validation when it was applied: callers validate only the part they read.
    """
    with transaction(session_factory(engine)) as session:
        version = current_version(session)
        content = version.content if version is not None else {}
    return content.get("platform", {}).get("platform", {})


def plan(session: Session, config: AdminConfig) -> list[EntityChange]:
    latest = current_version(session)
    return diff(latest.content if latest else {}, config.model_dump(mode="json"))


def apply_config(
    session: Session,
    config: AdminConfig,
    *,
    actor: str,
    source: str,
    rollback_of: int | None = None,
    channel: str = "cli",
) -> ApplyResult:
    """Write `config` as the next version inside the caller's transaction; no-op when unchanged."""
    latest = current_version(session)
    content = config.model_dump(mode="json")
    changes = diff(latest.content if latest else {}, content)
    if not changes:
        return ApplyResult(None, [])
    version = (session.scalar(select(func.max(m.ConfigVersion.version))) or 0) + 1
    summary = _summarise(changes)
    session.add(
        m.ConfigVersion(
            version=version,
            applied_by=actor,
            fingerprint=config_fingerprint(config),
            source=source,
            rollback_of=rollback_of,
            summary=summary,
            content=content,
        )
    )
    _materialise(session, config, version)
    append_audit(
        session,
        actor=actor,
        action="config.rollback" if rollback_of is not None else "config.apply",
        target_type="config_version",
        target_id=str(version),
        details={
            "source": source,
            "rollback_of": rollback_of,
            "summary": summary,
            "changes": [c.render() for c in changes],
        },
        source=channel,
    )
    return ApplyResult(version, changes)


def load_version(session: Session, version: int) -> AdminConfig | None:
    row = session.get(m.ConfigVersion, version)
    return AdminConfig.model_validate(row.content) if row else None


def history(session: Session) -> list[m.ConfigVersion]:
    return list(session.scalars(select(m.ConfigVersion).order_by(m.ConfigVersion.version)))


def _summarise(changes: list[EntityChange]) -> str:
    counts: dict[str, int] = {}
    for change in changes:
        counts[change.change] = counts.get(change.change, 0) + 1
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))


def _materialise(session: Session, config: AdminConfig, version: int) -> None:
    """Make the entity tables say what this version says; entities no longer present are marked removed."""
    now = datetime.now(UTC)
    seen: dict[type, set[tuple]] = {
        cls: set() for cls in (m.Tenant, m.Department, m.User, m.Agent, m.Integration, m.ModelDeployment)
    }

    def upsert(cls: type, **values: Any) -> None:
        """Insert or update one entity as this version has it; its key comes from the mapped primary key."""
        values = {"status": "active", **values, "config_version": version}
        key = tuple(values[column.key] for column in inspect(cls).primary_key)
        seen[cls].add(key)
        row = session.get(cls, key)
        if row is None:
            session.add(cls(**values))
            session.flush()
        else:
            for name, value in values.items():
                setattr(row, name, value)

    for tenant_file in config.tenants:
        tenant = tenant_file.tenant
        upsert(
            m.Tenant,
            tenant_id=tenant.id,
            display_name=tenant.display_name,
            region=tenant.region,
            plan=tenant.plan,
            max_concurrent_runs=tenant.max_concurrent_runs,
            budget_hard_usd=tenant.budget.monthly_hard_usd,
            budget_soft_usd=tenant.budget.monthly_soft_usd,
            updated_at=now,
            removed_at=None,
        )
    for tenant_file in config.tenants:
        tenant_id = tenant_file.tenant.id
        for dept in tenant_file.tenant.departments:
            upsert(
                m.Department,
                tenant_id=tenant_id,
                department_id=dept.id,
                name=dept.name,
                cost_centre=dept.cost_centre,
                budget_hard_usd=dept.budget.monthly_hard_usd if dept.budget else None,
                budget_soft_usd=dept.budget.monthly_soft_usd if dept.budget else None,
            )
        for user in tenant_file.users:
            upsert(
                m.User,
                user_id=user.id,
                tenant_id=tenant_id,
                name=user.name,
                role=user.role,
                department_id=user.department,
            )
        for agent in tenant_file.agents:
            upsert(
                m.Agent,
                agent_id=agent.id,
                tenant_id=tenant_id,
                name=agent.name,
                agent_type=agent.type,
                version=agent.version,
                department_id=agent.department,
                owner=agent.owner,
                schedule=agent.schedule,
                status=agent.status,
                updated_at=now,
                spec=agent.model_dump(mode="json"),
            )
        for connector in tenant_file.connectors:
            upsert(
                m.Integration,
                tenant_id=tenant_id,
                integration_id=connector.id,
                kind=connector.kind,
                schedule=connector.schedule,
                spec=connector.model_dump(mode="json"),
            )
    for user in config.platform.users:
        upsert(
            m.User,
            user_id=user.id,
            tenant_id=None,
            name=user.name,
            role=user.role,
            department_id=None,
        )
    for deployment in config.models.model_list:
        info = deployment.model_info
        upsert(
            m.ModelDeployment,
            deployment_id=info.id,
            tenant_id=info.tenant,
            model_name=deployment.model_name,
            provider=deployment.provider,
            tier=info.tier,
            regions=list(info.regions),
            context_window=info.context_window,
            spec=deployment.model_dump(mode="json"),
        )

    # Anything not in this version stays for history but is no longer active.
    for cls, keys in seen.items():
        for row in session.scalars(select(cls)):
            if inspect(row).identity not in keys and row.status not in ("removed", "retired"):
                row.status = "retired" if cls is m.Agent else "removed"
                row.config_version = version
                if cls is m.Tenant:
                    row.removed_at = now
