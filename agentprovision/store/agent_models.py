"""Ops-store tables of the agent runtime: run checkpoints, their steps, and approval requests.

A run's durable state is split in two: `agent_run_state` holds the counters, the lease and the
status (one row per run, updated at every checkpoint), and `agent_run_steps` holds the
conversation, one append-only row per message. A checkpoint writes both, and the events of that
step, in one transaction, so a worker killed at any point leaves either the whole step or none of
it. The unique (run_id, tool_call_id) key makes a second result for one tool call impossible.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from agentprovision.store.models import Base, Money, utcnow


class AgentRunState(Base):
    """The checkpointed state of one run: where it is, what it has spent, and who holds it."""

    __tablename__ = "agent_run_state"
    __table_args__ = (Index("ix_agent_run_state_status_lease", "status", "lease_expires_at"),)

    run_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(63), index=True)
    task_id: Mapped[str] = mapped_column(String(36), unique=True)
    agent_id: Mapped[str] = mapped_column(String(63))
    agent_type: Mapped[str] = mapped_column(String(63))
    agent_version: Mapped[str] = mapped_column(String(31))
    config_hash: Mapped[str] = mapped_column(String(64))
    config_version: Mapped[int | None] = mapped_column(Integer)
    department_id: Mapped[str] = mapped_column(String(63))
    source: Mapped[str] = mapped_column(String(16))
    # running | needs_approval | succeeded | failed | rejected | cancelled
    status: Mapped[str] = mapped_column(String(16))
    steps: Mapped[int] = mapped_column(Integer, default=0)
    llm_calls: Mapped[int] = mapped_column(Integer, default=0)
    tool_calls: Mapped[int] = mapped_column(Integer, default=0)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    # Wall-clock time spent working, summed over every claim; time parked for approval is not counted.
    active_ms: Mapped[int] = mapped_column(Integer, default=0)
    repairs: Mapped[int] = mapped_column(Integer, default=0)
    outcomes: Mapped[dict[str, Any]]
    output: Mapped[dict[str, Any] | None]
    error_class: Mapped[str | None] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    claims: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AgentRunStep(Base):
    """One message of a run's conversation, in the (guardrail-masked) form it was sent to the model."""

    __tablename__ = "agent_run_steps"
    __table_args__ = (UniqueConstraint("run_id", "tool_call_id", name="uq_agent_run_steps_run_tool_call"),)

    run_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    tenant_id: Mapped[str] = mapped_column(String(63), index=True)
    role: Mapped[str] = mapped_column(String(16))
    # Set on tool results only: the key that makes a tool call's result unique within its run.
    tool_call_id: Mapped[str | None] = mapped_column(String(100))
    message: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AgentApproval(Base):
    """A high-impact tool call waiting for (or given) a person's decision."""

    __tablename__ = "agent_approvals"
    __table_args__ = (
        UniqueConstraint("run_id", "tool_call_id", name="uq_agent_approvals_run_tool_call"),
        Index("ix_agent_approvals_tenant_status", "tenant_id", "status"),
    )

    approval_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(63))
    run_id: Mapped[str] = mapped_column(String(36))
    task_id: Mapped[str] = mapped_column(String(36))
    agent_id: Mapped[str] = mapped_column(String(63))
    tool: Mapped[str] = mapped_column(String(100))
    tool_call_id: Mapped[str] = mapped_column(String(100))
    arguments: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16))  # pending | approved | rejected
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decided_by: Mapped[str | None] = mapped_column(String(254))
    reason: Mapped[str | None] = mapped_column(Text)
