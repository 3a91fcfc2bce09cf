"""The admin configuration schema: what each YAML file may say, field by field.

Every model forbids unknown fields so a misspelt key is an error rather than a silently ignored
setting. Checks that span files (references between tenants, models, agents and departments)
live in `checks.py`; this module only knows the shape of one file at a time.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

ROLES = ("platform_admin", "tenant_admin", "agent_operator", "analyst", "finance", "auditor")
PLATFORM_ROLES = ("platform_admin", "auditor", "finance")
TENANT_ROLES = ("tenant_admin", "agent_operator", "analyst", "finance", "auditor")

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{1,62}$")]
Role = Literal["platform_admin", "tenant_admin", "agent_operator", "analyst", "finance", "auditor"]
Region = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{1,30}$")]
Usd = Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=6)]

ENV_REFERENCE = re.compile(r"^\$\{[A-Z_][A-Z0-9_]*\}$")
VAULT_REFERENCE = re.compile(r"^secret://[a-z0-9][a-z0-9._/-]*$")


def is_reference(value: object) -> bool:
    return isinstance(value, str) and bool(ENV_REFERENCE.match(value) or VAULT_REFERENCE.match(value))


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(str):
    """A pointer to a secret (`${ENV_VAR}` or `secret://name`), never the secret itself."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        def check(value: str) -> str:
            if not is_reference(value):
                raise ValueError("must be a reference such as ${ENV_VAR} or secret://name, not the value itself")
            return value

        return core_schema.no_info_after_validator_function(check, core_schema.str_schema())


class Budget(Strict):
    """Monthly spend limits in USD: crossing `soft` raises an alert, `hard` refuses further calls."""

    monthly_hard_usd: Usd
    monthly_soft_usd: Usd | None = None

    @model_validator(mode="after")
    def soft_below_hard(self) -> Budget:
        if self.monthly_soft_usd is not None and self.monthly_soft_usd > self.monthly_hard_usd:
            raise ValueError(
                f"monthly_soft_usd ({self.monthly_soft_usd}) is above monthly_hard_usd "
                f"({self.monthly_hard_usd}); the soft threshold must be at or below the hard limit"
            )
        return self


# --- platform.yaml ---------------------------------------------------------------------------


class GatewaySettings(Strict):
    """How the LLM gateway retries, falls back and prices; the defaults suit a hosted provider."""

    num_retries: int = Field(default=2, ge=0, le=10, description="Retries on the same deployment before falling back.")
    max_fallbacks: int = Field(default=3, ge=0, le=10, description="Other deployments tried after the first.")
    timeout_seconds: float = Field(default=60, gt=0, le=3600, description="Per-attempt timeout.")
    cooldown_seconds: float = Field(default=30, ge=0, le=3600, description="How long a failing deployment rests.")
    allowed_fails: int | None = Field(
        default=None, ge=0, description="Failures per minute before cooldown; unset uses LiteLLM's failure-rate rule."
    )
    markup_percent: Decimal = Field(
        default=Decimal(0), ge=0, le=1000, description="Added to the provider cost for every tenant without its own."
    )
    stale_reservation_minutes: int = Field(
        default=30, ge=1, description="Budget reservations older than this are released (their process died)."
    )


class AlertingSettings(Strict):
    """Thresholds of the alerts raised from the warehouse marts (agentprovision/alerting.py)."""

    error_rate: float = Field(
        default=0.05, gt=0, le=1, description="A model's daily error rate (0..1) at or above this alerts."
    )
    error_rate_min_calls: int = Field(
        default=20, ge=1, description="Days with fewer calls for an agent and model never raise error_rate_high."
    )
    policy_denials_per_day: int = Field(
        default=10, ge=1, description="Blocked or refused policy decisions per tenant and day that raise an alert."
    )


class PlatformSettings(Strict):
    environment: Literal["dev", "production"]
    # Where the platform keeps its state, and which stores it uses, come from the environment so the
    # same config runs embedded on a laptop and against PostgreSQL in production.
    state_dir: SecretRef = SecretRef("${AGENTPROVISION_STATE_DIR}")
    ops_store_url: SecretRef = SecretRef("${AGENTPROVISION_DATABASE_URL}")
    warehouse_target: SecretRef = SecretRef("${AGENTPROVISION_WAREHOUSE_TARGET}")
    default_region: Region
    regions: list[Region] = Field(min_length=1)
    budget: Budget | None = None
    gateway: GatewaySettings = GatewaySettings()
    alerting: AlertingSettings = AlertingSettings()

    @model_validator(mode="after")
    def default_region_listed(self) -> PlatformSettings:
        if self.default_region not in self.regions:
            raise ValueError(f"default_region {self.default_region!r} is not in regions {self.regions}")
        return self


class User(Strict):
    id: Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")] = Field(
        description="The user's e-mail address, used as their identity."
    )
    name: str = Field(min_length=1)
    role: Role
    department: Slug | None = None


