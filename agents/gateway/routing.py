"""Choosing deployments: from requirements to an ordered chain, cheapest first, with reasons.

Everything that must never be crossed (region, tenant-only models, the allow-list) is decided
here, before LiteLLM sees the call: the Router only ever receives the chain, so no retry or
fallback inside it can reach a deployment this function rejected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from agentprovision.config.schema import ModelRequirements, Tenant
from agents.gateway.catalogue import TIER_RANK, Deployment
from agents.gateway.errors import ModelNotAllowed, NoEligibleModel
from agents.gateway.pricing import MILLION, worst_case


@dataclass(frozen=True)
class Candidate:
    deployment: Deployment
    estimated_usd: Decimal  # this call at this tenant's price, worst case


@dataclass(frozen=True)
class RouteDecision:
    chain: tuple[Candidate, ...]  # first is the primary; the rest are fallbacks in order
    rejected: dict[str, str] = field(default_factory=dict)  # deployment id -> why not

    @property
    def primary(self) -> Deployment:
        return self.chain[0].deployment

    @property
    def deployments(self) -> list[Deployment]:
        return [c.deployment for c in self.chain]

    def reason(self) -> str:
        first = self.chain[0]
        return (
            f"{first.deployment.id} is the cheapest of {len(self.chain)} eligible deployment(s) "
            f"(worst case {first.estimated_usd:.6f} USD for this call); {len(self.rejected)} rejected"
        )


def route(
    catalogue: list[Deployment],
    tenant: Tenant,
    requirements: ModelRequirements,
    prompt_tokens: int,
    max_tokens: int,
    max_fallbacks: int,
    model_name: str | None = None,
) -> RouteDecision:
    """Return the eligible deployments for this call, cheapest first, or raise with every reason."""
    allowed = tenant.policies.allowed_models
    if model_name is not None and allowed is not None and model_name not in allowed:
        raise ModelNotAllowed(
            f"model {model_name!r} is not on tenant {tenant.id!r}'s allow-list ({', '.join(allowed)})"
        )
    eligible: list[Candidate] = []
    rejected: dict[str, str] = {}
    for deployment in catalogue:
        why_not = _why_not(deployment, tenant, requirements, prompt_tokens, max_tokens, model_name)
        if why_not:
            rejected[deployment.id] = why_not
            continue
        price = deployment.price_for(tenant)
        eligible.append(Candidate(deployment, worst_case(price, prompt_tokens, max_tokens)))
    if not eligible:
        if model_name is not None and all("region" in r or "tenant" in r for r in rejected.values()):
            raise ModelNotAllowed(
                f"model {model_name!r} has no deployment tenant {tenant.id!r} may use in region {tenant.region!r}"
            )
        details = "; ".join(f"{d}: {r}" for d, r in sorted(rejected.items()))
        raise NoEligibleModel(
            f"no deployment meets the requirements of tenant {tenant.id!r} (tier {requirements.tier}+, "
            f"context {prompt_tokens + max_tokens} tokens, region {tenant.region}): {details}",
            rejected,
        )
    # Cheapest for this call's token mix; ties go to the lower tier, then the id, so it is stable.
    eligible.sort(key=lambda c: (c.estimated_usd, c.deployment.tier_rank, c.deployment.id))
    chain = eligible[: max_fallbacks + 1]
    for dropped in eligible[max_fallbacks + 1 :]:
        rejected[dropped.deployment.id] = f"beyond max_fallbacks ({max_fallbacks})"
    return RouteDecision(tuple(chain), rejected)


def _why_not(
    deployment: Deployment,
    tenant: Tenant,
    requirements: ModelRequirements,
    prompt_tokens: int,
    max_tokens: int,
    model_name: str | None,
) -> str | None:
    allowed = tenant.policies.allowed_models
    if tenant.region not in deployment.regions:
        return f"region {'/'.join(deployment.regions)} is outside tenant region {tenant.region}"
    if deployment.tenant is not None and deployment.tenant != tenant.id:
        return f"fine-tuned model of tenant {deployment.tenant}"
    if allowed is not None and deployment.model_name not in allowed:
        return f"model {deployment.model_name!r} is not on the tenant allow-list"
    if model_name is not None and deployment.model_name != model_name:
        return f"model {deployment.model_name!r} was not the one asked for"
    if deployment.tier_rank < TIER_RANK[requirements.tier]:
        return f"tier {deployment.tier} is below the required {requirements.tier}"
    if deployment.context_window < requirements.min_context_window:
        return f"context window {deployment.context_window} is below the required {requirements.min_context_window}"
    if deployment.context_window < prompt_tokens + max_tokens:
        return f"context window {deployment.context_window} cannot hold {prompt_tokens} + {max_tokens} tokens"
    limit = requirements.max_input_per_mtok_usd
    input_per_mtok = deployment.price_for(tenant).input * MILLION
    if limit is not None and input_per_mtok > limit:
        return f"input price {input_per_mtok:.2f} USD/Mtok is above the limit {limit}"
    return None
