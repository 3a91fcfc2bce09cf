"""Durable run state: claiming tasks under a lease, checkpointing steps, finishing runs.

Every function here is one transaction in the tenant's scope. A checkpoint writes the new
conversation steps, the counters, the run's events and the `runs`/`tasks` rows together and
only while this worker still holds the lease, so a crash or a takeover can never leave half a
step or write a step twice.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from agentprovision.config.schema import Agent as AgentConfig
from agentprovision.events import PlatformEvent
from agentprovision.store.agent_models import AgentApproval, AgentRunState, AgentRunStep
from agentprovision.store.models import Event, Run, Task
from agents.runtime.failures import LeaseLost
from governance.tenancy import tenant_session

TERMINAL = ("succeeded", "failed", "rejected", "cancelled")


def config_hash(agent: AgentConfig) -> str:
    """SHA-256 of the agent's config entry: any change to the agent's config changes it."""
    canonical = json.dumps(agent.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def now_utc() -> datetime:
    return datetime.now(UTC)


def _aware(moment: datetime | None) -> datetime | None:
    # SQLite hands datetimes back without their zone; they were written as UTC.
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


@dataclass
class RunRecord:
    """The in-memory mirror of one run's checkpoint, owned by the worker holding its lease."""

    run_id: str
    task_id: str
    tenant_id: str
    agent_id: str
    agent_type: str
    agent_version: str
    config_hash: str
    department_id: str
    source: str
    task_input: dict[str, Any]
    started_at: datetime
    status: str = "running"
    steps: int = 0
    llm_calls: int = 0
    tool_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    active_ms: int = 0
    repairs: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    fresh: bool = False  # true on the claim that created the run

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def base_payload(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "department_id": self.department_id}

    def finished_payload(self, status: str, error_class: str | None, finished_at: datetime) -> dict[str, Any]:
        return {
            **self.base_payload(),
            "agent_type": self.agent_type,
            "agent_version": self.agent_version,
            "config_hash": self.config_hash,
            "status": status,
            "error_class": error_class,
            "steps": self.steps,
            "llm_calls": self.llm_calls,
            "tool_calls": self.tool_calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": str(self.cost_usd),
            "duration_ms": int((finished_at - self.started_at).total_seconds() * 1000),
            "started_at": self.started_at.isoformat(),
            "outcomes": dict(self.outcomes),
        }


def _record_from(state: AgentRunState, task: Task, messages: list[dict[str, Any]]) -> RunRecord:
    return RunRecord(
        run_id=state.run_id,
        task_id=state.task_id,
        tenant_id=state.tenant_id,
        agent_id=state.agent_id,
        agent_type=state.agent_type,
        agent_version=state.agent_version,
        config_hash=state.config_hash,
        department_id=state.department_id,
        source=state.source,
        task_input=dict(task.input or {}),
        started_at=_aware(state.started_at) or now_utc(),
        status=state.status,
        steps=state.steps,
        llm_calls=state.llm_calls,
        tool_calls=state.tool_calls,
        prompt_tokens=state.prompt_tokens,
        completion_tokens=state.completion_tokens,
        cost_usd=Decimal(state.cost_usd),
        active_ms=state.active_ms,
        repairs=state.repairs,
        outcomes=dict(state.outcomes or {}),
        messages=messages,
    )


def event_row(record: RunRecord, kind: str, name: str, payload: dict[str, Any]) -> dict[str, Any]:
    return PlatformEvent(
        tenant_id=record.tenant_id,
        kind=kind,
        name=name,
        agent_id=record.agent_id,
        run_id=record.run_id,
        payload=payload,
    ).as_row()


