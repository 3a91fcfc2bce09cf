"""The sandbox provider, routing rules, and the promise that nothing is fetched at run time."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import litellm
import pytest
import yaml
from gateway_support import deployment, request, tenant, write_config
from sqlalchemy import Engine, select

from agentprovision.config import load_config_dir
from agentprovision.store.db import make_engine, migrate
from agentprovision.store.models import Event
from agents.gateway import Gateway, ModelNotAllowed, NoEligibleModel
from agents.gateway.sandbox import TOKENIZER_MODEL

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'ops.db'}")
    migrate(engine)
    return engine


def test_sandbox_answers_deterministically_with_real_token_counts(engine: Engine, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c", [deployment("sandbox-one", tier="basic")], [tenant("acme")])
    gateway = Gateway(config, engine)
    first = gateway.complete(request("acme", "Summarise the incident report for INC-42"))
    again = gateway.complete(request("acme", "Summarise the incident report for INC-42"))
    other = gateway.complete(request("acme", "Something else entirely"))
    gateway.close()
    assert first.content == again.content != other.content
    assert first.content.startswith("[sandbox sandbox-one]") and first.sandbox and first.provider == "sandbox"
    messages = [{"role": "user", "content": "Summarise the incident report for INC-42"}]
    assert first.usage.prompt == litellm.token_counter(model=TOKENIZER_MODEL, messages=messages)
    with engine.connect() as connection:
        usage = [e.payload for e in connection.execute(select(Event).where(Event.kind == "usage"))]
    assert all(u["sandbox"] is True and u["provider"] == "sandbox" for u in usage)


def test_sandbox_faults_show_retries_and_fallbacks(engine: Engine, tmp_path: Path) -> None:
    flaky = {"error_rate": 0.4, "rate_limit_rate": 0.3, "retry_after_seconds": 0, "seed": 11}
    models = [
        deployment(
            "sandbox-flaky", tier="basic", sandbox=flaky, price={"input_per_mtok_usd": 1, "output_per_mtok_usd": 1}
        ),
        deployment("sandbox-steady", tier="basic"),
    ]
    config = write_config(tmp_path / "c", models, [tenant("acme")], {"num_retries": 0})
    gateway = Gateway(config, engine)
    results = [gateway.complete(request("acme", f"q{i}")) for i in range(12)]
    gateway.close()
    used = {r.deployment_id for r in results}
    assert used == {"sandbox-flaky", "sandbox-steady"}  # some answered first time, some fell back
    assert max(r.attempts for r in results) <= 2
    with engine.connect() as connection:
        errors = {e.payload["error_class"] for e in connection.execute(select(Event).where(Event.kind == "usage"))}
    assert {"InternalServerError", "RateLimitError"} <= errors


def test_sandbox_tool_calls_follow_the_offered_tool(engine: Engine, tmp_path: Path) -> None:
    gateway = Gateway(write_config(tmp_path / "c", [deployment("sandbox-one", tier="basic")], [tenant("acme")]), engine)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "warehouse_query",
                "parameters": {"type": "object", "properties": {"sql": {"type": "string"}}},
            },
        }
    ]
    result = gateway.complete(request("acme", "revenue by month", tools=tools))
    assert result.tool_calls[0]["function"] == {"name": "warehouse_query", "arguments": '{"sql": "revenue by month"}'}


def test_production_config_refuses_the_sandbox(tmp_path: Path) -> None:
    write_config(tmp_path / "c", [deployment("sandbox-one")], [tenant("acme")])
    platform = yaml.safe_load((tmp_path / "c" / "platform.yaml").read_text())
    platform["platform"]["environment"] = "production"
    (tmp_path / "c" / "platform.yaml").write_text(yaml.safe_dump(platform))
    result = load_config_dir(tmp_path / "c")
    assert not result.ok
    assert any("sandbox provider is for development only" in issue.render() for issue in result.issues)


def test_routing_picks_cheapest_meeting_requirements_and_keeps_fine_tunes_private(
    engine: Engine, tmp_path: Path
) -> None:
    models = [
        deployment("basic-cheap", tier="basic", price={"input_per_mtok_usd": 0.1, "output_per_mtok_usd": 0.4}),
        deployment(
            "std-small",
            tier="standard",
            context_window=8_000,
            price={"input_per_mtok_usd": 0.5, "output_per_mtok_usd": 1},
        ),
        deployment("std-big", tier="standard", context_window=128_000),
        deployment("adv", tier="advanced", price={"input_per_mtok_usd": 3, "output_per_mtok_usd": 15}),
        deployment(
            "acme-tuned", tier="standard", tenant="acme", price={"input_per_mtok_usd": 0.2, "output_per_mtok_usd": 0.8}
        ),
    ]
    config = write_config(
        tmp_path / "c",
        models,
        [
            tenant("acme", requirements={"tier": "standard", "min_context_window": 4000}),
            tenant("initech", requirements={"tier": "standard", "min_context_window": 4000}),
        ],
    )
    gateway = Gateway(config, engine)
    assert gateway.complete(request("acme")).deployment_id == "acme-tuned"
    assert gateway.complete(request("initech")).deployment_id == "std-small"
    assert gateway.complete(request("initech", max_tokens=20_000)).deployment_id == "std-big"  # 8k cannot hold it
    gateway.close()
    with engine.connect() as connection:
        routes = [e.payload for e in connection.execute(select(Event).where(Event.name == "route").order_by(Event.seq))]
    assert routes[1]["chain"][:2] == ["std-small", "std-big"]
    assert routes[1]["rejected"]["acme-tuned"] == "fine-tuned model of tenant acme"
    assert routes[1]["rejected"]["basic-cheap"] == "tier basic is below the required standard"
    assert "cannot hold" in routes[2]["rejected"]["std-small"]


def test_unmeetable_requirements_and_unknown_models_are_refused_clearly(engine: Engine, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c", [deployment("only-us", tier="basic")], [tenant("globex", region="eu")])
    gateway = Gateway(config, engine)
    with pytest.raises(NoEligibleModel, match="only-us: region us is outside tenant region eu"):
        gateway.complete(request("globex"))
    with pytest.raises(ModelNotAllowed, match="no deployment tenant 'globex' may use in region 'eu'"):
        gateway.complete(request("globex", model="chat"))


OFFLINE_PROBE = textwrap.dedent(
    """
    import socket, sys

    attempts = []

    def refuse_network(event, args):
        if event == "socket.connect":
            address = args[1]
            host = address[0] if isinstance(address, tuple) else str(address)
            if host not in ("127.0.0.1", "::1", "localhost"):
                attempts.append(host)
                raise OSError(f"network refused in test: {host}")
        if event == "socket.getaddrinfo" and args[0] not in ("127.0.0.1", "::1", "localhost", None):
            attempts.append(args[0])
            raise OSError(f"DNS refused in test: {args[0]}")

    sys.addaudithook(refuse_network)
    import os
    os.environ.pop("LITELLM_LOCAL_MODEL_COST_MAP", None)  # the gateway itself must set it
    import agents.gateway  # noqa: F401
    import litellm
    from agents.gateway.pricing import Price
    counts = [
        litellm.token_counter(model=m, messages=[{"role": "user", "content": "hello offline world"}])
        for m in ("gpt-4o", "gpt-3.5-turbo", "claude-3-5-sonnet-20240620", "sandbox/fast-us", "unknown-model")
    ]
    assert all(c > 0 for c in counts), counts
    assert Price.from_cost_map("gpt-4o").source == "litellm-cost-map"
    from agents.gateway.sandbox import register
    register()
    response = litellm.completion(model="sandbox/fast-us", messages=[{"role": "user", "content": "hi"}])
    assert response.usage.prompt_tokens > 0
    print("attempts", attempts)
    sys.exit(1 if attempts else 0)
    """
)


def test_nothing_is_fetched_from_the_network_for_prices_or_tokenizers(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(REPO_ROOT)}
    completed = subprocess.run(
        [sys.executable, "-c", OFFLINE_PROBE], capture_output=True, text=True, env=env, timeout=180, cwd=REPO_ROOT
    )
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    assert "attempts []" in completed.stdout
