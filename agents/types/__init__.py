"""The standard agent interface, and how the runtime finds agent types (built-in or plug-in).

An agent type is a value, not a subclass: a name, a description, a system-prompt template, typed
input and output (pydantic models), its default tools and default model requirements. Built-ins
and plug-ins publish one through the `agentprovision.agent_types` entry-point group; a plug-in
needs no change to this package (see tests/plugin_example/).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel, ValidationError

from agentprovision.config.schema import ModelRequirements
from agentprovision.plugins import AGENT_TYPES_GROUP
from agents.catalog import AgentTypeSpec


class AgentTypeError(Exception):
    """An agent type is missing, broken, or was given input it does not accept."""


@dataclass(frozen=True)
class AgentType:
    """Everything the runtime needs to know about one kind of agent."""

    name: str
    title: str
    description: str
    # Python str.format fields: {agent_name}, {tenant_name}, {department}, {parameters}, {policies}.
    system_prompt: str
    input_model: type[BaseModel]
    output_model: type[BaseModel]
    default_tools: tuple[str, ...]
    requirements: ModelRequirements = field(default_factory=ModelRequirements)

    @property
    def spec(self) -> AgentTypeSpec:
        """The plain-data view the config checks and catalogue pages use."""
        return AgentTypeSpec(self.name, self.title, self.description, self.default_tools, self.requirements.tier)

    def render_system_prompt(self, **values: Any) -> str:
        try:
            return self.system_prompt.format(**values)
        except (KeyError, IndexError) as error:
            raise AgentTypeError(f"agent type {self.name}: its system prompt names an unknown field {error}") from None

    def parse_input(self, raw: dict[str, Any]) -> BaseModel:
        try:
            return self.input_model.model_validate(raw)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}" for e in error.errors()[:5]
            )
            raise AgentTypeError(f"input for agent type {self.name} is not valid: {problems}") from None

    def output_schema(self) -> dict[str, Any]:
        return self.output_model.model_json_schema()

    def input_schema(self) -> dict[str, Any]:
        return self.input_model.model_json_schema()

    def parse_output(self, text: str | None) -> BaseModel:
        """The model's final answer as the output model; raises AgentTypeError saying what is wrong."""
        candidate = _json_object(text or "")
        if candidate is None:
            raise AgentTypeError("the answer is not a JSON object")
        try:
            return self.output_model.model_validate(candidate)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'answer'}: {e['msg']}" for e in error.errors()[:8]
            )
            raise AgentTypeError(f"the answer does not match the output schema: {problems}") from None


def _json_object(text: str) -> dict[str, Any] | None:
    """The JSON object in an answer, tolerating a Markdown code fence around it."""
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.strip("`")
        stripped = stripped.split("\n", 1)[1] if "\n" in stripped else ""
    start = stripped.find("{")
    if start < 0:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(stripped[start:])
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


@cache
def load_agent_types() -> dict[str, AgentType]:
    """Every installed agent type by name; entries that are not AgentType objects are skipped."""
    found: dict[str, AgentType] = {}
    for ep in entry_points(group=AGENT_TYPES_GROUP):
        try:
            value = ep.load()
        except Exception:  # noqa: S112 - a broken plug-in must not stop the others; agent_type() names it
            continue
        if isinstance(value, AgentType):
            found[ep.name] = value
    return found


def agent_type(name: str) -> AgentType:
    types = load_agent_types()
    if name in types:
        return types[name]
    registered = {ep.name: ep for ep in entry_points(group=AGENT_TYPES_GROUP)}
    if name in registered:
        raise AgentTypeError(
            f"agent type {name!r} is registered by {registered[name].value} but could not be loaded "
            "as an agents.types.AgentType"
        )
    raise AgentTypeError(f"no agent type named {name!r} is installed; installed: {', '.join(sorted(types)) or 'none'}")


__all__ = ["AgentType", "AgentTypeError", "agent_type", "load_agent_types"]
