"""The LLM gateway: every model call an agent makes goes through `Gateway.complete` / `acomplete`."""

import os

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
from agents.gateway.gateway import CompletionRequest, CompletionResult, Gateway

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
