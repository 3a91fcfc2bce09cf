"""Names of what is installed: agent types, tools and connector kinds, read from entry points.

Only names are read here (no plug-in code is imported), so validating config stays cheap and a
broken plug-in cannot stop an admin from validating an unrelated file.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

AGENT_TYPES_GROUP = "agentprovision.agent_types"
TOOLS_GROUP = "agentprovision.tools"
CONNECTORS_GROUP = "agentprovision.connectors"


@cache
def registered_names(group: str) -> frozenset[str]:
    return frozenset(ep.name for ep in entry_points(group=group))


def load_plugin(group: str, name: str) -> object:
    for ep in entry_points(group=group, name=name):
        return ep.load()
    raise LookupError(f"nothing named {name!r} is registered in {group}")
