"""The LLM gateway: every model call an agent makes goes through `Gateway.complete` / `acomplete`."""

import os
from typing import TYPE_CHECKING

# LiteLLM fetches its price map from the internet at import unless told not to; the platform
# never fetches anything at run time, so this must be set before the first `import litellm`.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

# ruff: noqa: E402

from agents.gateway.errors import (
    BudgetExceeded,
    ConfigurationError,
    GatewayError,
    GuardrailBlocked,
    ModelNotAllowed,
    NoEligibleModel,
    ProviderFailed,
    RateLimited,
    UnknownScope,
)

# The gateway itself (and with it LiteLLM, ~3 s to import) loads on first use, so that importing the
# errors, or a CLI command that never calls a model, does not pay for it.
_FROM_GATEWAY_MODULE = ("CompletionRequest", "CompletionResult", "Gateway")
if TYPE_CHECKING:
    from agents.gateway.gateway import CompletionRequest, CompletionResult, Gateway


def __getattr__(name: str) -> object:
    if name in _FROM_GATEWAY_MODULE:
        from agents.gateway import gateway

        return getattr(gateway, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BudgetExceeded",
    "CompletionRequest",
    "CompletionResult",
    "ConfigurationError",
    "Gateway",
    "GatewayError",
    "GuardrailBlocked",
    "ModelNotAllowed",
    "NoEligibleModel",
    "ProviderFailed",
    "RateLimited",
    "UnknownScope",
]
