"""OpenTelemetry spans of the agent runtime: one per run, per step (model turn) and per tool call.

The gateway's `chat` span starts inside the step span, so a trace reads run -> step -> chat, and
run -> tool call. The run's trace id is also passed to the gateway, which writes it on its usage
events, so events and traces join on it.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

TRACER_NAME = "agentprovision.agents"


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


def trace_id_of(span: Span) -> str | None:
    context = span.get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def fail(span: Span, error_class: str, message: str) -> None:
    span.set_attribute("error.type", error_class)
    span.set_status(Status(StatusCode.ERROR, message[:300]))
