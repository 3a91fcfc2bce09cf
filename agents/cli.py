"""`agentprovision task ...`, `approvals ...` and `agents ...`: agent work from the command line.

The caller is AGENTPROVISION_ACTOR, resolved to an active user of the ops store; every command
acts inside that user's tenant (platform users name one with --tenant) and asks the permission
matrix first. Decisions on approvals are audited, refusals included.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any

import typer
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from agentprovision.apply import current_version
from agentprovision.config.schema import AdminConfig
from agentprovision.settings import current_actor, load_settings
from agentprovision.store.agent_models import AgentApproval, AgentRunState
from agentprovision.store.audit import append_audit
from agentprovision.store.db import open_store, session_factory, transaction
from agentprovision.store.models import Agent, Event, Task
from agents.runtime.approvals import ApprovalError, decide, pending_approvals
from agents.runtime.submit import SubmitRefused, submit_task
from governance.cli import principal_for
from governance.permissions import Action, PermissionDenied, Principal, require
from governance.tenancy import tenant_session

task_app = typer.Typer(help="Agent tasks: submit, list, show, run.", no_args_is_help=True)
approvals_app = typer.Typer(help="High-impact tool calls waiting for a decision.", no_args_is_help=True)
agents_app = typer.Typer(help="Deployed agents.", no_args_is_help=True)

TenantOption = Annotated[
    str | None, typer.Option("--tenant", help="Tenant id; only platform users need it (default: your own tenant).")
]
TASK_STATUSES = ("queued", "running", "needs_approval", "succeeded", "failed", "rejected", "cancelled")


class Refused(Exception):
    """An expected failure for the caller; printed as `error: ...` with exit code 1."""


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


@contextmanager
def _caller(action: Action, tenant: str | None) -> Iterator[tuple[Principal, str, Engine, sessionmaker[Session]]]:
    """The acting principal, the tenant they act in, and the store; expected failures end the command."""
    try:
        settings = load_settings()
    except ValueError as error:
        raise _fail(str(error)) from None
    engine = open_store(*settings.store_urls)
    factory = session_factory(engine)
    actor = current_actor()
    try:
        with transaction(factory) as session:
            principal = principal_for(session, actor)
        tenant_id = tenant or principal.tenant_id
        if tenant_id is None:
            raise Refused(f"{actor} is a platform user: name the tenant with --tenant")
        require(principal, action, tenant_id)
        yield principal, tenant_id, engine, factory
    except (PermissionDenied, Refused, SubmitRefused, ApprovalError, ValueError) as error:
        raise _fail(str(error)) from None
    finally:
        engine.dispose()


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S}" if moment else "-"


# --- task ------------------------------------------------------------------------------------------


@task_app.command("submit")
def task_submit(
    agent: Annotated[str, typer.Option("--agent", help="The agent id to give the task to.")],
    task_input: Annotated[
        str | None, typer.Option("--input", help='Task input as a JSON object, e.g. \'{"instructions": "..."}\'.')
    ] = None,
    key: Annotated[str | None, typer.Option("--key", help="Idempotency key: the same key queues one task.")] = None,
    tenant: TenantOption = None,
) -> None:
    """Queue a task for an active agent; submitting the same --key again returns the first task."""
    try:
        parsed: Any = json.loads(task_input) if task_input else {}
    except json.JSONDecodeError as error:
        raise _fail(f"--input is not valid JSON: {error.msg} at character {error.pos}") from None
    if not isinstance(parsed, dict):
        raise _fail('--input must be a JSON object, e.g. \'{"instructions": "summarise open incidents"}\'')
    with (
        _caller(Action.TASK_SUBMIT, tenant) as (principal, tenant_id, _, factory),
        tenant_session(factory, tenant_id) as session,
    ):
        task, created = submit_task(
            session,
            tenant_id=tenant_id,
            agent_id=agent,
            task_input={"submitted_by": principal.user_id, **parsed},
            source="cli",
            idempotency_key=key,
        )
        if created:
            append_audit(
                session,
                actor=principal.user_id,
                action="task.submit",
                target_type="task",
                target_id=task.task_id,
                tenant_id=tenant_id,
                source="cli",
                details={"agent_id": agent, "idempotency_key": task.idempotency_key},
            )
    if created:
        typer.echo(f"queued task {task.task_id} for agent {agent}")
    else:
        typer.echo(f"task {task.task_id} already exists for key {key!r} (status {task.status}); nothing queued")


@task_app.command("list")
def task_list(
    status: Annotated[str | None, typer.Option("--status", help=f"One of {', '.join(TASK_STATUSES)}.")] = None,
    agent: Annotated[str | None, typer.Option("--agent", help="Only this agent's tasks.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.", min=1, max=10_000)] = 50,
    tenant: TenantOption = None,
) -> None:
    """Tasks of your tenant, newest first, with their run's steps and cost."""
    if status is not None and status not in TASK_STATUSES:
        raise _fail(f"unknown status {status!r}; use one of {', '.join(TASK_STATUSES)}")
    with _caller(Action.RUN_VIEW, tenant) as (_, tenant_id, _, factory), tenant_session(factory, tenant_id) as session:
        query = (
            select(Task, AgentRunState)
            .outerjoin(AgentRunState, AgentRunState.task_id == Task.task_id)
            .where(Task.tenant_id == tenant_id)
            .order_by(Task.created_at.desc(), Task.task_id)
            .limit(limit)
        )
        if status:
            query = query.where(Task.status == status)
        if agent:
            query = query.where(Task.agent_id == agent)
        rows = session.execute(query).all()
    if not rows:
        typer.echo("no tasks")
        return
    typer.echo(f"{'task':<36}  {'agent':<24} {'status':<14} {'source':<9} {'created':<19}  steps  cost_usd")
    for task, state in rows:
        steps = state.steps if state else 0
        cost = f"{state.cost_usd:.6f}" if state else "-"
        typer.echo(
            f"{task.task_id:<36}  {task.agent_id:<24} {task.status:<14} {task.source:<9} "
            f"{_when(task.created_at):<19}  {steps:>5}  {cost}"
        )


