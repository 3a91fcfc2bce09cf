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


@pytest.fixture
def postgres_url(postgres_admin_dsn: str) -> Iterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    name = f"ap_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = postgres_admin_dsn.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(postgres_admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ops.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(store_url: str) -> Iterator[Engine]:
    engine = make_engine(store_url)
    migrate(engine)
    yield engine
    engine.dispose()


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
