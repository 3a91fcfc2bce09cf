"""`execute_tasks`: claim a tenant's queued tasks and run them concurrently, within every limit.

Concurrency is the smallest of the tenant's `max_concurrent_runs`, the caller's `max_concurrency`
and, per agent, its `limits.max_concurrent_tasks`. A task is claimed only when a slot is free, so
a claimed run is always being worked on and its lease can stay short.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, select

from agentprovision.config.schema import AdminConfig
from agentprovision.settings import Settings, load_settings
from agentprovision.store.db import session_factory, transaction
from agentprovision.store.models import ConfigVersion
from agents.gateway import Gateway
from agents.runtime import records
from agents.runtime.failures import LeaseLost
from agents.runtime.loop import Ended, RunEnv, RunLoop
from agents.runtime.tooling import load_tools
from agents.types import AgentTypeError, agent_type

DEFAULT_LEASE_SECONDS = 60.0


@dataclass(frozen=True)
class TaskOutcome:
    task_id: str
    run_id: str | None
    # succeeded | failed | rejected | cancelled: the run ended; needs_approval: parked for a person;
    # skipped: the agent is paused; busy: another worker holds it or it already ended; missing: no such task
    status: str
    error_class: str | None
    cost_usd: Decimal


async def execute_tasks(
    config: AdminConfig,
    engine: Engine,
    tenant_id: str,
    task_ids: list[str] | None = None,
    *,
    gateway: Gateway | None = None,
    max_concurrency: int | None = None,
    orchestrator_run_id: str | None = None,
    settings: Settings | None = None,
    tools: dict[str, Any] | None = None,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
) -> list[TaskOutcome]:
    """Run the tenant's queued tasks (or the ones named); one TaskOutcome per task, in order."""
    try:
        tenant_file = config.tenant(tenant_id)
    except KeyError:
        raise ValueError(f"tenant {tenant_id!r} is not in the config") from None
    factory = session_factory(engine)
    ids = (
        list(task_ids)
        if task_ids is not None
        else await asyncio.to_thread(records.claimable_task_ids, factory, tenant_id)
    )
    if not ids:
        return []
    own_gateway = gateway is None
    env = RunEnv(
        config=config,
        engine=engine,
        factory=factory,
        gateway=gateway or Gateway(config, engine),
        settings=settings or load_settings(),
        tools=dict(tools) if tools is not None else dict(load_tools()),
        worker=f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
        lease_seconds=lease_seconds,
    )
    config_version = await asyncio.to_thread(_current_config_version, engine)
    limit = min(tenant_file.tenant.max_concurrent_runs, max_concurrency or tenant_file.tenant.max_concurrent_runs)
    slots = asyncio.Semaphore(max(1, limit))
    agent_slots = {a.id: asyncio.Semaphore(a.limits.max_concurrent_tasks) for a in tenant_file.agents}
    agent_of = await asyncio.to_thread(_agents_of_tasks, env, tenant_id, ids)

    async def one(task_id: str) -> TaskOutcome:
        agent_id = agent_of.get(task_id)
        agent_slot = agent_slots.get(agent_id or "") or asyncio.Semaphore(1)
        async with slots, agent_slot:
            return await _run_task(env, tenant_file, task_id, agent_id, config_version, orchestrator_run_id)

    try:
        # Every run gets to finish or checkpoint even when one of them hits an unexpected error;
        # the first such error is raised afterwards (its run's lease lapses and another claim resumes it).
        results = await asyncio.gather(*(one(t) for t in ids), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return [r for r in results if isinstance(r, TaskOutcome)]
    finally:
        if own_gateway:
            await asyncio.to_thread(env.gateway.close)


def execute_tasks_sync(
    config: AdminConfig, engine: Engine, tenant_id: str, task_ids: list[str] | None = None, **kwargs: Any
) -> list[TaskOutcome]:
    """The same as `execute_tasks`, for callers without an event loop (CLI, Dagster ops)."""
    return asyncio.run(execute_tasks(config, engine, tenant_id, task_ids, **kwargs))


async def _run_task(
    env: RunEnv,
    tenant_file: Any,
    task_id: str,
    agent_id: str | None,
    config_version: int | None,
    orchestrator_run_id: str | None,
) -> TaskOutcome:
    agent = next((a for a in tenant_file.agents if a.id == agent_id), None)
    claim = await asyncio.to_thread(
        records.claim,
        env.factory,
        tenant_id=tenant_file.tenant.id,
        task_id=task_id,
        agent=agent,
        config_version=config_version,
        worker=env.worker,
        lease_seconds=env.lease_seconds,
        orchestrator_run_id=orchestrator_run_id,
    )
    record = claim.record
    if record is None or agent is None:
        status = {"cancelled": "cancelled", "skipped": "skipped", "missing": "missing"}.get(claim.status, "busy")
        return TaskOutcome(task_id, None, status, "policy" if status == "cancelled" else None, Decimal(0))
    try:
        kind = agent_type(agent.type)
    except AgentTypeError as error:
        loop = RunLoop(env, record, tenant_file, agent, None)  # type: ignore[arg-type]
        await loop._finish("failed", "validation", str(error))
        return _outcome(record, Ended("failed", "validation"))
    loop = RunLoop(env, record, tenant_file, agent, kind)
    renewer = asyncio.create_task(_keep_lease(env, record))
    try:
        ended = await loop.run()
    except LeaseLost:
        ended = Ended("busy")
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer
    return _outcome(record, ended)


def _outcome(record: records.RunRecord, ended: Ended) -> TaskOutcome:
    return TaskOutcome(record.task_id, record.run_id, ended.status, ended.error_class, record.cost_usd)


async def _keep_lease(env: RunEnv, record: records.RunRecord) -> None:
    """Renew the lease while the run works (a model call may outlast it); stop once it is lost."""
    while True:
        await asyncio.sleep(env.lease_seconds / 3)
        if not await asyncio.to_thread(records.renew_lease, env.factory, record, env.worker, env.lease_seconds):
            return


def _agents_of_tasks(env: RunEnv, tenant_id: str, task_ids: list[str]) -> dict[str, str]:
    from agentprovision.store.models import Task
    from governance.tenancy import tenant_session

    with tenant_session(env.factory, tenant_id) as session:
        rows = session.execute(select(Task.task_id, Task.agent_id).where(Task.task_id.in_(task_ids)))
        return {task_id: agent_id for task_id, agent_id in rows}


def _current_config_version(engine: Engine) -> int | None:
    with transaction(session_factory(engine)) as session:
        return session.scalar(select(ConfigVersion.version).order_by(ConfigVersion.version.desc()).limit(1))
