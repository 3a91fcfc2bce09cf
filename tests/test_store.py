"""The ops store on SQLite and on the real PostgreSQL: schema, config versions, audit chain, events."""

from __future__ import annotations

import threading
import time

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, func, inspect, select, text, update
from sqlalchemy.exc import IntegrityError

from agentprovision.apply import apply_config, history, load_version
from agentprovision.config import load_config_dir
from agentprovision.events import EventWriter, PlatformEvent, write_events
from agentprovision.store import models as m
from agentprovision.store.audit import append_audit, verify_chain
from agentprovision.store.db import migrate, session_factory, transaction
from agentprovision.store.registry import Base

# Tables that belong to the platform as a whole rather than to any one tenant.
PLATFORM_TABLES = {"config_versions", "alembic_version"}


@pytest.fixture(scope="module")
def example_config():  # type: ignore[no-untyped-def]
    result = load_config_dir("config")
    assert result.ok, [i.render() for i in result.issues]
    return result.config


def test_migrations_match_the_models_and_rerun_cleanly(store: Engine) -> None:
    migrate(store)  # a second run is a no-op
    with store.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_every_tenant_owned_table_carries_tenant_id(store: Engine) -> None:
    inspector = inspect(store)
    tables = set(inspector.get_table_names())
    assert tables >= {
        "config_versions",
        "tenants",
        "users",
        "agents",
        "tasks",
        "runs",
        "events",
        "audit_records",
        "credentials",
    }
    for table in tables - PLATFORM_TABLES:
        columns = {c["name"] for c in inspector.get_columns(table)}
        assert "tenant_id" in columns, table


def test_apply_is_versioned_idempotent_and_reversible(store: Engine, example_config) -> None:  # type: ignore[no-untyped-def]
    factory = session_factory(store)
    with transaction(factory) as session:
        first = apply_config(session, example_config, actor="a@example.com", source="config")
    with transaction(factory) as session:
        repeat = apply_config(session, example_config, actor="a@example.com", source="config")
    assert first.version == 1 and repeat.version is None and not repeat.changed

    trimmed = example_config.model_copy(update={"tenants": example_config.tenants[:2]})
    with transaction(factory) as session:
        second = apply_config(session, trimmed, actor="b@example.com", source="config")
    assert second.version == 2
    assert [c.render() for c in second.changes if c.kind == "tenant"] == ["- tenant initech"]

    with transaction(factory) as session:
        restored = load_version(session, 1)
        third = apply_config(session, restored, actor="b@example.com", source="rollback:1", rollback_of=1)
    assert third.version == 3

    with transaction(factory) as session:
        assert [v.version for v in history(session)] == [1, 2, 3]
        assert session.get(m.Tenant, "initech").status == "active"
        assert session.scalar(select(func.count()).select_from(m.Agent).where(m.Agent.status == "active")) == 7
        actions = list(session.scalars(select(m.AuditRecord.action).order_by(m.AuditRecord.seq)))
        assert actions == ["config.apply", "config.apply", "config.rollback"]


def test_failed_apply_leaves_nothing_behind(store: Engine, example_config) -> None:  # type: ignore[no-untyped-def]
    factory = session_factory(store)
    with pytest.raises(RuntimeError), transaction(factory) as session:
        apply_config(session, example_config, actor="a@example.com", source="config")
        raise RuntimeError("simulated crash after writing, before commit")
    with store.connect() as connection:
        for model in (m.ConfigVersion, m.Tenant, m.Agent, m.AuditRecord):
            assert connection.execute(select(func.count()).select_from(model)).scalar_one() == 0