@task_app.command("show")
def task_show(
    task_id: Annotated[str, typer.Argument(help="The task id.")],
    tenant: TenantOption = None,
) -> None:
    """One task: its input, run, tool calls, approvals and result."""
    with _caller(Action.RUN_VIEW, tenant) as (_, tenant_id, _, factory), tenant_session(factory, tenant_id) as session:
        task = session.get(Task, task_id)
        if task is None:
            raise Refused(f"no task {task_id} in tenant {tenant_id}")
        state = session.scalar(select(AgentRunState).where(AgentRunState.task_id == task_id))
        tool_events = (
            list(
                session.scalars(
                    select(Event).where(Event.run_id == task.run_id, Event.name == "tool_call").order_by(Event.seq)
                )
            )
            if task.run_id
            else []
        )
        approvals = list(session.scalars(select(AgentApproval).where(AgentApproval.task_id == task_id)))
    typer.echo(f"task     {task.task_id}  ({task.source}, key {task.idempotency_key})")
    typer.echo(f"agent    {task.agent_id}")
    typer.echo(f"status   {task.status}   created {_when(task.created_at)}  finished {_when(task.finished_at)}")
    typer.echo(f"input    {json.dumps(task.input, sort_keys=True)}")
    if state is not None:
        typer.echo(
            f"run      {state.run_id}  version {state.agent_version}  config {state.config_hash[:12]}  "
            f"steps {state.steps}  model calls {state.llm_calls}  tool calls {state.tool_calls}  "
            f"tokens {state.prompt_tokens}+{state.completion_tokens}  cost {state.cost_usd:.6f} USD"
        )
        if state.error_class:
            typer.echo(f"error    {state.error_class}: {state.error}")
    for event in tool_events:
        p = event.payload
        note = f" ({p['error_class']})" if p.get("error_class") else ""
        typer.echo(f"tool     step {p['step']}: {p['tool']} -> {p['status']}{note}")
    for approval in approvals:
        decided = f" by {approval.decided_by}" if approval.decided_by else ""
        typer.echo(f"approval {approval.approval_id}: {approval.tool} {approval.status}{decided}")
    if state is not None and state.output is not None:
        typer.echo("output   " + json.dumps(state.output, indent=2, sort_keys=True).replace("\n", "\n         "))


@task_app.command("run")
def task_run(
    tenant: TenantOption = None,
    max_concurrency: Annotated[int | None, typer.Option(help="At most this many runs at once.", min=1)] = None,
) -> None:
    """Run the tenant's queued tasks now, in this process, with the applied config."""
    from agents.runtime import execute_tasks_sync  # the gateway (LiteLLM) loads only for this command

    with _caller(Action.TASK_SUBMIT, tenant) as (_, tenant_id, engine, factory):
        with transaction(factory) as session:
            latest = current_version(session)
        if latest is None:
            raise Refused("no config applied yet: run `agentprovision apply` first")
        config = AdminConfig.model_validate(latest.content)
        outcomes = execute_tasks_sync(
            config, engine, tenant_id, max_concurrency=max_concurrency, settings=load_settings()
        )
    if not outcomes:
        typer.echo(f"nothing to run for tenant {tenant_id}")
        return
    for outcome in outcomes:
        note = f" ({outcome.error_class})" if outcome.error_class else ""
        typer.echo(f"{outcome.task_id}  {outcome.status}{note}  cost {outcome.cost_usd:.6f} USD")
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    typer.echo(", ".join(f"{n} {status}" for status, n in sorted(counts.items())))


