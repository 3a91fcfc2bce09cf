"""Shared fixtures: ops stores on SQLite and on the real PostgreSQL, and scratch config dirs."""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine

from agentprovision.store.db import make_engine, migrate

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = REPO_ROOT / "config"
POSTGRES_ADMIN_DSN = os.environ.get("AGENTPROVISION_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@pytest.fixture(autouse=True)
def _keep_main_module() -> Iterator[None]:
    """Streamlit's AppTest leaves `sys.modules["__main__"]` pointing at the app script; a later test
    that starts a `spawn` process would then run the whole dashboard in the child. Put it back."""
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main


def _postgres_available() -> str | None:
    try:
        with psycopg.connect(POSTGRES_ADMIN_DSN, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return str(exc).strip()


@pytest.fixture(scope="session")
def postgres_admin_dsn() -> str:
    problem = _postgres_available()
    if problem:
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(f"REQUIRE_POSTGRES=1 but PostgreSQL is not reachable at {POSTGRES_ADMIN_DSN}: {problem}")
        pytest.skip(f"PostgreSQL not reachable ({problem}); set REQUIRE_POSTGRES=1 to make this a failure")
    return POSTGRES_ADMIN_DSN


def _create_database(admin_dsn: str, template: str | None = None) -> str:
    name = f"ap_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return name


def _drop_database(admin_dsn: str, name: str) -> None:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _database_url(admin_dsn: str, name: str) -> str:
    return f"{admin_dsn.rsplit('/', 1)[0]}/{name}"


@pytest.fixture
def postgres_url(postgres_admin_dsn: str) -> Iterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    name = _create_database(postgres_admin_dsn)
    yield _database_url(postgres_admin_dsn, name)
    _drop_database(postgres_admin_dsn, name)


@pytest.fixture(scope="session")
def _migrated_postgres_template(postgres_admin_dsn: str) -> Iterator[str]:
    """One database migrated to the latest schema once per session, for `migrated_postgres_url` to copy."""
    name = _create_database(postgres_admin_dsn)
    engine = make_engine(_database_url(postgres_admin_dsn, name))
    migrate(engine)
    engine.dispose()  # CREATE DATABASE ... TEMPLATE needs the template to have no connections
    yield name
    _drop_database(postgres_admin_dsn, name)


@pytest.fixture
def migrated_postgres_url(postgres_admin_dsn: str, _migrated_postgres_template: str) -> Iterator[str]:
    """A database of its own for one test, already at the latest schema (a copy of the template), dropped afterwards."""
    name = _create_database(postgres_admin_dsn, template=_migrated_postgres_template)
    yield _database_url(postgres_admin_dsn, name)
    _drop_database(postgres_admin_dsn, name)


@pytest.fixture(scope="session")
def _migrated_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ops_template") / "ops.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()  # the last connection to close checkpoints the WAL into the file
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty ops store; for a test that also uses `store`, a copy of one migrated once per session.

    Copying gives the same database migrating it would (`store` still runs `migrate`, a no-op on the
    copy), at a fraction of the cost: PostgreSQL clones a template database in well under 0.1 s.
    """
    migrated = "store" in request.fixturenames
    if request.param == "sqlite":
        path = tmp_path / "ops.db"
        if migrated:
            shutil.copyfile(request.getfixturevalue("_migrated_sqlite_template"), path)
        return f"sqlite:///{path}"
    return request.getfixturevalue("migrated_postgres_url" if migrated else "postgres_url")


@pytest.fixture
def store(store_url: str) -> Iterator[Engine]:
    engine = make_engine(store_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def fixed_events_build(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """test_dbt_marts' fixed event set, loaded into DuckDB and built by dbt once per session.

    test_dbt_marts and test_warehouse_parity only read it; a test that changes data works on a copy.
    """
    from test_dbt_marts import build_fixed_events

    return build_fixed_events(tmp_path_factory.mktemp("marts"))


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """A private copy of the example config that a test may break."""
    target = tmp_path / "config"
    shutil.copytree(EXAMPLE_CONFIG, target)
    return target


@pytest.fixture
def state_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point every state path at a temporary directory."""
    state = tmp_path / "state"
    monkeypatch.setenv("AGENTPROVISION_STATE_DIR", str(state))
    monkeypatch.delenv("AGENTPROVISION_DATABASE_URL", raising=False)
    monkeypatch.delenv("AGENTPROVISION_DUCKDB_PATH", raising=False)
    monkeypatch.delenv("AGENTPROVISION_CONFIG_DIR", raising=False)
    return state
