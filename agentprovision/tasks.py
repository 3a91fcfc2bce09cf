"""The task queue in the ops store: idempotent enqueueing, and which agent schedules are due.

Anything that wants agent work done (an agent's cron, a connector trigger, the CLI, a dashboard)
queues a task with an idempotency key; queueing the same key twice for a tenant is a no-op, so a
sensor that re-evaluates a window after a crash cannot double-book work.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from croniter import croniter
from sqlalchemy import select
from sqlalchemy.orm import Session

from agentprovision.store.models import Agent, Task

TASK_SOURCES = ("schedule", "trigger", "cli", "dashboard")


@dataclass(frozen=True)
class DueRun:
    tenant_id: str
    agent_id: str
    scheduled_for: datetime

    @property
    def idempotency_key(self) -> str:
        return f"schedule:{self.agent_id}:{self.scheduled_for.isoformat()}"


def queue_task(
    session: Session,
    *,
    tenant_id: str,
    agent_id: str,
    source: str,
    idempotency_key: str,
    task_input: dict[str, Any] | None = None,
) -> tuple[Task, bool]:
    """Queue a task unless one with this key exists for the tenant; returns (task, created)."""
    if source not in TASK_SOURCES:
        raise ValueError(f"unknown task source {source!r}; use one of {', '.join(TASK_SOURCES)}")
    existing = session.scalar(select(Task).where(Task.tenant_id == tenant_id, Task.idempotency_key == idempotency_key))
    if existing is not None:
        return existing, False
    task = Task(
        task_id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        agent_id=agent_id,
        source=source,
        idempotency_key=idempotency_key,
        status="queued",
        input=task_input or {},
    )
    session.add(task)
    session.flush()
    return task, True


def due_schedules(session: Session, since: datetime, until: datetime) -> Iterator[DueRun]:
    """Every (agent, fire time) with since < fire time <= until, for active agents of active tenants."""
    agents = session.execute(
        select(Agent.tenant_id, Agent.agent_id, Agent.schedule)
        .where(Agent.status == "active", Agent.schedule.is_not(None))
        .order_by(Agent.agent_id)
    )
    for tenant_id, agent_id, schedule in agents:
        fire_times = croniter(schedule, since.astimezone(UTC))
        while (fire := fire_times.get_next(datetime)) <= until:
            yield DueRun(tenant_id, agent_id, fire)
