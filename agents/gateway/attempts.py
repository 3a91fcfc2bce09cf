"""Seeing each attempt LiteLLM's Router makes (retries and fallbacks), as it makes it.

LiteLLM's logging callbacks run in background threads and tasks after a call returns, so they
cannot give one reliable record per attempt before the gateway settles the call. Instead the
Router's per-attempt method is wrapped: `_completion` / `_acompletion` is what the Router calls
once per attempt (on the model group it is trying), in both the sync and async paths. The
gateway gives every deployment its own model group, so the group named is the deployment used.
This is a private seam of LiteLLM, which is why the version is pinned; tests/test_gateway_*.py
fail if it stops reporting attempts.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from litellm import Router

# Cooldown or "no deployment" errors come from the Router itself, before any request is sent.
NOT_SENT_ERRORS = ("RouterRateLimitError", "NoDeploymentAvailable")


@dataclass
class Attempt:
    deployment_id: str
    latency_ms: float
    response: Any = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def sent(self) -> bool:
        """False when the Router refused before sending (the deployment was cooling down)."""
        return self.error is None or type(self.error).__name__ not in NOT_SENT_ERRORS

    @property
    def error_class(self) -> str | None:
        return None if self.error is None else type(self.error).__name__


@dataclass
class AttemptLog:
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def sent(self) -> list[Attempt]:
        return [a for a in self.attempts if a.sent]


CURRENT: ContextVar[AttemptLog | None] = ContextVar("agentprovision_gateway_attempts", default=None)


class RecordingRouter(Router):
    """LiteLLM's Router, reporting every attempt to the AttemptLog of the current call."""

    def _completion(self, model: str, messages: list[dict[str, str]], **kwargs: Any) -> Any:
        log, started = CURRENT.get(), time.perf_counter()
        try:
            response = super()._completion(model, messages, **kwargs)
        except BaseException as exc:
            _record(log, model, started, error=exc)
            raise
        _record(log, model, started, response=response)
        return response

    async def _acompletion(self, model: str, messages: list[dict[str, str]], **kwargs: Any) -> Any:
        log, started = CURRENT.get(), time.perf_counter()
        try:
            response = await super()._acompletion(model, messages, **kwargs)
        except BaseException as exc:
            _record(log, model, started, error=exc)
            raise
        _record(log, model, started, response=response)
        return response


def _record(log: AttemptLog | None, model: str, started: float, **outcome: Any) -> None:
    if log is not None:
        log.attempts.append(Attempt(model, (time.perf_counter() - started) * 1000, **outcome))
