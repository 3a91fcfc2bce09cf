"""Every ops-store table module, imported in one place so migrations and tests see the whole schema.

The kernel's tables live in `models.py`; tables that belong to one capability live in their own
module beside it, on the same `Base`.
"""

from agentprovision.store import connector_models, gateway_models, models
from agentprovision.store.models import Base

__all__ = ["Base", "connector_models", "gateway_models", "models"]
from agentprovision.store import agent_models  # noqa: E402,F401,I001
from agentprovision.store import privacy_models  # noqa: E402,F401,I001
