"""Dagster definitions, the production instance config, and the whole demo loop end to end."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import dagster as dg
import duckdb
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


SNAPSHOT = Path(__file__).with_name("orchestration_snapshot.json")


def definitions_snapshot() -> dict[str, list[str]]:
    from orchestration.definitions import defs

    repository = defs.get_repository_def()
    return {
        "assets": sorted(key.to_user_string() for key in repository.asset_graph.get_all_asset_keys()),
        "jobs": sorted(job.name for job in repository.get_all_jobs() if not job.name.startswith("__")),
        "schedules": sorted(s.name for s in repository.schedule_defs),
        "sensors": sorted(s.name for s in repository.sensor_defs),
        "tenant_partitioned": sorted(
            key.to_user_string()
            for key in repository.asset_graph.get_all_asset_keys()
            if repository.asset_graph.get(key).partitions_def is not None
        ),
    }


def test_definitions_snapshot() -> None:
    """Definitions load, and match the committed snapshot (UPDATE_SNAPSHOT=1 rewrites it after a deliberate change)."""
    current = definitions_snapshot()
    if os.environ.get("UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(json.dumps(current, indent=2) + "\n")
    expected = json.loads(SNAPSHOT.read_text())
    for part in expected:
        assert current[part] == expected[part], f"{part} changed; if on purpose, rerun with UPDATE_SNAPSHOT=1"
    # Schema-prefixed, never database-prefixed (DuckDB names its database after the file).
    assert all(not key.startswith(("warehouse", "main/")) for key in current["assets"])
    # Only per-tenant work is partitioned, and only by tenant (never tenant x day).
    assert current["tenant_partitioned"] == [
        "agent_work",
        "compliance_evidence",
        "connector_syncs",
        "data_retention",
        "finetune_dataset",
    ]


def test_partitioned_assets_use_the_tenant_partitions() -> None:
    from orchestration.definitions import defs
    from orchestration.partitions import tenant_partitions

    graph = defs.get_repository_def().asset_graph
    for key in definitions_snapshot()["tenant_partitioned"]:
        assert graph.get(dg.AssetKey.from_user_string(key)).partitions_def == tenant_partitions


def test_dbt_sources_are_fed_by_the_ingestion_asset() -> None:
    from orchestration.definitions import defs

    graph = defs.get_repository_def().asset_graph
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
            # Writing an event exercises the driver (dagster-postgres needs psycopg2, not psycopg 3).
            run = instance.add_run(dg.DagsterRun(job_name="probe", run_id=str(uuid.uuid4())))
            instance.report_engine_event("probe", run)
            assert [e.message for e in instance.all_logs(run.run_id)] == ["probe"]
            queue = instance.get_concurrency_config().run_queue_config
            limits = {limit["key"]: limit for limit in queue.tag_concurrency_limits}
            assert limits["agentprovision/dispatch-tenant"]["value"] == {"applyLimitPerUniqueValue": True}
            assert limits["agentprovision/warehouse-writer"]["limit"] == 1
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
        timeout=900,
    )


def agent_tasks_done(stdout: str) -> tuple[int, int]:
    """(tenant runs, tasks finished) from the demo's `agents:` line."""
    line = next(line for line in stdout.splitlines() if line.startswith("agents: "))
    runs = int(re.search(r"agents: (\d+) tenant run", line).group(1))
    return runs, sum(int(n) for n in re.findall(r"(\d+) (?:succeeded|failed)", line))


