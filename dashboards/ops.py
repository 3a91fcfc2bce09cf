"""The dashboards' way into the ops store: live operational state and the few actions a page may take.

The warehouse (``dashboards.data``) answers "what happened", up to the last pipeline pass. Some
things a person acts on must be live instead: who may sign in and with which role, the task queue,
approvals waiting for a decision, the audit chain's verification, evidence packs and integration
health. Those are read here from the ops store, always inside one tenant's scope
(``governance.tenancy.tenant_session``) unless the caller is allowed to see the whole platform, and
every action is authorised with ``governance.permissions`` and written with its audit record in the
same transaction (source ``dashboard``).
"""

from __future__ import annotations

import io
import json
import tempfile
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from agentprovision.apply import applied_platform_settings, current_version, diff
from agentprovision.settings import load_settings
from agentprovision.store import models as m
from agentprovision.store.agent_models import AgentApproval
from agentprovision.store.audit import VerifyResult, append_audit, chain_of, latest_exported_heads, verify_chain
from agentprovision.store.connector_models import IntegrationSyncState, SyncRun
from agentprovision.store.db import open_store, session_factory, transaction
from governance.evidence import Period, build_sections, write_pack
from governance.permissions import Action, PermissionDenied, Principal, require
from governance.tenancy import tenant_session

SOURCE = "dashboard"
HEADS_DIR = "audit_heads"  # the same folder `agentprovision audit verify` anchors on
MAX_TASK_TEXT = 4000


class OpsStoreUnavailable(RuntimeError):
    """No ops store yet (the embedded default has not been started); shown as an empty state."""


def open_engine(database_url: str) -> Engine:
    """The migrated ops store, without creating an empty SQLite file when none exists yet."""
    if database_url.startswith("sqlite"):
        path = Path(database_url.split("///", 1)[-1])
        if not path.exists():
            raise OpsStoreUnavailable("no ops store yet: run `make run` or `agentprovision demo --once`")
    return open_store(database_url)


@contextmanager
def scoped_session(engine: Engine, tenant_id: str | None) -> Iterator[Session]:
    """A read transaction in one tenant's scope, or platform-wide when tenant_id is None."""
    factory = session_factory(engine)
    if tenant_id is None:
        with transaction(factory) as session:
            yield session
    else:
        with tenant_session(factory, tenant_id) as session:
            yield session


# --- who is signed in ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SignInUser:
    user_id: str
    name: str
    role: str
    tenant_id: str | None

    @property
    def label(self) -> str:
        where = self.tenant_id or "platform"
        return f"{self.name} · {self.role} · {where}"


def platform_environment(engine: Engine) -> str | None:
    """The environment of the config the platform runs with (dev | production); None before any apply."""
    return applied_platform_settings(engine).get("environment")


def sign_in_users(engine: Engine) -> list[SignInUser]:
    """Active users, platform staff first: what the development sign-in offers."""
    with transaction(session_factory(engine)) as session:
        rows = session.scalars(select(m.User).where(m.User.status == "active"))
        found = [SignInUser(u.user_id, u.name, u.role, u.tenant_id) for u in rows]
    return sorted(found, key=lambda u: (u.tenant_id is not None, u.tenant_id or "", u.role, u.user_id))


def principal_for(engine: Engine, user_id: str) -> Principal | None:
    """The user's principal as the ops store has it now; unknown or removed users get None (no rights)."""
    with transaction(session_factory(engine)) as session:
        user = session.get(m.User, user_id)
        if user is None or user.status != "active":
            return None
        return Principal(user.user_id, user.role, user.tenant_id)


# --- tasks ----------------------------------------------------------------------------------------


def submit_task(engine: Engine, principal: Principal, tenant_id: str, agent_id: str, instructions: str) -> str:
    """Queue one task for an agent of `tenant_id` on the principal's behalf; returns the task id.

    Refusals raise PermissionDenied (and are audited as denied); bad input raises ValueError.
    """
    text = instructions.strip()
    if not text:
        raise ValueError("describe the task: the instructions are empty")
    if len(text) > MAX_TASK_TEXT:
        raise ValueError(f"the instructions are {len(text)} characters; the limit is {MAX_TASK_TEXT}")
    # Imported here: the agent runtime loads the LLM gateway (LiteLLM), seconds a page should not wait for.
    from agents.runtime.submit import SubmitRefused  # noqa: PLC0415
    from agents.runtime.submit import submit_task as runtime_submit_task  # noqa: PLC0415

    factory = session_factory(engine)
    try:
        require(principal, Action.TASK_SUBMIT, tenant_id)
        with tenant_session(factory, tenant_id) as session:
            try:
                # The runtime's own submission: the agent must be the tenant's and active, and the input
                # must fit the agent type. A fresh key: every submission from the form is a new task.
                task, _ = runtime_submit_task(
                    session,
                    tenant_id=tenant_id,
                    agent_id=agent_id,
                    task_input={"instructions": text, "submitted_by": principal.user_id},
                    source=SOURCE,
                    idempotency_key=f"{SOURCE}:{uuid.uuid4()}",
                )
            except SubmitRefused as exc:
                raise ValueError(str(exc)) from None
            append_audit(
                session,
                actor=principal.user_id,
                action="task.submit",
                target_type="task",
                target_id=task.task_id,
                tenant_id=tenant_id,
                source=SOURCE,
                details={"agent_id": agent_id},
            )
            return task.task_id
    except PermissionDenied as exc:
        _audit_denied(factory, principal, "task.submit", "agent", agent_id, tenant_id, str(exc))
        raise


