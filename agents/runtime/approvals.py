"""Deciding approval requests: who may, what an approval or a rejection does, and the audit record.

An approval puts the task back in the queue; the next `execute_tasks` resumes the run from its
checkpoint and executes the approved call. A rejection ends the run as rejected at once. Either
way the decision, its events and its audit record commit in one transaction.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session

from agentprovision.store.agent_models import AgentApproval, AgentRunState
from agentprovision.store.audit import append_audit
from agentprovision.store.db import session_factory, transaction
from agentprovision.store.models import Event, Run, Task, User
from agents.runtime.records import _record_from, event_row
from governance.permissions import Action, PermissionDenied, Principal, require
from governance.tenancy import tenant_session


class ApprovalError(Exception):
    """The approval does not exist for this tenant, or is already decided; the message says which."""


def pending_approvals(session: Session, tenant_id: str) -> list[AgentApproval]:
    return list(
        session.scalars(
            select(AgentApproval)
            .where(AgentApproval.tenant_id == tenant_id, AgentApproval.status == "pending")
            .order_by(AgentApproval.requested_at)
        )
    )


def decide(
    session: Session,
    principal: Principal,
    tenant_id: str,
    approval_id: str,
    *,
    approve: bool,
    reason: str | None = None,
    source: str = "cli",
) -> AgentApproval:
    """Approve or reject one pending request inside the caller's (tenant-scoped) transaction."""
    require(principal, Action.APPROVAL_DECIDE, tenant_id)
    approval = session.get(AgentApproval, approval_id, with_for_update=True)
    if approval is None or approval.tenant_id != tenant_id:
        raise ApprovalError(f"no approval {approval_id} in tenant {tenant_id}")
    if approval.status != "pending":
        raise ApprovalError(f"approval {approval_id} was already {approval.status} by {approval.decided_by}")
    state = session.get(AgentRunState, approval.run_id, with_for_update=True)
    task = session.get(Task, approval.task_id)
    if state is None or task is None or state.status != "needs_approval":
        raise ApprovalError(f"the run of approval {approval_id} is not waiting for approval")
    now = datetime.now(UTC)
    approval.status = "approved" if approve else "rejected"
    approval.decided_at = now
    approval.decided_by = principal.user_id
    approval.reason = reason
    record = _record_from(state, task, [])
    decision = {"task_id": approval.task_id, "tool": approval.tool, "approval_id": approval_id}
    events = [
        event_row(
            record, "run", "run_approved" if approve else "run_rejected", {**decision, "actor": principal.user_id}
        )
    ]
    run = session.get(Run, approval.run_id)
    if approve:
        # Back in the queue: the next execute_tasks claims it and resumes from the checkpoint.
        state.status = "running"
        task.status = "queued"
        if run is not None:
            run.status = "running"
    else:
        state.status = "rejected"
        state.finished_at = now
        state.error = f"rejected by {principal.user_id}" + (f": {reason}" if reason else "")
        task.status = "rejected"
        task.finished_at = now
        task.outcome = json.dumps({"rejected_by": principal.user_id, "reason": reason, "tool": approval.tool})
        if run is not None:
            run.status, run.finished_at = "rejected", now
        events.append(event_row(record, "run", "run_finished", record.finished_payload("rejected", None, now)))
    state.updated_at = now
    session.execute(insert(Event), events)
    append_audit(
        session,
        actor=principal.user_id,
        action="approval.approve" if approve else "approval.reject",
        target_type="approval",
        target_id=approval_id,
        tenant_id=tenant_id,
        source=source,
        details={
            "run_id": approval.run_id,
            "task_id": approval.task_id,
            "agent_id": approval.agent_id,
            "tool": approval.tool,
            "reason": reason,
        },
    )
    return approval


def decide_approval(
    engine: Engine,
    *,
    tenant_id: str,
    approval_id: str,
    approve: bool,
    actor: str,
    reason: str | None = None,
    source: str = "dashboard",
) -> AgentApproval:
    """`decide` in its own tenant-scoped transaction, for callers holding an engine (the dashboards).

    The actor is resolved from the ops store like the CLI resolves AGENTPROVISION_ACTOR, so a removed
    user or a changed role takes effect at once.
    """
    factory = session_factory(engine)
    # Users are read outside the tenant scope: platform users belong to no tenant.
    with transaction(factory) as session:
        user = session.get(User, actor)
        if user is None or user.status != "active":
            raise PermissionDenied(f"{actor!r} is not an active user of the platform")
        principal = Principal(user.user_id, user.role, user.tenant_id)
    with tenant_session(factory, tenant_id) as session:
        return decide(session, principal, tenant_id, approval_id, approve=approve, reason=reason, source=source)
