"""Submitting a task: the agent must belong to the tenant and be active, and the key makes it idempotent."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from agentprovision.store.models import Agent, Task
from agentprovision.tasks import queue_task
from agents.types import AgentTypeError, agent_type


class SubmitRefused(Exception):
    """The task cannot be queued; the message says why."""


def submit_task(
    session: Session,
    *,
    tenant_id: str,
    agent_id: str,
    task_input: dict[str, Any],
    source: str = "cli",
    idempotency_key: str | None = None,
) -> tuple[Task, bool]:
    """Queue a task for an active agent of the tenant; (task, created). A repeated key returns the first task."""
    agent = session.get(Agent, agent_id)
    if agent is None or agent.tenant_id != tenant_id:
        raise SubmitRefused(f"agent {agent_id!r} is not an agent of tenant {tenant_id!r}")
    if agent.status != "active":
        raise SubmitRefused(f"agent {agent_id} is {agent.status}; only active agents accept tasks")
    try:
        agent_type(agent.agent_type).parse_input(task_input)
    except AgentTypeError as error:
        raise SubmitRefused(str(error)) from None
    key = idempotency_key or f"{source}:{uuid.uuid4()}"
    task, created = queue_task(
        session, tenant_id=tenant_id, agent_id=agent_id, source=source, idempotency_key=key, task_input=task_input
    )
    if not created and task.agent_id != agent_id:
        raise SubmitRefused(f"idempotency key {key!r} was already used for a task of agent {task.agent_id}")
    return task, created
