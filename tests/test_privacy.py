"""Erasing a data subject: a canary planted in every store is gone everywhere, and the audit chains still verify."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from sqlalchemy import Engine, String, Text, cast, func, or_, select, text
from sqlalchemy.exc import DatabaseError
from typer.testing import CliRunner

from agentprovision.apply import apply_config, load_version
from agentprovision.cli import app
from agentprovision.config import load_config_dir
from agentprovision.events import PlatformEvent, write_events
from agentprovision.settings import Settings
from agentprovision.store import models as m
from agentprovision.store.audit import GENESIS_HASH, append_audit, chain_heads, record_hash, verify_chain
from agentprovision.store.connector_models import KbDocument, SyncRecord
from agentprovision.store.db import make_engine, migrate, session_factory, transaction
from agentprovision.store.privacy_models import AuditSeal
from agentprovision.store.registry import Base
from agentprovision.tasks import queue_task
from agentprovision.warehouse import load_raw, publish
from governance.evidence import Period, build_sections, write_pack
from governance.privacy import PrivacyError, erase_subject
from governance.tenancy import app_engine_url, grant_app_login

EMAIL = "ada.canary@example.org"
NAME = "Ada Canarywood"
PHONE = "+44 20 7946 0958"
CANARY = (EMAIL, NAME, PHONE)
OTHER_EMAIL = "grace.keep@example.org"  # another tenant's subject: must survive untouched


def canary_config(config_dir: Path):  # type: ignore[no-untyped-def]
    acme = config_dir / "tenants" / "acme.yaml"
    line = f"  - {{id: {EMAIL}, name: {NAME}, role: analyst, department: engineering}}\n"
    acme.write_text(acme.read_text().replace("users:\n", "users:\n" + line, 1))
    result = load_config_dir(config_dir)
    assert result.ok, result.issues
    return result.config


def legacy_audit(session, tenant_id: str, actor: str, details: dict) -> None:  # type: ignore[no-untyped-def]
    """A record as written before hash format 2 existed: no seal, the hash covers the raw fields."""
    previous = session.scalar(
        select(m.AuditRecord.record_hash)
        .where(m.AuditRecord.tenant_id == tenant_id)
        .order_by(m.AuditRecord.seq.desc())
        .limit(1)
    )
    record = m.AuditRecord(
        record_id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        occurred_at=datetime.now(UTC),
        actor=actor,
        action="user.login",
        target_type="user",
        target_id=actor,
        details=details,
        source="dashboard",
        outcome="success",
        prev_hash=previous or GENESIS_HASH,
    )
    record.record_hash = record_hash(record)
    session.add(record)
    session.flush()


def plant_everywhere(store: Engine, settings: Settings, config) -> None:  # type: ignore[no-untyped-def]
    factory = session_factory(store)
    with transaction(factory) as session:
        apply_config(session, config, actor="dana@acme.example", source="test")
    with transaction(factory) as session:
        legacy_audit(session, "acme", EMAIL, {"phone": PHONE})
        append_audit(
            session,
            actor=EMAIL,
            action="approval.granted",
            target_type="approval",
            target_id="ap-1",
            tenant_id="acme",
            details={"note": f"approved by {NAME}", "phone": PHONE},
        )
        append_audit(session, actor="dana@acme.example", action="role.change", target_type="user", target_id=EMAIL,
                     tenant_id="acme", details={"from": "analyst", "to": "analyst"})  # fmt: skip
        task, _ = queue_task(
            session,
            tenant_id="acme",
            agent_id="acme-qa-triage",
            source="cli",
            idempotency_key=f"ticket-from-{EMAIL}",
            task_input={"instructions": f"Call {NAME} back on {PHONE}", "reporter": EMAIL.upper()},
        )
        session.add(
            KbDocument(
                tenant_id="acme",
                integration_id="acme-docs",
                doc_id=f"people/{EMAIL}",
                title=f"On-call notes by {NAME}",
                source="https://wiki.example/people",
                body=f"Escalate to {NAME} ({EMAIL}, {PHONE}).",
                content_hash="x" * 64,
            )
        )
        session.add(
            SyncRecord(
                tenant_id="acme",
                integration_id="acme-jira",
                stream="issues",
                record_key="ACME-7",
                data={"reporter": {"email": EMAIL, "displayName": NAME}, "fields": {"phone": PHONE}},
                content_hash="y" * 64,
                first_sync_id="s1",
                last_sync_id="s1",
            )
        )
    write_events(
        store,
        [
            PlatformEvent(
                tenant_id="acme",
                kind="usage",
                name="model_call",
                agent_id="acme-qa-triage",
                payload={
                    "call_id": "c1",
                    "cost_usd": "0.01",
                    "prompt": [{"role": "user", "content": f"I am {NAME}, reach me at {PHONE} or {EMAIL}"}],
                },
            ),
            PlatformEvent(tenant_id="acme", kind="policy", name="guardrail", payload={"action": "masked"}),
            PlatformEvent(tenant_id="globex", kind="usage", name="model_call", payload={"user": OTHER_EMAIL}),
        ],
    )
    # The warehouse: raw tables loaded from the store, marts built on them, and the published copy.
    load_raw(store, settings.duckdb_path)
    with duckdb.connect(str(settings.duckdb_path)) as con:
        con.execute("CREATE SCHEMA marts")
        con.execute("CREATE TABLE marts.dim_users AS SELECT user_id, tenant_id, name, role FROM raw.users")
        con.execute("CREATE TABLE marts.fct_prompts AS SELECT tenant_id, event_id, payload FROM raw.events")
        con.execute("CREATE TABLE marts.fct_audit_events AS SELECT tenant_id, actor, details FROM raw.audit_records")
        con.execute("CREATE VIEW marts.v_users AS SELECT user_id, name FROM marts.dim_users")
    publish(settings.duckdb_path, settings.published_duckdb_path)
    # A file an auditor took away: the evidence pack lists users by e-mail and name.
    with transaction(factory) as session:
        sections = build_sections(session, "acme", Period.parse(datetime.now(UTC).strftime("%Y-%m")))
    write_pack(
        sections, "acme", Period.parse(datetime.now(UTC).strftime("%Y-%m")), settings.state_dir / "evidence", "t"
    )


def ops_occurrences(store: Engine, needle: str) -> dict[str, int]:
    """Every text and JSON column of every table, every tenant: where `needle` still occurs."""
    found = {}
    with store.connect() as connection:
        for table in Base.metadata.sorted_tables:
            columns = [c for c in table.columns if isinstance(c.type, String | Text) or "JSON" in str(c.type).upper()]
            if not columns:
                continue
            like = [func.lower(cast(c, Text)).like(f"%{needle.lower()}%") for c in columns]
            count = connection.scalar(select(func.count()).select_from(table).where(or_(*like)))
            if count:
                found[table.name] = count
    return found


def warehouse_occurrences(path: Path, needle: str) -> dict[str, int]:
    found = {}
    with duckdb.connect(str(path), read_only=True) as con:
        columns = con.execute("""
            SELECT c.table_schema, c.table_name, c.column_name FROM information_schema.columns c
            JOIN information_schema.tables t USING (table_catalog, table_schema, table_name)
            WHERE t.table_type = 'BASE TABLE' AND c.data_type = 'VARCHAR'
        """).fetchall()
        for schema, table, column in columns:
            count = con.execute(
                f'SELECT count(*) FROM "{schema}"."{table}" WHERE lower("{column}") LIKE ?', [f"%{needle.lower()}%"]
            ).fetchone()[0]
            if count:
                found[f"{schema}.{table}.{column}"] = count
    return found


def file_occurrences(directory: Path, needle: str) -> list[str]:
    forms = {needle.lower().encode(), json.dumps(needle)[1:-1].lower().encode()}
    return [
        str(p) for p in directory.rglob("*") if p.is_file() and any(form in p.read_bytes().lower() for form in forms)
    ]


@pytest.fixture
def settings(tmp_path: Path, store_url: str) -> Settings:
    return Settings(
        state_dir=tmp_path,  # the SQLite store lives here too, so its file is searched byte by byte
        database_url=store_url,
        config_dir=tmp_path / "config",
        warehouse_target="duckdb",
        duckdb_path=tmp_path / "warehouse.duckdb",
    )


def test_erasure_leaves_no_trace_of_the_subject_anywhere(store: Engine, settings: Settings, config_dir: Path) -> None:
    config = canary_config(config_dir)
    plant_everywhere(store, settings, config)
    planted = {"users", "events", "tasks", "kb_documents", "sync_records", "audit_records", "config_versions"}
    assert planted <= set(ops_occurrences(store, EMAIL))  # the canary really is everywhere before
    for needle in CANARY:
        assert warehouse_occurrences(settings.published_duckdb_path, needle)
    assert file_occurrences(settings.state_dir / "evidence", EMAIL)

    report = erase_subject(config, store, settings, "acme", EMAIL, "dpo@platform.example", also=[PHONE])

    assert report.complete, report.render()
    assert report.audit_records_erased >= 4  # three acme records (one legacy) and the platform's config.apply
    assert "ops:kb_documents" in report.changed and "ops:config_versions" in report.changed
    assert any(key.endswith("marts.fct_prompts") for key in report.changed)
    assert report.warnings  # the config directory still names the subject
    for needle in CANARY:
        assert ops_occurrences(store, needle) == {}, needle
        for path in (settings.duckdb_path, settings.published_duckdb_path):
            assert warehouse_occurrences(path, needle) == {}, (needle, path)
        # Every file under the state directory, the SQLite store and both warehouse files included.
        assert file_occurrences(settings.state_dir, needle) == [], needle
    for needle in (EMAIL, NAME, PHONE, "ada.canary"):
        assert needle.lower() not in report.render().lower()  # the report itself names no identifier

    factory = session_factory(store)
    with transaction(factory) as session:
        assert verify_chain(session).intact
        tombstone = session.scalar(
            select(m.AuditRecord).where(m.AuditRecord.tenant_id == "acme", m.AuditRecord.action == "privacy.erase")
        )
        erased = session.scalars(select(AuditSeal).where(AuditSeal.erased_at.is_not(None))).all()
        assert {s.record_id for s in erased if s.tenant_id == "acme"} == set(tombstone.details["erased_records"])
        assert {s.hash_version for s in erased} == {1, 2}  # a legacy record was erased too
        assert all(s.salt is None for s in erased)
        user = session.scalar(select(m.User).where(m.User.user_id == f"{report.pseudonym}@erased.invalid"))
        assert user is not None and user.status == "erased" and user.tenant_id == "acme"
        assert user.name == report.pseudonym
        # The stored config version still validates: it can be rolled back to and its policies enforced.
        restored = load_version(session, 1)
        assert restored is not None and f"{report.pseudonym}@erased.invalid" in {
            u.id for t in restored.tenants for u in t.users
        }
        verified = session.scalar(select(m.AuditRecord).where(m.AuditRecord.action == "privacy.verify"))
        assert verified.outcome == "success" and verified.details["remaining"] == {}
        # Another tenant's data and the subject's unrelated rows stay as they were.
        other = session.scalar(select(m.Event).where(m.Event.tenant_id == "globex"))
        assert other.payload == {"user": OTHER_EMAIL}
        assert session.scalar(select(func.count()).select_from(m.Event)) == 3
        assert session.scalar(select(func.count()).select_from(m.User).where(m.User.tenant_id == "acme")) == 5
    with duckdb.connect(str(settings.published_duckdb_path), read_only=True) as con:
        users = con.execute("SELECT user_id, name FROM marts.v_users").fetchall()
        assert (f"{report.pseudonym}@erased.invalid", report.pseudonym) in users
    # The redacted evidence pack still checks against its own manifest.
    pack = next((settings.state_dir / "evidence" / "acme").iterdir())
    for line in (pack / "MANIFEST.sha256").read_text().splitlines():
        digest, name = line.split("  ")
        assert hashlib.sha256((pack / name).read_bytes()).hexdigest() == digest


def test_an_erased_record_must_be_named_by_a_tombstone(store: Engine, settings: Settings, config_dir: Path) -> None:
    config = canary_config(config_dir)
    factory = session_factory(store)
    with transaction(factory) as session:
        apply_config(session, config, actor="dana@acme.example", source="test")
        append_audit(session, actor=EMAIL, action="user.login", target_type="user", target_id=EMAIL, tenant_id="acme")
        anchors = chain_heads(session)  # exported before the erasure
    erase_subject(None, store, settings, "acme", EMAIL, "dpo@platform.example")
    with transaction(factory) as session:
        # Redaction changes no record hash: heads exported earlier still anchor the chains.
        assert verify_chain(session, anchors).intact
    # Tamper: point an erased record's seal at no tombstone. The seal guard itself refuses on PostgreSQL.
    with store.begin() as connection:
        if store.dialect.name == "postgresql":
            with pytest.raises(DatabaseError, match="append-only"), connection.begin_nested():
                connection.execute(text("UPDATE audit_seals SET erasure_record_id = NULL WHERE erased_at IS NOT NULL"))
            connection.execute(text("ALTER TABLE audit_seals DISABLE TRIGGER USER"))
        connection.execute(text("UPDATE audit_seals SET erasure_record_id = NULL WHERE erased_at IS NOT NULL"))
    with transaction(factory) as session:
        result = verify_chain(session)
    assert not result.intact and "no erasure record" in (result.problem or "")


def test_audit_records_stay_append_only_outside_an_erasure(store: Engine) -> None:
    with transaction(session_factory(store)) as session:
        append_audit(session, actor=EMAIL, action="user.login", target_type="user", target_id=EMAIL, tenant_id="acme")
        record_id = session.scalar(select(m.AuditRecord.record_id))
    # Not erased: the personal fields cannot change either.
    with pytest.raises(DatabaseError, match="append-only"), store.begin() as connection:
        connection.execute(text("UPDATE audit_records SET actor = 'x@example.org'"))
    if store.dialect.name == "postgresql":
        # audit_erase only redacts records a privacy.erase record names.
        with pytest.raises(DatabaseError, match="not an erasure record"), store.begin() as connection:
            connection.execute(text("SELECT audit_erase(:r, '[]'::jsonb)"), {"r": record_id})
        with pytest.raises(DatabaseError, match="marked erased only"), store.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO audit_seals (record_id, tenant_id, hash_version, erased_at)"
                    " VALUES ('x', 'acme', 1, now())"
                )
            )


def test_bad_requests_get_clear_messages(store: Engine, settings: Settings) -> None:
    with pytest.raises(PrivacyError, match="e-mail"):
        erase_subject(None, store, settings, "acme", "not-an-email", "dpo")
    with pytest.raises(PrivacyError, match="unknown tenant"):
        erase_subject(None, store, settings, "nope", EMAIL, "dpo")


def test_privacy_erase_command(tmp_path: Path, config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTPROVISION_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("AGENTPROVISION_DATABASE_URL", raising=False)
    monkeypatch.delenv("AGENTPROVISION_DUCKDB_PATH", raising=False)
    monkeypatch.setenv("AGENTPROVISION_CONFIG_DIR", str(config_dir))
    runner = CliRunner()
    canary_config(config_dir)
    assert runner.invoke(app, ["apply", str(config_dir), "--actor", "root@platform.example"]).exit_code == 0
    monkeypatch.setenv("AGENTPROVISION_ACTOR", "dana@acme.example")  # acme's tenant_admin
    result = runner.invoke(app, ["privacy", "erase", "--tenant", "acme", "--subject", EMAIL, "--also", PHONE])
    assert result.exit_code == 0, result.output
    assert "0 rows and 0 files still hold" in result.output and EMAIL not in result.output
    monkeypatch.setenv("AGENTPROVISION_ACTOR", "li@acme.example")  # an analyst may not erase
    result = runner.invoke(app, ["privacy", "erase", "--tenant", "acme", "--subject", "omar@acme.example"])
    assert result.exit_code == 1 and "may not privacy.erase" in result.output
    result = runner.invoke(app, ["privacy", "erase", "--tenant", "acme", "--subject", "nobody"])
    assert result.exit_code != 0 and "Traceback" not in result.output


@pytest.mark.postgres
def test_erasure_as_the_platform_role_which_cannot_update_audit_records(
    postgres_url: str, tmp_path: Path, config_dir: Path
) -> None:
    owner = make_engine(postgres_url)
    migrate(owner)
    with transaction(session_factory(owner)) as session:
        apply_config(session, canary_config(config_dir), actor="root@platform.example", source="test")
        append_audit(session, actor=EMAIL, action="user.login", target_type="user", target_id=EMAIL, tenant_id="acme")
    grant_app_login(owner, "ap_privacy_platform", platform=True)
    grant_app_login(owner, "ap_privacy_app")
    platform = make_engine(app_engine_url(postgres_url, "ap_privacy_platform"))
    tenant_app = make_engine(app_engine_url(postgres_url, "ap_privacy_app"))
    settings = Settings(tmp_path, app_engine_url(postgres_url, "ap_privacy_platform"), config_dir, "duckdb",
                        tmp_path / "none.duckdb")  # fmt: skip
    try:
        with pytest.raises(DatabaseError, match="permission denied"), platform.begin() as connection:
            connection.execute(text("UPDATE audit_records SET actor = 'x@example.org'"))
        # A tenant-scoped app connection with no tenant set sees no tenant at all: it fails closed.
        with pytest.raises(PrivacyError, match="unknown tenant"):
            erase_subject(None, tenant_app, settings, "acme", EMAIL, "dpo@platform.example")
        report = erase_subject(None, platform, settings, "acme", EMAIL, "dpo@platform.example")
        assert report.complete and report.audit_records_erased == 2, report.render()
        assert ops_occurrences(owner, EMAIL) == {} and ops_occurrences(owner, NAME) == {}
        with transaction(session_factory(owner)) as session:
            assert verify_chain(session).intact
    finally:
        for engine in (platform, tenant_app, owner):
            engine.dispose()


def test_a_warehouse_held_by_another_process_is_reported_not_skipped(tmp_path: Path, config_dir: Path) -> None:
    store = make_engine(f"sqlite:///{tmp_path / 'ops.db'}")
    migrate(store)
    settings = Settings(tmp_path, str(store.url), config_dir, "duckdb", tmp_path / "warehouse.duckdb")
    with transaction(session_factory(store)) as session:
        apply_config(session, canary_config(config_dir), actor="root@platform.example", source="test")
    load_raw(store, settings.duckdb_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_WAREHOUSE, str(settings.duckdb_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        report = erase_subject(None, store, settings, "acme", EMAIL, "dpo@platform.example")
    finally:
        holder.kill()
        holder.wait()
    assert not report.complete and report.remaining == {"warehouse:warehouse.duckdb": -1}
    assert "could not be searched" in report.render() and any("again" in w for w in report.warnings)
    assert ops_occurrences(store, EMAIL) == {}  # the ops store was erased regardless
    report = erase_subject(None, store, settings, "acme", EMAIL, "dpo@platform.example")  # the retry finishes it
    assert report.complete and warehouse_occurrences(settings.duckdb_path, EMAIL) == {}
    store.dispose()


HOLD_WAREHOUSE = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("holding", flush=True)
time.sleep(60)
"""
