"""Checks that need more than one field or more than one file: references, budgets, secrets.

Each check returns issues rather than raising, so an admin sees every problem in one pass.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from croniter import croniter

from agentprovision.config.schema import (
    PLATFORM_ROLES,
    AdminConfig,
    Budget,
    TenantFile,
    is_reference,
)
from agentprovision.config.source import ConfigIssue, Path_, SourceFile
from agentprovision.plugins import AGENT_TYPES_GROUP, CONNECTORS_GROUP, TOOLS_GROUP, registered_names

# Keys whose values are credentials whatever they look like.
SECRET_KEY_NAMES = re.compile(r"(^|_)(password|passwd|secret|token|api_key|apikey|private_key|access_key)$", re.I)
# Values that are credentials whatever key they sit under.
SECRET_VALUE_PATTERNS = (
    (re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{16,}"), "an API key (sk-...)"),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), "an AWS access key id"),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}"), "a GitHub token"),
    (re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"), "a Slack token"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a private key"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"), "a JSON web token"),
    (re.compile(r"://[^/\s:@]+:[^/\s@]+@"), "a URL with a password in it"),
)
REFERENCE_ADVICE = (
    "put the value in an environment variable and write ${VAR}, or store it in the vault and write secret://name"
)


def check_inline_secrets(source: SourceFile) -> list[ConfigIssue]:
    issues = []
    for path, value in _walk(source.data, ()):
        if not isinstance(value, str) or is_reference(value):
            continue
        key = path[-1] if path and isinstance(path[-1], str) else ""
        if SECRET_KEY_NAMES.search(key) and value.strip():
            issues.append(source.issue(path, f"inline secret is not allowed: {REFERENCE_ADVICE}"))
            continue
        for pattern, label in SECRET_VALUE_PATTERNS:
            if pattern.search(value):
                issues.append(source.issue(path, f"this looks like {label} written inline: {REFERENCE_ADVICE}"))
                break
    return issues


def _walk(data: Any, path: Path_) -> Iterator[tuple[Path_, Any]]:
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _walk(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _walk(value, (*path, index))
    else:
        yield path, data


def is_valid_cron(expression: str) -> bool:
    return len(expression.split()) == 5 and croniter.is_valid(expression)


CRON_HINT = 'five fields: minute hour day-of-month month day-of-week, e.g. "0 6 * * 1-5"'


class CrossChecks:
    """Runs every cross-file check over a config whose files each parsed on their own."""

    def __init__(
        self,
        config: AdminConfig,
        platform: SourceFile,
        models: SourceFile,
        tenants: list[SourceFile],
        every_tenant_parsed: bool = True,
    ):
        self.config = config
        self.every_tenant_parsed = every_tenant_parsed
        self.platform_source = platform
        self.models_source = models
        self.tenant_sources = tenants
        self.issues: list[ConfigIssue] = []

    def run(self) -> list[ConfigIssue]:
        self._check_platform()
        self._check_models()
        self._check_unique_across_files()
        for tenant_file, source in zip(self.config.tenants, self.tenant_sources, strict=True):
            self._check_tenant(tenant_file, source)
        return self.issues

    def _add(self, source: SourceFile, path: Path_, message: str) -> None:
        self.issues.append(source.issue(path, message))

    def _check_platform(self) -> None:
        platform = self.config.platform
        for index, user in enumerate(platform.users):
            if user.role not in PLATFORM_ROLES:
                self._add(
                    self.platform_source,
                    ("users", index, "role"),
                    f"role {user.role!r} belongs to a tenant; platform-level users may be "
                    f"{', '.join(PLATFORM_ROLES)}. Move this user into the tenant's file",
                )
        self._unique_ids(self.platform_source, "alert_channels", [c.id for c in platform.alert_channels])

    def _check_models(self) -> None:
        regions = set(self.config.platform.platform.regions)
        tenant_ids = {t.tenant.id for t in self.config.tenants}
        production = self.config.platform.platform.environment == "production"
        seen: dict[str, int] = {}
        for index, deployment in enumerate(self.config.models.model_list):
            info = deployment.model_info
            if info.id in seen:
                self._add(
                    self.models_source,
                    ("model_list", index, "model_info", "id"),
                    f"deployment id {info.id!r} is already used by model_list[{seen[info.id]}]",
                )
            seen.setdefault(info.id, index)
            for r_index, region in enumerate(info.regions):
                if region not in regions:
                    self._add(
                        self.models_source,
                        ("model_list", index, "model_info", "regions", r_index),
                        f"region {region!r} is not one of the platform regions {sorted(regions)}",
                    )
            if info.tenant is not None and self.every_tenant_parsed and info.tenant not in tenant_ids:
                self._add(
                    self.models_source,
                    ("model_list", index, "model_info", "tenant"),
                    f"unknown tenant {info.tenant!r}; known tenants: {', '.join(sorted(tenant_ids))}",
                )
            if info.sandbox is not None and deployment.provider != "sandbox":
                self._add(
                    self.models_source,
                    ("model_list", index, "model_info", "sandbox"),
                    f"sandbox settings only apply to sandbox/... deployments; this one uses {deployment.provider!r}",
                )
            if production and deployment.provider == "sandbox":
                self._add(
                    self.models_source,
                    ("model_list", index, "litellm_params", "model"),
                    "the sandbox provider is for development only and is refused when environment "
                    "is production; point this deployment at a real provider",
                )

    def _check_unique_across_files(self) -> None:
        tenant_seen: dict[str, str] = {}
        user_seen: dict[str, str] = {u.id: self.platform_source.display_name for u in self.config.platform.users}
        agent_seen: dict[str, str] = {}
        for tenant_file, source in zip(self.config.tenants, self.tenant_sources, strict=True):
            tenant_id = tenant_file.tenant.id
            if tenant_id in tenant_seen:
                self._add(
                    source, ("tenant", "id"), f"tenant id {tenant_id!r} is already defined in {tenant_seen[tenant_id]}"
                )
            tenant_seen.setdefault(tenant_id, source.display_name)
            if source.path.stem != tenant_id:
                self._add(
                    source,
                    ("tenant", "id"),
                    f"tenant id {tenant_id!r} does not match the file name {source.path.name!r}; "
                    f"name the file {tenant_id}.yaml",
                )
            for index, user in enumerate(tenant_file.users):
                if user.id in user_seen:
                    self._add(
                        source, ("users", index, "id"), f"user {user.id!r} is already defined in {user_seen[user.id]}"
                    )
                user_seen.setdefault(user.id, source.display_name)
            for index, agent in enumerate(tenant_file.agents):
                if agent.id in agent_seen:
                    self._add(
                        source,
                        ("agents", index, "id"),
                        f"agent id {agent.id!r} is already defined in {agent_seen[agent.id]}",
                    )
                agent_seen.setdefault(agent.id, source.display_name)

    def _unique_ids(self, source: SourceFile, section: str, ids: list[str]) -> None:
        first: dict[str, int] = {}
        for index, item_id in enumerate(ids):
            if item_id in first:
                self._add(
                    source, (section, index, "id"), f"id {item_id!r} is already used by {section}[{first[item_id]}]"
                )
            first.setdefault(item_id, index)

    def _check_tenant(self, tenant_file: TenantFile, source: SourceFile) -> None:
        tenant = tenant_file.tenant
        platform = self.config.platform.platform
        if tenant.region not in platform.regions:
            self._add(
                source,
                ("tenant", "region"),
                f"region {tenant.region!r} is not one of the platform regions {platform.regions}",
            )
        self._unique_ids(source, "users", [u.id for u in tenant_file.users])
        self._unique_ids(source, "connectors", [c.id for c in tenant_file.connectors])
        self._unique_ids(source, "alert_channels", [c.id for c in tenant_file.alert_channels])
        departments = {d.id: d for d in tenant.departments}
        first: dict[str, int] = {}
        for index, department in enumerate(tenant.departments):
            if department.id in first:
                self._add(
                    source,
                    ("tenant", "departments", index, "id"),
                    f"department id {department.id!r} is already used by departments[{first[department.id]}]",
                )
            first.setdefault(department.id, index)
        self._check_budgets(tenant_file, source)
        self._check_policies(tenant_file, source)
        self._check_billing(tenant_file, source)

        users = {u.id for u in tenant_file.users} | {u.id for u in self.config.platform.users}
        for index, user in enumerate(tenant_file.users):
            if user.role == "platform_admin":
                self._add(
                    source,
                    ("users", index, "role"),
                    "platform_admin is a platform-level role; declare this user in platform.yaml",
                )
            if user.department is not None and user.department not in departments:
                self._add(
                    source, ("users", index, "department"), self._unknown("department", user.department, departments)
                )

        agent_types = registered_names(AGENT_TYPES_GROUP)
        tools = registered_names(TOOLS_GROUP)
        connectors = {c.id for c in tenant_file.connectors}
        for index, agent in enumerate(tenant_file.agents):
            at = ("agents", index)
            if agent.type not in agent_types:
                self._add(source, (*at, "type"), self._unknown("agent type", agent.type, agent_types))
            if agent.department not in departments:
                self._add(source, (*at, "department"), self._unknown("department", agent.department, departments))
            if agent.owner not in users:
                self._add(
                    source,
                    (*at, "owner"),
                    f"owner {agent.owner!r} is not a user of tenant {tenant.id!r} or of the platform",
                )
            for t_index, tool in enumerate(agent.tools):
                if tool not in tools:
                    self._add(source, (*at, "tools", t_index), self._unknown("tool", tool, tools))
            if agent.schedule is not None and not is_valid_cron(agent.schedule):
                self._add(source, (*at, "schedule"), f"{agent.schedule!r} is not a valid cron expression ({CRON_HINT})")
            for t_index, trigger in enumerate(agent.triggers):
                if trigger.connector not in connectors:
                    self._add(
                        source,
                        (*at, "triggers", t_index, "connector"),
                        self._unknown("connector", trigger.connector, connectors),
                    )

        connector_kinds = registered_names(CONNECTORS_GROUP)
        for index, connector in enumerate(tenant_file.connectors):
            if connector.kind not in connector_kinds:
                self._add(
                    source,
                    ("connectors", index, "kind"),
                    self._unknown("connector kind", connector.kind, connector_kinds),
                )
            if connector.schedule is not None and not is_valid_cron(connector.schedule):
                self._add(
                    source,
                    ("connectors", index, "schedule"),
                    f"{connector.schedule!r} is not a valid cron expression ({CRON_HINT})",
                )
        # Each connector kind validates its own settings, hosts and trigger streams.
        from connectors.config_checks import connector_problems

        for path, message in connector_problems(tenant_file, connector_kinds):
            self._add(source, path, message)

    def _check_budgets(self, tenant_file: TenantFile, source: SourceFile) -> None:
        tenant = tenant_file.tenant
        platform_budget = self.config.platform.platform.budget
        if platform_budget is not None:
            self._not_above(source, ("tenant", "budget"), tenant.budget, platform_budget, "the platform budget")
        departments = {d.id: d for d in tenant.departments}
        for index, department in enumerate(tenant.departments):
            if department.budget is not None:
                self._not_above(
                    source,
                    ("tenant", "departments", index, "budget"),
                    department.budget,
                    tenant.budget,
                    f"tenant {tenant.id!r}'s budget",
                )
        for index, agent in enumerate(tenant_file.agents):
            if agent.budget is None:
                continue
            department = departments.get(agent.department)
            if department is not None and department.budget is not None:
                parent, label = department.budget, f"department {department.id!r}'s budget"
            else:
                parent, label = tenant.budget, f"tenant {tenant.id!r}'s budget"
            self._not_above(source, ("agents", index, "budget"), agent.budget, parent, label)

    def _not_above(self, source: SourceFile, path: Path_, child: Budget, parent: Budget, label: str) -> None:
        if child.monthly_hard_usd > parent.monthly_hard_usd:
            self._add(
                source,
                (*path, "monthly_hard_usd"),
                f"monthly_hard_usd {child.monthly_hard_usd} is above {label} ({parent.monthly_hard_usd}); "
                "a budget cannot exceed the one it belongs to",
            )

    def _check_policies(self, tenant_file: TenantFile, source: SourceFile) -> None:
        policies = tenant_file.tenant.policies
        tools = registered_names(TOOLS_GROUP)
        for field in ("allowed_tools", "denied_tools"):
            for index, tool in enumerate(getattr(policies, field) or ()):
                if tool not in tools:
                    self._add(source, ("tenant", "policies", field, index), self._unknown("tool", tool, tools))
        allowed = policies.allowed_models
        if allowed is None:
            return
        model_names = {d.model_name for d in self.config.models.model_list}
        for index, name in enumerate(allowed):
            if name not in model_names:
                self._add(
                    source, ("tenant", "policies", "allowed_models", index), self._unknown("model", name, model_names)
                )

    def _check_billing(self, tenant_file: TenantFile, source: SourceFile) -> None:
        deployment_ids = {d.model_info.id for d in self.config.models.model_list}
        for deployment_id in tenant_file.tenant.billing.contract_prices:
            if deployment_id not in deployment_ids:
                self._add(
                    source,
                    ("tenant", "billing", "contract_prices", deployment_id),
                    self._unknown("deployment id", deployment_id, deployment_ids),
                )

    @staticmethod
    def _unknown(what: str, value: str, known: set[str] | frozenset[str] | dict) -> str:
        choices = ", ".join(sorted(known)) or "none are defined"
        return f"unknown {what} {value!r}; known: {choices}"
