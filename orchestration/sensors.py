"""Sensors: tenant partitions follow config; agent crons queue tasks; queued tasks are dispatched to
tenant runs; connector crons launch syncs; the marts raise alerts and alerts are delivered; failed runs
are audited and alerted; budget reservations of crashed processes are released."""

import hashlib
import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import dagster as dg
from sqlalchemy import select

from agentprovision.alerting import configured_thresholds, evaluate_mart_alerts
from agentprovision.apply import applied_platform_settings
from agentprovision.config.schema import GatewaySettings
from agentprovision.dispatch import due_syncs, plan_dispatch, record_refusals, still_queued
from agentprovision.events import PlatformEvent, write_events
from agentprovision.marts import MartReader, WarehouseUnavailable
from agentprovision.store.audit import append_audit
from agentprovision.store.db import session_factory, transaction
from agentprovision.store.models import AuditRecord, Event, Tenant
from agentprovision.tasks import due_schedules, queue_task
from agents.gateway.budgets import release_stale_reservations
from connectors.alerts import route_alerts
from orchestration.jobs import agent_work_job, connector_sync_job
from orchestration.partitions import DISPATCH_TAG, TENANT_TAG, tenant_partitions
from orchestration.resources import DispatchResource, OpsStoreResource

# A sensor that was down longer than this does not replay every missed cron tick on restart.
MAX_CATCH_UP = timedelta(hours=6)
UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
RUN_FAILED_ACTION = "orchestration.run_failed"


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def tenant_partitions_sensor(context: dg.SensorEvaluationContext, ops_store: OpsStoreResource):
    """Add a partition for each active tenant; remove those whose tenant left config (history stays)."""
    with transaction(session_factory(ops_store.engine)) as session:
        active = set(session.scalars(select(Tenant.tenant_id).where(Tenant.status == "active")))
    existing = set(context.instance.get_dynamic_partitions(tenant_partitions.name))
    added, removed = sorted(active - existing), sorted(existing - active)
    if not added and not removed:
        return dg.SkipReason(f"{len(active)} tenant partitions already match the config")
    return dg.SensorResult(
        cursor=json.dumps(sorted(active)),
        dynamic_partitions_requests=[
            *([tenant_partitions.build_add_request(added)] if added else []),
            *([tenant_partitions.build_delete_request(removed)] if removed else []),
        ],
    )


@dg.sensor(minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def agent_schedules_sensor(context: dg.SensorEvaluationContext, ops_store: OpsStoreResource):
    """One sensor for every agent's cron: thousands of agents cost one query, not one schedule each."""
    now = datetime.now(UTC)
    since = datetime.fromisoformat(context.cursor) if context.cursor else now
    since = max(since, now - MAX_CATCH_UP)
    queued = 0
    with transaction(session_factory(ops_store.engine)) as session:
        for due in due_schedules(session, since, now):
            _, created = queue_task(
                session,
                tenant_id=due.tenant_id,
                agent_id=due.agent_id,
                source="schedule",
                idempotency_key=due.idempotency_key,
                task_input={"scheduled_for": due.scheduled_for.isoformat()},
            )
            queued += created
    # The cursor moves only after the tasks committed: a crash re-evaluates the window, and the
    # idempotency keys make that harmless.
    context.update_cursor(now.isoformat())
    # Runs are launched by the dispatch sensor from the queue, not from here.
    return dg.SkipReason(f"queued {queued} scheduled task(s) since {since:%Y-%m-%d %H:%M:%S} UTC")


@dg.sensor(minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def alert_delivery_sensor(context: dg.SensorEvaluationContext, ops_store: OpsStoreResource):
    """Deliver new alert events (budget thresholds, ...) to the webhook channels that subscribed."""
    report = route_alerts(ops_store.engine, int(context.cursor or 0))
    context.update_cursor(str(report.cursor))
    return dg.SkipReason(
        f"alerts up to event {report.cursor}: {report.delivered} delivered, {report.dead} dead-lettered, "
        f"{report.skipped} for channel kinds not sent yet"
    )


@dg.sensor(minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.RUNNING)
def marts_alerting_sensor(context: dg.SensorEvaluationContext, ops_store: OpsStoreResource):
    """Raise alerts from the published marts (budget forecasts and status, error rates, policy denials).

    Each alert is raised once per scope and period (agentprovision/alerting.py keeps that), so the
    sensor needs no cursor; the alert delivery sensor sends what it writes.
    """
    engine = ops_store.engine
    try:
        events = evaluate_mart_alerts(MartReader(), engine, datetime.now(UTC), configured_thresholds(engine))
    except WarehouseUnavailable as exc:
        # No warehouse published yet (a fresh install before the first full pass): nothing to judge.
        return dg.SkipReason(str(exc))
    write_events(engine, events)
    names = Counter(event.name for event in events)
    summary = ", ".join(f"{count} {name}" for name, count in sorted(names.items())) or "none"
    return dg.SkipReason(f"alerts raised from the marts: {summary}")


@dg.sensor(minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.RUNNING)
def stale_reservations_sensor(context: dg.SensorEvaluationContext, ops_store: OpsStoreResource):
    """Give back budget held by calls whose process died before settling (one conditional UPDATE each).

    A sweep, not a run: it is one short statement, and a sensor tick is the cheapest place for it.
    """
    engine = ops_store.engine
    gateway = GatewaySettings.model_validate(applied_platform_settings(engine).get("gateway") or {})
    released = release_stale_reservations(engine, timedelta(minutes=gateway.stale_reservation_minutes))
    return dg.SkipReason(f"released {released} reservation(s) older than {gateway.stale_reservation_minutes} minutes")


def _in_flight_by_tenant(instance: dg.DagsterInstance) -> Counter[str]:
    """Unfinished agent-work runs per tenant partition, whoever launched them (sensor or a person)."""
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=agent_work_job.name, statuses=UNFINISHED))
    return Counter(run.tags.get("dagster/partition") for run in runs if run.tags.get("dagster/partition"))


