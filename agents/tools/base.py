"""What a tool is, what it gets, what it returns, and how it fails.

A tool is any object with `name`, `description`, `read_only`, `needs_approval`, `parameters`
(the JSON schema of its arguments, as OpenAI function calling wants it) and `run(ctx, arguments)`.
The runtime decides whether a call may happen (allow-lists, tenant policy, approvals); a tool
decides only how to do its job inside the context it is handed, and never reaches past it.

What a tool returns to the model is plain data: JSON text, cut to a bounded size. It is data
the runtime treats as untrusted, never instructions, so tools do not dress it up as prose.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import Engine

from agentprovision.config.schema import AdminConfig
from agentprovision.settings import Settings

# What the model sees of one tool result, at most. Long enough for a page of rows or a file, short
# enough that a chatty tool cannot crowd the task out of the context window.
MAX_CONTENT_CHARS = 12_000


class ToolError(Exception):
    """A refusal or failure; `message` is safe to show to the model and to operators.

    error_class is "tool" for failures of the tool or its arguments (the model may retry with
    different arguments) and "policy" for refusals no retry can change (a path outside the
    working directory, a host the integration does not allow, SQL reaching another tenant).
    """

    def __init__(self, message: str, error_class: Literal["tool", "policy"] = "tool"):
        super().__init__(message)
        self.message = message
        self.error_class = error_class

    def __str__(self) -> str:
        return self.message


@dataclass
class ToolContext:
    """Who a call runs for and what it may touch. `workdir` is the run's own working directory."""

    tenant_id: str
    agent_id: str
    run_id: str
    config: AdminConfig
    engine: Engine
    settings: Settings
    workdir: Path
    parameters: dict[str, Any] = field(default_factory=dict)
    # Optional seams for the integration hub: a SecretResolver over the credential vault and the
    # connectors' SyncOptions (base directory, retry policy). None means the defaults the
    # connectors CLI uses, built from `settings`.
    resolver: Any = None
    connector_options: Any = None

    @property
    def actor(self) -> str:
        """How this call appears in audit records: the agent, never a human."""
        return f"agent:{self.tenant_id}/{self.agent_id}"


@dataclass(frozen=True)
class ToolResult:
    """`content` is what the model sees (already bounded); `data` is the structured result for records."""

    content: str
    data: dict[str, Any] = field(default_factory=dict)
    outcome: str | None = None

    @classmethod
    def of(cls, data: dict[str, Any], outcome: str | None = None, *, limit: int = MAX_CONTENT_CHARS) -> ToolResult:
        return cls(content=render(data, limit=limit), data=data, outcome=outcome)


@runtime_checkable
class Tool(Protocol):
    name: str
    description: str
    read_only: bool
    needs_approval: bool
    parameters: dict[str, Any]

    def run(self, ctx: ToolContext, arguments: dict[str, Any]) -> ToolResult: ...


def render(data: Any, *, limit: int = MAX_CONTENT_CHARS) -> str:
    """Data as compact JSON text, cut to `limit` characters with a note saying how much was left out."""
    text = json.dumps(data, ensure_ascii=False, default=str, separators=(",", ":"))
    return truncate(text, limit)


def truncate(text: str, limit: int = MAX_CONTENT_CHARS) -> str:
    if len(text) <= limit:
        return text
    note = f"…[truncated: {len(text) - limit} more characters]"
    return text[: max(0, limit - len(note))] + note


class Arguments(BaseModel):
    """Base for a built-in tool's arguments: unknown keys are errors, so typos reach the model."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class BuiltinTool:
    """Shared plumbing of the built-in tools: the JSON schema comes from a pydantic model, and
    arguments that do not fit it become a ToolError the model can read and correct."""

    name: ClassVar[str]
    description: ClassVar[str]
    read_only: ClassVar[bool] = True
    needs_approval: ClassVar[bool] = False
    Args: ClassVar[type[Arguments]] = Arguments

    @property
    def parameters(self) -> dict[str, Any]:
        schema = self.Args.model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        return schema

    def parse(self, arguments: Any) -> Any:
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments or "{}")
            except json.JSONDecodeError as exc:
                raise ToolError(f"{self.name}: the arguments are not valid JSON ({exc.msg})") from None
        if not isinstance(arguments, dict):
            raise ToolError(f"{self.name}: the arguments must be a JSON object")
        try:
            return self.Args.model_validate(arguments)
        except ValidationError as exc:
            raise ToolError(f"{self.name}: {arguments_problem(exc)}") from None

    def run(self, ctx: ToolContext, arguments: dict[str, Any]) -> ToolResult:
        return self.call(ctx, self.parse(arguments))

    def call(self, ctx: ToolContext, args: Any) -> ToolResult:  # pragma: no cover - every tool overrides it
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<tool {self.name}>"


def arguments_problem(exc: ValidationError) -> str:
    """A pydantic error as one line the model can act on: `field: message; ...`."""
    parts = []
    for error in exc.errors(include_url=False):
        location = ".".join(str(part) for part in error["loc"]) or "arguments"
        message = "unknown argument" if error["type"] == "extra_forbidden" else error["msg"]
        parts.append(f"{location}: {message}")
    return "; ".join(parts)
