"""Sensors, evaluated with built contexts against a real ops store and a real Dagster instance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import Engine, func, select

from agentprovision.apply import apply_config
from agentprovision.config import load_config_dir
from agentprovision.dispatch import due_syncs
from agentprovision.store import models as m
from agentprovision.store.db import session_factory, transaction
from agentprovision.store.gateway_models import GatewayBudgetCounter
from agentprovision.tasks import due_schedules, queue_task
from orchestration.resources import OpsStoreResource
from orchestration.sensors import (
    agent_schedules_sensor,
    connector_schedules_sensor,
    run_failure_sensor,
    stale_reservations_sensor,
    tenant_partitions_sensor,
)


@pytest.fixture
def seeded(tmp_path: Path) -> tuple[Engine, str]:
    from agentprovision.store.db import make_engine, migrate

    url = f"sqlite:///{tmp_path / 'ops.db'}"
    engine = make_engine(url)
    migrate(engine)
    with transaction(session_factory(engine)) as session:
        apply_config(session, load_config_dir("config").config, actor="t@example.com", source="config")
    return engine, url


def test_tenant_partitions_follow_config(seeded: tuple[Engine, str]) -> None:
    engine, url = seeded
    with dg.instance_for_test() as instance:
        resources = {"ops_store": OpsStoreResource(database_url=url)}
        context = dg.build_sensor_context(instance=instance, resources=resources)
        result = tenant_partitions_sensor(context)
        for request in result.dynamic_partitions_requests:
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        assert sorted(instance.get_dynamic_partitions("tenant")) == ["acme", "globex", "initech"]

        again = tenant_partitions_sensor(dg.build_sensor_context(instance=instance, resources=resources))
        assert isinstance(again, dg.SkipReason)

        config = load_config_dir("config").config
        with transaction(session_factory(engine)) as session:
            apply_config(
                session,
                config.model_copy(update={"tenants": config.tenants[:2]}),
                actor="t@example.com",
                source="config",
            )
        removal = tenant_partitions_sensor(dg.build_sensor_context(instance=instance, resources=resources))
        (request,) = removal.dynamic_partitions_requests
        assert isinstance(request, dg.DeleteDynamicPartitionsRequest) and list(request.partition_keys) == ["initech"]


def test_cron_evaluation_is_idempotent(seeded: tuple[Engine, str]) -> None:
    engine, url = seeded
    monday_0500 = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)  # a Monday
    with transaction(session_factory(engine)) as session:
        due = list(due_schedules(session, monday_0500 - timedelta(minutes=1), monday_0500 + timedelta(hours=3)))
    fired = sorted((d.agent_id, d.scheduled_for.strftime("%H:%M")) for d in due)
    # docs-writer 05:00 daily, globex-analyst 06:30 daily, code-reviewer 07:00 weekdays, kpi-digest 08:00 Mondays
    assert fired == [
        ("acme-code-reviewer", "07:00"),
        ("globex-analyst", "06:30"),
        ("globex-kpi-digest", "08:00"),
        ("initech-docs-writer", "05:00"),
    ]

    with transaction(session_factory(engine)) as session:
        for run in due + due:  # the same window twice: one task each
            queue_task(
                session,
                tenant_id=run.tenant_id,
                agent_id=run.agent_id,
                source="schedule",
                idempotency_key=run.idempotency_key,
            )
    with transaction(session_factory(engine)) as session:
        tasks = session.scalars(select(m.Task)).all()
    assert len(tasks) == 4 and {t.source for t in tasks} == {"schedule"}


def test_schedule_sensor_queues_due_work_once(seeded: tuple[Engine, str]) -> None:
    engine, url = seeded
    with transaction(session_factory(engine)) as session:  # a frequent cron, so the window is never empty
        session.get(m.Agent, "acme-qa-triage").schedule = "*/5 * * * *"
    resources = {"ops_store": OpsStoreResource(database_url=url)}
    window_start = (datetime.now(UTC) - timedelta(hours=5)).isoformat()
    with dg.instance_for_test() as instance:
        first = dg.build_sensor_context(instance=instance, resources=resources, cursor=window_start)
        agent_schedules_sensor(first)
        repeat = dg.build_sensor_context(instance=instance, resources=resources, cursor=window_start)
        agent_schedules_sensor(repeat)
        assert datetime.fromisoformat(first.cursor) > datetime.fromisoformat(window_start)
        repeat_cursor = repeat.cursor
    with transaction(session_factory(engine)) as session:
        keys = session.scalars(select(m.Task.idempotency_key)).all()
    assert len(keys) == len(set(keys))
    with transaction(session_factory(engine)) as session:
        until = datetime.fromisoformat(repeat_cursor)  # the later of the two windows
        expected = {d.idempotency_key for d in due_schedules(session, datetime.fromisoformat(window_start), until)}
    assert set(keys) == expected and len(expected) >= 59


# --- connector schedules -------------------------------------------------------------------------------


def test_connector_crons_collapse_missed_ticks_into_one_sync(seeded: tuple[Engine, str]) -> None:
    engine, _ = seeded
    since, until = datetime(2026, 11, 23, 1, 50, tzinfo=UTC), datetime(2026, 11, 23, 4, 10, tzinfo=UTC)
    with transaction(session_factory(engine)) as session:
        due = {
            (d.tenant_id, d.integration_id): d.scheduled_for.strftime("%H:%M") for d in due_syncs(session, since, until)
        }
    # */15 and */30 and hourly crons fired several times in the window: each syncs once, at its latest tick.
    assert due == {
        ("acme", "acme-jira"): "04:00",
        ("acme", "acme-handbook"): "02:00",
        ("acme", "acme-incidents"): "04:00",
        ("globex", "globex-warehouse"): "04:00",
        ("globex", "globex-positions"): "04:00",
        ("initech", "initech-github"): "04:00",
        ("initech", "initech-handbook"): "04:00",
    }


def test_connector_schedule_sensor_launches_one_tagged_run_per_due_integration(seeded: tuple[Engine, str]) -> None:
    engine, url = seeded
    resources = {"ops_store": OpsStoreResource(database_url=url)}
    window_start = (datetime.now(UTC) - timedelta(hours=3)).isoformat()
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("tenant", ["acme"])
        context = dg.build_sensor_context(instance=instance, resources=resources, cursor=window_start)
        result = connector_schedules_sensor(context)
        repeat = connector_schedules_sensor(
            dg.build_sensor_context(instance=instance, resources=resources, cursor=window_start)
        )
    with transaction(session_factory(engine)) as session:
        expected = list(due_syncs(session, datetime.fromisoformat(window_start), datetime.fromisoformat(result.cursor)))
    # Three hours always hold a tick of every */15, */30 and hourly cron.
    assert len(expected) >= 5
    requests = {r.run_key: r for r in result.run_requests}
    assert set(requests) == {d.run_key for d in expected}
    for d in expected:
        request = requests[d.run_key]
        assert request.partition_key == d.tenant_id and request.tags["agentprovision/tenant"] == d.tenant_id
        assert request.run_config == {"ops": {"connector_syncs": {"config": {"integration_ids": [d.integration_id]}}}}
    # Partitions of tenants the partition sensor has not added yet come with the runs.
    (add,) = result.dynamic_partitions_requests
    assert sorted(add.partition_keys) == sorted({d.tenant_id for d in expected} - {"acme"})
    # Evaluating the same window again yields the same run keys, which Dagster launches only once.
    assert {r.run_key for r in repeat.run_requests} <= set(requests)


# --- failed runs ---------------------------------------------------------------------------------------


def test_failed_run_is_audited_and_raises_a_routable_alert(seeded: tuple[Engine, str]) -> None:
    from agentprovision.apply import current_version
    from agentprovision.config import AdminConfig
    from agentprovision.store.audit import verify_chain
    from assets.connectors import connector_syncs
    from connectors.alerts import channels_for

    engine, url = seeded
    resources = {"ops_store": OpsStoreResource(database_url=url)}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("tenant", ["acme"])
        # A real failing run: syncing an integration the tenant does not have.
        outcome = dg.materialize(
            [connector_syncs],
            partition_key="acme",
            run_config={"ops": {"connector_syncs": {"config": {"integration_ids": ["no-such-integration"]}}}},
            resources=resources,
            instance=instance,
            raise_on_error=False,
        )
        assert not outcome.success
        run = instance.get_run_by_id(outcome.run_id)
        failure = next(e for e in outcome.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
        for _ in range(2):  # a re-evaluated failure is recorded once
            context = dg.build_run_status_sensor_context(
                sensor_name="run_failure_sensor",
                dagster_event=failure,
                dagster_instance=instance,
                dagster_run=run,
                resources=resources,
            ).for_run_failure()
            run_failure_sensor(context)

    with transaction(session_factory(engine)) as session:
        records = session.scalars(select(m.AuditRecord).where(m.AuditRecord.action == "orchestration.run_failed")).all()
        alerts = session.scalars(select(m.Event).where(m.Event.kind == "alert", m.Event.name == "run_failed")).all()
        config = AdminConfig.model_validate(current_version(session).content)
        assert verify_chain(session).intact
    (record,) = records
    assert (record.tenant_id, record.source, record.outcome, record.target_id) == (
        "acme",
        "dagster",
        "failure",
        run.run_id,
    )
    assert record.details["job"] == "__ephemeral_asset_job__" and record.details["partition"] == "acme"
    (alert,) = alerts
    assert alert.tenant_id == "acme" and alert.payload["dagster_run_id"] == run.run_id
    # The alert delivery sensor sends it to every channel subscribed to run_failed (the platform's here).
    assert [owner for owner, _ in channels_for(config, "acme", "run_failed")] == [None]


def test_stale_reservations_sensor_gives_back_what_a_dead_process_held(seeded: tuple[Engine, str]) -> None:
    from opentelemetry.trace import INVALID_SPAN

    from agents.gateway import CompletionRequest, Gateway

    engine, url = seeded
    config = load_config_dir("config").config
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    gateway = Gateway(config, engine, clock=lambda: an_hour_ago)
    request = CompletionRequest(
        tenant_id="acme", agent_id="acme-code-reviewer", messages=[{"role": "user", "content": "review this"}]
    )
    call = gateway._prepare(request, span=INVALID_SPAN)
    gateway._admit(call, span=INVALID_SPAN)  # reserved; the process "dies" before calling the model
    gateway.close()
    with transaction(session_factory(engine)) as session:
        held = session.scalar(select(func.sum(GatewayBudgetCounter.reserved_usd)))
    assert held and held > 0

    resources = {"ops_store": OpsStoreResource(database_url=url)}
    first = stale_reservations_sensor(dg.build_sensor_context(resources=resources))
    assert "released 1 reservation(s) older than 30 minutes" in first.skip_message
    with transaction(session_factory(engine)) as session:
        assert session.scalar(select(func.sum(GatewayBudgetCounter.reserved_usd))) == 0
    again = stale_reservations_sensor(
        dg.build_sensor_context(resources={"ops_store": OpsStoreResource(database_url=url)})
    )
    assert "released 0 reservation(s)" in again.skip_message
