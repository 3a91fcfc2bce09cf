"""Ops-store tables of the integration hub: sync state and history, synced records, the knowledge
base, trigger firings and outbound webhook deliveries.

Every tenant-owned row carries `tenant_id` and every lookup in `connectors/` filters on it, so one
tenant's integration can never read or overwrite another's rows even when integration ids match.
Webhook deliveries may belong to the platform itself (alert channels in platform.yaml), in which
case `tenant_id` is NULL, as elsewhere in the store.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from agentprovision.store.models import Base, SeqId, utcnow


class IntegrationSyncState(Base):
    """One row per integration: who holds the sync lease and how the last sync ended.

    The lease fences concurrent syncs of the same integration: every batch commit re-checks that
    the lease is still ours, so a sync that lost it (expired, taken over) cannot commit anything.
    """

    __tablename__ = "integration_sync_state"

    tenant_id: Mapped[str] = mapped_column(String(63), ForeignKey("tenants.tenant_id"), primary_key=True)
    integration_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    lease_sync_id: Mapped[str | None] = mapped_column(String(36))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_sync_id: Mapped[str | None] = mapped_column(String(36))
    last_status: Mapped[str | None] = mapped_column(String(16))
    last_success_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SyncCursor(Base):
    """The last committed cursor of one stream; it only moves in the same transaction as its records."""

    __tablename__ = "sync_cursors"

    tenant_id: Mapped[str] = mapped_column(String(63), ForeignKey("tenants.tenant_id"), primary_key=True)
    integration_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    stream: Mapped[str] = mapped_column(String(100), primary_key=True)
    cursor: Mapped[dict[str, Any] | None]
    sync_id: Mapped[str] = mapped_column(String(36))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SyncRun(Base):
    """The history of syncs: one row per attempt, with counts and a redacted error when it failed."""

    __tablename__ = "sync_runs"
    __table_args__ = (Index("ix_sync_runs_tenant_integration", "tenant_id", "integration_id", "started_at"),)

    sync_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(63), ForeignKey("tenants.tenant_id"))
    integration_id: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(63))
    status: Mapped[str] = mapped_column(String(16))  # running | succeeded | failed
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    batches_committed: Mapped[int] = mapped_column(Integer, default=0)
    records_read: Mapped[int] = mapped_column(Integer, default=0)
    records_inserted: Mapped[int] = mapped_column(Integer, default=0)
    records_updated: Mapped[int] = mapped_column(Integer, default=0)
    tasks_created: Mapped[int] = mapped_column(Integer, default=0)
    streams: Mapped[dict[str, Any]]
    schema_changes: Mapped[list[Any]]
    error_class: Mapped[str | None] = mapped_column(String(100))
    error: Mapped[str | None] = mapped_column(Text)


class SyncRecord(Base):
    """The latest version of every record a sync delivered, keyed by the stream's primary key."""

    __tablename__ = "sync_records"

    tenant_id: Mapped[str] = mapped_column(String(63), ForeignKey("tenants.tenant_id"), primary_key=True)
    integration_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    stream: Mapped[str] = mapped_column(String(100), primary_key=True)
    record_key: Mapped[str] = mapped_column(String(500), primary_key=True)
    data: Mapped[dict[str, Any]]
    content_hash: Mapped[str] = mapped_column(String(64))
    first_sync_id: Mapped[str] = mapped_column(String(36))
    last_sync_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class KbDocument(Base):
    """A document of a tenant's knowledge base, written by documentation integrations; kb_search reads it."""

    __tablename__ = "kb_documents"

    tenant_id: Mapped[str] = mapped_column(String(63), ForeignKey("tenants.tenant_id"), primary_key=True)
    integration_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    doc_id: Mapped[str] = mapped_column(String(500), primary_key=True)
    title: Mapped[str] = mapped_column(String(500))
    source: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TriggerFiring(Base):
    """A trigger rule fired for one record; the unique key is what makes triggers idempotent."""

    __tablename__ = "trigger_firings"
    __table_args__ = (
        UniqueConstraint(
            "tenant_id", "agent_id", "integration_id", "stream", "record_key", name="uq_trigger_firings_record"
        ),
    )

    firing_id: Mapped[int] = mapped_column(SeqId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(63), ForeignKey("tenants.tenant_id"))
    agent_id: Mapped[str] = mapped_column(String(63))
    integration_id: Mapped[str] = mapped_column(String(63))
    stream: Mapped[str] = mapped_column(String(100))
    record_key: Mapped[str] = mapped_column(String(500))
    task_id: Mapped[str] = mapped_column(String(36))
    sync_id: Mapped[str] = mapped_column(String(36))
    fired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WebhookDelivery(Base):
    """One outbound webhook message and how its delivery went.

    Target URL and signing secret are stored as references only (webhook URLs often embed tokens);
    they are resolved again at each attempt, including on replay.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_status", "status", "created_at"),)

    delivery_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str | None] = mapped_column(String(63), index=True)
    channel_id: Mapped[str] = mapped_column(String(63))
    event: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]]
    target_ref: Mapped[str] = mapped_column(String(300))
    signing_secret_ref: Mapped[str | None] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | delivered | dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    replay_of: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebhookDeadLetter(Base):
    """A delivery that failed its last attempt; kept until an operator replays it from the CLI."""

    __tablename__ = "webhook_dead_letters"

    delivery_id: Mapped[str] = mapped_column(String(36), ForeignKey("webhook_deliveries.delivery_id"), primary_key=True)
    tenant_id: Mapped[str | None] = mapped_column(String(63), index=True)
    channel_id: Mapped[str] = mapped_column(String(63))
    failed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    replayed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    replayed_by: Mapped[str | None] = mapped_column(String(254))
    replay_delivery_id: Mapped[str | None] = mapped_column(String(36))
