"""Who may run an administrative CLI command: the permission matrix, plus the bootstrap and operator rules.

The acting user is `AGENTPROVISION_ACTOR` (or the OS user), looked up in the ops store:
- a known user is held to the permission matrix: an active user whose role does not allow the
  action is refused, whatever else is true;
- bootstrap: while no config has been applied there are no users, so the first `apply` is let
  through and recorded as a bootstrap;
- an actor the store does not know is the infrastructure operator: whoever runs the CLI holds the
  database credentials and could write the store directly, so refusing them protects nothing. They
  are let through and every such change is recorded as `cli.operator_access` (reads are not). Set
  `AGENTPROVISION_STRICT_ACTORS=1` in production to refuse them instead, so every administrative
  action is attributable to a configured user.
Destructive or disclosing commands (privacy erase, retention apply, evidence export) never use the
operator rule: their actor must be a configured user (`governance.cli.principal_for`).
"""

from __future__ import annotations

import os
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from agentprovision.store import models as m
from agentprovision.store.audit import append_audit
from agentprovision.store.db import transaction
from governance.permissions import PLATFORM_WIDE_READS, Action, PermissionDenied, Principal, require

ENV_STRICT = "AGENTPROVISION_STRICT_ACTORS"
Admission = Literal["user", "bootstrap", "operator"]


def strict_actors(environ: dict[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return env.get(ENV_STRICT, "").strip().lower() in ("1", "true", "yes")


def admit(
    session: Session,
    actor: str,
    action: Action,
    tenant_id: str | None,
    *,
    bootstrap: bool = False,
    environ: dict[str, str] | None = None,
) -> Admission:
    """Let `actor` do `action` on `tenant_id` (None = the platform) or raise PermissionDenied; see the module doc."""
    user = session.get(m.User, actor)
    if user is not None:
        if user.status != "active":
            raise PermissionDenied(f"{actor} is {user.status} and may not {action}")
        require(Principal(user.user_id, user.role, user.tenant_id), action, tenant_id)
        return "user"
    if bootstrap and not session.scalar(select(func.count()).select_from(m.ConfigVersion)):
        admission: Admission = "bootstrap"
    elif strict_actors(environ):
        raise PermissionDenied(
            f"{actor!r} is not a user of the platform and {ENV_STRICT} is set; "
            "set AGENTPROVISION_ACTOR to a configured user whose role allows this"
        )
    else:
        admission = "operator"
    if action in PLATFORM_WIDE_READS:
        return admission  # read-only: nothing changed that the trail must attribute
    append_audit(
        session,
        actor=actor,
        action=f"cli.{admission}_access",
        target_type="action",
        target_id=str(action),
        tenant_id=tenant_id,
        source="cli",
        details={"reason": "no users yet" if admission == "bootstrap" else "actor is not a configured user"},
    )
    return admission


def check_cli(
    factory: sessionmaker[Session],
    actor: str,
    action: Action,
    tenant_id: str | None,
    *,
    bootstrap: bool = False,
) -> Admission:
    """`admit` in its own transaction; a refusal is recorded as a denied audit record, then re-raised."""
    try:
        with transaction(factory) as session:
            return admit(session, actor, action, tenant_id, bootstrap=bootstrap)
    except PermissionDenied as exc:
        with transaction(factory) as session:
            append_audit(
                session,
                actor=actor,
                action=str(action),
                target_type="action",
                target_id=str(action),
                tenant_id=tenant_id if tenant_id and session.get(m.Tenant, tenant_id) else None,
                source="cli",
                outcome="denied",
                details={"reason": str(exc)},
            )
        raise