@dg.sensor(job=agent_work_job, minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.RUNNING)
def dispatch_sensor(context: dg.SensorEvaluationContext, ops_store: OpsStoreResource, dispatch: DispatchResource):
    """Launch a run per tenant with queued tasks, within per-tenant and global limits and the tenant's budget.

    The cursor holds the tasks handed to runs that have not claimed them yet, so a tick never hands
    the same task to a second run; ids leave the cursor once the runtime has claimed them.
    """
    launched: list[str] = json.loads(context.cursor) if context.cursor else []
    in_flight = _in_flight_by_tenant(context.instance)
    with transaction(session_factory(ops_store.engine)) as session:
        pending = sorted(still_queued(session, launched))
        plan = plan_dispatch(session, in_flight=in_flight, limits=dispatch.limits(), exclude=pending)
        record_refusals(session, plan.refusals)
    known = set(context.instance.get_dynamic_partitions(tenant_partitions.name))
    new_tenants = sorted({launch.tenant_id for launch in plan.launches} - known)
    run_requests = [
        dg.RunRequest(
            # Same tasks, same key: Dagster never launches a key twice, even if the cursor were lost.
            run_key=f"dispatch:{launch.tenant_id}:{hashlib.sha256(' '.join(launch.task_ids).encode()).hexdigest()}",
            partition_key=launch.tenant_id,
            run_config={
                "ops": {
                    "agent_work": {
                        "config": {"task_ids": list(launch.task_ids), "max_concurrency": launch.max_concurrency}
                    }
                }
            },
            tags={TENANT_TAG: launch.tenant_id, DISPATCH_TAG: launch.tenant_id},
        )
        for launch in plan.launches
    ]
    for tenant_id, why in plan.waiting.items():
        context.log.info(f"{tenant_id} waits: {why}")
    return dg.SensorResult(
        run_requests=run_requests,
        # A tenant added to config since the partition sensor last ran gets its partition first.
        dynamic_partitions_requests=[tenant_partitions.build_add_request(new_tenants)] if new_tenants else [],
        cursor=json.dumps(pending + [task for launch in plan.launches for task in launch.task_ids]),
        skip_reason=None if run_requests else f"nothing to launch: {plan.summary()}",
    )


@dg.sensor(job=connector_sync_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def connector_schedules_sensor(context: dg.SensorEvaluationContext, ops_store: OpsStoreResource):
    """One sensor for every integration's cron (not one schedule per integration): one query per tick."""
    now = datetime.now(UTC)
    since = datetime.fromisoformat(context.cursor) if context.cursor else now
    since = max(since, now - MAX_CATCH_UP)
    with transaction(session_factory(ops_store.engine)) as session:
        due = list(due_syncs(session, since, now))
    known = set(context.instance.get_dynamic_partitions(tenant_partitions.name))
    new_tenants = sorted({d.tenant_id for d in due} - known)
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=d.run_key,  # a re-evaluated window launches nothing twice
                partition_key=d.tenant_id,
                run_config={"ops": {"connector_syncs": {"config": {"integration_ids": [d.integration_id]}}}},
                tags={TENANT_TAG: d.tenant_id, "agentprovision/integration": d.integration_id},
            )
            for d in due
        ],
        dynamic_partitions_requests=[tenant_partitions.build_add_request(new_tenants)] if new_tenants else [],
        cursor=now.isoformat(),
        skip_reason=None if due else f"no integration sync due since {since:%Y-%m-%d %H:%M:%S} UTC",
    )


@dg.run_failure_sensor(
    name="run_failure_sensor",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every failed run: an audit record (source dagster) and a run_failed alert event for the alert sensor.",
)
def run_failure_sensor(context: dg.RunFailureSensorContext, ops_store: OpsStoreResource):
    run = context.dagster_run
    # Tenant runs carry the tenant tag when a sensor launched them, only the partition when a person did.
    tenant_id = run.tags.get(TENANT_TAG) or run.tags.get("dagster/partition")
    error = context.failure_event.message or "run failed"
    details = {
        "dagster_run_id": run.run_id,
        "job": run.job_name,
        "partition": run.tags.get("dagster/partition"),
        "error": error[:2000],
    }
    with transaction(session_factory(ops_store.engine)) as session:
        recorded = session.scalar(
            select(AuditRecord.seq).where(AuditRecord.action == RUN_FAILED_ACTION, AuditRecord.target_id == run.run_id)
        )
        if recorded is not None:
            return  # a re-evaluated failure (the sensor crashed after committing): recorded once
        if tenant_id is not None and session.get(Tenant, tenant_id) is None:
            tenant_id = None  # not a tenant (another kind of partition): the platform's chain
        append_audit(
            session,
            actor="dagster",
            action=RUN_FAILED_ACTION,
            target_type="dagster_run",
            target_id=run.run_id,
            tenant_id=tenant_id,
            details=details,
            source="dagster",
            outcome="failure",
        )
        # Same transaction as the audit record: the alert exists exactly when the failure was recorded.
        session.add(
            Event(**PlatformEvent(tenant_id=tenant_id, kind="alert", name="run_failed", payload=details).as_row())
        )
