"""Tables of the ops store: the operational record of config, tenants, work, events and audit.

Every tenant-owned table carries `tenant_id`, which is what row-level security (PostgreSQL) and
the scoped repository (SQLite) key on. Rows that belong to the platform itself have a NULL
tenant_id. Entities removed from config are marked removed rather than deleted, so history and
the warehouse's dimensions stay readable.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names so Alembic migrations read the same on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Json = JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a real bigint.
SeqId = BigInteger().with_variant(Integer(), "sqlite")
Money = Numeric(18, 8)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: Json, list[Any]: Json}


class ConfigVersion(Base):
    """One applied admin config, kept whole so any version can be diffed or rolled back to."""

    __tablename__ = "config_versions"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    applied_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    applied_by: Mapped[str] = mapped_column(String(200))
    fingerprint: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(Text)
    rollback_of: Mapped[int | None] = mapped_column(Integer)
    summary: Mapped[str] = mapped_column(Text)
    content: Mapped[dict[str, Any]]


class Tenant(Base):
    __tablename__ = "tenants"

    tenant_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    region: Mapped[str] = mapped_column(String(31))
    plan: Mapped[str] = mapped_column(String(31))
    max_concurrent_runs: Mapped[int] = mapped_column(Integer)
    budget_hard_usd: Mapped[Decimal] = mapped_column(Money)
    budget_soft_usd: Mapped[Decimal | None] = mapped_column(Money)
    status: Mapped[str] = mapped_column(String(16), default="active")
    config_version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    removed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Department(Base):
    __tablename__ = "departments"

    tenant_id: Mapped[str] = mapped_column(String(63), ForeignKey("tenants.tenant_id"), primary_key=True)
    department_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    cost_centre: Mapped[str] = mapped_column(String(63))
    budget_hard_usd: Mapped[Decimal | None] = mapped_column(Money)
    budget_soft_usd: Mapped[Decimal | None] = mapped_column(Money)
    status: Mapped[str] = mapped_column(String(16), default="active")
    config_version: Mapped[int] = mapped_column(Integer)


class User(Base):
    __tablename__ = "users"

    user_id: Mapped[str] = mapped_column(String(254), primary_key=True)
    tenant_id: Mapped[str | None] = mapped_column(String(63), ForeignKey("tenants.tenant_id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(31))
    department_id: Mapped[str | None] = mapped_column(String(63))
    status: Mapped[str] = mapped_column(String(16), default="active")
    config_version: Mapped[int] = mapped_column(Integer)


class ModelDeployment(Base):
    __tablename__ = "model_deployments"

    deployment_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    # Set only for a tenant's own fine-tuned model; NULL means the shared catalogue.
    tenant_id: Mapped[str | None] = mapped_column(String(63), ForeignKey("tenants.tenant_id"), index=True)
    model_name: Mapped[str] = mapped_column(String(200))
    provider: Mapped[str] = mapped_column(String(63))
    tier: Mapped[str] = mapped_column(String(16))
    regions: Mapped[list[Any]]
    context_window: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="active")
    config_version: Mapped[int] = mapped_column(Integer)
    spec: Mapped[dict[str, Any]]


class Agent(Base):
    __tablename__ = "agents"

    agent_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(63), ForeignKey("tenants.tenant_id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    agent_type: Mapped[str] = mapped_column(String(63))
    version: Mapped[str] = mapped_column(String(31))
    department_id: Mapped[str] = mapped_column(String(63))
    owner: Mapped[str] = mapped_column(String(254))
    schedule: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16))
    config_version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    spec: Mapped[dict[str, Any]]


class Integration(Base):
    """A configured connector instance for a tenant; cursors and sync history hang off it."""

    __tablename__ = "integrations"

    tenant_id: Mapped[str] = mapped_column(String(63), ForeignKey("tenants.tenant_id"), primary_key=True)
    integration_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    kind: Mapped[str] = mapped_column(String(63))
    schedule: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), default="active")
    config_version: Mapped[int] = mapped_column(Integer)
    spec: Mapped[dict[str, Any]]


class Credential(Base):
    """An encrypted secret owned by a tenant; only ciphertext is ever stored."""

    __tablename__ = "credentials"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_credentials_tenant_name"),)

    credential_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(63), ForeignKey("tenants.tenant_id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    rotated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Task(Base):
    """A unit of agent work waiting for, or done by, a run."""

    __tablename__ = "tasks"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key", name="uq_tasks_tenant_idempotency"),
        Index("ix_tasks_status_tenant", "status", "tenant_id"),
    )

    task_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(63), ForeignKey("tenants.tenant_id"))
    agent_id: Mapped[str] = mapped_column(String(63), ForeignKey("agents.agent_id"))
    source: Mapped[str] = mapped_column(String(16))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    input: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    run_id: Mapped[str | None] = mapped_column(String(36))
    outcome: Mapped[str | None] = mapped_column(Text)


class Run(Base):
    """One execution of an agent on a task."""

    __tablename__ = "runs"

    run_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(63), ForeignKey("tenants.tenant_id"), index=True)
    agent_id: Mapped[str] = mapped_column(String(63), ForeignKey("agents.agent_id"))
    task_id: Mapped[str] = mapped_column(String(36), ForeignKey("tasks.task_id"))
    agent_version: Mapped[str] = mapped_column(String(31))
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    steps: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    error_class: Mapped[str | None] = mapped_column(String(100))
    orchestrator_run_id: Mapped[str | None] = mapped_column(String(64))


class Event(Base):
    """Append-only facts (usage, tool, policy, run, alert) that the warehouse ingests by `seq`."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_tenant_kind", "tenant_id", "kind"),)

    seq: Mapped[int] = mapped_column(SeqId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    tenant_id: Mapped[str | None] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(100))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    agent_id: Mapped[str | None] = mapped_column(String(63))
    run_id: Mapped[str | None] = mapped_column(String(36))
    payload: Mapped[dict[str, Any]]


class AuditRecord(Base):
    """Who did what, chained by hash so a quiet edit or deletion breaks verification."""

    __tablename__ = "audit_records"
    __table_args__ = (Index("ix_audit_records_tenant_time", "tenant_id", "occurred_at"),)

    seq: Mapped[int] = mapped_column(SeqId, primary_key=True, autoincrement=True)
    record_id: Mapped[str] = mapped_column(String(36), unique=True)
    tenant_id: Mapped[str | None] = mapped_column(String(63))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    actor: Mapped[str] = mapped_column(String(254))
    action: Mapped[str] = mapped_column(String(100))
    target_type: Mapped[str] = mapped_column(String(63))
    target_id: Mapped[str] = mapped_column(String(254))
    details: Mapped[dict[str, Any]]
    # ISO 27001 A.8.15: where the action came from (cli, dagster, dashboard, api) and how it ended.
    source: Mapped[str] = mapped_column(String(32), default="api")
    outcome: Mapped[str] = mapped_column(String(16), default="success")
    prev_hash: Mapped[str] = mapped_column(String(64))
    record_hash: Mapped[str] = mapped_column(String(64), unique=True)
