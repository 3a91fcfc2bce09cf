"""How a run can fail, and which failures are worth retrying.

Every failure a run ends with carries one class: model, tool, policy, budget, timeout or
validation. Retrying helps only when the cause may pass on its own (a provider hiccup, a rate
limit, a tool's network blip); a policy refusal or an exhausted budget would fail the same way
again, so those are never retried.
"""

from __future__ import annotations

from dataclasses import dataclass

from agents.gateway import errors as gateway_errors

ERROR_CLASSES = ("model", "tool", "policy", "budget", "timeout", "validation")

MODEL_RETRIES = 2
TOOL_RETRIES = 2
BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 8.0


class RunFailure(Exception):
    """Ends a run: `error_class` is one of ERROR_CLASSES, the message is safe to show and store."""

    def __init__(self, error_class: str, message: str):
        if error_class not in ERROR_CLASSES:
            raise ValueError(f"unknown error class {error_class!r}")
        super().__init__(message)
        self.error_class = error_class


class LeaseLost(Exception):
    """Another worker took the run over (this one stalled past its lease); stop without writing."""


@dataclass(frozen=True)
class Classified:
    error_class: str
    retryable: bool
    wait_seconds: float | None = None  # a wait the peer asked for (Retry-After), if any


def classify_gateway_error(error: Exception) -> Classified:
    if isinstance(error, gateway_errors.BudgetExceeded):
        return Classified("budget", False)
    if isinstance(error, gateway_errors.RateLimited):
        return Classified("model", True, error.retry_after)
    if isinstance(error, gateway_errors.ProviderFailed):
        return Classified("model", True)
    if isinstance(
        error,
        gateway_errors.GuardrailBlocked
        | gateway_errors.ModelNotAllowed
        | gateway_errors.NoEligibleModel
        | gateway_errors.UnknownScope
        | gateway_errors.ConfigurationError,
    ):
        return Classified("policy", False)
    return Classified("model", False)


def backoff(attempt: int, wait_hint: float | None = None) -> float:
    """Seconds to wait before retry number `attempt` (1-based): exponential, or what the peer asked."""
    delay = BACKOFF_SECONDS * 2 ** (attempt - 1)
    if wait_hint is not None:
        delay = max(delay, wait_hint)
    return min(delay, MAX_BACKOFF_SECONDS)


def transient_tool_error(error: BaseException) -> bool:
    """Network and OS hiccups inside a tool; a ToolError is the tool's own verdict and is final."""
    return isinstance(error, TimeoutError | ConnectionError)
