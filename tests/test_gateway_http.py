"""The gateway through LiteLLM's real HTTP path to a loopback OpenAI-compatible peer.

No client is monkeypatched: LiteLLM's OpenAI adapter makes real HTTP requests to the peer,
which answers, faults, hangs or refuses as scripted.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import litellm
import pytest
from gateway_support import deployment, request, tenant, write_config
from openai_peer import OpenAIPeer, PeerBehaviour
from sqlalchemy import Engine, select

from agentprovision.store.db import make_engine, migrate
from agentprovision.store.models import Event
from agents.gateway import Gateway, ModelNotAllowed, ProviderFailed
from agents.gateway.pricing import Price, TokenUsage, cost

FAST = {"num_retries": 2, "timeout_seconds": 0.3, "cooldown_seconds": 30}


@pytest.fixture
def peer() -> Iterator[OpenAIPeer]:
    server = OpenAIPeer().start()
    yield server
    server.stop()


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setenv("GATEWAY_TEST_KEY", "test-key-not-a-secret")
    engine = make_engine(f"sqlite:///{tmp_path / 'ops.db'}")
    migrate(engine)
    yield engine
    engine.dispose()


def events(engine: Engine, kind: str | None = None) -> list[Event]:
    with engine.connect() as connection:
        query = select(Event).order_by(Event.seq)
        if kind:
            query = query.where(Event.kind == kind)
        return list(connection.execute(query))


def three_us_deployments(peer: OpenAIPeer) -> list[dict]:
    return [
        deployment("cheap", api_base=peer.api_base("cheap"), price={"input_per_mtok_usd": 1, "output_per_mtok_usd": 2}),
        deployment(
            "middle", api_base=peer.api_base("middle"), price={"input_per_mtok_usd": 2, "output_per_mtok_usd": 4}
        ),
        deployment("dear", api_base=peer.api_base("dear"), price={"input_per_mtok_usd": 3, "output_per_mtok_usd": 6}),
    ]


def test_plain_call_is_routed_to_the_cheapest_and_recorded(peer: OpenAIPeer, engine: Engine, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c", three_us_deployments(peer), [tenant("acme")], FAST)
    gateway = Gateway(config, engine)
    result = gateway.complete(request("acme", "What is our refund policy?", run_id="run-1", max_tokens=50))
    gateway.close()

    assert result.content == "echo: What is our refund policy?"
    assert (result.deployment_id, result.attempts, result.fallback_depth, result.sandbox) == ("cheap", 1, 0, False)
    assert peer.count("cheap") == 1 and peer.count("middle") == 0
    usage_events = events(engine, "usage")
    assert len(usage_events) == 1
    payload = usage_events[0].payload
    assert payload["deployment_id"] == "cheap" and payload["status"] == "ok" and payload["provider"] == "openai"
    assert usage_events[0].run_id == "run-1" and usage_events[0].agent_id == "acme-agent"
    assert Decimal(payload["cost_usd"]) == result.cost_usd > 0
    route = next(e for e in events(engine, "policy") if e.name == "route")
    assert route.payload["chain"] == ["cheap", "middle", "dear"]
    assert "cheapest" in route.payload["reason"]


def test_tool_calls_pass_through_in_openai_format(peer: OpenAIPeer, engine: Engine, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c", three_us_deployments(peer), [tenant("acme")], FAST)
    gateway = Gateway(config, engine)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "kb_search",
                "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
            },
        }
    ]
    result = gateway.complete(request("acme", "find the runbook", tools=tools))
    assert result.finish_reason == "tool_calls"
    assert result.tool_calls[0]["function"]["name"] == "kb_search"
    assert peer.requests[-1][1]["tools"][0]["function"]["name"] == "kb_search"


def test_sync_calls_reuse_one_connection_to_the_provider(peer: OpenAIPeer, engine: Engine, tmp_path: Path) -> None:
    # LiteLLM's sync Router runs each call in a new event loop and keys its client cache by loop, so
    # without the gateway's per-thread loop each call built a new client and opened a new connection.
    config = write_config(tmp_path / "c", [deployment("only", api_base=peer.api_base("only"))], [tenant("acme")], FAST)
    gateway = Gateway(config, engine)
    for number in range(8):
        gateway.complete(request("acme", f"question {number}", max_tokens=20))
    gateway.close()
    assert len(peer.client_addresses) == 8
    assert len(set(peer.client_addresses)) == 1


def test_each_thread_calls_on_its_own_loop_which_closes_with_the_thread(
    peer: OpenAIPeer, engine: Engine, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c", [deployment("only", api_base=peer.api_base("only"))], [tenant("acme")], FAST)
    gateway = Gateway(config, engine)
    loops = []

    def call_twice() -> None:
        for number in range(2):
            assert gateway.complete(request("acme", f"from a thread {number}")).content.startswith("echo:")
        loops.append(gateway.router.thread_loop())

    workers = [threading.Thread(target=call_twice) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    gc.collect()
    assert len(loops) == 2 and loops[0] is not loops[1]
    assert all(loop.is_closed() for loop in loops)  # nothing left open once the threads ended

    # A sync call made where an event loop is already running still works (LiteLLM's own helper thread).
    async def from_async_code() -> str | None:
        return gateway.complete(request("acme", "from async code")).content

    assert asyncio.run(from_async_code()) == "echo: from async code"
    gateway.complete(request("acme", "on the main thread"))
    main_loop = gateway.router.thread_loop()
    gateway.close()
    assert main_loop.is_closed()


def test_faults_retry_then_fall_back_with_one_usage_event_per_attempt(
    peer: OpenAIPeer, engine: Engine, tmp_path: Path
) -> None:
    peer.behaviours["cheap"] = PeerBehaviour(script=["500", "429", "500"], retry_after="0")
    peer.behaviours["middle"] = PeerBehaviour(script=["timeout"], hang_seconds=0.6)
    config = write_config(tmp_path / "c", three_us_deployments(peer), [tenant("acme")], FAST)
    gateway = Gateway(config, engine)
    result = gateway.complete(request("acme"))
    gateway.close()

    assert result.deployment_id == "middle" and result.fallback_depth == 1
    assert [peer.count(n) for n in ("cheap", "middle")] == [3, 2]  # 1 + 2 retries each; the timeout was retried
    attempts = [e.payload for e in events(engine, "usage")]
    assert [(a["deployment_id"], a["status"], a["fallback_depth"]) for a in attempts] == [
        ("cheap", "error", 0),
        ("cheap", "error", 0),
        ("cheap", "error", 0),
        ("middle", "error", 1),
        ("middle", "ok", 1),
    ]
    assert {a["error_class"] for a in attempts[:3]} == {"InternalServerError", "RateLimitError"}
    assert attempts[3]["error_class"] == "Timeout"
    assert [Decimal(a["cost_usd"]) > 0 for a in attempts] == [False] * 4 + [True]


def test_a_failing_call_releases_its_reservation_and_keeps_its_events(
    peer: OpenAIPeer, engine: Engine, tmp_path: Path
) -> None:
    for name in ("cheap", "middle", "dear"):
        peer.behaviours[name] = PeerBehaviour(script=["500"] * 10)
    config = write_config(tmp_path / "c", three_us_deployments(peer), [tenant("acme")], {**FAST, "num_retries": 1})
    gateway = Gateway(config, engine)
    with pytest.raises(ProviderFailed, match=r"after 6 attempt\(s\); last error InternalServerError"):
        gateway.complete(request("acme"))
    gateway.close()
    assert len(events(engine, "usage")) == 6
    with engine.connect() as connection:
        from agentprovision.store.gateway_models import GatewayBudgetCounter, GatewayReservation

        assert connection.execute(select(GatewayReservation.status)).scalars().all() == ["released"]
        assert connection.execute(select(GatewayBudgetCounter.reserved_usd)).scalars().all() == [0]


def test_residency_holds_even_when_every_eu_deployment_fails(peer: OpenAIPeer, engine: Engine, tmp_path: Path) -> None:
    models = [
        deployment("eu-one", regions=("eu",), api_base=peer.api_base("eu-one")),
        deployment("eu-two", regions=("eu",), api_base=peer.api_base("eu-two")),
        deployment(
            "us-cheap",
            regions=("us",),
            api_base=peer.api_base("us-cheap"),
            price={"input_per_mtok_usd": 0.1, "output_per_mtok_usd": 0.1},
        ),
    ]
    peer.behaviours["eu-one"] = PeerBehaviour(script=["500"] * 5)
    peer.behaviours["eu-two"] = PeerBehaviour(script=["500"] * 5)
    config = write_config(tmp_path / "c", models, [tenant("globex", region="eu")], {**FAST, "num_retries": 1})
    gateway = Gateway(config, engine)
    with pytest.raises(ProviderFailed):
        gateway.complete(request("globex"))
    gateway.close()
    assert peer.count("us-cheap") == 0
    assert peer.count("eu-one") == 2 and peer.count("eu-two") == 2
    route = next(e for e in events(engine, "policy") if e.name == "route")
    assert "outside tenant region eu" in route.payload["rejected"]["us-cheap"]


def test_a_failing_deployment_cools_down_and_is_skipped(peer: OpenAIPeer, engine: Engine, tmp_path: Path) -> None:
    peer.behaviours["cheap"] = PeerBehaviour(script=["500"] * 50)
    gateway_settings = {**FAST, "num_retries": 0, "allowed_fails": 1, "cooldown_seconds": 60}
    config = write_config(tmp_path / "c", three_us_deployments(peer), [tenant("acme")], gateway_settings)
    gateway = Gateway(config, engine)
    for _ in range(4):
        assert gateway.complete(request("acme")).deployment_id == "middle"
    gateway.close()
    # allowed_fails=1: the second failure within the minute cools "cheap" down; later calls skip it.
    assert peer.count("cheap") == 2
    assert peer.count("middle") == 4


def test_context_window_errors_fall_back_to_a_larger_deployment(
    peer: OpenAIPeer, engine: Engine, tmp_path: Path
) -> None:
    models = [
        deployment(
            "small",
            context_window=8_000,
            api_base=peer.api_base("small"),
            price={"input_per_mtok_usd": 1, "output_per_mtok_usd": 1},
        ),
        deployment("large", context_window=128_000, api_base=peer.api_base("large")),
    ]
    peer.behaviours["small"] = PeerBehaviour(script=["context"])
    config = write_config(tmp_path / "c", models, [tenant("acme")], FAST)
    gateway = Gateway(config, engine)
    result = gateway.complete(request("acme"))
    assert result.deployment_id == "large"
    assert peer.count("small") == 1  # not retried: a bigger prompt window is the only cure
    gateway.flush()
    failed = events(engine, "usage")
    assert failed[0].payload["error_class"] == "ContextWindowExceededError"


def test_allow_list_refuses_a_model_by_name_with_a_policy_event(
    peer: OpenAIPeer, engine: Engine, tmp_path: Path
) -> None:
    models = [*three_us_deployments(peer), deployment("premium", model_name="premium", api_base=peer.api_base("p"))]
    config = write_config(tmp_path / "c", models, [tenant("acme", policies={"allowed_models": ["chat"]})], FAST)
    gateway = Gateway(config, engine)
    with pytest.raises(ModelNotAllowed, match="'premium' is not on tenant 'acme'"):
        gateway.complete(request("acme", model="premium"))
    gateway.close()
    refusal = next(e for e in events(engine, "policy") if e.name == "route")
    assert refusal.payload["decision"] == "refused"
    assert peer.requests == []


# Usage with cached input and reasoning, and a contract price with a separate rate for each kind of token.
CACHED_AND_REASONING_USAGE = {
    "prompt_tokens": 10_000,
    "completion_tokens": 3_000,
    "total_tokens": 13_000,
    "prompt_tokens_details": {"cached_tokens": 8_000},
    "completion_tokens_details": {"reasoning_tokens": 2_000},
}
RATE_PER_TOKEN_KIND = {
    "input_per_mtok_usd": 2,
    "cached_input_per_mtok_usd": 0.5,
    "output_per_mtok_usd": 8,
    "reasoning_per_mtok_usd": 10,
}


def test_cached_and_reasoning_tokens_are_charged_once_at_their_own_rates(
    peer: OpenAIPeer, engine: Engine, tmp_path: Path
) -> None:
    peer.behaviours["r1"] = PeerBehaviour(usage=CACHED_AND_REASONING_USAGE)
    models = [deployment("r1", api_base=peer.api_base("r1"), price=RATE_PER_TOKEN_KIND)]
    config = write_config(tmp_path / "c", models, [tenant("acme", billing={"markup_percent": 10})], FAST)
    gateway = Gateway(config, engine)
    result = gateway.complete(request("acme"))
    # 2000 fresh input x 2 + 8000 cached x 0.5 + 1000 visible output x 8 + 2000 reasoning x 10, per Mtok, +10%
    expected = (Decimal(2000 * 2 + 8000 * 0.5 + 1000 * 8 + 2000 * 10) / 1_000_000 * Decimal("1.1")).quantize(
        Decimal("0.00000001")
    )
    assert result.cost_usd == expected == Decimal("0.03960000")
    assert (result.usage.cached, result.usage.reasoning) == (8000, 2000)


def test_litellm_is_given_each_deployments_list_price(peer: OpenAIPeer, engine: Engine, tmp_path: Path) -> None:
    # A contract-priced model LiteLLM's map does not know: without the rates LiteLLM would call it free
    # (and run its slow zero-cost diagnostic after every call, see docs/benchmarks.md).
    peer.behaviours["own"] = PeerBehaviour(usage=CACHED_AND_REASONING_USAGE)
    models = [deployment("own", api_base=peer.api_base("own"), price=RATE_PER_TOKEN_KIND)]
    config = write_config(tmp_path / "c", models, [tenant("acme")], FAST)
    gateway = Gateway(config, engine)
    ours = gateway.complete(request("acme")).cost_usd
    theirs = gateway.router.completion(model="own", messages=[{"role": "user", "content": "hi"}])
    gateway.close()
    # no markup or tenant contract here, so LiteLLM's own figure and the gateway's agree
    assert ours == Decimal("0.03600000")
    assert theirs._hidden_params["response_cost"] == pytest.approx(float(ours), rel=1e-9)


def test_list_prices_come_from_litellms_bundled_map_and_agree_with_it(
    peer: OpenAIPeer, engine: Engine, tmp_path: Path
) -> None:
    usage = {
        "prompt_tokens": 10_000,
        "completion_tokens": 500,
        "total_tokens": 10_500,
        "prompt_tokens_details": {"cached_tokens": 4_000},
    }
    peer.behaviours["gpt"] = PeerBehaviour(usage=usage)
    models = [deployment("gpt", model="openai/gpt-4o", api_base=peer.api_base("gpt"), price=False)]
    config = write_config(tmp_path / "c", models, [tenant("acme")], FAST)
    gateway = Gateway(config, engine)
    assert gateway.catalogue[0].price.source == "litellm-cost-map"
    result = gateway.complete(request("acme"))
    usage_obj = litellm.Usage(**usage)
    prompt_cost, completion_cost = litellm.cost_per_token(model="gpt-4o", usage_object=usage_obj)
    assert float(result.cost_usd) == pytest.approx(prompt_cost + completion_cost, rel=1e-9)
    # and the cached share really is cheaper than charging every prompt token at the input rate
    full_price = cost(Price.from_cost_map("gpt-4o"), TokenUsage(prompt=10_000, completion=500))
    assert result.cost_usd < full_price


def test_chaos_999_of_1000_calls_succeed_and_attempts_stay_within_configuration(
    peer: OpenAIPeer, engine: Engine, tmp_path: Path
) -> None:
    for name in ("cheap", "middle", "dear"):
        peer.behaviours[name] = PeerBehaviour(
            rate_429=0.1, rate_500=0.1, rate_timeout=0.1, hang_seconds=0.5, retry_after="1"
        )
    num_retries = 2
    # The peer hangs 0.5 s on a timeout fault. A 0.4 s timeout still cuts every hang, and leaves a
    # healthy answer room on a busy machine: at 0.25 s, a make test run (where this test took 38 s
    # instead of 27) saw healthy answers time out too, cooling deployments down, and 3 calls failed.
    settings = {"num_retries": num_retries, "timeout_seconds": 0.4, "cooldown_seconds": 5}
    config = write_config(tmp_path / "c", three_us_deployments(peer), [tenant("acme", hard=1000)], settings)
    gateway = Gateway(config, engine)
    max_attempts = (num_retries + 1) * 3

    async def run() -> list[object]:
        limit = asyncio.Semaphore(64)

        async def one(i: int) -> object:
            async with limit:
                try:
                    return await gateway.acomplete(request("acme", f"question {i}", max_tokens=20))
                except ProviderFailed as error:
                    return error

        return await asyncio.gather(*(one(i) for i in range(1000)))

    results = asyncio.run(run())
    gateway.close()
    succeeded = [r for r in results if not isinstance(r, ProviderFailed)]
    rate = len(succeeded) / len(results)
    faults = sum(n for (_, outcome), n in peer.outcomes.items() if outcome in ("429", "500", "timeout"))
    print(f"chaos: {rate:.2%} succeeded, {faults} of {len(peer.requests)} responses faulted")
    assert 0.25 < faults / len(peer.requests) < 0.40  # the peer really faulted about 30% of responses
    failures = Counter(
        f"{r.error_class} after {r.attempts} attempt(s)" for r in results if isinstance(r, ProviderFailed)
    )
    assert rate >= 0.999, f"failed calls: {dict(failures)}"
    sent = [e.payload for e in events(engine, "usage") if e.payload["status"] != "skipped"]
    per_call = Counter(p["call_id"] for p in sent)
    assert len(per_call) == 1000
    assert max(per_call.values()) <= max_attempts
    # Every request the peer saw is a usage event. The reverse can differ by attempts that timed out
    # on the client before the busy peer got round to reading them: those were sent, and are recorded.
    timed_out = sum(1 for p in sent if p["error_class"] and "Timeout" in p["error_class"])
    assert len(peer.requests) <= len(sent) <= len(peer.requests) + timed_out


def test_litellm_counts_usage_only_for_deployments_with_its_own_limits(
    peer: OpenAIPeer, engine: Engine, tmp_path: Path
) -> None:
    # The gateway's Router skips LiteLLM's per-minute usage counting where no deployment limit would read it
    # (gateway/router.py); a deployment that sets one must still be counted, call by call.
    limited = deployment("limited", api_base=peer.api_base("limited"))
    limited["litellm_params"] |= {"rpm": 1000, "tpm": 1_000_000}
    models = [deployment("open", api_base=peer.api_base("open")), limited]
    config = write_config(tmp_path / "c", models, [tenant("acme")], FAST)
    gateway = Gateway(config, engine)
    messages = [{"role": "user", "content": "hi"}]

    async def two_calls_each() -> None:
        for model in ("open", "limited", "open", "limited"):
            await gateway.router.acompletion(model=model, messages=messages)
        await asyncio.sleep(0.2)  # LiteLLM's success callbacks run as tasks after the call returns

    asyncio.run(two_calls_each())
    counters = gateway.router.cache.in_memory_cache.cache_dict
    gateway.close()
    requests = {key.split(":")[1]: value for key, value in counters.items() if ":rpm:" in key}
    tokens = {key.split(":")[1]: value for key, value in counters.items() if ":tpm:" in key}
    assert requests == {"limited": 2}
    assert set(tokens) == {"limited"} and tokens["limited"] > 0
