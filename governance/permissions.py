"""Who may do what: the one permission matrix every entry point consults.

The CLI, approvals, reports and dashboards all ask `authorize()`; none of them encodes a role
check of its own. Platform roles act across tenants; tenant roles act only inside their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from agentprovision.config.schema import PLATFORM_ROLES, ROLES


class Action(StrEnum):
    CONFIG_VALIDATE = "config.validate"
    CONFIG_APPLY = "config.apply"
    CONFIG_ROLLBACK = "config.rollback"
    CONFIG_HISTORY = "config.history"
    TENANT_VIEW = "tenant.view"
    TENANT_MANAGE = "tenant.manage"
    USER_VIEW = "user.view"
    ROLE_GRANT = "role.grant"
    AGENT_VIEW = "agent.view"
    AGENT_MANAGE = "agent.manage"
    TASK_SUBMIT = "task.submit"
    APPROVAL_DECIDE = "approval.decide"
    RUN_VIEW = "run.view"
    PROMPT_VIEW = "prompt.view"
    COST_VIEW = "cost.view"
    BUDGET_MANAGE = "budget.manage"
    CHARGEBACK_EXPORT = "chargeback.export"
    INVOICE_IMPORT = "invoice.import"
    AUDIT_VIEW = "audit.view"
    AUDIT_VERIFY = "audit.verify"
    EVIDENCE_EXPORT = "evidence.export"
    INTEGRATION_VIEW = "integration.view"
    INTEGRATION_MANAGE = "integration.manage"
    SECRET_MANAGE = "secret.manage"  # noqa: S105 - an action name, not a secret
    WEBHOOK_REPLAY = "webhook.replay"
    PRIVACY_ERASE = "privacy.erase"
    RETENTION_APPLY = "retention.apply"
    KEY_ROTATE = "key.rotate"


A = Action
_READ_FLEET = {A.TENANT_VIEW, A.AGENT_VIEW, A.RUN_VIEW}

# Each role's actions. Reading this table is reading the policy: keep it the only copy.
MATRIX: dict[str, frozenset[Action]] = {
    "platform_admin": frozenset(Action),
    "tenant_admin": frozenset(
        _READ_FLEET
        | {
            A.CONFIG_VALIDATE,
            A.CONFIG_HISTORY,
            A.USER_VIEW,
            A.ROLE_GRANT,
            A.AGENT_MANAGE,
            A.TASK_SUBMIT,
            A.APPROVAL_DECIDE,
            A.PROMPT_VIEW,
            A.COST_VIEW,
            A.BUDGET_MANAGE,
            A.CHARGEBACK_EXPORT,
            A.AUDIT_VIEW,
            A.AUDIT_VERIFY,
            A.EVIDENCE_EXPORT,
            A.INTEGRATION_VIEW,
            A.INTEGRATION_MANAGE,
            A.SECRET_MANAGE,
            A.WEBHOOK_REPLAY,
            A.PRIVACY_ERASE,
            A.RETENTION_APPLY,
        }
    ),
    "agent_operator": frozenset(
        _READ_FLEET | {A.TASK_SUBMIT, A.APPROVAL_DECIDE, A.PROMPT_VIEW, A.INTEGRATION_VIEW, A.WEBHOOK_REPLAY}
    ),
    # Analysts see what agents did, including prompts and outputs, but not money.
    "analyst": frozenset(_READ_FLEET | {A.PROMPT_VIEW}),
    # Finance sees costs and budgets but never prompts or outputs. Importing a provider invoice is in the
    # role, but PLATFORM_ONLY keeps it to platform-level finance.
    "finance": frozenset(_READ_FLEET | {A.COST_VIEW, A.CHARGEBACK_EXPORT, A.INVOICE_IMPORT}),
    # Auditors read everything needed for evidence and change nothing.
    "auditor": frozenset(
        _READ_FLEET
        | {
            A.CONFIG_HISTORY,
            A.USER_VIEW,
            A.COST_VIEW,
            A.AUDIT_VIEW,
            A.AUDIT_VERIFY,
            A.EVIDENCE_EXPORT,
            A.INTEGRATION_VIEW,
        }
    ),
}

# Only platform_admin may act on the platform as a whole (no tenant), except these read-only actions
# that platform auditors and finance need across all tenants.
PLATFORM_WIDE_READS = {
    A.TENANT_VIEW,
    A.AGENT_VIEW,
    A.RUN_VIEW,
    A.COST_VIEW,
    A.CHARGEBACK_EXPORT,
    A.CONFIG_HISTORY,
    A.USER_VIEW,
    A.AUDIT_VIEW,
    A.AUDIT_VERIFY,
    A.EVIDENCE_EXPORT,
    A.INTEGRATION_VIEW,
}

# Actions on the platform's own books, never a tenant's: a provider invoice is billed to the platform, so
# only platform-level principals (platform_admin, platform finance) may import one, whatever the role table
# says for the tenant-level holder of the same role.
PLATFORM_ONLY = {A.INVOICE_IMPORT}
# Platform-level roles other than platform_admin may do these with no tenant named (the whole platform).
PLATFORM_WIDE_ACTIONS = PLATFORM_WIDE_READS | PLATFORM_ONLY

# Grants: a role can be granted only by someone ranked strictly above it.
RANK = {"platform_admin": 3, "tenant_admin": 2, "agent_operator": 1, "analyst": 1, "finance": 1, "auditor": 1}


@dataclass(frozen=True)
class Principal:
    user_id: str
    role: str
    tenant_id: str | None  # None for platform-level users

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}")
        if self.role == "platform_admin" and self.tenant_id is not None:
            raise ValueError("platform_admin is a platform-level role and cannot belong to a tenant")
        if self.role not in PLATFORM_ROLES and self.tenant_id is None:
            raise ValueError(f"role {self.role!r} belongs to a tenant; give the principal its tenant_id")

    @property
    def is_platform(self) -> bool:
        return self.tenant_id is None


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str


class PermissionDenied(Exception):
    """Raised by `require`; the message says who was refused what, and why."""


def authorize(principal: Principal, action: Action, tenant_id: str | None) -> Decision:
    """May `principal` do `action` on `tenant_id` (None = the platform as a whole)?"""
    if action not in MATRIX[principal.role]:
        return Decision(False, f"role {principal.role} does not allow {action}")
    if principal.is_platform:
        if tenant_id is None and principal.role != "platform_admin" and action not in PLATFORM_WIDE_ACTIONS:
            return Decision(False, f"{action} on the whole platform needs platform_admin")
        return Decision(True, f"{principal.role} acts across tenants")
    if action in PLATFORM_ONLY:
        return Decision(False, f"{action} is a platform action; {principal.role} of a tenant cannot do it")
    if tenant_id is None:
        return Decision(False, f"{principal.role} of tenant {principal.tenant_id} cannot act platform-wide")
    if tenant_id != principal.tenant_id:
        return Decision(False, f"{principal.user_id} belongs to tenant {principal.tenant_id}, not {tenant_id}")
    return Decision(True, f"{principal.role} inside own tenant")


def require(principal: Principal, action: Action, tenant_id: str | None) -> None:
    decision = authorize(principal, action, tenant_id)
    if not decision.allowed:
        scope = f"tenant {tenant_id}" if tenant_id else "the platform"
        raise PermissionDenied(f"{principal.user_id} may not {action} on {scope}: {decision.reason}")


def authorize_grant(granter: Principal, grantee_id: str, role: str, tenant_id: str | None) -> Decision:
    """May `granter` give `role` to `grantee_id` in `tenant_id`?"""
    if role not in ROLES:
        return Decision(False, f"unknown role {role!r}")
    if grantee_id == granter.user_id:
        return Decision(False, "nobody may change their own role")
    scope = authorize(granter, Action.ROLE_GRANT, tenant_id)
    if not scope.allowed:
        return scope
    if RANK[role] >= RANK[granter.role] and granter.role != "platform_admin":
        return Decision(False, f"{granter.role} cannot grant {role}: only roles below their own")
    if role == "platform_admin" and tenant_id is not None:
        return Decision(False, "platform_admin is a platform-level role, not a tenant's")
    return Decision(True, f"{granter.role} may grant {role}")
