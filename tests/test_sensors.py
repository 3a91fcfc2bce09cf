"""Sensors, evaluated with built contexts against a real ops store and a real Dagster instance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import Engine, select

from agentprovision.apply import apply_config
from agentprovision.config import load_config_dir
from agentprovision.store import models as m
from agentprovision.store.db import session_factory, transaction
from agentprovision.tasks import due_schedules, queue_task
from orchestration.resources import OpsStoreResource
from orchestration.sensors import agent_schedules_sensor, tenant_partitions_sensor


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
