"""The headless demo: seed the embedded default from config, run agent work, then the full pass, through Dagster.

One pass: apply the config, sync the offline integrations (their triggers queue tasks), queue one
task per active agent for today, dispatch the queued tasks exactly as the dispatch sensor would
(same planner: limits and budget check), run each tenant's agent work as a `run_agent_tasks` run on
the sandbox provider, then the `full_pass` job (ingestion, GX checks, dbt, publish). Every run is
recorded in DAGSTER_HOME, so it shows in the Dagster UI exactly like a scheduled one. Running it
again the same day applies nothing new, queues nothing new and ingests only what is new.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time

import duckdb
from sqlalchemy import Engine, select

from agentprovision.apply import apply_config
from agentprovision.config import load_config_dir
from agentprovision.dispatch import DispatchPlan, plan_dispatch, record_refusals
from agentprovision.serve import server_environment
from agentprovision.settings import Settings
from agentprovision.store.db import open_store, session_factory, transaction
from agentprovision.store.models import Agent, Tenant
from agentprovision.tasks import queue_task
from connectors.errors import ConnectorError
from connectors.sync import SyncOptions, sync_all

SEED_ACTOR = "agentprovision-demo"


def run(settings: Settings, once: bool, interval: int) -> None:
    while True:
        code = run_pass(settings)
        if once or code != 0:
            sys.exit(code)
        time.sleep(interval)


def run_pass(settings: Settings) -> int:
    os.environ.update(server_environment(settings))

    result = load_config_dir(settings.config_dir)
    if not result.ok:
        for issue in result.issues:
            print(issue.render(), file=sys.stderr)
        print(f"\nthe config in {settings.config_dir} is invalid; nothing was seeded", file=sys.stderr)
        return 2
    engine = open_store(*settings.store_urls)
    with transaction(session_factory(engine)) as session:
        applied = apply_config(
            session, result.config, actor=SEED_ACTOR, source=str(settings.config_dir), channel="demo"
        )
    print(f"config: {'applied as version ' + str(applied.version) if applied.changed else 'unchanged'}")
    print(sync_local_integrations(engine, settings))
    print(f"tasks: {queue_demo_tasks(engine)} queued for today's demo")

    # Imported here so that loading definitions (which parses nothing, but builds resources from
    # the environment) happens after the environment above is in place.
    from dagster import DagsterInstance

    from orchestration.definitions import defs
    from orchestration.jobs import agent_work_job
    from orchestration.partitions import DISPATCH_TAG, TENANT_TAG, tenant_partitions

    # dbt's progress lines go to a buffer to keep the summary short; they are shown if the pass fails,
    # and every run's full logs stay in the Dagster UI.
    progress = io.StringIO()
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    with DagsterInstance.get() as instance, contextlib.redirect_stdout(progress):
        with transaction(session_factory(engine)) as session:
            tenants = sorted(session.scalars(select(Tenant.tenant_id).where(Tenant.status == "active")))
            plan = plan_dispatch(session, in_flight={})
            record_refusals(session, plan.refusals)
        # What tenant_partitions_sensor does on its first tick under `dagster dev`.
        instance.add_dynamic_partitions(tenant_partitions.name, tenants)
        agent_runs = [
            defs.resolve_job_def(agent_work_job.name).execute_in_process(
                instance=instance,
                partition_key=launch.tenant_id,
                raise_on_error=False,
                tags={TENANT_TAG: launch.tenant_id, DISPATCH_TAG: launch.tenant_id},
                run_config={
                    **quiet,
                    "ops": {
                        "agent_work": {
                            "config": {"task_ids": list(launch.task_ids), "max_concurrency": launch.max_concurrency}
                        }
                    },
                },
            )
            for launch in plan.launches
        ]
        outcome = defs.resolve_job_def("full_pass").execute_in_process(
            instance=instance, raise_on_error=False, run_config=quiet
        )
    print(agent_summary(plan, agent_runs))
    failed_agent_runs = [run.run_id for run in agent_runs if not run.success]
    if failed_agent_runs:
        print(progress.getvalue()[-4000:], file=sys.stderr)
        print(f"agent work failed in run(s) {', '.join(failed_agent_runs)}; see the Dagster UI", file=sys.stderr)
        return 1
    if not outcome.success:
        print(progress.getvalue()[-4000:], file=sys.stderr)
        failed = [e.step_key for e in outcome.all_events if e.is_step_failure]
        print(
            f"pipeline pass failed at {', '.join(failed) or 'an unknown step'}; "
            f"see run {outcome.run_id} in the Dagster UI",
            file=sys.stderr,
        )
        return 1
    print(f"pipeline: run {outcome.run_id} succeeded")
    print(summary(settings))
    return 0


def queue_demo_tasks(engine: Engine) -> int:
    """One task per active agent for today; idempotent per day, so a second pass queues nothing."""
    today = time.strftime("%Y-%m-%d", time.gmtime())
    created = 0
    with transaction(session_factory(engine)) as session:
        agents = session.execute(
            select(Agent.tenant_id, Agent.agent_id, Agent.name)
            .join(Tenant, Tenant.tenant_id == Agent.tenant_id)
            .where(Agent.status == "active", Tenant.status == "active")
            .order_by(Agent.agent_id)
        ).all()
        for tenant_id, agent_id, name in agents:
            _, new = queue_task(
                session,
                tenant_id=tenant_id,
                agent_id=agent_id,
                source="cli",
                idempotency_key=f"demo:{agent_id}:{today}",
                task_input={"instructions": f"Demo run of {name}: summarise what changed today."},
            )
            created += new
    return created


def agent_summary(plan: DispatchPlan, runs: list) -> str:  # type: ignore[type-arg]
    tasks = {}
    for run in runs:
        for materialization in run.asset_materializations_for_node("agent_work"):
            for key, value in materialization.metadata.items():
                if key.startswith("tasks_"):
                    tasks[key.removeprefix("tasks_")] = tasks.get(key.removeprefix("tasks_"), 0) + value.value
    done = ", ".join(f"{count} {status}" for status, count in sorted(tasks.items())) or "none"
    return f"agents: {len(runs)} tenant run(s), tasks {done}, {len(plan.refusals)} refused by budget"


def sync_local_integrations(engine: Engine, settings: Settings) -> str:
    """Sync the integrations that need no network (files, docs), so triggers queue real tasks."""
    outcomes = sync_all(engine, local_only=True, options=SyncOptions(base_dir=settings.config_dir))
    failed = [
        f"{tenant}/{integration}: {outcome}"
        for tenant, integration, outcome in outcomes
        if isinstance(outcome, ConnectorError)
    ]
    synced = [outcome for _, _, outcome in outcomes if not isinstance(outcome, ConnectorError)]
    line = (
        f"integrations: {len(synced)} synced, {sum(r.inserted for r in synced)} new records, "
        f"{sum(r.tasks_created for r in synced)} tasks queued by triggers"
    )
    return line + "".join(f"\n  failed {item}" for item in failed)


def summary(settings: Settings) -> str:
    with duckdb.connect(str(settings.published_duckdb_path), read_only=True) as con:
        tenants = con.execute("SELECT count(*) FROM marts.dim_tenants").fetchone()[0]
        agents = con.execute("SELECT count(*) FROM marts.dim_agents").fetchone()[0]
        audit = con.execute("SELECT count(*) FROM marts.fct_audit_events").fetchone()[0]
    return (
        f"warehouse: {tenants} tenants, {agents} agents, {audit} audit events "
        f"published at {settings.published_duckdb_path}"
    )
