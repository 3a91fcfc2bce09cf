"""Prices per token and the cost of a call, from contract prices or LiteLLM's bundled cost map.

OpenAI-style usage counts cached input inside `prompt_tokens` and reasoning inside
`completion_tokens`. Charging them again on top (or charging cached input at the full input
price) is the classic mistake; here each token is charged exactly once at its own rate.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

# Nothing may be fetched at run time: make sure LiteLLM reads its bundled map before it is imported.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm  # noqa: E402

from agentprovision.config.schema import ContractPrice  # noqa: E402

MILLION = Decimal(1_000_000)
ZERO = Decimal(0)


@dataclass(frozen=True)
class Price:
    """USD per token for each kind of token, and where the figures came from."""

    input: Decimal
    output: Decimal
    cached_input: Decimal
    reasoning: Decimal
    source: str  # "contract", "tenant-contract", "litellm-cost-map" or "unpriced"

    @classmethod
    def from_contract(cls, contract: ContractPrice, source: str = "contract") -> Price:
        input_ = contract.input_per_mtok_usd / MILLION
        output = contract.output_per_mtok_usd / MILLION
        cached = contract.cached_input_per_mtok_usd
        reasoning = contract.reasoning_per_mtok_usd
        return cls(
            input=input_,
            output=output,
            cached_input=input_ if cached is None else cached / MILLION,
            reasoning=output if reasoning is None else reasoning / MILLION,
            source=source,
        )

    @classmethod
    def from_cost_map(cls, model: str) -> Price:
        """List prices from LiteLLM's bundled map; a model it does not know is priced at zero."""
        try:
            info: dict[str, Any] = dict(litellm.get_model_info(model))
        except Exception:  # LiteLLM raises a bare Exception for unmapped models
            return cls(ZERO, ZERO, ZERO, ZERO, "unpriced")
        input_ = _decimal(info.get("input_cost_per_token"))
        output = _decimal(info.get("output_cost_per_token"))
        cached = info.get("cache_read_input_token_cost")
        reasoning = info.get("output_cost_per_reasoning_token")
        return cls(
            input=input_,
            output=output,
            cached_input=input_ if cached is None else _decimal(cached),
            reasoning=output if reasoning is None else _decimal(reasoning),
            source="litellm-cost-map",
        )

    def litellm_model_info(self) -> dict[str, float]:
        """This price in the model_info keys LiteLLM's Router reads, so its own cost figure (in its logs
        and callbacks) is the deployment's list price rather than zero.

        It matters for CPU too: when a deployment registered under its own id has no rate, LiteLLM runs a
        "zero cost" diagnostic after every call, walking that entry's ~170 keys with pydantic, about 3 ms
        per call, on every Router in the process (docs/benchmarks.md). Explicit rates, zero included,
        end it at once. Tenant contract prices and markups stay the gateway's own business (`cost`).
        """
        return {
            "input_cost_per_token": float(self.input),
            "output_cost_per_token": float(self.output),
            "cache_read_input_token_cost": float(self.cached_input),
            "output_cost_per_reasoning_token": float(self.reasoning),
        }

    def per_mtok(self) -> dict[str, float]:
        return {
            "input": float(self.input * MILLION),
            "cached_input": float(self.cached_input * MILLION),
            "output": float(self.output * MILLION),
            "reasoning": float(self.reasoning * MILLION),
        }


@dataclass(frozen=True)
class TokenUsage:
    prompt: int = 0
    completion: int = 0
    cached: int = 0  # part of prompt
    reasoning: int = 0  # part of completion

    @classmethod
    def from_response_usage(cls, usage: Any) -> TokenUsage:
        if usage is None:
            return cls()
        prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion = int(getattr(usage, "completion_tokens", 0) or 0)
        prompt_details = getattr(usage, "prompt_tokens_details", None)
        completion_details = getattr(usage, "completion_tokens_details", None)
        cached = int(getattr(prompt_details, "cached_tokens", 0) or 0) if prompt_details else 0
        reasoning = int(getattr(completion_details, "reasoning_tokens", 0) or 0) if completion_details else 0
        # Providers that report details larger than the total are clamped, never charged twice.
        return cls(prompt, completion, min(cached, prompt), min(reasoning, completion))


def cost(price: Price, usage: TokenUsage, markup_percent: Decimal = ZERO) -> Decimal:
    fresh_input = usage.prompt - usage.cached
    visible_output = usage.completion - usage.reasoning
    base = (
        fresh_input * price.input
        + usage.cached * price.cached_input
        + visible_output * price.output
        + usage.reasoning * price.reasoning
    )
    return _with_markup(base, markup_percent)


def worst_case(price: Price, prompt_tokens: int, max_tokens: int, markup_percent: Decimal = ZERO) -> Decimal:
    """The most a call can cost: no cache hits, every output token at the dearer output rate."""
    base = prompt_tokens * price.input + max_tokens * max(price.output, price.reasoning)
    return _with_markup(base, markup_percent)


def _with_markup(amount: Decimal, markup_percent: Decimal) -> Decimal:
    return (amount * (1 + markup_percent / 100)).quantize(Decimal("0.00000001"))


def _decimal(value: Any) -> Decimal:
    # Via str so 2.5e-06 becomes exactly 0.0000025 rather than its binary neighbour.
    return ZERO if value is None else Decimal(str(value))
