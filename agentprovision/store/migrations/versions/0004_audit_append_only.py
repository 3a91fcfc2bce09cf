"""Audit records carry source and outcome, and are append-only: the database refuses UPDATE and DELETE.

Revision ID: 0004_audit_append_only
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_audit_append_only"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REFUSAL = "audit records are append-only"


def upgrade() -> None:
    with op.batch_alter_table("audit_records") as batch:
        batch.add_column(sa.Column("source", sa.String(length=32), nullable=False, server_default="api"))
        batch.add_column(sa.Column("outcome", sa.String(length=16), nullable=False, server_default="success"))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"""
            CREATE FUNCTION audit_records_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '{REFUSAL}' USING ERRCODE = 'insufficient_privilege';
            END;
            $$
        """)
        op.execute("""
            CREATE TRIGGER audit_records_append_only
            BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_records
            FOR EACH STATEMENT EXECUTE FUNCTION audit_records_refuse_change()
        """)
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(f"""
                CREATE TRIGGER audit_records_no_{event.lower()}
                BEFORE {event} ON audit_records
                BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END
            """)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_records_append_only ON audit_records")
        op.execute("DROP FUNCTION audit_records_refuse_change()")
    else:
        for event in ("update", "delete"):
            op.execute(f"DROP TRIGGER audit_records_no_{event}")
    with op.batch_alter_table("audit_records") as batch:
        batch.drop_column("outcome")
        batch.drop_column("source")