def _insert_events(session: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        session.execute(insert(Event), rows)


@dataclass(frozen=True)
class Claim:
    """What a claim attempt found: a record to work on, or why there is none."""

    record: RunRecord | None
    status: str  # claimed | skipped | cancelled | busy | missing
    reason: str = ""


def claim(
    factory: sessionmaker[Session],
    *,
    tenant_id: str,
    task_id: str,
    agent: AgentConfig | None,
    config_version: int | None,
    worker: str,
    lease_seconds: float,
    orchestrator_run_id: str | None = None,
) -> Claim:
    """Take a queued task (starting or resuming its run) or a run whose worker's lease expired."""
    now = now_utc()
    with tenant_session(factory, tenant_id) as session:
        task = session.get(Task, task_id, with_for_update=True)
        if task is None:
            return Claim(None, "missing", f"task {task_id} is not a task of tenant {tenant_id}")
        state = session.scalar(select(AgentRunState).where(AgentRunState.task_id == task_id).with_for_update())
        if task.status == "running" and state is not None:
            expires = _aware(state.lease_expires_at)
            if expires is not None and expires > now:
                return Claim(None, "busy", f"run {state.run_id} is held by {state.lease_owner} until {expires}")
        elif task.status != "queued":
            return Claim(None, "busy", f"task {task_id} is {task.status}")
        else:
            # A new or resumed run: the agent must accept work now (paused/retired agents take none).
            refusal = _lifecycle_refusal(agent, task.agent_id)
            if refusal is not None:
                status, reason = refusal
                if status == "cancelled":
                    _cancel(session, task, state, reason, now)
                return Claim(None, status, reason)
        if state is None:
            assert agent is not None  # a queued task passed the lifecycle check above
            state = _start_run(session, task, agent, config_version, orchestrator_run_id, now)
            fresh = True
        else:
            fresh = False
        state.status = "running"
        state.lease_owner = worker
        state.lease_expires_at = now + timedelta(seconds=lease_seconds)
        state.claims += 1
        state.updated_at = now
        task.status = "running"
        run = session.get(Run, state.run_id)
        if run is not None:
            run.status = "running"
        messages = [
            row.message
            for row in session.scalars(
                select(AgentRunStep).where(AgentRunStep.run_id == state.run_id).order_by(AgentRunStep.seq)
            )
        ]
        record = _record_from(state, task, messages)
        record.fresh = fresh
        if fresh:
            _insert_events(
                session,
                [
                    event_row(
                        record,
                        "run",
                        "run_started",
                        {
                            **record.base_payload(),
                            "agent_type": record.agent_type,
                            "agent_version": record.agent_version,
                            "config_hash": record.config_hash,
                            "source": record.source,
                        },
                    )
                ],
            )
        return Claim(record, "claimed")


def _lifecycle_refusal(agent: AgentConfig | None, agent_id: str) -> tuple[str, str] | None:
    if agent is None:
        return "cancelled", f"agent {agent_id} is no longer in the config"
    if agent.status == "paused":
        return "skipped", f"agent {agent.id} is paused; its tasks wait until it is active again"
    if agent.status != "active":
        return "cancelled", f"agent {agent.id} is {agent.status} and accepts no tasks"
    return None


def _cancel(session: Session, task: Task, state: AgentRunState | None, reason: str, now: datetime) -> None:
    task.status = "cancelled"
    task.finished_at = now
    task.outcome = json.dumps({"error": reason})
    if state is not None:
        state.status = "cancelled"
        state.error_class = "policy"
        state.error = reason
        state.finished_at = now
        run = session.get(Run, state.run_id)
        if run is not None:
            run.status, run.finished_at, run.error_class = "cancelled", now, "policy"
        record = _record_from(state, task, [])
        _insert_events(
            session, [event_row(record, "run", "run_finished", record.finished_payload("cancelled", "policy", now))]
        )


def _start_run(
    session: Session,
    task: Task,
    agent: AgentConfig,
    config_version: int | None,
    orchestrator_run_id: str | None,
    now: datetime,
) -> AgentRunState:
    run_id = str(uuid.uuid4())
    session.add(
        Run(
            run_id=run_id,
            tenant_id=task.tenant_id,
            agent_id=task.agent_id,
            task_id=task.task_id,
            agent_version=agent.version,
            status="running",
            started_at=now,
            orchestrator_run_id=orchestrator_run_id,
        )
    )
    state = AgentRunState(
        run_id=run_id,
        tenant_id=task.tenant_id,
        task_id=task.task_id,
        agent_id=task.agent_id,
        agent_type=agent.type,
        agent_version=agent.version,
        config_hash=config_hash(agent),
        config_version=config_version,
        department_id=agent.department,
        source=task.source,
        status="running",
        steps=0,
        llm_calls=0,
        tool_calls=0,
        prompt_tokens=0,
        completion_tokens=0,
        cost_usd=Decimal(0),
        active_ms=0,
        repairs=0,
        outcomes={},
        claims=0,
        started_at=now,
        updated_at=now,
    )
    session.add(state)
    task.run_id = run_id
    task.started_at = now
    session.flush()
    return state


def _owned_state(session: Session, record: RunRecord, worker: str) -> AgentRunState:
    state = session.get(AgentRunState, record.run_id, with_for_update=True)
    if state is None or state.lease_owner != worker or state.status != "running":
        raise LeaseLost(f"run {record.run_id} is no longer held by {worker}")
    return state


def _copy_counters(state: AgentRunState, record: RunRecord) -> None:
    state.steps = record.steps
    state.llm_calls = record.llm_calls
    state.tool_calls = record.tool_calls
    state.prompt_tokens = record.prompt_tokens
    state.completion_tokens = record.completion_tokens
    state.cost_usd = record.cost_usd
    state.active_ms = record.active_ms
    state.repairs = record.repairs
    state.outcomes = dict(record.outcomes)


def checkpoint(
    factory: sessionmaker[Session],
    record: RunRecord,
    worker: str,
    *,
    new_messages: list[dict[str, Any]] = (),  # type: ignore[assignment]
    events: list[tuple[str, str, dict[str, Any]]] = (),  # type: ignore[assignment]
    lease_seconds: float,
) -> None:
    """Persist the messages added since the last checkpoint, the counters and the step's events, at once."""
    now = now_utc()
    with tenant_session(factory, record.tenant_id) as session:
        state = _owned_state(session, record, worker)
        _append_steps(session, record, new_messages, now)
        _copy_counters(state, record)
        state.updated_at = now
        state.lease_expires_at = now + timedelta(seconds=lease_seconds)
        _sync_run(session, record, state.status, None, None)
        _insert_events(session, [event_row(record, kind, name, payload) for kind, name, payload in events])
    record.messages.extend(new_messages)


def _append_steps(session: Session, record: RunRecord, messages: list[dict[str, Any]], now: datetime) -> None:
    seq = session.scalar(
        select(func.coalesce(func.max(AgentRunStep.seq), 0)).where(AgentRunStep.run_id == record.run_id)
    )
    for offset, message in enumerate(messages, start=1):
        session.add(
            AgentRunStep(
                run_id=record.run_id,
                seq=(seq or 0) + offset,
                tenant_id=record.tenant_id,
                role=message["role"],
                tool_call_id=message.get("tool_call_id") if message["role"] == "tool" else None,
                message=message,
                created_at=now,
            )
        )
    session.flush()


def _sync_run(session: Session, record: RunRecord, status: str, error_class: str | None, finished: datetime | None):  # type: ignore[no-untyped-def]
    run = session.get(Run, record.run_id)
    if run is not None:
        run.status = status
        run.steps = record.steps
        run.cost_usd = record.cost_usd
        run.error_class = error_class
        run.finished_at = finished


def park_for_approval(
    factory: sessionmaker[Session],
    record: RunRecord,
    worker: str,
    *,
    tool: str,
    tool_call_id: str,
    arguments: dict[str, Any],
    step: int,
) -> str:
    """Stop the run until a person decides; the approval request and its events commit together."""
    now = now_utc()
    approval_id = str(uuid.uuid4())
    with tenant_session(factory, record.tenant_id) as session:
        state = _owned_state(session, record, worker)
        session.add(
            AgentApproval(
                approval_id=approval_id,
                tenant_id=record.tenant_id,
                run_id=record.run_id,
                task_id=record.task_id,
                agent_id=record.agent_id,
                tool=tool,
                tool_call_id=tool_call_id,
                arguments=arguments,
                status="pending",
                requested_at=now,
            )
        )
        record.tool_calls += 1
        _copy_counters(state, record)
        state.status = "needs_approval"
        state.lease_owner = None
        state.lease_expires_at = None
        state.updated_at = now
        task = session.get(Task, record.task_id)
        if task is not None:
            task.status = "needs_approval"
        _sync_run(session, record, "needs_approval", None, None)
        _insert_events(
            session,
            [
                event_row(
                    record,
                    "tool",
                    "tool_call",
                    {
                        **record.base_payload(),
                        "step": step,
                        "tool": tool,
                        "tool_call_id": tool_call_id,
                        "status": "needs_approval",
                        "error_class": None,
                        "latency_ms": 0,
                        "outcome": None,
                    },
                ),
                event_row(
                    record,
                    "run",
                    "run_needs_approval",
                    {"task_id": record.task_id, "tool": tool, "approval_id": approval_id, "actor": None},
                ),
            ],
        )
    record.status = "needs_approval"
    return approval_id


def approval_for(
    factory: sessionmaker[Session], tenant_id: str, run_id: str, tool_call_id: str
) -> AgentApproval | None:
    with tenant_session(factory, tenant_id) as session:
        return session.scalar(
            select(AgentApproval).where(AgentApproval.run_id == run_id, AgentApproval.tool_call_id == tool_call_id)
        )


def finish(
    factory: sessionmaker[Session],
    record: RunRecord,
    worker: str,
    *,
    status: str,
    error_class: str | None = None,
    error: str | None = None,
    output: dict[str, Any] | None = None,
    new_messages: list[dict[str, Any]] = (),  # type: ignore[assignment]
) -> None:
    """End the run: final steps, counters, run_finished, and the `runs`/`tasks` rows, in one transaction."""
    now = now_utc()
    with tenant_session(factory, record.tenant_id) as session:
        state = _owned_state(session, record, worker)
        _append_steps(session, record, new_messages, now)
        _copy_counters(state, record)
        state.status = status
        state.error_class = error_class
        state.error = error
        state.output = output
        state.finished_at = now
        state.updated_at = now
        state.lease_owner = None
        state.lease_expires_at = None
        task = session.get(Task, record.task_id)
        if task is not None:
            task.status = status
            task.finished_at = now
            task.outcome = json.dumps(output if output is not None else {"error_class": error_class, "error": error})
        _sync_run(session, record, status, error_class, now)
        _insert_events(
            session, [event_row(record, "run", "run_finished", record.finished_payload(status, error_class, now))]
        )
    record.messages.extend(new_messages)
    record.status = status


def renew_lease(factory: sessionmaker[Session], record: RunRecord, worker: str, lease_seconds: float) -> bool:
    """Extend this worker's lease; False when it no longer holds the run."""
    now = now_utc()
    with tenant_session(factory, record.tenant_id) as session:
        result = session.execute(
            update(AgentRunState)
            .where(
                AgentRunState.run_id == record.run_id,
                AgentRunState.lease_owner == worker,
                AgentRunState.status == "running",
            )
            .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
        )
        return result.rowcount == 1  # type: ignore[attr-defined]


def release(factory: sessionmaker[Session], record: RunRecord, worker: str) -> None:
    """Give the run back (the worker is stopping without finishing it): another claim resumes it."""
    with tenant_session(factory, record.tenant_id) as session:
        session.execute(
            update(AgentRunState)
            .where(AgentRunState.run_id == record.run_id, AgentRunState.lease_owner == worker)
            .values(lease_expires_at=now_utc())
        )


def claimable_task_ids(factory: sessionmaker[Session], tenant_id: str) -> list[str]:
    """Queued tasks, and running ones whose worker's lease has expired, oldest first."""
    now = now_utc()
    with tenant_session(factory, tenant_id) as session:
        queued = list(
            session.scalars(
                select(Task.task_id)
                .where(Task.tenant_id == tenant_id, Task.status == "queued")
                .order_by(Task.created_at, Task.task_id)
            )
        )
        stalled = [
            task_id
            for task_id, expires in session.execute(
                select(AgentRunState.task_id, AgentRunState.lease_expires_at).where(
                    AgentRunState.tenant_id == tenant_id, AgentRunState.status == "running"
                )
            )
            if expires is None or _aware(expires) <= now
        ]
    return queued + [t for t in stalled if t not in queued]


def transcript(session: Session, run_id: str) -> list[dict[str, Any]]:
    """A run's messages in OpenAI chat format, as they were sent (after the tenant's guardrail masking).

    Read through the caller's session, so a tenant-scoped session only ever sees its own runs.
    """
    return [
        dict(row.message)
        for row in session.scalars(select(AgentRunStep).where(AgentRunStep.run_id == run_id).order_by(AgentRunStep.seq))
    ]
