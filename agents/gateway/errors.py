"""Errors the gateway raises for expected refusals; each message says what happened and why.

Callers (the agent runtime, the CLI) show `str(error)` to people, so messages carry the numbers
and names needed to act, and never any prompt text or secret.
"""

from __future__ import annotations

from decimal import Decimal


class GatewayError(Exception):
    """Base of every refusal or failure the gateway reports on purpose."""

    reason: str = "error"


class ConfigurationError(GatewayError):
    reason = "configuration"


class UnknownScope(GatewayError):
    """The tenant, department or agent named in a request is not in the admin config."""

    reason = "unknown_scope"


class NoEligibleModel(GatewayError):
    """No deployment meets the requirements inside the tenant's region and allow-list."""

    reason = "no_eligible_model"

    def __init__(self, message: str, rejected: dict[str, str]):
        super().__init__(message)
        self.rejected = rejected


class ModelNotAllowed(GatewayError):
    """A model was asked for by name and the tenant's allow-list (or its region) refuses it."""

    reason = "model_not_allowed"


class BudgetExceeded(GatewayError):
    """A hard monthly limit would be crossed by this call's worst-case cost."""

    reason = "budget_exceeded"

    def __init__(self, level: str, scope: str, limit: Decimal, committed: Decimal, needed: Decimal, month: str):
        self.level, self.scope, self.limit, self.committed, self.needed, self.month = (
            level,
            scope,
            limit,
            committed,
            needed,
            month,
        )
        super().__init__(
            f"{level} budget exceeded for {scope} in {month}: hard limit {limit:.6f} USD, "
            f"already spent or reserved {committed:.6f} USD, this call may cost up to {needed:.6f} USD"
        )


class RateLimited(GatewayError):
    """A requests- or tokens-per-minute limit of the tenant or agent is reached."""

    reason = "rate_limited"

    def __init__(self, scope: str, kind: str, limit: int, current: float, retry_after: float):
        self.scope, self.kind, self.limit, self.current, self.retry_after = scope, kind, limit, current, retry_after
        unit = "requests" if kind == "rpm" else "tokens"
        super().__init__(
            f"{kind} limit reached for {scope}: {limit} {unit} per minute, {current:.0f} already used in the last "
            f"minute; retry after {retry_after:.1f}s"
        )


class GuardrailBlocked(GatewayError):
    """The tenant's policy blocks personal data or secrets found in the prompt or the output."""

    reason = "guardrail_blocked"

    def __init__(self, where: str, kinds: list[str]):
        self.where, self.kinds = where, kinds
        super().__init__(
            f"blocked by guardrail: the {where} contains {', '.join(kinds)} and the tenant policy blocks it"
        )


class ProviderFailed(GatewayError):
    """Every attempt (retries and fallbacks) failed; the last provider error class is named."""

    reason = "provider_failed"

    def __init__(self, attempts: int, error_class: str, detail: str):
        self.attempts, self.error_class = attempts, error_class
        super().__init__(f"model call failed after {attempts} attempt(s); last error {error_class}: {detail}")
