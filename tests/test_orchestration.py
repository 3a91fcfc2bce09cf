"""Dagster definitions, the production instance config, and the whole demo loop end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_definitions_snapshot() -> None:
    from orchestration.definitions import defs

    repository = defs.get_repository_def()
    asset_keys = sorted(key.to_user_string() for key in repository.asset_graph.get_all_asset_keys())
    # Schema-prefixed, never database-prefixed (DuckDB names its database after the file).
    assert asset_keys == [
        "audit_chain_heads",
        "marts/dim_agents",
        "marts/dim_departments",
        "marts/dim_models",
        "marts/dim_tenants",
        "marts/dim_users",
        "marts/fct_audit_events",
        "marts/fct_config_versions",
        "ops/agents",
        "ops/audit_records",
        "ops/config_versions",
        "ops/departments",
        "ops/events",
        "ops/integrations",
        "ops/model_deployments",
        "ops/tenants",
        "ops/users",
        "published_warehouse",
        "staging/stg_ops__agents",
        "staging/stg_ops__audit_records",
        "staging/stg_ops__config_versions",
        "staging/stg_ops__departments",
        "staging/stg_ops__events",
        "staging/stg_ops__integrations",
        "staging/stg_ops__model_deployments",
        "staging/stg_ops__tenants",
        "staging/stg_ops__users",
    ]
    assert sorted(job.name for job in repository.get_all_jobs() if not job.name.startswith("__")) == [
        "audit_heads",
        "full_pass",
    ]
    assert sorted(s.name for s in repository.schedule_defs) == ["audit_heads_daily", "full_pass_every_15_minutes"]
    assert sorted(s.name for s in repository.sensor_defs) == [
        "agent_schedules_sensor",
        "alert_delivery_sensor",
        "tenant_partitions_sensor",
    ]


def test_dbt_sources_are_fed_by_the_ingestion_asset() -> None:
    from orchestration.definitions import defs

    graph = defs.get_repository_def().asset_graph
    import dagster as dg

    upstream = graph.get(dg.AssetKey(["staging", "stg_ops__tenants"])).parent_keys
    assert dg.AssetKey(["ops", "tenants"]) in upstream
    assert graph.get(dg.AssetKey(["ops", "tenants"])).is_materializable
    # dbt's tests on the sources are asset checks on the ingestion assets.
    checked = {key.asset_key for key in graph.asset_check_keys}
    assert dg.AssetKey(["ops", "tenants"]) in checked and dg.AssetKey(["marts", "dim_tenants"]) in checked


def test_workspace_validates_with_the_dagster_cli(tmp_path: Path) -> None:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.postgres
def test_production_instance_config_runs_on_postgres(tmp_path: Path, postgres_url: str) -> None:
    from urllib.parse import urlparse

    from dagster import DagsterInstance

    url = urlparse(postgres_url)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO_ROOT / "deploy" / "dagster.yaml").read_text())
    env = {
        "DAGSTER_PG_HOST": url.hostname,
        "DAGSTER_PG_PORT": str(url.port),
        "DAGSTER_PG_USER": url.username,
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_PG_DB": url.path.lstrip("/"),
    }
    previous = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        with DagsterInstance.from_config(str(home)) as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
            assert instance.get_runs() == []
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_demo(state: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AGENTPROVISION_", "DAGSTER_"))}
    env["AGENTPROVISION_STATE_DIR"] = str(state)
    return subprocess.run(
        [str(Path(sys.executable).parent / "agentprovision"), "demo", "--once"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_demo_runs_the_whole_loop_and_is_safe_to_repeat(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = run_demo(state)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "config: applied as version 1" in first.stdout
    assert "integrations: 4 synced, 14 new records, 4 tasks queued by triggers" in first.stdout
    assert "warehouse: 3 tenants, 8 agents, 1 audit events" in first.stdout

    second = run_demo(state)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "config: unchanged" in second.stdout
    assert "integrations: 4 synced, 0 new records, 0 tasks queued by triggers" in second.stdout
    assert "warehouse: 3 tenants, 8 agents, 1 audit events" in second.stdout

    with duckdb.connect(str(state / "warehouse_published.duckdb"), read_only=True) as con:
        regions = dict(con.execute("SELECT tenant_id, region FROM marts.dim_tenants").fetchall())
        agent_types = con.execute("SELECT count(DISTINCT agent_type) FROM marts.dim_agents").fetchone()[0]
    assert regions == {"acme": "us", "globex": "eu", "initech": "us"}
    assert agent_types == 7

    # Both passes are recorded in the Dagster instance the UI reads.
    from dagster import DagsterInstance, DagsterRunStatus

    with DagsterInstance.from_config(str(state / "dagster")) as instance:
        runs = instance.get_runs()
    assert len(runs) == 2 and all(run.status == DagsterRunStatus.SUCCESS for run in runs)
    assert {run.job_name for run in runs} == {"full_pass"}


def test_demo_refuses_invalid_config(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "platform.yaml").write_text("platform: {environment: staging}\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith("AGENTPROVISION_")}
    env.update(AGENTPROVISION_STATE_DIR=str(tmp_path / "state"), AGENTPROVISION_CONFIG_DIR=str(config))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "agentprovision"), "demo", "--once"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert "nothing was seeded" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "state" / "ops.db").exists()
