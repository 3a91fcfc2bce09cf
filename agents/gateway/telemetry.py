"""OpenTelemetry spans for model calls, with the GenAI semantic-convention attribute names.

The gateway uses whatever tracer provider the process configured (none: spans are no-ops).
Prompt and output text are attached only when the tenant's policy stores prompts, and then only
in their masked form.
"""

from __future__ import annotations

import json
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

TRACER_NAME = "agentprovision.gateway"


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


def start_attributes(
    model_name: str, max_tokens: int, tenant_id: str, agent_id: str, run_id: str | None
) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": model_name,
        "gen_ai.request.max_tokens": max_tokens,
        "agentprovision.tenant_id": tenant_id,
        "agentprovision.agent_id": agent_id,
    }
    if run_id:
        attributes["agentprovision.run_id"] = run_id
    return attributes


def record_result(
    span: Span,
    *,
    provider: str,
    deployment_id: str,
    response_model: str,
    response_id: str | None,
    finish_reason: str | None,
    input_tokens: int,
    output_tokens: int,
    cached_tokens: int,
    reasoning_tokens: int,
    cost_usd: float,
    attempts: int,
    fallback_depth: int,
    sandbox: bool,
) -> None:
    span.set_attributes(
        {
            "gen_ai.provider.name": provider,
            "gen_ai.system": provider,  # the older name, still read by many backends
            "gen_ai.response.model": response_model,
            "gen_ai.usage.input_tokens": input_tokens,
            "gen_ai.usage.output_tokens": output_tokens,
            "gen_ai.usage.cache_read.input_tokens": cached_tokens,
            "gen_ai.usage.reasoning.output_tokens": reasoning_tokens,
            "agentprovision.deployment_id": deployment_id,
            "agentprovision.cost_usd": cost_usd,
            "agentprovision.attempts": attempts,
            "agentprovision.fallback_depth": fallback_depth,
            "agentprovision.sandbox": sandbox,
        }
    )
    if response_id:
        span.set_attribute("gen_ai.response.id", response_id)
    if finish_reason:
        span.set_attribute("gen_ai.response.finish_reasons", [finish_reason])


def record_text(span: Span, masked_messages: list[dict[str, Any]], masked_output: dict[str, Any] | None) -> None:
    """Only called when the tenant allows prompts to be kept; the text is already masked."""
    span.set_attribute("gen_ai.input.messages", json.dumps(masked_messages, default=str))
    if masked_output is not None:
        span.set_attribute("gen_ai.output.messages", json.dumps([masked_output], default=str))


def record_error(span: Span, error: BaseException, reason: str) -> None:
    span.set_attribute("error.type", type(error).__name__)
    span.set_attribute("agentprovision.refusal", reason)
    span.set_status(Status(StatusCode.ERROR, reason))
