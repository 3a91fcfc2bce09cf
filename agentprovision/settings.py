"""Runtime settings, read from the environment once and passed around explicitly.

Every path the platform writes to hangs off one state directory, so the embedded default can be
wiped with a single `rm -rf .state` and production can point it at a persistent volume.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

ENV_STATE_DIR = "AGENTPROVISION_STATE_DIR"
ENV_DATABASE_URL = "AGENTPROVISION_DATABASE_URL"
# With row-level security the application logs in as a role that owns nothing; schema changes need
# the owner, so migrations may use their own URL (default: the same as the application's).
ENV_MIGRATION_DATABASE_URL = "AGENTPROVISION_MIGRATION_DATABASE_URL"
ENV_CONFIG_DIR = "AGENTPROVISION_CONFIG_DIR"
ENV_WAREHOUSE_TARGET = "AGENTPROVISION_WAREHOUSE_TARGET"
# One variable names the DuckDB file for both dbt's profile and the Python code reading it.
ENV_DUCKDB_PATH = "AGENTPROVISION_DUCKDB_PATH"
ENV_ACTOR = "AGENTPROVISION_ACTOR"
# The PostgreSQL warehouse (production target). dbt's profile reads the same parts from the
# AGENTPROVISION_WAREHOUSE_PG_* variables; `warehouse_pg_env` derives them from this URL.
ENV_WAREHOUSE_URL = "AGENTPROVISION_WAREHOUSE_URL"
DEFAULT_WAREHOUSE_URL = "postgresql://postgres@127.0.0.1:5432/agentprovision_warehouse"

WAREHOUSE_TARGETS = ("duckdb", "postgres")


@dataclass(frozen=True)
class Settings:
    state_dir: Path
    database_url: str
    config_dir: Path
    warehouse_target: str
    duckdb_path: Path
    warehouse_url: str = DEFAULT_WAREHOUSE_URL
    migration_database_url: str | None = None  # None: migrate through database_url

    @property
    def dagster_home(self) -> Path:
        return self.state_dir / "dagster"

    @property
    def published_duckdb_path(self) -> Path:
        """Read-only copy of the warehouse for dashboards; DuckDB allows one writing process at a time."""
        return published_copy_of(self.duckdb_path)

    @property
    def store_urls(self) -> tuple[str, str | None]:
        """`open_store`'s arguments: the application's URL, then the one migrations run through."""
        return self.database_url, self.migration_database_url

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def published_copy_of(duckdb_path: Path) -> Path:
    """Where the read-only copy of a warehouse file is published for readers in other processes."""
    return duckdb_path.with_name(duckdb_path.stem + "_published.duckdb")


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    state_dir = Path(env.get(ENV_STATE_DIR) or REPO_ROOT / ".state").resolve()
    database_url = env.get(ENV_DATABASE_URL) or f"sqlite:///{state_dir / 'ops.db'}"
    config_dir = Path(env.get(ENV_CONFIG_DIR) or REPO_ROOT / "config")
    warehouse_target = env.get(ENV_WAREHOUSE_TARGET) or "duckdb"
    if warehouse_target not in WAREHOUSE_TARGETS:
        raise ValueError(
            f"{ENV_WAREHOUSE_TARGET}={warehouse_target!r} is not a known warehouse target; "
            f"use one of {', '.join(WAREHOUSE_TARGETS)}"
        )
    duckdb_path = Path(env.get(ENV_DUCKDB_PATH) or state_dir / "warehouse.duckdb").resolve()
    warehouse_url = env.get(ENV_WAREHOUSE_URL) or DEFAULT_WAREHOUSE_URL
    if not warehouse_url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        raise ValueError(f"{ENV_WAREHOUSE_URL} must be a postgresql:// URL")
    return Settings(
        state_dir=state_dir,
        database_url=database_url,
        config_dir=config_dir,
        warehouse_target=warehouse_target,
        duckdb_path=duckdb_path,
        warehouse_url=warehouse_url,
        migration_database_url=env.get(ENV_MIGRATION_DATABASE_URL) or None,
    )


def current_actor(environ: dict[str, str] | None = None) -> str:
    """Who is acting, for audit records: an explicit variable first, then the OS user."""
    env = os.environ if environ is None else environ
    return env.get(ENV_ACTOR) or env.get("USER") or env.get("LOGNAME") or "unknown"