# Every alert a channel may subscribe to: the gateway's budget crossings, failed runs and syncs, and the
# alerts raised from the marts (budget_forecast_over, budget_status_exceeded, error_rate_high, policy_violation).
AlertName = Literal[
    "budget_soft",
    "budget_hard",
    "run_failed",
    "policy_violation",
    "sync_failed",
    "budget_forecast_over",
    "budget_status_exceeded",
    "error_rate_high",
]


class AlertChannel(Strict):
    id: Slug
    kind: Literal["webhook", "slack", "email"]
    target: SecretRef = Field(description="URL or address, by reference: webhook URLs carry tokens.")
    signing_secret: SecretRef | None = None
    events: list[AlertName] = Field(min_length=1)


class PlatformFile(Strict):
    platform: PlatformSettings
    users: list[User] = Field(default_factory=list)
    alert_channels: list[AlertChannel] = Field(default_factory=list)


# --- models.yaml (LiteLLM model_list shape plus our metadata) ----------------------------------


class LiteLLMParams(BaseModel):
    """LiteLLM's own `litellm_params`; passed through untouched apart from the secret checks."""

    model_config = ConfigDict(extra="allow", frozen=True)

    model: str = Field(min_length=3, description="provider/model, as LiteLLM names it")
    api_key: SecretRef | None = None
    api_base: str | None = None
    timeout: float | None = Field(default=None, gt=0)
    rpm: int | None = Field(default=None, gt=0)
    tpm: int | None = Field(default=None, gt=0)


class ContractPrice(Strict):
    """Negotiated prices that replace LiteLLM's list prices for this deployment."""

    input_per_mtok_usd: Usd
    output_per_mtok_usd: Usd
    cached_input_per_mtok_usd: Usd | None = Field(default=None, description="Unset: cached input at the input price.")
    reasoning_per_mtok_usd: Usd | None = Field(default=None, description="Unset: reasoning at the output price.")


class SandboxSettings(Strict):
    """Behaviour of a sandbox deployment: latency and injected faults, so fallbacks can be shown offline."""

    latency_ms: int = Field(default=0, ge=0, le=60_000)
    error_rate: float = Field(default=0, ge=0, le=1, description="Share of attempts answered with a 500.")
    rate_limit_rate: float = Field(default=0, ge=0, le=1, description="Share answered with a 429.")
    retry_after_seconds: int = Field(default=1, ge=0, le=60, description="Retry-After sent with each 429.")
    timeout_rate: float = Field(default=0, ge=0, le=1, description="Share that hang until the call times out.")
    seed: int | None = Field(default=None, description="Fixes the fault sequence; unset draws a fresh one.")

    @model_validator(mode="after")
    def rates_fit(self) -> SandboxSettings:
        total = self.error_rate + self.rate_limit_rate + self.timeout_rate
        if total > 1:
            raise ValueError(f"error_rate + rate_limit_rate + timeout_rate is {total:g}; together they cannot pass 1")
        return self


class ModelInfo(Strict):
    id: Slug = Field(description="Unique deployment id; routing decisions and cost events name it.")
    tier: Literal["basic", "standard", "advanced"]
    regions: list[Region] = Field(min_length=1)
    context_window: int = Field(gt=0)
    contract_price: ContractPrice | None = None
    tenant: Slug | None = Field(default=None, description="Set for a tenant's own fine-tuned model.")
    sandbox: SandboxSettings | None = Field(default=None, description="Only for sandbox/... deployments.")
    # Keys LiteLLM itself reads from model_info, kept so a pasted LiteLLM config still validates.
    base_model: str | None = None
    mode: str | None = None


class ModelDeployment(Strict):
    model_name: str = Field(min_length=1)
    litellm_params: LiteLLMParams
    model_info: ModelInfo

    @property
    def provider(self) -> str:
        return self.litellm_params.model.split("/", 1)[0]


class ModelsFile(Strict):
    model_list: list[ModelDeployment] = Field(min_length=1)


# --- tenants/<id>.yaml -------------------------------------------------------------------------


class Department(Strict):
    id: Slug
    name: str = Field(min_length=1)
    cost_centre: str = Field(min_length=1)
    budget: Budget | None = None


class RetentionPolicy(Strict):
    """How long each kind of tenant data is kept, enforced daily by governance.retention.

    Kinds left unset follow `retention_days`. Audit records are never pruned by retention.
    """

    prompts_days: int = Field(
        default=30, ge=1, le=3650, description="Prompt and output text kept in usage events (store_prompts)."
    )
    usage_days: int = Field(default=396, ge=1, le=3650, description="Usage events (model calls); 13 months by default.")
    events_days: int | None = Field(
        default=None, ge=1, le=3650, description="Every other event (tool, run, policy, alert, sync)."
    )
    task_inputs_days: int | None = Field(
        default=None, ge=1, le=3650, description="Inputs of finished tasks; the task row itself is kept."
    )