@pytest.mark.slow
@pytest.mark.timeout(1800)  # two whole passes, each a full dbt build
def test_demo_runs_the_whole_loop_and_is_safe_to_repeat(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = run_demo(state)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "config: applied as version 1" in first.stdout
    assert "integrations: 4 synced, 14 new records, 4 tasks queued by triggers" in first.stdout
    assert "tasks: 7 queued for today's demo" in first.stdout
    # Every queued task (4 from triggers, one per active agent) ran in one run per tenant.
    assert agent_tasks_done(first.stdout) == (3, 11)
    assert "0 refused by budget" in first.stdout
    assert "warehouse: 3 tenants, 8 agents, 1 audit events" in first.stdout

    second = run_demo(state)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "config: unchanged" in second.stdout
    assert "integrations: 4 synced, 0 new records, 0 tasks queued by triggers" in second.stdout
    assert "tasks: 0 queued for today's demo" in second.stdout
    assert agent_tasks_done(second.stdout) == (0, 0)
    assert "warehouse: 3 tenants, 8 agents, 1 audit events" in second.stdout

    with duckdb.connect(str(state / "warehouse_published.duckdb"), read_only=True) as con:
        regions = dict(con.execute("SELECT tenant_id, region FROM marts.dim_tenants").fetchall())
        agent_types = con.execute("SELECT count(DISTINCT agent_type) FROM marts.dim_agents").fetchone()[0]
        runs_per_tenant = dict(
            con.execute("SELECT tenant_id, count(*) FROM marts.fct_agent_runs GROUP BY 1").fetchall()
        )
    assert regions == {"acme": "us", "globex": "eu", "initech": "us"}
    assert agent_types == 7
    assert sum(runs_per_tenant.values()) == 11 and set(runs_per_tenant) == {"acme", "globex", "initech"}

    # Every run is recorded in the Dagster instance the UI reads: three tenant runs, then two passes.
    from dagster import DagsterInstance, DagsterRunStatus

    with DagsterInstance.from_config(str(state / "dagster")) as instance:
        runs = instance.get_runs()
    assert all(run.status == DagsterRunStatus.SUCCESS for run in runs)
    assert sorted(run.job_name for run in runs) == ["full_pass", "full_pass", *["run_agent_tasks"] * 3]
    assert sorted(r.tags["dagster/partition"] for r in runs if r.job_name == "run_agent_tasks") == [
        "acme",
        "globex",
        "initech",
    ]


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


def test_one_tenant_partition_touches_only_that_tenants_data(tmp_path: Path, state_env: Path) -> None:
    """Materialising agent work and evidence for acme runs acme's tasks and leaves globex's queued."""
    import uuid

    from sqlalchemy import select

    from agentprovision.apply import apply_config
    from agentprovision.config import load_config_dir
    from agentprovision.store import models as m
    from agentprovision.store.db import make_engine, migrate, session_factory, transaction
    from agentprovision.tasks import queue_task
    from assets.agents import agent_work
    from assets.datasets import finetune_dataset
    from assets.governance import compliance_evidence, data_retention
    from orchestration.resources import OpsStoreResource

    url = f"sqlite:///{tmp_path / 'ops.db'}"
    engine = make_engine(url)
    migrate(engine)
    with transaction(session_factory(engine)) as session:
        apply_config(session, load_config_dir("config").config, actor="t@example.com", source="config")
        for tenant_id, agent_id in [
            ("acme", "acme-qa-triage"),
            ("acme", "acme-deploy-doctor"),
            ("globex", "globex-analyst"),
        ]:
            queue_task(
                session,
                tenant_id=tenant_id,
                agent_id=agent_id,
                source="cli",
                idempotency_key=str(uuid.uuid4()),
                task_input={"instructions": "Summarise what changed this week."},
            )
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("tenant", ["acme", "globex", "initech"])
        result = dg.materialize(
            [agent_work, compliance_evidence, data_retention, finetune_dataset],
            partition_key="acme",
            resources={"ops_store": OpsStoreResource(database_url=url)},
            instance=instance,
        )
        assert result.success
        metadata = result.asset_materializations_for_node("agent_work")[0].metadata
        assert metadata["tasks"].value == 2 and metadata["tasks_succeeded"].value == 2

    with transaction(session_factory(engine)) as session:
        tasks = {(t.tenant_id, t.status) for t in session.scalars(select(m.Task))}
        run_tenants = set(session.scalars(select(m.Run.tenant_id)))
        event_tenants = set(session.scalars(select(m.Event.tenant_id)))
        audit = session.execute(
            select(m.AuditRecord.action, m.AuditRecord.tenant_id, m.AuditRecord.source).where(
                m.AuditRecord.source == "dagster"
            )
        ).all()
    assert tasks == {("acme", "succeeded"), ("globex", "queued")}
    assert run_tenants == {"acme"} and event_tenants == {"acme"}
    assert sorted(audit) == [
        ("data.exported", "acme", "dagster"),
        ("evidence.export", "acme", "dagster"),
        ("retention.apply", "acme", "dagster"),
    ]
    assert sorted(p.name for p in (state_env / "evidence").iterdir()) == ["acme"]
    assert sorted(p.name for p in (state_env / "datasets").iterdir()) == ["acme"]


def test_agent_work_for_a_tenant_not_in_config_fails_once_without_retries(tmp_path: Path, state_env: Path) -> None:
    from agentprovision.apply import apply_config
    from agentprovision.config import load_config_dir
    from agentprovision.store.db import make_engine, migrate, session_factory, transaction
    from assets.agents import STORE_RETRY, agent_work
    from orchestration.resources import OpsStoreResource

    assert agent_work.op.retry_policy == STORE_RETRY and STORE_RETRY.max_retries == 3
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    engine = make_engine(url)
    migrate(engine)
    with transaction(session_factory(engine)) as session:
        apply_config(session, load_config_dir("config").config, actor="t@example.com", source="config")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("tenant", ["ghost"])
        result = dg.materialize(
            [agent_work],
            partition_key="ghost",
            resources={"ops_store": OpsStoreResource(database_url=url)},
            instance=instance,
            raise_on_error=False,
        )
    assert not result.success
    types = [e.event_type for e in result.all_events]
    # A tenant missing from config will not appear on a retry: the step fails once, with the reason.
    assert dg.DagsterEventType.STEP_UP_FOR_RETRY not in types
    (failure,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert "tenant 'ghost' is not in the config" in failure.event_specific_data.error.message
