"""Merge the migration branches; row-level security on every tenant-owned table, and the app roles.

PostgreSQL only; SQLite relies on governance.tenancy.tenant_session. Tables added later must call
`enable_tenant_rls` in their own migration; tests/test_tenancy.py checks the catalog for any miss.

Revision ID: 0005_tenant_rls
Revises: 0002_gateway, 0003_connectors, 0004_audit_append_only
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005_tenant_rls"
# Runs after every branch, so the catalog scan below sees every tenant-owned table.
down_revision: str | Sequence[str] | None = ("0002_gateway", "0003_connectors", "0004_audit_append_only")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP_ROLE = "agentprovision_app"  # tenant-scoped: sees one tenant, set per transaction
PLATFORM_ROLE = "agentprovision_platform"  # ingestion and config apply: every tenant, still no BYPASSRLS
APPEND_ONLY = {"audit_records"}


def _ensure_role(name: str) -> None:
    op.execute(f"""
        DO $$ BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{name}') THEN
                CREATE ROLE {name} NOLOGIN NOBYPASSRLS;
            END IF;
        END $$
    """)


def enable_tenant_rls(table: str) -> None:
    """Fail-closed isolation for one table: no tenant set means no rows, for reads and writes."""
    privileges = "SELECT, INSERT" if table in APPEND_ONLY else "SELECT, INSERT, UPDATE, DELETE"
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    op.execute(f"""
        CREATE POLICY tenant_isolation ON {table} TO {APP_ROLE}
        USING (tenant_id = current_setting('app.tenant_id', true))
        WITH CHECK (tenant_id = current_setting('app.tenant_id', true))
    """)
    op.execute(f"CREATE POLICY platform_access ON {table} TO {PLATFORM_ROLE} USING (true) WITH CHECK (true)")
    op.execute(f"GRANT {privileges} ON {table} TO {APP_ROLE}, {PLATFORM_ROLE}")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _ensure_role(APP_ROLE)
    _ensure_role(PLATFORM_ROLE)
    bind = op.get_bind()
    tenant_tables = [
        row[0]
        for row in bind.exec_driver_sql("""
        SELECT c.table_name FROM information_schema.columns c
        JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
        WHERE c.table_schema = current_schema() AND c.column_name = 'tenant_id' AND t.table_type = 'BASE TABLE'
        ORDER BY c.table_name
    """)
    ]
    for table in tenant_tables:
        enable_tenant_rls(table)
    # Platform-owned tables: readable by the app, written only by the platform role.
    op.execute(f"GRANT SELECT ON config_versions TO {APP_ROLE}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE ON config_versions TO {PLATFORM_ROLE}")
    op.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE}, {PLATFORM_ROLE}")
    op.execute(f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}, {PLATFORM_ROLE}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    bind = op.get_bind()
    for (table,) in bind.exec_driver_sql(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND rowsecurity"
    ):
        op.execute(f"DROP POLICY IF EXISTS tenant_isolation ON {table}")
        op.execute(f"DROP POLICY IF EXISTS platform_access ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
