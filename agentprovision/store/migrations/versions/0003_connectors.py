"""connectors: sync state and history, records, knowledge base, trigger firings, webhook deliveries

Branches off 0001 beside the gateway's and governance's revisions; 0005_tenant_rls merges the
branches and enables row-level security on these tables with every other tenant-owned one.

Revision ID: 0003_connectors
Revises: 0001
Create Date: 2026-11-24 02:55:04.814215
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003_connectors"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_deliveries",
        sa.Column("delivery_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=True),
        sa.Column("channel_id", sa.String(length=63), nullable=False),
        sa.Column("event", sa.String(length=100), nullable=False),
        sa.Column(
            "payload", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column("target_ref", sa.String(length=300), nullable=False),
        sa.Column("signing_secret_ref", sa.String(length=300), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("replay_of", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("delivery_id", name=op.f("pk_webhook_deliveries")),
    )
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_webhook_deliveries_status", ["status", "created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_webhook_deliveries_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "integration_sync_state",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("integration_id", sa.String(length=63), nullable=False),
        sa.Column("lease_sync_id", sa.String(length=36), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_sync_id", sa.String(length=36), nullable=True),
        sa.Column("last_status", sa.String(length=16), nullable=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.tenant_id"], name=op.f("fk_integration_sync_state_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "integration_id", name=op.f("pk_integration_sync_state")),
    )
    op.create_table(
        "kb_documents",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("integration_id", sa.String(length=63), nullable=False),
        sa.Column("doc_id", sa.String(length=500), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.tenant_id"], name=op.f("fk_kb_documents_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("tenant_id", "integration_id", "doc_id", name=op.f("pk_kb_documents")),
    )
    op.create_table(
        "sync_cursors",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("integration_id", sa.String(length=63), nullable=False),
        sa.Column("stream", sa.String(length=100), nullable=False),
        sa.Column(
            "cursor", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=True
        ),
        sa.Column("sync_id", sa.String(length=36), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.tenant_id"], name=op.f("fk_sync_cursors_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("tenant_id", "integration_id", "stream", name=op.f("pk_sync_cursors")),
    )
    op.create_table(
        "sync_records",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("integration_id", sa.String(length=63), nullable=False),
        sa.Column("stream", sa.String(length=100), nullable=False),
        sa.Column("record_key", sa.String(length=500), nullable=False),
        sa.Column(
            "data", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("first_sync_id", sa.String(length=36), nullable=False),
        sa.Column("last_sync_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.tenant_id"], name=op.f("fk_sync_records_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("tenant_id", "integration_id", "stream", "record_key", name=op.f("pk_sync_records")),
    )
    op.create_table(
        "sync_runs",
        sa.Column("sync_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("integration_id", sa.String(length=63), nullable=False),
        sa.Column("kind", sa.String(length=63), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("batches_committed", sa.Integer(), nullable=False),
        sa.Column("records_read", sa.Integer(), nullable=False),
        sa.Column("records_inserted", sa.Integer(), nullable=False),
        sa.Column("records_updated", sa.Integer(), nullable=False),
        sa.Column("tasks_created", sa.Integer(), nullable=False),
        sa.Column(
            "streams", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column(
            "schema_changes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("error_class", sa.String(length=100), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.tenant_id"], name=op.f("fk_sync_runs_tenant_id_tenants")),
        sa.PrimaryKeyConstraint("sync_id", name=op.f("pk_sync_runs")),
    )
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_sync_runs_tenant_integration", ["tenant_id", "integration_id", "started_at"], unique=False
        )

    op.create_table(
        "trigger_firings",
        sa.Column(
            "firing_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("agent_id", sa.String(length=63), nullable=False),
        sa.Column("integration_id", sa.String(length=63), nullable=False),
        sa.Column("stream", sa.String(length=100), nullable=False),
        sa.Column("record_key", sa.String(length=500), nullable=False),
        sa.Column("task_id", sa.String(length=36), nullable=False),
        sa.Column("sync_id", sa.String(length=36), nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.tenant_id"], name=op.f("fk_trigger_firings_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("firing_id", name=op.f("pk_trigger_firings")),
        sa.UniqueConstraint(
            "tenant_id", "agent_id", "integration_id", "stream", "record_key", name="uq_trigger_firings_record"
        ),
    )
    op.create_table(
        "webhook_dead_letters",
        sa.Column("delivery_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=True),
        sa.Column("channel_id", sa.String(length=63), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("replayed_by", sa.String(length=254), nullable=True),
        sa.Column("replay_delivery_id", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["webhook_deliveries.delivery_id"],
            name=op.f("fk_webhook_dead_letters_delivery_id_webhook_deliveries"),
        ),
        sa.PrimaryKeyConstraint("delivery_id", name=op.f("pk_webhook_dead_letters")),
    )
    with op.batch_alter_table("webhook_dead_letters", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_webhook_dead_letters_tenant_id"), ["tenant_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("webhook_dead_letters", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_dead_letters_tenant_id"))

    op.drop_table("webhook_dead_letters")
    op.drop_table("trigger_firings")
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_sync_runs_tenant_integration")

    op.drop_table("sync_runs")
    op.drop_table("sync_records")
    op.drop_table("sync_cursors")
    op.drop_table("kb_documents")
    op.drop_table("integration_sync_state")
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_deliveries_tenant_id"))
        batch_op.drop_index("ix_webhook_deliveries_status")

    op.drop_table("webhook_deliveries")
