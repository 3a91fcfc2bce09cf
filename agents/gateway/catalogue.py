"""The model catalogue as the gateway sees it: deployments with their metadata and prices.

Built once from the admin config. Secret references in `litellm_params` are resolved here, at
start-up, so a missing key is a clear configuration error rather than a provider 401 later.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from agentprovision.config.schema import ENV_REFERENCE, AdminConfig, ModelDeployment, SandboxSettings, Tenant
from agents.gateway.errors import ConfigurationError
from agents.gateway.pricing import Price

TIER_RANK = {"basic": 1, "standard": 2, "advanced": 3}

SecretResolver = Callable[[str], str]


@dataclass(frozen=True)
class Deployment:
    id: str
    model_name: str
    model: str  # provider/model as LiteLLM names it
    provider: str
    tier: str
    regions: tuple[str, ...]
    context_window: int
    price: Price
    tenant: str | None
    sandbox: SandboxSettings | None
    litellm_params: Mapping[str, Any] = field(repr=False)  # resolved, may hold a key: never log it

    @property
    def is_sandbox(self) -> bool:
        return self.provider == "sandbox"

    @property
    def tier_rank(self) -> int:
        return TIER_RANK[self.tier]

    def price_for(self, tenant: Tenant) -> Price:
        contract = tenant.billing.contract_prices.get(self.id)
        return self.price if contract is None else Price.from_contract(contract, source="tenant-contract")


def env_resolver(environ: Mapping[str, str] | None = None) -> SecretResolver:
    env = os.environ if environ is None else environ

    def resolve(reference: str) -> str:
        if ENV_REFERENCE.match(reference):
            name = reference[2:-1]
            if name not in env:
                raise ConfigurationError(f"environment variable {name} is not set (needed by {reference})")
            return env[name]
        raise ConfigurationError(
            f"{reference} names a vault secret; pass the gateway a secret resolver that can read the vault"
        )

    return resolve


def build_catalogue(config: AdminConfig, resolve_secret: SecretResolver | None = None) -> list[Deployment]:
    resolve = resolve_secret or env_resolver()
    return [_deployment(entry, resolve) for entry in config.models.model_list]


def _deployment(entry: ModelDeployment, resolve: SecretResolver) -> Deployment:
    info = entry.model_info
    params = entry.litellm_params.model_dump(exclude_none=True)
    if "api_key" in params:
        params["api_key"] = resolve(params["api_key"])
    if info.sandbox is not None:
        # Carried in litellm_params because that is what LiteLLM hands a custom provider.
        params["sandbox"] = info.sandbox.model_dump()
    if info.contract_price is not None:
        price = Price.from_contract(info.contract_price)
    else:
        price = Price.from_cost_map(info.base_model or entry.litellm_params.model)
    return Deployment(
        id=info.id,
        model_name=entry.model_name,
        model=entry.litellm_params.model,
        provider=entry.provider,
        tier=info.tier,
        regions=tuple(info.regions),
        context_window=info.context_window,
        price=price,
        tenant=info.tenant,
        sandbox=info.sandbox,
        litellm_params=params,
    )


def markup_for(config: AdminConfig, tenant: Tenant) -> Decimal:
    own = tenant.billing.markup_percent
    return config.platform.platform.gateway.markup_percent if own is None else own