# --- approvals -------------------------------------------------------------------------------------


@approvals_app.command("list")
def approvals_list(tenant: TenantOption = None) -> None:
    """Tool calls waiting for a decision in your tenant, oldest first."""
    with _caller(Action.RUN_VIEW, tenant) as (_, tenant_id, _, factory), tenant_session(factory, tenant_id) as session:
        pending = pending_approvals(session, tenant_id)
    if not pending:
        typer.echo("no approvals waiting")
        return
    for approval in pending:
        arguments = json.dumps(approval.arguments, sort_keys=True)
        if len(arguments) > 120:
            arguments = arguments[:117] + "..."
        typer.echo(
            f"{approval.approval_id}  {_when(approval.requested_at)}  {approval.agent_id}  {approval.tool}  {arguments}"
        )


def _decide(approval_id: str, approve: bool, reason: str | None, tenant: str | None) -> None:
    action = "approval.approve" if approve else "approval.reject"
    try:
        with (
            _caller(Action.APPROVAL_DECIDE, tenant) as (principal, tenant_id, _, factory),
            tenant_session(factory, tenant_id) as session,
        ):
            approval = decide(session, principal, tenant_id, approval_id, approve=approve, reason=reason)
    except typer.Exit:
        _audit_refusal(approval_id, action, tenant)
        raise
    verb = "approved" if approve else "rejected"
    then = "the run resumes at the next `agentprovision task run`" if approve else "the run has ended"
    typer.echo(f"{verb} {approval.tool} for task {approval.task_id}; {then}")


def _audit_refusal(approval_id: str, action: str, tenant: str | None) -> None:
    """A refused decision is itself audited, in its own transaction (the attempted one rolled back)."""
    try:
        engine = open_store(*load_settings().store_urls)
    except ValueError:
        return
    try:
        with transaction(session_factory(engine)) as session:
            user = current_actor()
            approval = session.get(AgentApproval, approval_id)
            # Only chain the record into a tenant's trail when the approval really is that tenant's.
            tenant_id = approval.tenant_id if approval is not None and (tenant in (None, approval.tenant_id)) else None
            append_audit(
                session,
                actor=user,
                action=action,
                target_type="approval",
                target_id=approval_id,
                tenant_id=tenant_id,
                source="cli",
                outcome="denied",
                details={"requested_tenant": tenant},
            )
    finally:
        engine.dispose()


@approvals_app.command("approve")
def approvals_approve(
    approval_id: Annotated[str, typer.Argument(help="The approval id (see `approvals list`).")],
    reason: Annotated[str | None, typer.Option(help="Why; kept in the audit trail.")] = None,
    tenant: TenantOption = None,
) -> None:
    """Let the tool call go ahead; the run continues from its checkpoint."""
    _decide(approval_id, True, reason, tenant)


@approvals_app.command("reject")
def approvals_reject(
    approval_id: Annotated[str, typer.Argument(help="The approval id (see `approvals list`).")],
    reason: Annotated[str | None, typer.Option(help="Why; kept in the audit trail and on the task.")] = None,
    tenant: TenantOption = None,
) -> None:
    """Refuse the tool call; the run ends as rejected."""
    _decide(approval_id, False, reason, tenant)


# --- agents ----------------------------------------------------------------------------------------


@agents_app.command("list")
def agents_list(tenant: TenantOption = None) -> None:
    """Deployed agents of your tenant: type, version, status and tools."""
    with (
        _caller(Action.AGENT_VIEW, tenant) as (_, tenant_id, _, factory),
        tenant_session(factory, tenant_id) as session,
    ):
        agents = list(session.scalars(select(Agent).where(Agent.tenant_id == tenant_id).order_by(Agent.agent_id)))
    if not agents:
        typer.echo(f"tenant {tenant_id} has no agents")
        return
    typer.echo(f"{'agent':<28} {'type':<24} {'version':<9} {'status':<8} tools")
    for agent in agents:
        tools = ", ".join(agent.spec.get("tools") or []) or "-"
        typer.echo(f"{agent.agent_id:<28} {agent.agent_type:<24} {agent.version:<9} {agent.status:<8} {tools}")