class TenantPolicies(Strict):
    allowed_models: list[str] | None = Field(
        default=None, description="model_name values this tenant may use; unset means every model in its region."
    )
    pii: Literal["mask", "block", "allow"] = "mask"
    secrets: Literal["mask", "block"] = Field(
        default="mask", description="Keys, tokens and private keys never reach a provider as they are."
    )
    scan_output: bool = Field(default=True, description="Scan model output with the same rules as the prompt.")
    allowed_tools: list[str] | None = Field(
        default=None, description="Tools this tenant's agents may call; unset means every installed tool."
    )
    denied_tools: list[str] = Field(
        default_factory=list, description="Tools refused to every agent of this tenant, whatever its config says."
    )
    store_prompts: bool = False
    retention_days: int = Field(default=365, ge=1, le=3650)
    retention: RetentionPolicy = Field(
        default_factory=RetentionPolicy, description="Per-kind retention; optional, defaults are documented."
    )


class RateLimits(Strict):
    """Requests and tokens (prompt plus completion) per minute, counted across every process."""

    rpm: int | None = Field(default=None, gt=0)
    tpm: int | None = Field(default=None, gt=0)


class TenantBilling(Strict):
    """What the platform charges this tenant: a markup on provider cost, or its own contract prices."""

    markup_percent: Decimal | None = Field(default=None, ge=0, le=1000, description="Unset: the platform markup.")
    contract_prices: dict[Slug, ContractPrice] = Field(
        default_factory=dict, description="Per deployment id; replaces the deployment's price for this tenant."
    )


class Tenant(Strict):
    id: Slug
    display_name: str = Field(min_length=1)
    region: Region
    plan: Literal["starter", "business", "enterprise"]
    max_concurrent_runs: int = Field(default=2, ge=1, le=1000)
    departments: list[Department] = Field(min_length=1)
    budget: Budget
    policies: TenantPolicies = TenantPolicies()
    rate_limits: RateLimits = RateLimits()
    billing: TenantBilling = TenantBilling()


class ModelRequirements(Strict):
    tier: Literal["basic", "standard", "advanced"] = "standard"
    min_context_window: int = Field(default=8_000, gt=0)
    max_input_per_mtok_usd: Usd | None = None


class AgentLimits(Strict):
    max_steps: int = Field(default=8, ge=1, le=200)
    max_tokens: int = Field(default=20_000, ge=100)
    max_wall_seconds: int = Field(default=300, ge=1, le=86_400)
    max_concurrent_tasks: int = Field(default=2, ge=1, le=100)
    rpm: int | None = Field(default=None, gt=0, description="Model calls per minute for this agent.")
    tpm: int | None = Field(default=None, gt=0, description="Model tokens per minute for this agent.")


class EventTrigger(Strict):
    """Turn each new record of an integration's stream that matches into a task for this agent (once per record)."""

    connector: Slug
    stream: str = Field(min_length=1)
    match: dict[str, str | int | bool | list[str]] = Field(
        default_factory=dict,
        description="Field equality (or list membership) a new record must satisfy; dotted paths reach nested fields.",
    )
    instructions: str | None = Field(default=None, description="What the agent should do with the record.")


class Agent(Strict):
    id: Slug
    name: str = Field(min_length=1)
    type: str = Field(min_length=1)
    version: Annotated[str, StringConstraints(pattern=r"^\d+\.\d+\.\d+$")]
    department: Slug
    owner: str
    requirements: ModelRequirements = ModelRequirements()
    tools: list[str] = Field(default_factory=list)
    schedule: str | None = Field(default=None, description="Five-field cron, evaluated in UTC.")
    triggers: list[EventTrigger] = Field(default_factory=list)
    limits: AgentLimits = AgentLimits()
    status: Literal["draft", "active", "paused", "retired"] = "draft"
    budget: Budget | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)

    @field_validator("tools")
    @classmethod
    def tools_unique(cls, tools: list[str]) -> list[str]:
        repeated = sorted({t for t in tools if tools.count(t) > 1})
        if repeated:
            raise ValueError(f"tools listed more than once: {', '.join(repeated)}")
        return tools


HostPattern = Annotated[
    str, StringConstraints(pattern=r"^(\*\.)?[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?$|^\[[0-9a-f:]+\](:\d{1,5})?$")
]


class Connector(Strict):
    """An integration: one configured instance of a connector kind (see docs/integrations.md)."""

    id: Slug
    kind: str = Field(min_length=1)
    settings: dict[str, Any] = Field(default_factory=dict, description="The kind's own settings; validated by it.")
    credential: SecretRef | None = None
    schedule: str | None = None
    allowed_hosts: list[HostPattern] = Field(
        default_factory=list,
        description="Hosts the integration may contact: host, host:port or *.suffix; nothing else is reachable.",
    )


class TenantFile(Strict):
    tenant: Tenant
    users: list[User] = Field(default_factory=list)
    agents: list[Agent] = Field(default_factory=list)
    connectors: list[Connector] = Field(default_factory=list)
    alert_channels: list[AlertChannel] = Field(default_factory=list)


# --- the whole config --------------------------------------------------------------------------


class AdminConfig(Strict):
    """Everything an admin configured, after every file and cross-file check passed."""

    platform: PlatformFile
    models: ModelsFile
    tenants: list[TenantFile]

    def tenant(self, tenant_id: str) -> TenantFile:
        for tenant_file in self.tenants:
            if tenant_file.tenant.id == tenant_id:
                return tenant_file
        raise KeyError(tenant_id)
