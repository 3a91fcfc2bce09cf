"""agent runtime: run checkpoints, conversation steps, approval requests

Row-level security on the new tenant-owned tables, the same way 0005_tenant_rls does it.

Revision ID: 0006_agent_runtime
Revises: 0005_tenant_rls
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006_agent_runtime"
down_revision: str | Sequence[str] | None = "0005_tenant_rls"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
MONEY = sa.Numeric(precision=18, scale=8)
TABLES = ("agent_run_state", "agent_run_steps", "agent_approvals")
APP_ROLE = "agentprovision_app"
PLATFORM_ROLE = "agentprovision_platform"


def _enable_tenant_rls(table: str) -> None:
    # Same statements as 0005_tenant_rls.enable_tenant_rls; migrations do not import each other.
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    op.execute(f"""
        CREATE POLICY tenant_isolation ON {table} TO {APP_ROLE}
        USING (tenant_id = current_setting('app.tenant_id', true))
        WITH CHECK (tenant_id = current_setting('app.tenant_id', true))
    """)
    op.execute(f"CREATE POLICY platform_access ON {table} TO {PLATFORM_ROLE} USING (true) WITH CHECK (true)")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}, {PLATFORM_ROLE}")


def upgrade() -> None:
    op.create_table(
        "agent_run_state",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("task_id", sa.String(length=36), nullable=False),
        sa.Column("agent_id", sa.String(length=63), nullable=False),
        sa.Column("agent_type", sa.String(length=63), nullable=False),
        sa.Column("agent_version", sa.String(length=31), nullable=False),
        sa.Column("config_hash", sa.String(length=64), nullable=False),
        sa.Column("config_version", sa.Integer(), nullable=True),
        sa.Column("department_id", sa.String(length=63), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("steps", sa.Integer(), nullable=False),
        sa.Column("llm_calls", sa.Integer(), nullable=False),
        sa.Column("tool_calls", sa.Integer(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("cost_usd", MONEY, nullable=False),
        sa.Column("active_ms", sa.Integer(), nullable=False),
        sa.Column("repairs", sa.Integer(), nullable=False),
        sa.Column("outcomes", JSON, nullable=False),
        sa.Column("output", JSON, nullable=True),
        sa.Column("error_class", sa.String(length=16), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("claims", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_agent_run_state")),
        sa.UniqueConstraint("task_id", name=op.f("uq_agent_run_state_task_id")),
    )
    with op.batch_alter_table("agent_run_state", schema=None) as batch_op:
        batch_op.create_index("ix_agent_run_state_status_lease", ["status", "lease_expires_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_agent_run_state_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "agent_run_steps",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("tool_call_id", sa.String(length=100), nullable=True),
        sa.Column("message", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "seq", name=op.f("pk_agent_run_steps")),
        sa.UniqueConstraint("run_id", "tool_call_id", name="uq_agent_run_steps_run_tool_call"),
    )
    with op.batch_alter_table("agent_run_steps", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_agent_run_steps_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "agent_approvals",
        sa.Column("approval_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("task_id", sa.String(length=36), nullable=False),
        sa.Column("agent_id", sa.String(length=63), nullable=False),
        sa.Column("tool", sa.String(length=100), nullable=False),
        sa.Column("tool_call_id", sa.String(length=100), nullable=False),
        sa.Column("arguments", JSON, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=254), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("approval_id", name=op.f("pk_agent_approvals")),
        sa.UniqueConstraint("run_id", "tool_call_id", name="uq_agent_approvals_run_tool_call"),
    )
    with op.batch_alter_table("agent_approvals", schema=None) as batch_op:
        batch_op.create_index("ix_agent_approvals_tenant_status", ["tenant_id", "status"], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            _enable_tenant_rls(table)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"DROP POLICY IF EXISTS tenant_isolation ON {table}")
            op.execute(f"DROP POLICY IF EXISTS platform_access ON {table}")
    with op.batch_alter_table("agent_approvals", schema=None) as batch_op:
        batch_op.drop_index("ix_agent_approvals_tenant_status")
    op.drop_table("agent_approvals")
    with op.batch_alter_table("agent_run_steps", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agent_run_steps_tenant_id"))
    op.drop_table("agent_run_steps")
    with op.batch_alter_table("agent_run_state", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agent_run_state_tenant_id"))
        batch_op.drop_index("ix_agent_run_state_status_lease")
    op.drop_table("agent_run_state")