def task_queue(engine: Engine, tenant_id: str | None, *, with_prompts: bool, limit: int = 100) -> list[dict[str, Any]]:
    """The latest tasks in scope, newest first. Their instructions are prompts: only with `with_prompts`."""
    with scoped_session(engine, tenant_id) as session:
        rows = session.scalars(select(m.Task).order_by(m.Task.created_at.desc()).limit(limit))
        return [
            {
                "created_at": _aware(t.created_at),
                "tenant_id": t.tenant_id,
                "agent_id": t.agent_id,
                "status": t.status,
                "source": t.source,
                **({"instructions": (t.input or {}).get("instructions")} if with_prompts else {}),
                "submitted_by": (t.input or {}).get("submitted_by"),
                "task_id": t.task_id,
                "run_id": t.run_id,
            }
            for t in rows
        ]


def _audit_denied(
    factory: Any, principal: Principal, action: str, target_type: str, target_id: str, tenant_id: str | None, why: str
) -> None:
    # The refusal is evidence too; in its own transaction, since the refused one rolled back.
    with transaction(factory) as session:
        append_audit(
            session,
            actor=principal.user_id,
            action=action,
            target_type=target_type,
            target_id=target_id,
            tenant_id=tenant_id if principal.tenant_id in (None, tenant_id) else principal.tenant_id,
            source=SOURCE,
            outcome="denied",
            details={"reason": why},
        )


# --- approvals ------------------------------------------------------------------------------------


def approvals(engine: Engine, tenant_id: str | None, *, with_arguments: bool, limit: int = 200) -> list[dict[str, Any]]:
    """Approval requests in scope, pending first then the latest decided ones.

    The tool arguments carry what the agent wants to send (prompt material): only `with_arguments`.
    """
    with scoped_session(engine, tenant_id) as session:
        rows = session.scalars(
            select(AgentApproval)
            .order_by((AgentApproval.status != "pending"), AgentApproval.requested_at.desc())
            .limit(limit)
        )
        return [
            {
                "requested_at": _aware(a.requested_at),
                "tenant_id": a.tenant_id,
                "agent_id": a.agent_id,
                "tool": a.tool,
                **({"arguments": json.dumps(a.arguments, sort_keys=True)} if with_arguments else {}),
                "status": a.status,
                "decided_by": a.decided_by,
                "decided_at": _aware(a.decided_at),
                "reason": a.reason,
                "approval_id": a.approval_id,
                "run_id": a.run_id,
            }
            for a in rows
        ]


def pending_approval_count(engine: Engine, tenant_id: str | None) -> int:
    with scoped_session(engine, tenant_id) as session:
        return session.scalar(select(func.count()).select_from(AgentApproval).where(AgentApproval.status == "pending"))


def decide(engine: Engine, principal: Principal, tenant_id: str, approval_id: str, approve: bool, reason: str) -> None:
    """Approve or reject one pending request through the agent runtime, which resumes or ends the run and
    writes the audit record in the same transaction. Raises PermissionDenied (audited) or ValueError."""
    from agents.runtime.approvals import ApprovalError, decide_approval  # noqa: PLC0415 - see submit_task

    factory = session_factory(engine)
    action = "approval.approve" if approve else "approval.reject"
    try:
        require(principal, Action.APPROVAL_DECIDE, tenant_id)
    except PermissionDenied as exc:
        _audit_denied(factory, principal, action, "approval", approval_id, tenant_id, str(exc))
        raise
    try:
        decide_approval(
            engine,
            tenant_id=tenant_id,
            approval_id=approval_id,
            approve=approve,
            actor=principal.user_id,
            reason=reason.strip() or None,
            source=SOURCE,
        )
    except ApprovalError as exc:
        raise ValueError(str(exc)) from None


# --- audit chain, evidence ------------------------------------------------------------------------


def verify_audit(engine: Engine, principal: Principal, tenant_id: str | None) -> VerifyResult:
    """Verify the chains in scope (one tenant's, or every chain platform-wide) against exported heads."""
    require(principal, Action.AUDIT_VERIFY, tenant_id)
    anchors = latest_exported_heads(load_settings().state_dir / HEADS_DIR)
    only = None if tenant_id is None else {chain_of(tenant_id)}
    with scoped_session(engine, tenant_id) as session:
        return verify_chain(session, anchors, only=only)


