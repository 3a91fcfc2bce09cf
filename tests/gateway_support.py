"""Building small admin configs for gateway tests, through the real loader and validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from agentprovision.config import load_config_dir
from agentprovision.config.schema import AdminConfig

PRICE = {"input_per_mtok_usd": 2.0, "output_per_mtok_usd": 8.0}


def deployment(
    deployment_id: str,
    *,
    model_name: str = "chat",
    tier: str = "standard",
    regions: tuple[str, ...] = ("us",),
    context_window: int = 32_000,
    price: dict[str, Any] | None = None,
    api_base: str | None = None,
    tenant: str | None = None,
    sandbox: dict[str, Any] | None = None,
    model: str | None = None,
) -> dict[str, Any]:
    params: dict[str, Any] = {"model": model or (f"openai/{deployment_id}" if api_base else f"sandbox/{deployment_id}")}
    if api_base:
        params |= {"api_base": api_base, "api_key": "${GATEWAY_TEST_KEY}"}
    info: dict[str, Any] = {
        "id": deployment_id,
        "tier": tier,
        "regions": list(regions),
        "context_window": context_window,
    }
    if price is not False:
        info["contract_price"] = price or PRICE
    if tenant:
        info["tenant"] = tenant
    if sandbox is not None:
        info["sandbox"] = sandbox
    return {"model_name": model_name, "litellm_params": params, "model_info": info}


def tenant(
    tenant_id: str,
    *,
    region: str = "us",
    hard: float = 100,
    soft: float | None = None,
    policies: dict[str, Any] | None = None,
    rate_limits: dict[str, Any] | None = None,
    billing: dict[str, Any] | None = None,
    department_budget: dict[str, Any] | None = None,
    agent_budget: dict[str, Any] | None = None,
    agent_limits: dict[str, Any] | None = None,
    requirements: dict[str, Any] | None = None,
) -> dict[str, Any]:
    budget: dict[str, Any] = {"monthly_hard_usd": hard}
    if soft is not None:
        budget["monthly_soft_usd"] = soft
    department: dict[str, Any] = {"id": "ops", "name": "Operations", "cost_centre": "CC-1"}
    if department_budget:
        department["budget"] = department_budget
    agent: dict[str, Any] = {
        "id": f"{tenant_id}-agent",
        "name": "Agent",
        "type": "qa_testing",
        "version": "1.0.0",
        "department": "ops",
        "owner": f"admin@{tenant_id}.example",
        "requirements": requirements or {"tier": "basic", "min_context_window": 1000},
        "status": "active",
    }
    if agent_budget:
        agent["budget"] = agent_budget
    if agent_limits:
        agent["limits"] = agent_limits
    body: dict[str, Any] = {
        "id": tenant_id,
        "display_name": tenant_id.title(),
        "region": region,
        "plan": "enterprise",
        "budget": budget,
        "departments": [department],
    }
    for key, value in (("policies", policies), ("rate_limits", rate_limits), ("billing", billing)):
        if value:
            body[key] = value
    return {
        "tenant": body,
        "users": [{"id": f"admin@{tenant_id}.example", "name": "Admin", "role": "tenant_admin"}],
        "agents": [agent],
    }


def write_config(
    root: Path,
    models: list[dict[str, Any]],
    tenants: list[dict[str, Any]],
    gateway: dict[str, Any] | None = None,
    platform_budget: dict[str, Any] | None = None,
) -> AdminConfig:
    root.mkdir(parents=True, exist_ok=True)
    (root / "tenants").mkdir(exist_ok=True)
    platform: dict[str, Any] = {"environment": "dev", "default_region": "us", "regions": ["us", "eu"]}
    if gateway:
        platform["gateway"] = gateway
    if platform_budget:
        platform["budget"] = platform_budget
    (root / "platform.yaml").write_text(yaml.safe_dump({"platform": platform}))
    (root / "models.yaml").write_text(yaml.safe_dump({"model_list": models}))
    for body in tenants:
        (root / "tenants" / f"{body['tenant']['id']}.yaml").write_text(yaml.safe_dump(body))
    result = load_config_dir(root)
    assert result.ok, [issue.render() for issue in result.issues]
    return result.config


def request(tenant_id: str, text: str = "hello", **kwargs: Any) -> Any:
    from agents.gateway import CompletionRequest

    return CompletionRequest(
        tenant_id=tenant_id, agent_id=f"{tenant_id}-agent", messages=[{"role": "user", "content": text}], **kwargs
    )


def budget_worker(config_dir: str, store_url: str, calls: int, max_tokens: int) -> dict[str, int]:
    """One process of the concurrent budget test: `calls` calls at once through its own gateway."""
    import asyncio

    from agentprovision.store.db import make_engine
    from agents.gateway import BudgetExceeded, Gateway

    result = load_config_dir(Path(config_dir))
    engine = make_engine(store_url)
    gateway = Gateway(result.config, engine)

    async def run() -> dict[str, int]:
        outcomes = {"ok": 0, "refused": 0}

        async def one(i: int) -> None:
            try:
                await gateway.acomplete(request("acme", f"summarise ticket {i}", max_tokens=max_tokens))
                outcomes["ok"] += 1
            except BudgetExceeded:
                outcomes["refused"] += 1

        await asyncio.gather(*(one(i) for i in range(calls)))
        return outcomes

    try:
        return asyncio.run(run())
    finally:
        gateway.close()
        engine.dispose()


def rate_worker(config_dir: str, store_url: str, calls: int, moment: str) -> dict[str, dict[str, int]]:
    """One process of the cross-process rate-limit test: `calls` calls at once for every tenant.

    The clock is fixed at `moment`, so both processes count in the same minute whatever the wall clock does.
    """
    import asyncio
    from datetime import datetime

    from agentprovision.store.db import make_engine
    from agents.gateway import Gateway, RateLimited

    config = load_config_dir(Path(config_dir)).config
    engine = make_engine(store_url)
    fixed = datetime.fromisoformat(moment)
    gateway = Gateway(config, engine, clock=lambda: fixed)
    tenants = [t.tenant.id for t in config.tenants]
    outcomes = {t: {"ok": 0, "rpm": 0, "tpm": 0} for t in tenants}

    async def one(tenant_id: str, i: int) -> None:
        try:
            await gateway.acomplete(request(tenant_id, f"count request {i}", max_tokens=50))
            outcomes[tenant_id]["ok"] += 1
        except RateLimited as refused:
            outcomes[tenant_id][refused.kind] += 1

    async def run() -> None:
        await asyncio.gather(*(one(t, i) for t in tenants for i in range(calls)))

    try:
        asyncio.run(run())
        return outcomes
    finally:
        gateway.close()
        engine.dispose()
