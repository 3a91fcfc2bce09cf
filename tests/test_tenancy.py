"""Tenant isolation: PostgreSQL row-level security, and the ORM scoping every backend shares."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.exc import DBAPIError

from agentprovision.apply import apply_config
from agentprovision.config import load_config_dir
from agentprovision.store import models as m
from agentprovision.store.db import make_engine, migrate, session_factory, transaction
from governance.tenancy import CrossTenantWrite, app_engine_url, grant_app_login, tenant_session

TENANTS = ("acme", "globex", "initech")
APP_LOGIN, PLATFORM_LOGIN = "ap_test_app_login", "ap_test_platform_login"
TABLES_WITH_ROWS = ("tenants", "departments", "agents", "integrations", "tasks", "events", "audit_records")


def seed(engine: Engine) -> None:
    """The example config plus tasks, runs and events for every tenant."""
    factory = session_factory(engine)
    with transaction(factory) as session:
        apply_config(session, load_config_dir("config").config, actor="seed@example.com", source="config")
    with transaction(factory) as session:
        agents = session.execute(select(m.Agent.agent_id, m.Agent.tenant_id)).all()
        for agent_id, tenant_id in agents:
            for n in range(3):
                task_id = str(uuid.uuid4())
                session.add(
                    m.Task(
                        task_id=task_id,
                        tenant_id=tenant_id,
                        agent_id=agent_id,
                        source="test",
                        idempotency_key=f"{agent_id}-{n}",
                        input={"n": n},
                    )
                )
                session.add(
                    m.Event(
                        event_id=str(uuid.uuid4()),
                        tenant_id=tenant_id,
                        kind="run",
                        name="run.finished",
                        occurred_at=func.now(),
                        agent_id=agent_id,
                        payload={"n": n},
                    )
                )


@pytest.fixture
def rls(migrated_postgres_url: str) -> Iterator[tuple[Engine, Engine]]:
    """(app engine, platform engine) on a migrated, seeded database; the owner is the test superuser."""
    postgres_url = migrated_postgres_url
    owner = make_engine(postgres_url)
    migrate(owner)
    grant_app_login(owner, APP_LOGIN)
    grant_app_login(owner, PLATFORM_LOGIN, platform=True)
    with owner.begin() as connection:  # a view, as the product's views must be made: security_invoker
        connection.execute(
            text(
                "CREATE VIEW open_tasks WITH (security_invoker = true) AS "
                "SELECT task_id, tenant_id, agent_id FROM tasks WHERE status = 'queued'"
            )
        )
        connection.execute(text("GRANT SELECT ON open_tasks TO agentprovision_app"))
    platform = make_engine(app_engine_url(postgres_url, PLATFORM_LOGIN))
    seed(platform)
    app = make_engine(app_engine_url(postgres_url, APP_LOGIN))
    yield app, platform
    for engine in (app, platform, owner):
        engine.dispose()


@pytest.mark.postgres
def test_catalog_every_tenant_table_has_forced_rls_and_the_app_role_is_powerless(rls) -> None:  # type: ignore[no-untyped-def]
    app, _ = rls
    with app.connect() as connection:
        unprotected = (
            connection.execute(
                text("""
            SELECT c.relname FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
            WHERE c.relkind = 'r' AND NOT (c.relrowsecurity AND c.relforcerowsecurity)
        """)
            )
            .scalars()
            .all()
        )
        owned = (
            connection.execute(
                text("""
            SELECT c.relname FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner
            WHERE pg_has_role(current_user, r.oid, 'MEMBER') AND c.relkind IN ('r', 'v', 'm')
        """)
            )
            .scalars()
            .all()
        )
        bypass = (
            connection.execute(
                text("""
            SELECT rolname FROM pg_roles WHERE (rolbypassrls OR rolsuper)
            AND pg_has_role(current_user, oid, 'MEMBER')
        """)
            )
            .scalars()
            .all()
        )
        tenant_tables = connection.execute(
            text("""
            SELECT count(*) FROM information_schema.columns
            WHERE table_schema = current_schema() AND column_name = 'tenant_id'
        """)
        ).scalar_one()
    assert unprotected == [] and owned == [] and bypass == []
    assert tenant_tables >= 10


@pytest.mark.postgres
def test_no_tenant_set_means_nothing_visible_and_nothing_writable(rls) -> None:  # type: ignore[no-untyped-def]
    app, _ = rls
    with app.begin() as connection:
        for table in TABLES_WITH_ROWS:
            assert connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() == 0, table
    with pytest.raises(DBAPIError, match="row-level security"), app.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO events (event_id, tenant_id, kind, name, occurred_at, recorded_at, "
                "payload) VALUES ('x', 'acme', 'run', 'n', now(), now(), '{}')"
            )
        )


def _queries(rng: random.Random, me: str, other: str) -> tuple[str, dict, str]:
    """One generated statement: (sql, params, what it must do)."""
    t1, t2 = rng.choice(TABLES_WITH_ROWS), rng.choice(TABLES_WITH_ROWS)
    shape = rng.randrange(11)
    if shape == 0:
        return f"SELECT tenant_id FROM {t1}", {}, "read"
    if shape == 1:
        return f"SELECT tenant_id FROM {t1} WHERE tenant_id = :other", {"other": other}, "read"
    if shape == 2:
        return (
            f"SELECT b.tenant_id FROM {t1} a JOIN {t2} b ON a.tenant_id = b.tenant_id "
            f"WHERE a.tenant_id IN (:me, :other) LIMIT 50",
            {"me": me, "other": other},
            "read",
        )
    if shape == 3:
        return f"WITH x AS (SELECT * FROM {t1}) SELECT tenant_id FROM x", {}, "read"
    if shape == 4:
        return (
            f"SELECT tenant_id FROM {t1} WHERE tenant_id IN (SELECT tenant_id FROM {t2} UNION ALL SELECT :other)",
            {"other": other},
            "read",
        )
    if shape == 5:
        return "SELECT tenant_id FROM open_tasks", {}, "read"
    if shape == 6:
        return f"SELECT tenant_id FROM {t1} WHERE tenant_id <> :me OR true", {"me": me}, "read"
    if shape == 7:
        return "UPDATE tasks SET status = 'tampered' WHERE tenant_id = :other", {"other": other}, "no-op"
    if shape == 8:
        return "DELETE FROM events WHERE tenant_id = :other", {"other": other}, "no-op"
    if shape == 9:
        return (
            "INSERT INTO events (event_id, tenant_id, kind, name, occurred_at, recorded_at, payload) "
            "VALUES (:id, :other, 'run', 'forged', now(), now(), '{}')",
            {"id": str(uuid.uuid4()), "other": other},
            "refused",
        )
    return (
        "UPDATE tasks SET tenant_id = :other WHERE task_id IN (SELECT task_id FROM tasks LIMIT 1)",
        {"other": other},
        "refused",
    )


@pytest.mark.postgres
def test_cross_tenant_fuzz_of_10000_statements(rls) -> None:  # type: ignore[no-untyped-def]
    app, platform = rls
    rng = random.Random(11)
    executed = leaked = accepted = own_rows = 0
    while executed < 10_000:
        me = rng.choice(TENANTS)
        other = rng.choice([t for t in TENANTS if t != me])
        with app.begin() as connection:
            connection.execute(text("SELECT set_config('app.tenant_id', :t, true)"), {"t": me})
            for _ in range(40):
                sql, params, expectation = _queries(rng, me, other)
                savepoint = connection.begin_nested()
                try:
                    result = connection.execute(text(sql), params)
                except DBAPIError:
                    savepoint.rollback()
                    assert expectation == "refused", sql
                else:
                    if expectation == "read":
                        rows = result.scalars().all()
                        leaked += sum(1 for tenant in rows if tenant != me)
                        own_rows += len(rows)
                    elif expectation == "no-op":
                        accepted += result.rowcount
                    else:
                        accepted += 1
                    savepoint.commit()
                executed += 1
            connection.rollback()
    assert executed >= 10_000 and own_rows > 0
    assert (leaked, accepted) == (0, 0)
    with platform.connect() as connection:  # and nothing changed underneath
        assert connection.execute(text("SELECT count(*) FROM tasks WHERE status = 'tampered'")).scalar_one() == 0
        assert connection.execute(text("SELECT count(*) FROM events WHERE name = 'forged'")).scalar_one() == 0


@pytest.mark.postgres
def test_pooled_connections_never_carry_a_tenant_over(rls) -> None:  # type: ignore[no-untyped-def]
    app, _ = rls
    mixups: list[str] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for n in range(5_000):
            tenant = TENANTS[n % 3] if rng.random() > 0.1 else None  # some transactions set no tenant
            with app.begin() as connection:
                if tenant:
                    connection.execute(text("SELECT set_config('app.tenant_id', :t, true)"), {"t": tenant})
                seen = connection.execute(text("SELECT DISTINCT tenant_id FROM tasks")).scalars().all()
            if seen != ([tenant] if tenant else []):
                mixups.append(f"set {tenant}, saw {seen}")

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert mixups == []


def test_orm_scoping_on_every_backend(store: Engine) -> None:
    seed(store)
    factory = session_factory(store)
    with tenant_session(factory, "globex") as session:
        agents = session.scalars(select(m.Agent)).all()
        joined = session.execute(select(m.Task.tenant_id, m.Agent.tenant_id).join(m.Agent)).all()
        counted = session.scalar(select(func.count()).select_from(m.Event))
        session.execute(update(m.Task).values(status="tampered"))  # scoped: only globex's own tasks
        assert {a.tenant_id for a in agents} == {"globex"} and len(agents) == 3
        assert joined and all(pair == ("globex", "globex") for pair in joined)
        assert counted == 9
    with tenant_session(factory, "acme") as session:
        assert session.scalar(select(func.count()).select_from(m.Task).where(m.Task.status == "tampered")) == 0
        assert session.get(m.Tenant, "globex") is None

    forged = m.Event(
        event_id=str(uuid.uuid4()), tenant_id="globex", kind="run", name="forged", occurred_at=func.now(), payload={}
    )
    refusal = "scoped to tenant 'acme' but the events row belongs to 'globex'"
    with pytest.raises(CrossTenantWrite, match=refusal), tenant_session(factory, "acme") as session:
        session.add(forged)
    with transaction(factory) as session:
        assert session.scalar(select(func.count()).select_from(m.Event).where(m.Event.name == "forged")) == 0
