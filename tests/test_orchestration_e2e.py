"""End to end through Dagster: example config -> queued tasks -> dispatch sensor -> agent runs on the sandbox
provider -> ingestion -> dbt build -> marts whose per-tenant totals match what the ops store recorded.

The expected totals are computed from the ops store with SQLAlchemy (runs, usage events), a path
independent of the warehouse; the marts must hold exactly them, tenant by tenant.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from sqlalchemy import select

from agentprovision.apply import apply_config
from agentprovision.config import load_config_dir
from agentprovision.settings import load_settings
from agentprovision.store import models as m
from agentprovision.store.db import open_store, session_factory, transaction
from agentprovision.tasks import queue_task

TASKS_PER_AGENT = 2


@pytest.mark.slow
@pytest.mark.timeout(1200)  # agent runs plus a full dbt build
def test_tasks_flow_through_dispatch_and_dbt_into_per_tenant_marts(
    state_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestration.definitions import defs
    from orchestration.jobs import agent_work_job, full_pass_job
    from orchestration.resources import DispatchResource, OpsStoreResource
    from orchestration.sensors import dispatch_sensor

    settings = load_settings()
    engine = open_store(settings.database_url)
    # The Definitions' resources and dbt's profile read these.
    monkeypatch.setenv("AGENTPROVISION_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("AGENTPROVISION_DUCKDB_PATH", str(settings.duckdb_path))
    with transaction(session_factory(engine)) as session:
        apply_config(session, load_config_dir("config").config, actor="t@example.com", source="config")
        agents = session.execute(
            select(m.Agent.tenant_id, m.Agent.agent_id).where(m.Agent.status == "active").order_by(m.Agent.agent_id)
        ).all()
        for tenant_id, agent_id in agents:
            for _ in range(TASKS_PER_AGENT):
                queue_task(
                    session,
                    tenant_id=tenant_id,
                    agent_id=agent_id,
                    source="cli",
                    idempotency_key=str(uuid.uuid4()),
                    task_input={"instructions": "Summarise what changed this week."},
                )
    queued = len(agents) * TASKS_PER_AGENT

    resources = {"ops_store": OpsStoreResource(database_url=settings.database_url), "dispatch": DispatchResource()}
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    # In-memory run and event storage: what is checked here is the data path, not Dagster's storage, and the
    # SQLite files of instance_for_test cost a new engine per event (several seconds over a dbt build's events).
    with dg.DagsterInstance.ephemeral() as instance:
        cursor, launched = None, 0
        for _ in range(5):  # ticks until the queue is empty
            context = dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor)
            tick = dispatch_sensor(context)
            cursor = tick.cursor
            for request in tick.dynamic_partitions_requests:
                instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
            if not tick.run_requests:
                break
            for request in tick.run_requests:
                run = defs.resolve_job_def(agent_work_job.name).execute_in_process(
                    instance=instance,
                    partition_key=request.partition_key,
                    run_config={**quiet, **request.run_config},
                    tags=request.tags,
                )
                assert run.success
                launched += 1
        assert launched == 3  # one run per tenant: every tenant's tasks fit one batch
        full = defs.resolve_job_def(full_pass_job.name).execute_in_process(instance=instance, run_config=quiet)
        assert full.success
        checks = {
            e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
            for e in full.all_events
            if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
        }
        assert checks["gx_events_schema"] and checks["gx_events_values"]

    # What the ops store recorded, per tenant.
    runs: dict[str, list] = defaultdict(lambda: [0, Decimal(0)])
    calls: dict[str, list] = defaultdict(lambda: [0, Decimal(0)])
    with transaction(session_factory(engine)) as session:
        statuses = set(session.scalars(select(m.Task.status)))
        for run in session.scalars(select(m.Run)):
            runs[run.tenant_id][0] += 1
            runs[run.tenant_id][1] += run.cost_usd
        for event in session.scalars(select(m.Event).where(m.Event.kind == "usage", m.Event.name == "model_call")):
            calls[event.tenant_id][0] += 1
            calls[event.tenant_id][1] += Decimal(event.payload.get("cost_usd") or "0")
    assert statuses <= {"succeeded", "failed"} and sum(count for count, _ in runs.values()) == queued
    assert set(runs) == {"acme", "globex", "initech"}

    with duckdb.connect(str(settings.published_duckdb_path), read_only=True) as con:
        mart_runs = {
            tenant: [count, Decimal(str(cost))]
            for tenant, count, cost in con.execute(
                "SELECT tenant_id, count(*), sum(cost_usd) FROM marts.fct_agent_runs GROUP BY tenant_id"
            ).fetchall()
        }
        mart_calls = {
            tenant: [count, Decimal(str(cost))]
            for tenant, count, cost in con.execute(
                "SELECT tenant_id, count(*), sum(cost_usd) FROM marts.fct_llm_calls GROUP BY tenant_id"
            ).fetchall()
        }
    assert mart_runs == {tenant: [count, cost] for tenant, (count, cost) in runs.items()}
    assert mart_calls == {tenant: [count, cost] for tenant, (count, cost) in calls.items()}
