"""The sandbox provider: an offline stand-in for a model API, registered with LiteLLM as `sandbox/...`.

Answers are derived from the request (same request, same answer), token counts are real
(LiteLLM's bundled tokenizer), and latency and faults (500s, 429s with Retry-After, timeouts)
are configured per deployment, so retries, fallbacks and cooldowns can be shown without a key or
a network. Every response says it came from the sandbox. Production config refuses it (see
agentprovision/config/checks.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import threading
import time
from typing import Any

import httpx
import litellm
from litellm import CustomLLM
from litellm.types.utils import ModelResponse

from agents.gateway.tokens import TOKENIZER_MODEL, count_prompt

PROVIDER = "sandbox"
# A system message that contains this line followed by a JSON Schema asks for a JSON answer; the
# agent runtime writes it, and the sandbox answers with the smallest object that validates.
JSON_SCHEMA_MARKER = "Answer with one JSON object, and nothing else, that validates against this JSON Schema:"


class SandboxProvider(CustomLLM):
    def __init__(self) -> None:
        super().__init__()
        self._rngs: dict[tuple[str, int | None], random.Random] = {}
        self._lock = threading.Lock()

    # LiteLLM calls these with many keyword arguments; only a few matter here.
    def completion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> ModelResponse:  # type: ignore[override]
        settings, delay, fault = self._plan(model, kwargs)
        if fault == "timeout":
            time.sleep(_timeout_seconds(kwargs.get("timeout")))
        elif delay:
            time.sleep(delay)
        return self._respond(model, messages, kwargs, settings, fault)

    async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> ModelResponse:  # type: ignore[override]
        settings, delay, fault = self._plan(model, kwargs)
        if fault == "timeout":
            await asyncio.sleep(_timeout_seconds(kwargs.get("timeout")))
        elif delay:
            await asyncio.sleep(delay)
        return self._respond(model, messages, kwargs, settings, fault)

    def _plan(self, model: str, kwargs: dict[str, Any]) -> tuple[dict[str, Any], float, str | None]:
        settings = dict((kwargs.get("optional_params") or {}).get("sandbox") or {})
        rng = self._rng(model, settings.get("seed"))
        draw = rng.random()
        fault = None
        error, limited, hang = (settings.get(k, 0.0) for k in ("error_rate", "rate_limit_rate", "timeout_rate"))
        if draw < error:
            fault = "error"
        elif draw < error + limited:
            fault = "rate_limit"
        elif draw < error + limited + hang:
            fault = "timeout"
        return settings, settings.get("latency_ms", 0) / 1000, fault

    def _rng(self, model: str, seed: int | None) -> random.Random:
        with self._lock:
            key = (model, seed)
            if key not in self._rngs:
                # Not for security: a reproducible fault sequence is the point.
                self._rngs[key] = random.Random(seed)  # noqa: S311
            return self._rngs[key]

    def _respond(
        self, model: str, messages: list, kwargs: dict[str, Any], settings: dict[str, Any], fault: str | None
    ) -> ModelResponse:
        name = f"{PROVIDER}/{model}"
        request = httpx.Request("POST", f"https://sandbox.invalid/{model}/chat/completions")
        if fault == "error":
            raise litellm.InternalServerError(
                message="sandbox: injected server error", llm_provider=PROVIDER, model=name
            )
        if fault == "rate_limit":
            retry_after = str(settings.get("retry_after_seconds", 1))
            raise litellm.RateLimitError(
                message="sandbox: injected rate limit",
                llm_provider=PROVIDER,
                model=name,
                response=httpx.Response(429, headers={"retry-after": retry_after}, request=request),
            )
        if fault == "timeout":
            raise litellm.Timeout(message="sandbox: injected timeout", model=name, llm_provider=PROVIDER)
        optional = kwargs.get("optional_params") or {}
        message = answer(model, messages, optional.get("tools"), optional.get("max_tokens"))
        prompt_tokens = count_prompt(messages)
        completion_text = message.get("content") or json.dumps(message.get("tool_calls"))
        completion_tokens = litellm.token_counter(
            model=TOKENIZER_MODEL, text=completion_text, count_response_tokens=True
        )
        return ModelResponse(
            id="sandbox-" + _digest(messages)[:24],
            model=name,
            system_fingerprint=PROVIDER,
            choices=[
                {"index": 0, "message": message, "finish_reason": "tool_calls" if message.get("tool_calls") else "stop"}
            ],
            usage={
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        )


def answer(model: str, messages: list, tools: list | None, max_tokens: int | None) -> dict[str, Any]:
    """A deterministic reply: a tool call when tools are offered and none was answered yet, else text."""
    digest = _digest(messages)
    last_user = next((m for m in reversed(messages) if m.get("role") == "user"), {})
    question = _text(last_user.get("content"))
    answered_tool = bool(messages) and messages[-1].get("role") == "tool"
    if tools and not answered_tool:
        function = tools[0].get("function", {})
        properties = (function.get("parameters") or {}).get("properties") or {}
        # Text for free-text arguments, the first choice for enumerated ones; optional ones keep their default.
        arguments = {
            key: spec["enum"][0] if spec.get("enum") else question[:80]
            for key, spec in properties.items()
            if "default" not in spec and (spec.get("enum") or spec.get("type", "string") == "string")
        }
        return {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_" + digest[:16],
                    "type": "function",
                    "function": {"name": function.get("name", "tool"), "arguments": json.dumps(arguments)},
                }
            ],
        }
    words = question.split()
    summary = " ".join(words[:12]) + (" ..." if len(words) > 12 else "")
    text = f"[sandbox {model}] Answer {digest[:8]} to: {summary}"
    schema = _requested_schema(messages)
    if schema is not None:
        return {"role": "assistant", "content": json.dumps(_instance(schema, schema, text))}
    if max_tokens is not None and max_tokens < 64:
        text = text[: max_tokens * 3]  # roughly max_tokens tokens; the sandbox never overruns the limit much
    return {"role": "assistant", "content": text}


def _requested_schema(messages: list) -> dict[str, Any] | None:
    for message in messages:
        content = _text(message.get("content")) if message.get("role") == "system" else ""
        if JSON_SCHEMA_MARKER in content:
            try:
                schema, _ = json.JSONDecoder().raw_decode(content.split(JSON_SCHEMA_MARKER, 1)[1].lstrip())
            except json.JSONDecodeError:
                return None
            return schema if isinstance(schema, dict) else None
    return None


def _instance(schema: dict[str, Any], root: dict[str, Any], text: str) -> Any:
    """The smallest value that validates: required properties only, first enum value, minimum sizes."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return _instance(root.get("$defs", {}).get(name, {}), root, text)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            options = [o for o in schema[key] if o.get("type") != "null"] or schema[key]
            return _instance(options[0], root, text)
    kind = schema.get("type", "object")
    if kind == "object":
        properties = schema.get("properties", {})
        return {name: _instance(properties.get(name, {}), root, text) for name in schema.get("required", [])}
    if kind == "array":
        return [_instance(schema.get("items", {}), root, text) for _ in range(schema.get("minItems", 0))]
    if kind in ("integer", "number"):
        return schema.get("minimum", 0)
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    value = text[: schema.get("maxLength", len(text))]
    return value.ljust(schema.get("minLength", 0), ".")


def _digest(messages: list) -> str:
    return hashlib.sha256(json.dumps(messages, sort_keys=True, default=str).encode()).hexdigest()


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _timeout_seconds(timeout: Any) -> float:
    if isinstance(timeout, httpx.Timeout):
        timeout = timeout.read
    return float(timeout) if timeout else 1.0


_PROVIDER = SandboxProvider()


def register() -> None:
    """Make `sandbox/...` models callable through LiteLLM; idempotent."""
    if not any(item.get("provider") == PROVIDER for item in litellm.custom_provider_map):
        litellm.custom_provider_map.append({"provider": PROVIDER, "custom_handler": _PROVIDER})
        # LiteLLM reads the map into its provider list when it is first used, and on this call.
        from litellm.utils import custom_llm_setup

        custom_llm_setup()
