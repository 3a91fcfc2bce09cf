"""The whole permission matrix: every action for every role, inside, across and above tenants."""

from __future__ import annotations

import itertools

import pytest

from governance.permissions import Action, PermissionDenied, Principal, authorize, authorize_grant, require

# The policy, stated independently of the implementation: X = allowed in the role's own scope;
# P = allowed only to the platform-level holder of the role (never to a tenant's).
# Columns: platform_admin, tenant_admin, agent_operator, analyst, finance, auditor.
EXPECTED = """
config.validate     X X . . . .
config.apply        X . . . . .
config.rollback     X . . . . .
config.history      X X . . . X
tenant.view         X X X X X X
tenant.manage       X . . . . .
user.view           X X . . . X
role.grant          X X . . . .
agent.view          X X X X X X
agent.manage        X X . . . .
task.submit         X X X . . .
approval.decide     X X X . . .
run.view            X X X X X X
prompt.view         X X X X . .
cost.view           X X . . X X
budget.manage       X X . . . .
chargeback.export   X X . . X .
invoice.import      X . . . P .
audit.view          X X . . . X
audit.verify        X X . . . X
evidence.export     X X . . . X
integration.view    X X X . . X
integration.manage  X X . . . .
secret.manage       X X . . . .
webhook.replay      X X X . . .
privacy.erase       X X . . . .
retention.apply     X X . . . .
key.rotate          X . . . . .
"""
ROLES = ["platform_admin", "tenant_admin", "agent_operator", "analyst", "finance", "auditor"]
ALLOWED = {
    (Action(row.split()[0]), role)
    for row in EXPECTED.strip().splitlines()
    for role, mark in zip(ROLES, row.split()[1:], strict=True)
    if mark == "X"
}
PLATFORM_ALLOWED = ALLOWED | {
    (Action(row.split()[0]), role)
    for row in EXPECTED.strip().splitlines()
    for role, mark in zip(ROLES, row.split()[1:], strict=True)
    if mark == "P"
}


def tenant_user(role: str, tenant: str = "acme") -> Principal:
    return Principal(f"{role}@{tenant}.example", role, tenant)


def test_the_expected_table_names_every_action_once() -> None:
    named = [Action(row.split()[0]) for row in EXPECTED.strip().splitlines()]
    assert sorted(named) == sorted(Action)


@pytest.mark.parametrize(("role", "action"), list(itertools.product(ROLES[1:], Action)))
def test_tenant_roles_inside_their_tenant_across_and_platform_wide(role: str, action: Action) -> None:
    user = tenant_user(role)
    assert authorize(user, action, "acme").allowed == ((action, role) in ALLOWED)
    assert not authorize(user, action, "globex").allowed, "a tenant user must never act in another tenant"
    assert not authorize(user, action, None).allowed, "a tenant user must never act platform-wide"


@pytest.mark.parametrize("action", list(Action))
def test_platform_admin_acts_everywhere(action: Action) -> None:
    admin = Principal("ops@platform.example", "platform_admin", None)
    for tenant in ("acme", "globex", None):
        assert authorize(admin, action, tenant).allowed


@pytest.mark.parametrize(("role", "action"), list(itertools.product(["auditor", "finance"], Action)))
def test_platform_auditor_and_finance_read_across_tenants_and_change_nothing(role: str, action: Action) -> None:
    user = Principal(f"{role}@platform.example", role, None)
    expected = (action, role) in PLATFORM_ALLOWED
    for tenant in ("acme", "globex", None):
        assert authorize(user, action, tenant).allowed == expected


def test_invoice_import_is_platform_finance_work_and_retention_is_a_tenant_admins() -> None:
    platform_finance = Principal("finance@platform.example", "finance", None)
    assert authorize(platform_finance, Action.INVOICE_IMPORT, None).allowed
    with pytest.raises(PermissionDenied, match="invoice.import is a platform action"):
        require(tenant_user("finance"), Action.INVOICE_IMPORT, "acme")
    assert not authorize(tenant_user("tenant_admin"), Action.INVOICE_IMPORT, "acme").allowed
    assert authorize(tenant_user("tenant_admin"), Action.RETENTION_APPLY, "acme").allowed
    assert not authorize(tenant_user("tenant_admin"), Action.RETENTION_APPLY, None).allowed
    assert not authorize(Principal("audit@platform.example", "auditor", None), Action.RETENTION_APPLY, None).allowed


def test_finance_sees_costs_but_not_prompts() -> None:
    finance = tenant_user("finance")
    assert authorize(finance, Action.COST_VIEW, "acme").allowed
    assert not authorize(finance, Action.PROMPT_VIEW, "acme").allowed


def test_require_names_who_what_and_why() -> None:
    with pytest.raises(PermissionDenied, match=r"analyst@acme.example may not cost.view on tenant acme"):
        require(tenant_user("analyst"), Action.COST_VIEW, "acme")
    with pytest.raises(PermissionDenied, match="belongs to tenant acme, not globex"):
        require(tenant_user("tenant_admin"), Action.AGENT_MANAGE, "globex")


@pytest.mark.parametrize("role", ROLES)
def test_nobody_changes_their_own_role(role: str) -> None:
    tenant = None if role == "platform_admin" else "acme"
    me = Principal(f"{role}@x.example", role, tenant)
    assert not authorize_grant(me, me.user_id, "analyst", tenant).allowed


def test_grants_only_below_your_own_role_and_inside_your_tenant() -> None:
    admin = tenant_user("tenant_admin")
    for role in ("agent_operator", "analyst", "finance", "auditor"):
        assert authorize_grant(admin, "new@acme.example", role, "acme").allowed
    assert not authorize_grant(admin, "new@acme.example", "tenant_admin", "acme").allowed
    assert not authorize_grant(admin, "new@acme.example", "platform_admin", "acme").allowed
    assert not authorize_grant(admin, "new@globex.example", "analyst", "globex").allowed
    operator = tenant_user("agent_operator")
    assert not authorize_grant(operator, "new@acme.example", "analyst", "acme").allowed
    platform = Principal("ops@platform.example", "platform_admin", None)
    assert authorize_grant(platform, "new@acme.example", "tenant_admin", "acme").allowed
    assert not authorize_grant(platform, "new@acme.example", "platform_admin", "acme").allowed


def test_principals_must_sit_in_the_right_scope() -> None:
    with pytest.raises(ValueError, match="platform-level"):
        Principal("x@acme.example", "platform_admin", "acme")
    with pytest.raises(ValueError, match="belongs to a tenant"):
        Principal("x@acme.example", "analyst", None)
    with pytest.raises(ValueError, match="unknown role"):
        Principal("x@acme.example", "superuser", "acme")
