"""Privacy: audit seals (format-2 record hashes) and the one narrow way to redact audit records.

- `audit_seals`: per audit record, a random salt and the HMAC of its personal fields (see
  agentprovision/store/audit.py). Append-only like the records, except that an erasure may destroy
  the salt and mark the seal erased.
- audit_records stay append-only, with one exception: the personal fields (actor, target_id,
  details) of a record whose seal is marked erased. On PostgreSQL the application roles still have
  no UPDATE privilege; they call `audit_erase(tombstone, changes)`, a SECURITY DEFINER function
  owned by the migration owner that only redacts records named by an erasure record
  (`privacy.erase`) of the same chain, written earlier in the same transaction.

Revision ID: 0007_privacy
Revises: 0005_tenant_rls
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_privacy"
down_revision: str | Sequence[str] | None = "0005_tenant_rls"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP_ROLE = "agentprovision_app"
PLATFORM_ROLE = "agentprovision_platform"
REFUSAL = "audit records are append-only"
ERASURE_FLAG = "agentprovision.audit_erasure"  # set only inside audit_erase, for its own transaction

# Everything but the personal fields must stay as it was.
FIXED_COLUMNS = (
    "seq",
    "record_id",
    "tenant_id",
    "occurred_at",
    "action",
    "target_type",
    "source",
    "outcome",
    "prev_hash",
    "record_hash",
)


def upgrade() -> None:
    op.create_table(
        "audit_seals",
        sa.Column("record_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=True),
        sa.Column("hash_version", sa.Integer(), nullable=False),
        sa.Column("salt", sa.String(length=64), nullable=True),
        sa.Column("digest", sa.String(length=64), nullable=True),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("erasure_record_id", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("record_id", name=op.f("pk_audit_seals")),
    )
    op.create_index(op.f("ix_audit_seals_tenant_id"), "audit_seals", ["tenant_id"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        _postgresql_upgrade()
    else:
        _sqlite_upgrade()


def _sqlite_upgrade() -> None:
    # SQLite has no roles: whoever can write the file can drop triggers. These keep the code honest.
    changed = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in FIXED_COLUMNS)
    op.execute("DROP TRIGGER audit_records_no_update")
    op.execute(f"""
        CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records
        WHEN {changed} OR NOT EXISTS (
            SELECT 1 FROM audit_seals s WHERE s.record_id = OLD.record_id AND s.erased_at IS NOT NULL)
        BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END
    """)
    op.execute(f"""
        CREATE TRIGGER audit_seals_no_delete BEFORE DELETE ON audit_seals
        BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END
    """)
    op.execute(f"""
        CREATE TRIGGER audit_seals_no_update BEFORE UPDATE ON audit_seals
        WHEN NEW.record_id IS NOT OLD.record_id OR NEW.tenant_id IS NOT OLD.tenant_id
          OR NEW.hash_version IS NOT OLD.hash_version OR NEW.digest IS NOT OLD.digest
          OR NEW.salt IS NOT NULL OR NEW.erased_at IS NULL
        BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END
    """)


def _postgresql_upgrade() -> None:
    schema = op.get_bind().exec_driver_sql("SELECT current_schema()").scalar_one()
    changed = " OR ".join(f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in FIXED_COLUMNS)
    # The statement trigger of 0004 now lets an UPDATE through only inside audit_erase.
    op.execute(f"""
        CREATE OR REPLACE FUNCTION audit_records_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'UPDATE' AND current_setting('{ERASURE_FLAG}', true) = 'on' THEN
                RETURN NULL;
            END IF;
            RAISE EXCEPTION '{REFUSAL}' USING ERRCODE = 'insufficient_privilege';
        END;
        $$
    """)
    op.execute(f"""
        CREATE FUNCTION audit_records_erasure_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF {changed} THEN
                RAISE EXCEPTION 'only the personal fields of an audit record can be erased'
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            IF NOT EXISTS (SELECT 1 FROM audit_seals s WHERE s.record_id = OLD.record_id AND s.erased_at IS NOT NULL)
            THEN
                RAISE EXCEPTION '{REFUSAL}' USING ERRCODE = 'insufficient_privilege';
            END IF;
            RETURN NEW;
        END;
        $$
    """)
    op.execute("""
        CREATE TRIGGER audit_records_erasure_only BEFORE UPDATE ON audit_records
        FOR EACH ROW EXECUTE FUNCTION audit_records_erasure_only()
    """)
    op.execute(f"""
        CREATE FUNCTION audit_seals_guard() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                IF NEW.erased_at IS NOT NULL AND current_setting('{ERASURE_FLAG}', true) IS DISTINCT FROM 'on' THEN
                    RAISE EXCEPTION 'a seal is marked erased only by audit_erase'
                        USING ERRCODE = 'insufficient_privilege';
                END IF;
                RETURN NEW;
            END IF;
            IF TG_OP = 'UPDATE' AND current_setting('{ERASURE_FLAG}', true) = 'on'
               AND NEW.record_id = OLD.record_id AND NEW.tenant_id IS NOT DISTINCT FROM OLD.tenant_id
               AND NEW.hash_version = OLD.hash_version AND NEW.digest IS NOT DISTINCT FROM OLD.digest
               AND NEW.salt IS NULL AND NEW.erased_at IS NOT NULL THEN
                RETURN NEW;
            END IF;
            RAISE EXCEPTION '{REFUSAL}' USING ERRCODE = 'insufficient_privilege';
        END;
        $$
    """)
    op.execute("""
        CREATE TRIGGER audit_seals_guard BEFORE INSERT OR UPDATE OR DELETE ON audit_seals
        FOR EACH ROW EXECUTE FUNCTION audit_seals_guard()
    """)
    op.execute("""
        CREATE TRIGGER audit_seals_no_truncate BEFORE TRUNCATE ON audit_seals
        FOR EACH STATEMENT EXECUTE FUNCTION audit_records_refuse_change()
    """)
    op.execute(f"""
        CREATE FUNCTION audit_erase(p_tombstone text, p_changes jsonb) RETURNS integer
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = {schema}, pg_temp AS $$
        DECLARE
            t audit_records%ROWTYPE;
            r audit_records%ROWTYPE;
            c jsonb;
            n integer := 0;
        BEGIN
            SELECT * INTO t FROM audit_records WHERE record_id = p_tombstone AND action = 'privacy.erase';
            IF NOT FOUND THEN
                RAISE EXCEPTION 'audit_erase: % is not an erasure record', p_tombstone
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            -- A tenant-scoped caller erases only in its own tenant's chain.
            IF t.tenant_id IS DISTINCT FROM nullif(current_setting('app.tenant_id', true), '')
               AND NOT pg_has_role(session_user, '{PLATFORM_ROLE}', 'MEMBER')
               AND NOT pg_has_role(session_user, current_user, 'MEMBER') THEN
                RAISE EXCEPTION 'audit_erase: the erasure record belongs to another tenant'
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            PERFORM set_config('{ERASURE_FLAG}', 'on', true);
            FOR c IN SELECT value FROM jsonb_array_elements(p_changes) LOOP
                SELECT * INTO r FROM audit_records WHERE record_id = c->>'record_id';
                IF NOT FOUND OR r.tenant_id IS DISTINCT FROM t.tenant_id OR r.seq >= t.seq
                   OR r.action = 'privacy.erase' OR NOT ((t.details->'erased_records') ? r.record_id) THEN
                    RAISE EXCEPTION 'audit_erase: record % is not named by erasure record %',
                        c->>'record_id', p_tombstone
                        USING ERRCODE = 'insufficient_privilege';
                END IF;
                IF EXISTS (SELECT 1 FROM audit_seals WHERE record_id = r.record_id) THEN
                    UPDATE audit_seals SET salt = NULL, erased_at = coalesce(erased_at, now()),
                        erasure_record_id = t.record_id
                    WHERE record_id = r.record_id;
                ELSE
                    INSERT INTO audit_seals (record_id, tenant_id, hash_version, salt, digest, erased_at,
                                             erasure_record_id)
                    VALUES (r.record_id, r.tenant_id, 1, NULL, NULL, now(), t.record_id);
                END IF;
                UPDATE audit_records SET actor = c->>'actor', target_id = c->>'target_id', details = c->'details'
                WHERE record_id = r.record_id;
                n := n + 1;
            END LOOP;
            PERFORM set_config('{ERASURE_FLAG}', 'off', true);
            RETURN n;
        END;
        $$
    """)
    op.execute("REVOKE ALL ON FUNCTION audit_erase(text, jsonb) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION audit_erase(text, jsonb) TO {APP_ROLE}, {PLATFORM_ROLE}")
    # Row-level security like every tenant table (same statements as 0005), append-only privileges.
    op.execute("ALTER TABLE audit_seals ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE audit_seals FORCE ROW LEVEL SECURITY")
    op.execute(f"""
        CREATE POLICY tenant_isolation ON audit_seals TO {APP_ROLE}
        USING (tenant_id = current_setting('app.tenant_id', true))
        WITH CHECK (tenant_id = current_setting('app.tenant_id', true))
    """)
    op.execute(f"CREATE POLICY platform_access ON audit_seals TO {PLATFORM_ROLE} USING (true) WITH CHECK (true)")
    op.execute(f"GRANT SELECT, INSERT ON audit_seals TO {APP_ROLE}, {PLATFORM_ROLE}")
    # FORCE applies to the owner too; audit_erase runs as the owner and must see the chain it redacts.
    for table in ("audit_records", "audit_seals"):
        op.execute(f"CREATE POLICY erasure_owner ON {table} TO CURRENT_USER USING (true) WITH CHECK (true)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP POLICY IF EXISTS erasure_owner ON audit_records")
        op.execute("DROP FUNCTION audit_erase(text, jsonb)")
        op.execute("DROP TRIGGER audit_records_erasure_only ON audit_records")
        op.execute("DROP FUNCTION audit_records_erasure_only()")
        op.execute(f"""
            CREATE OR REPLACE FUNCTION audit_records_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '{REFUSAL}' USING ERRCODE = 'insufficient_privilege';
            END;
            $$
        """)
        op.drop_table("audit_seals")
        op.execute("DROP FUNCTION audit_seals_guard()")
    else:
        op.execute("DROP TRIGGER audit_records_no_update")
        op.execute(f"""
            CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records
            BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END
        """)
        op.drop_table("audit_seals")
