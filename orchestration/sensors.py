"""Sensors: tenant partitions follow config; one sensor turns every agent's cron into queued tasks."""

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
from sqlalchemy import select

from agentprovision.store.db import session_factory, transaction
from agentprovision.store.models import Tenant
from agentprovision.tasks import due_schedules, queue_task
from connectors.alerts import route_alerts
from orchestration.partitions import tenant_partitions
from orchestration.resources import OpsStoreResource

# A sensor that was down longer than this does not replay every missed cron tick on restart.
MAX_CATCH_UP = timedelta(hours=6)


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
