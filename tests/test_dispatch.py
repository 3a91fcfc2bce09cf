"""The dispatch planner and the dispatch sensor, against a real ops store and a real Dagster instance."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import Engine, select

from agentprovision.apply import apply_config
from agentprovision.config import load_config_dir
from agentprovision.dispatch import DispatchLimits, plan_dispatch, record_refusals
from agentprovision.store import models as m
from agentprovision.store.db import make_engine, migrate, session_factory, transaction
from agentprovision.store.gateway_models import GatewayBudgetCounter
from agentprovision.tasks import queue_task
from orchestration.resources import DispatchResource, OpsStoreResource
from orchestration.sensors import dispatch_sensor

NOW = datetime.now(UTC)
MONTH = NOW.strftime("%Y-%m")


@pytest.fixture
def seeded(tmp_path: Path) -> tuple[Engine, str]:
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    engine = make_engine(url)
    migrate(engine)
    with transaction(session_factory(engine)) as session:
        apply_config(session, load_config_dir("config").config, actor="t@example.com", source="config")
    return engine, url


def queue(engine: Engine, agent_id: str, n: int = 1) -> list[str]:
    ids = []
    with transaction(session_factory(engine)) as session:
        tenant_id = session.get(m.Agent, agent_id).tenant_id
        for _ in range(n):
            task, _ = queue_task(
                session, tenant_id=tenant_id, agent_id=agent_id, source="cli", idempotency_key=str(uuid.uuid4())
            )
            ids.append(task.task_id)
    return ids


def spend(engine: Engine, scope: str, level: str, tenant_id: str | None, usd: str) -> None:
    with transaction(session_factory(engine)) as session:
        session.add(
            GatewayBudgetCounter(
                scope=scope, month=MONTH, tenant_id=tenant_id, level=level, spent_usd=Decimal(usd), reserved_usd=0
            )
        )


def plan(engine: Engine, **kwargs):  # type: ignore[no-untyped-def]
    with transaction(session_factory(engine)) as session:
        return plan_dispatch(session, in_flight=kwargs.pop("in_flight", {}), now=NOW, **kwargs)


def test_each_tenant_gets_one_bounded_run_with_its_plan_concurrency(seeded: tuple[Engine, str]) -> None:
    engine, _ = seeded
    acme = queue(engine, "acme-qa-triage", 5)
    globex = queue(engine, "globex-analyst", 2)

    result = plan(engine, limits=DispatchLimits(batch_size=3))

    launches = {launch.tenant_id: launch for launch in result.launches}
    assert set(launches) == {"acme", "globex"}
    # Oldest queued first, at most a batch per run; concurrency from the tenant's plan (acme 4, globex 2).
    assert launches["acme"].task_ids == tuple(acme[:3]) and launches["acme"].max_concurrency == 4
    assert launches["globex"].task_ids == tuple(globex)
    assert result.launches[0].tenant_id == "acme"  # waited longest
    assert result.refusals == [] and result.waiting == {}


def test_per_tenant_and_global_limits_hold_back_runs(seeded: tuple[Engine, str]) -> None:
    engine, _ = seeded
    queue(engine, "acme-qa-triage", 2)
    queue(engine, "globex-analyst")
    queue(engine, "initech-docs-writer")

    busy = plan(engine, in_flight={"acme": 1})
    assert sorted(launch.tenant_id for launch in busy.launches) == ["globex", "initech"]
    assert busy.waiting == {"acme": "a run for this tenant is already in flight"}

    # Two runs allowed in all and one already in flight (acme's): only the longest-waiting other tenant starts.
    capped = plan(engine, in_flight={"acme": 1}, limits=DispatchLimits(global_runs=2))
    assert [launch.tenant_id for launch in capped.launches] == ["globex"]
    assert "global limit of 2" in capped.waiting["initech"]


def test_tasks_handed_to_a_run_are_not_planned_again(seeded: tuple[Engine, str]) -> None:
    engine, _ = seeded
    first = queue(engine, "acme-qa-triage", 2)
    later = queue(engine, "acme-qa-triage")
    result = plan(engine, exclude=first)
    assert [launch.task_ids for launch in result.launches] == [tuple(later)]


def test_budget_refuses_what_the_hard_limit_cannot_pay_for(seeded: tuple[Engine, str]) -> None:
    engine, _ = seeded
    globex = queue(engine, "globex-analyst", 2)
    reviewer = queue(engine, "acme-code-reviewer")
    triage = queue(engine, "acme-qa-triage")
    spend(engine, "tenant:globex", "tenant", "globex", "1000000")  # far past any hard limit
    # The code reviewer's own budget (300 USD hard) has less left than one run is estimated to cost.
    spend(engine, "agent:acme-code-reviewer", "agent", "acme", "299.9999")

    result = plan(engine)

    assert [launch.task_ids for launch in result.launches] == [tuple(triage)]
    refused = {r.task_id: r for r in result.refusals}
    assert set(refused) == {*globex, *reviewer}
    assert refused[globex[0]].scope == "tenant:globex" and refused[globex[0]].remaining_usd < 0
    assert refused[reviewer[0]].scope == "agent:acme-code-reviewer"
    assert refused[reviewer[0]].remaining_usd == Decimal("0.0001")
    assert "agent budget agent:acme-code-reviewer has 0.000100 USD left" in refused[reviewer[0]].reason

    with transaction(session_factory(engine)) as session:
        assert record_refusals(session, result.refusals, NOW) == 3
        assert record_refusals(session, result.refusals, NOW) == 0  # only queued tasks are marked, once
    with transaction(session_factory(engine)) as session:
        task = session.get(m.Task, reviewer[0])
        events = session.scalars(select(m.Event).where(m.Event.name == "dispatch_refused")).all()
    assert task.status == "refused" and "0.000100 USD left" in task.outcome
    assert len(events) == 3 and {e.kind for e in events} == {"policy"}
    by_task = {e.payload["task_id"]: e for e in events}
    assert by_task[globex[1]].tenant_id == "globex" and by_task[globex[1]].payload["scope"] == "tenant:globex"
    assert by_task[reviewer[0]].payload["action"] == "refused" and by_task[reviewer[0]].agent_id == "acme-code-reviewer"


def test_room_left_is_shared_by_the_tasks_of_one_plan(seeded: tuple[Engine, str]) -> None:
    engine, _ = seeded
    tasks = queue(engine, "acme-qa-triage", 3)
    # 0.0025 USD left for the tenant: two tasks at the 0.001 USD floor estimate fit, the third does not.
    spend(engine, "tenant:acme", "tenant", "acme", "1499.9975")
    result = plan(engine)
    assert [launch.task_ids for launch in result.launches] == [tuple(tasks[:2])]
    assert [r.task_id for r in result.refusals] == [tasks[2]]


def test_estimate_follows_the_agents_recent_run_costs(seeded: tuple[Engine, str]) -> None:
    engine, _ = seeded
    (old,) = queue(engine, "acme-qa-triage")
    with transaction(session_factory(engine)) as session:
        session.get(m.Task, old).status = "succeeded"
        for cost in ("0.40", "0.60"):
            session.add(
                m.Run(
                    run_id=str(uuid.uuid4()),
                    tenant_id="acme",
                    agent_id="acme-qa-triage",
                    task_id=old,
                    agent_version="2.0.0",
                    status="succeeded",
                    cost_usd=Decimal(cost),
                )
            )
    (task,) = queue(engine, "acme-qa-triage")
    spend(engine, "tenant:acme", "tenant", "acme", "1499.6")  # 0.40 left, runs average 0.50
    (refusal,) = plan(engine).refusals
    assert refusal.task_id == task and refusal.estimate_usd == Decimal("0.5")


def test_no_config_no_plan(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    migrate(engine)
    result = plan(engine)
    assert result.launches == [] and result.refusals == []


def test_limits_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        DispatchLimits(batch_size=0)


# --- the sensor -------------------------------------------------------------------------------------


def evaluate(instance: dg.DagsterInstance, url: str, cursor: str | None = None, **limits: int) -> dg.SensorResult:
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"ops_store": OpsStoreResource(database_url=url), "dispatch": DispatchResource(**limits)},
    )
    result = dispatch_sensor(context)
    return result


def test_sensor_launches_tagged_tenant_runs_once(seeded: tuple[Engine, str]) -> None:
    engine, url = seeded
    acme = queue(engine, "acme-qa-triage", 2)
    (globex,) = queue(engine, "globex-analyst")
    with dg.instance_for_test() as instance:
        first = evaluate(instance, url)
        requests = {r.partition_key: r for r in first.run_requests}
        assert set(requests) == {"acme", "globex"}
        acme_run = requests["acme"]
        assert acme_run.tags["agentprovision/tenant"] == acme_run.tags["agentprovision/dispatch-tenant"] == "acme"
        assert acme_run.run_config["ops"]["agent_work"]["config"] == {"task_ids": acme, "max_concurrency": 4}
        assert acme_run.run_key.startswith("dispatch:acme:")
        # The tenant partitions did not exist yet in this instance: the sensor adds them with the runs.
        (add,) = first.dynamic_partitions_requests
        assert sorted(add.partition_keys) == ["acme", "globex"]
        assert sorted(json.loads(first.cursor)) == sorted([*acme, globex])

        # Next tick, nothing has claimed the tasks yet: they are not launched again.
        again = evaluate(instance, url, cursor=first.cursor)
        assert again.run_requests == [] and "0 run(s)" in again.skip_reason.skip_message

        # The runtime claimed acme's tasks; the cursor forgets them, and new work is launched.
        with transaction(session_factory(engine)) as session:
            for task_id in acme:
                session.get(m.Task, task_id).status = "running"
        newer = queue(engine, "acme-qa-triage")
        third = evaluate(instance, url, cursor=again.cursor)
        assert [r.run_config["ops"]["agent_work"]["config"]["task_ids"] for r in third.run_requests] == [newer]
        assert sorted(json.loads(third.cursor)) == sorted([globex, *newer])


def test_sensor_respects_runs_in_flight_in_the_instance(seeded: tuple[Engine, str]) -> None:
    engine, url = seeded
    queue(engine, "acme-qa-triage")
    queue(engine, "initech-docs-writer")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("tenant", ["acme", "initech"])
        instance.add_run(
            dg.DagsterRun(
                job_name="run_agent_tasks",
                run_id=str(uuid.uuid4()),
                status=dg.DagsterRunStatus.STARTED,
                tags={"dagster/partition": "acme"},
            )
        )
        result = evaluate(instance, url)
        assert [r.partition_key for r in result.run_requests] == ["initech"]
        assert result.dynamic_partitions_requests == []

        # A global limit of one run, already taken by acme's: nothing starts.
        capped = evaluate(instance, url, global_runs=1)
        assert capped.run_requests == []


def test_sensor_records_budget_refusals(seeded: tuple[Engine, str]) -> None:
    engine, url = seeded
    (task,) = queue(engine, "globex-analyst")
    spend(engine, "tenant:globex", "tenant", "globex", "1000000")
    with dg.instance_for_test() as instance:
        result = evaluate(instance, url)
    assert result.run_requests == [] and "1 task(s) refused by budget" in result.skip_reason.skip_message
    with transaction(session_factory(engine)) as session:
        assert session.get(m.Task, task).status == "refused"
