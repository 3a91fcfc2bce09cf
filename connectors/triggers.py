"""Event triggers: rules in the admin config that turn new records from a sync into agent tasks.

A rule lives on an agent (`triggers:` in the tenant file): which integration and stream to watch
and which field values a new record must have. Rules are read from the applied config in the ops
store (the `agents` table), only for active agents of the same tenant as the integration, so a
record can only ever create work for its own tenant's agents.

Idempotency: a firing is keyed by (tenant, agent, integration, stream, record key), both in
`trigger_firings` and as the task's idempotency key, and is written in the same transaction as
the records of the batch. Re-reading a record, resuming a failed sync or syncing again never
creates a second task for the same record and agent.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from agentprovision.store.connector_models import TriggerFiring
from agentprovision.store.models import Agent, Task


@dataclass(frozen=True)
class TriggerRule:
    agent_id: str
    integration_id: str
    stream: str
    match: dict[str, Any] = field(default_factory=dict)
    instructions: str | None = None


def load_rules(session: Session, tenant_id: str, integration_id: str) -> list[TriggerRule]:
    rules = []
    agents = session.scalars(
        select(Agent).where(Agent.tenant_id == tenant_id, Agent.status == "active").order_by(Agent.agent_id)
    )
    for agent in agents:
        for trigger in (agent.spec or {}).get("triggers") or []:
            if trigger.get("connector") == integration_id:
                rules.append(
                    TriggerRule(
                        agent_id=agent.agent_id,
                        integration_id=integration_id,
                        stream=trigger["stream"],
                        match=dict(trigger.get("match") or {}),
                        instructions=trigger.get("instructions"),
                    )
                )
    return rules


def field_value(record: dict[str, Any], path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def matches(record: dict[str, Any], match: dict[str, Any]) -> bool:
    """Every condition holds. A list in the rule means any of its values; a list in the record, membership."""
    for path, expected in match.items():
        actual = field_value(record, path)
        wanted = expected if isinstance(expected, list) else [expected]
        present = actual if isinstance(actual, list) else [actual]
        if not any(_equal(a, w) for a in present for w in wanted):
            return False
    return True


def _equal(actual: Any, wanted: Any) -> bool:
    if isinstance(wanted, bool) or isinstance(actual, bool):
        return actual is wanted
    return actual == wanted or (actual is not None and str(actual) == str(wanted))


def idempotency_key(rule: TriggerRule, stream: str, key: str) -> str:
    raw = f"trigger:{rule.agent_id}:{rule.integration_id}:{stream}:{key}"
    return raw if len(raw) <= 200 else "trigger:" + hashlib.sha256(raw.encode()).hexdigest()


def fire(
    session: Session,
    *,
    tenant_id: str,
    rules: list[TriggerRule],
    stream: str,
    new_records: list[tuple[str, dict[str, Any]]],
    sync_id: str,
) -> int:
    """Create one queued task per (rule, new matching record) not fired before; returns how many."""
    created = 0
    for rule in rules:
        if rule.stream != stream:
            continue
        for key, record in new_records:
            if not matches(record, rule.match):
                continue
            task_key = idempotency_key(rule, stream, key)
            already = session.scalar(
                select(Task.task_id).where(Task.tenant_id == tenant_id, Task.idempotency_key == task_key)
            )
            if already is not None:
                continue
            task_id = str(uuid.uuid4())
            session.add(
                Task(
                    task_id=task_id,
                    tenant_id=tenant_id,
                    agent_id=rule.agent_id,
                    source="trigger",
                    idempotency_key=task_key,
                    status="queued",
                    input={
                        "trigger": {"integration_id": rule.integration_id, "stream": stream, "record_key": key},
                        "instructions": rule.instructions,
                        "record": record,
                    },
                )
            )
            session.add(
                TriggerFiring(
                    tenant_id=tenant_id,
                    agent_id=rule.agent_id,
                    integration_id=rule.integration_id,
                    stream=stream,
                    record_key=key,
                    task_id=task_id,
                    sync_id=sync_id,
                )
            )
            created += 1
    session.flush()
    return created