def evidence_pack(engine: Engine, principal: Principal, tenant_id: str, period: str) -> tuple[str, bytes]:
    """Build one tenant's evidence pack for a period; returns (file name, zip bytes). Audited.

    Raises PermissionDenied, or governance.evidence.EvidenceError for a bad period or tenant.
    """
    parsed = Period.parse(period)
    factory = session_factory(engine)
    try:
        require(principal, Action.EVIDENCE_EXPORT, tenant_id)
    except PermissionDenied as exc:
        _audit_denied(
            factory, principal, "evidence.export", "evidence_pack", f"{tenant_id}/{period}", tenant_id, str(exc)
        )
        raise
    with tempfile.TemporaryDirectory() as tmp, transaction(factory) as session:
        sections = build_sections(session, tenant_id, parsed)
        target = write_pack(sections, tenant_id, parsed, Path(tmp), principal.user_id)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(target.iterdir()):
                archive.write(path, f"{tenant_id}-{parsed.label}/{path.name}")
        append_audit(
            session,
            actor=principal.user_id,
            action="evidence.export",
            target_type="evidence_pack",
            target_id=f"{tenant_id}/{parsed.label}",
            tenant_id=tenant_id,
            source=SOURCE,
            details={"findings": sum(len(s.findings) for s in sections)},
        )
    return f"evidence-{tenant_id}-{parsed.label}.zip", buffer.getvalue()


def retention_policies(engine: Engine, tenant_id: str | None) -> list[dict[str, Any]]:
    """Each tenant's retention and prompt policies, from the config version the platform runs with."""
    with transaction(session_factory(engine)) as session:
        version = current_version(session)
        content = version.content if version is not None else {}
    rows = []
    for tenant_file in content.get("tenants", []):
        tenant = tenant_file["tenant"]
        if tenant_id is not None and tenant["id"] != tenant_id:
            continue
        policies = tenant.get("policies") or {}
        rows.append(
            {
                "tenant_id": tenant["id"],
                "retention_days": policies.get("retention_days"),
                "store_prompts": policies.get("store_prompts"),
                "pii_policy": policies.get("pii"),
            }
        )
    return rows


# --- admin ----------------------------------------------------------------------------------------


def integrations(engine: Engine, tenant_id: str | None) -> list[dict[str, Any]]:
    """Integrations in scope with their last sync and a health word (healthy, failing, never synced, paused)."""
    with scoped_session(engine, tenant_id) as session:
        states = {(s.tenant_id, s.integration_id): s for s in session.scalars(select(IntegrationSyncState))}
        latest: dict[tuple[str, str], SyncRun] = {}
        for run in session.scalars(select(SyncRun).order_by(SyncRun.started_at)):
            latest[(run.tenant_id, run.integration_id)] = run
        rows = []
        for item in session.scalars(
            select(m.Integration).order_by(m.Integration.tenant_id, m.Integration.integration_id)
        ):
            key = (item.tenant_id, item.integration_id)
            state, run = states.get(key), latest.get(key)
            rows.append(
                {
                    "tenant_id": item.tenant_id,
                    "integration_id": item.integration_id,
                    "kind": item.kind,
                    "status": item.status,
                    "schedule": item.schedule,
                    "health": _health(item.status, run),
                    "last_sync_status": run.status if run else None,
                    "last_sync_at": _aware(run.finished_at or run.started_at) if run else None,
                    "last_success_at": _aware(state.last_success_at) if state else None,
                    "records_read": run.records_read if run else None,
                    "last_error": run.error if run and run.status == "failed" else None,
                }
            )
        return rows


def _health(status: str, run: SyncRun | None) -> str:
    if status != "active":
        return status
    if run is None:
        return "never synced"
    return {"succeeded": "healthy", "failed": "failing", "running": "syncing"}.get(run.status, run.status)


def config_diff(engine: Engine, old_version: int, new_version: int, tenant_id: str | None) -> list[str]:
    """The entity changes between two config versions; a tenant sees only its own entities' changes."""
    with transaction(session_factory(engine)) as session:
        old = session.get(m.ConfigVersion, old_version)
        new = session.get(m.ConfigVersion, new_version)
        if old is None or new is None:
            missing = old_version if old is None else new_version
            raise LookupError(f"config version {missing} is not in the ops store")
        old_content, new_content = old.content, new.content
    changes = diff(old_content, new_content)
    if tenant_id is not None:
        mine = _tenant_entities(old_content, tenant_id) | _tenant_entities(new_content, tenant_id)
        changes = [c for c in changes if (c.kind, c.entity_id) in mine]
    return [change.render() for change in changes]


def _tenant_entities(content: dict[str, Any], tenant_id: str) -> set[tuple[str, str]]:
    keys: set[tuple[str, str]] = set()
    for tenant_file in content.get("tenants", []):
        if tenant_file["tenant"]["id"] != tenant_id:
            continue
        keys.add(("tenant", tenant_id))
        keys |= {("department", f"{tenant_id}/{d['id']}") for d in tenant_file["tenant"].get("departments", [])}
        keys |= {("user", u["id"]) for u in tenant_file.get("users", [])}
        keys |= {("agent", a["id"]) for a in tenant_file.get("agents", [])}
        keys |= {("connector", f"{tenant_id}/{c['id']}") for c in tenant_file.get("connectors", [])}
        keys |= {("alert_channel", f"{tenant_id}/{c['id']}") for c in tenant_file.get("alert_channels", [])}
    return keys


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands datetimes back without their zone; the store writes UTC.
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value
