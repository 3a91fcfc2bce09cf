"""Resources bound once in definitions.py and injected into assets by typed parameter."""

from __future__ import annotations

import os
import sys
from functools import cache
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource
from sqlalchemy import Engine

from agentprovision.dispatch import DispatchLimits
from agentprovision.settings import ENV_DATABASE_URL, ENV_MIGRATION_DATABASE_URL, published_copy_of
from agentprovision.store.db import open_store
from orchestration.dbt_project import dbt_project


@cache
def _store_engine(database_url: str, migration_url: str | None) -> Engine:
    # Sensors are evaluated every few seconds and in-process runs follow one another in the same
    # process: one migrated engine (and connection pool) per process and URL, not one per tick.
    return open_store(database_url, migration_url)


class OpsStoreResource(dg.ConfigurableResource):
    """The operational store (SQLite embedded, PostgreSQL in production)."""

    database_url: str
    # The table owner, when database_url is a role that owns nothing (row-level security).
    migration_database_url: str | None = None

    @property
    def engine(self) -> Engine:
        return _store_engine(self.database_url, self.migration_database_url)


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB warehouse file dbt builds into, and the copy dashboards read."""

    duckdb_path: str

    @property
    def path(self) -> Path:
        return Path(self.duckdb_path)

    @property
    def published_path(self) -> Path:
        return published_copy_of(self.path)


class DispatchResource(dg.ConfigurableResource):
    """Limits of the dispatch sensor (see agentprovision/dispatch.py); the run queue enforces them again."""

    global_runs: int = 20
    per_tenant_runs: int = 1
    batch_size: int = 50

    def limits(self) -> DispatchLimits:
        return DispatchLimits(self.global_runs, self.per_tenant_runs, self.batch_size)


def _dbt_executable() -> str:
    """The dbt installed beside this Python, so it is found even when the venv is not on PATH."""
    beside = Path(sys.executable).parent / "dbt"
    return str(beside) if beside.exists() else "dbt"


def build_resources() -> dict[str, dg.ConfigurableResource]:
    return {
        "ops_store": OpsStoreResource(
            database_url=dg.EnvVar(ENV_DATABASE_URL),
            migration_database_url=os.environ.get(ENV_MIGRATION_DATABASE_URL),
        ),
        "warehouse": WarehouseResource(duckdb_path=dg.EnvVar("AGENTPROVISION_DUCKDB_PATH")),
        "dbt": DbtCliResource(project_dir=dbt_project(), dbt_executable=_dbt_executable()),
        "dispatch": DispatchResource(),
    }