def allow_tampering(session) -> None:  # type: ignore[no-untyped-def]
    """Play an attacker with owner rights: on PostgreSQL the append-only trigger must be switched off first."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("ALTER TABLE audit_records DISABLE TRIGGER USER"))
    else:
        session.execute(text("DROP TRIGGER audit_records_no_update"))
        session.execute(text("DROP TRIGGER audit_records_no_delete"))


def test_audit_chain_detects_edits(store: Engine) -> None:
    factory = session_factory(store)
    with transaction(factory) as session:
        for index in range(5):
            append_audit(
                session,
                actor="x@example.com",
                action="test.action",
                target_type="thing",
                target_id=str(index),
                tenant_id="acme",
                details={"n": index},
            )
    with transaction(factory) as session:
        assert verify_chain(session).intact
        third = session.scalars(select(m.AuditRecord).order_by(m.AuditRecord.seq).offset(2).limit(1)).one()
        seq = third.seq
        allow_tampering(session)
        session.execute(update(m.AuditRecord).where(m.AuditRecord.seq == seq).values(actor="intruder@example.com"))
    with transaction(factory) as session:
        result = verify_chain(session)
        assert (result.intact, result.chain, result.first_bad_seq) == (False, "acme", seq)


def test_audit_chain_holds_under_concurrent_writers(store: Engine) -> None:
    factory = session_factory(store)

    def writer(name: str) -> None:
        for index in range(15):
            with transaction(factory) as session:
                append_audit(session, actor=name, action="test.concurrent", target_type="n", target_id=str(index))

    threads = [threading.Thread(target=writer, args=(f"w{i}@example.com",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with transaction(factory) as session:
        assert session.scalar(select(func.count()).select_from(m.AuditRecord)) == 45
        assert verify_chain(session).intact


def test_events_are_written_in_batches_and_never_dropped(store: Engine) -> None:
    with EventWriter(store, batch_size=10) as writer:
        for index in range(25):
            writer.emit(PlatformEvent(tenant_id="acme", kind="usage", name="llm.call", payload={"i": index}))
        with store.connect() as connection:  # two full batches are already in
            assert connection.execute(select(func.count()).select_from(m.Event)).scalar_one() == 20
    with store.connect() as connection:
        rows = connection.execute(select(m.Event.seq, m.Event.payload).order_by(m.Event.seq)).all()
    assert [row.payload["i"] for row in rows] == list(range(25))
    assert [row.seq for row in rows] == sorted(row.seq for row in rows)

    # A batch that cannot be written stays buffered, whole and in order.
    duplicate = PlatformEvent(tenant_id="acme", kind="usage", name="llm.call")
    write_events(store, [duplicate])
    writer = EventWriter(store, batch_size=100)
    writer.emit(PlatformEvent(tenant_id="acme", kind="tool", name="tool.call"))
    writer.emit(duplicate)  # same event_id: the insert violates the unique constraint
    with pytest.raises(IntegrityError):
        writer.flush()
    assert writer.pending == 2


def test_emitting_never_waits_for_a_batch_being_written(store: Engine) -> None:
    writer = EventWriter(store, batch_size=100)
    writer.emit(PlatformEvent(tenant_id="acme", kind="usage", name="llm.call", payload={"i": 0}))
    flushed, emitted = threading.Event(), threading.Event()

    def flush() -> None:
        writer.flush()
        flushed.set()

    def emit() -> None:
        writer.emit(PlatformEvent(tenant_id="acme", kind="usage", name="llm.call", payload={"i": 1}))
        emitted.set()

    with store.begin() as blocker:  # holds the write lock (SQLite: BEGIN IMMEDIATE) until the block ends
        if store.dialect.name == "postgresql":
            blocker.exec_driver_sql("LOCK TABLE events IN EXCLUSIVE MODE")
        flusher = threading.Thread(target=flush)
        flusher.start()
        deadline = time.monotonic() + 5
        while writer.pending and time.monotonic() < deadline:  # until the flush has taken the buffer
            time.sleep(0.01)
        assert writer.pending == 0  # taken, and now waiting on the store
        threading.Thread(target=emit).start()
        assert emitted.wait(5), "emit waited for the batch being written"
        assert not flushed.is_set()
    flusher.join()
    assert writer.pending == 1
    writer.flush()
    with store.connect() as connection:
        rows = connection.execute(select(m.Event.payload).order_by(m.Event.seq)).all()
    assert [row.payload["i"] for row in rows] == [0, 1]


def test_sqlite_store_runs_in_wal_mode(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from agentprovision.store.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'wal.db'}")
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar_one() == 1


def test_postgres_urls_keep_their_tls_settings() -> None:
    from sqlalchemy.engine import make_url

    from agentprovision.store.db import normalise_url

    url = make_url(normalise_url("postgresql://app@db.internal/ap?sslmode=verify-full&sslrootcert=/etc/ssl/ca.pem"))
    assert url.drivername == "postgresql+psycopg"
    assert dict(url.query) == {"sslmode": "verify-full", "sslrootcert": "/etc/ssl/ca.pem"}


@pytest.mark.postgres
def test_the_application_role_runs_on_a_store_the_owner_migrated(postgres_url: str, postgres_admin_dsn: str) -> None:
    """Under row-level security the application logs in as a role that owns nothing: it cannot
    migrate, so `open_store` migrates through the owner's URL and hands back the application's engine."""
    import uuid

    import psycopg
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ProgrammingError

    from agentprovision.store.db import make_engine, open_store
    from agentprovision.store.models import Tenant
    from governance.tenancy import app_engine_url, grant_app_login, tenant_session

    roles = make_engine(postgres_url)
    migrate(roles)  # creates the cluster-wide application roles
    grant_app_login(roles, "ap_test_store_app")
    roles.dispose()
    fresh = f"ap_test_fresh_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_admin_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{fresh}"')
    owner_url = make_url(postgres_url).set(database=fresh).render_as_string(hide_password=False)
    app_url = app_engine_url(owner_url, "ap_test_store_app")
    try:
        with pytest.raises(ProgrammingError, match="permission denied"):
            open_store(app_url)  # the application role may not create the schema
        engine = open_store(app_url, owner_url)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT current_user")).scalar() == "ap_test_store_app"
        with tenant_session(session_factory(engine), "acme") as session:
            assert session.scalars(select(Tenant)).all() == []  # scoped reads work on the owner's tables
        engine.dispose()
    finally:
        with psycopg.connect(postgres_admin_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{fresh}" WITH (FORCE)')
