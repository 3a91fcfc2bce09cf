"""An example plug-in: an incident-summary agent type and the uptime lookup tool it uses.

Everything agentprovision needs is published through the entry points in pyproject.toml; the
plug-in only uses the public interfaces (`agents.types.AgentType`, the Tool protocol).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentprovision.config.schema import ModelRequirements
from agents.tools import ToolError, ToolResult
from agents.types import AgentType

# Monthly availability per service, as an uptime monitor would report it (the example's own data).
UPTIME = {"checkout": 99.95, "search": 99.2, "login": 98.7}


class IncidentInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instructions: str | None = None
    submitted_by: str | None = None
    service: str = Field(min_length=1, description="The service the incident is about.")


class IncidentSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    summary: str = Field(min_length=1)
    severity: Literal["sev1", "sev2", "sev3"]
    next_steps: list[str] = Field(min_length=1)


INCIDENT_SUMMARY = AgentType(
    name="incident_summary",
    title="Incident summary",
    description="Summarises an incident for a service, with its recent availability, for the on-call handover.",
    system_prompt=(
        "You are {agent_name} at {tenant_name}. Summarise the incident for the on-call handover: what happened, "
        "how severe it is, and the next steps. Look up the service's availability first. "
        "Tenant policies: {policies}. Parameters: {parameters}."
    ),
    input_model=IncidentInput,
    output_model=IncidentSummary,
    default_tools=("uptime_lookup",),
    requirements=ModelRequirements(tier="basic", min_context_window=4_000),
)


class UptimeLookup:
    name = "uptime_lookup"
    description = "Monthly availability (percent) of one service."
    read_only = True
    needs_approval = False
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {"service": {"type": "string", "description": "Service name."}},
        "required": ["service"],
    }

    def run(self, ctx: Any, arguments: dict[str, Any]) -> ToolResult:
        service = str(arguments.get("service", "")).strip().lower()
        # The sandbox model passes the task text; pick the first service it names.
        known = next((name for name in UPTIME if name in service), None)
        if known is None:
            raise ToolError(f"unknown service {service[:60]!r}; known: {', '.join(sorted(UPTIME))}")
        data = {"service": known, "availability_pct": UPTIME[known], "tenant": ctx.tenant_id}
        return ToolResult(content=json.dumps(data), data=data, outcome=None)
