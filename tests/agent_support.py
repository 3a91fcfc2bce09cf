"""Helpers for the agent runtime tests: a scripted agent model on the loopback peer, small real tools, configs.

The scripted model behaves like a (gullible) agent model: it calls each offered tool once, obeys
any `CALL <tool> <json>` instruction it finds in tool output (that is the injection it is meant
to fall for), and then answers with a JSON object. Markers in the task text change its manners.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from gateway_support import deployment, write_config
from openai_peer import OpenAIPeer, _send

from agentprovision.config.schema import AdminConfig
from agents.catalog import AgentTypeSpec
from agents.runtime import current_tool_call_id
from agents.tools import ToolError, ToolResult
from agents.types.builtin import BUILT_IN

PLANTED = re.compile(r"CALL (\w+) (\{[^{}]*\})")
REPAIR_SEEN = "was not accepted"


def scripted_answer(body: dict[str, Any]) -> dict[str, Any]:
    """The next assistant message for this conversation; a pure function of the request."""
    messages = body.get("messages", [])
    offered = [t["function"]["name"] for t in body.get("tools") or []]
    task = " ".join(str(m.get("content")) for m in messages if m["role"] == "user")
    seed = hashlib.sha256(json.dumps(messages[:3], sort_keys=True).encode()).hexdigest()[:10]
    turns = sum(1 for m in messages if m["role"] == "assistant")
    calls_made = sum(len(m.get("tool_calls") or []) for m in messages if m["role"] == "assistant")

    if messages and messages[-1]["role"] == "tool":
        # Obey instructions planted in the tool output of the last turn (a model falling for injection).
        start = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        planted = []
        for message in messages[start + 1 :]:
            try:
                text = json.loads(message["content"]).get("untrusted_data", "")
            except (TypeError, ValueError):
                text = message["content"]
            planted.extend(PLANTED.findall(text))
        if planted:
            return _calls([(name, json.loads(args)) for name, args in planted], seed, turns, "[same-ids]" in task)

    wanted = int(m.group(1)) if (m := re.search(r"\[tools=(\d+)\]", task)) else len(offered)
    if "[no-tools]" not in task and offered and calls_made < wanted:
        name = offered[calls_made % len(offered)]
        return _calls([(name, {"query": f"step {calls_made}"})], seed, turns, "[same-ids]" in task)

    repaired = any(REPAIR_SEEN in str(m.get("content")) for m in messages if m["role"] == "user")
    if "[bad-json-always]" in task or ("[bad-json]" in task and not repaired):
        return {"role": "assistant", "content": "Here is my answer, in prose rather than JSON."}
    return {"role": "assistant", "content": json.dumps({"summary": f"done after {calls_made} tool calls"})}


def _calls(calls: list[tuple[str, dict[str, Any]]], seed: str, turn: int, same_ids: bool = False) -> dict[str, Any]:
    # same_ids: number the calls afresh every turn, as some providers do.
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": f"call_{index + 1}" if same_ids else f"call_{seed}_{turn}_{index}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)},
            }
            for index, (name, arguments) in enumerate(calls)
        ],
    }


class ScriptedAgentPeer(OpenAIPeer):
    """The loopback OpenAI peer, answering every successful request with `scripted_answer`."""

    def _reply(self, handler: Any, name: str, outcome: str, body: dict[str, Any]) -> None:
        if outcome not in ("ok", "tool"):
            super()._reply(handler, name, outcome, body)
            return
        message = scripted_answer(body)
        prompt_tokens = max(1, len(json.dumps(body.get("messages", []))) // 4)
        _send(
            handler,
            200,
            {
                "id": f"chatcmpl-{name}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", name),
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
                    }
                ],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 20, "total_tokens": prompt_tokens + 20},
            },
        )


class LedgerTool:
    """A small real tool: records each call in a ledger file keyed by run and tool_call_id, at most once.

    Side-effecting tools must be idempotent on the tool_call_id: after a crash between the side
    effect and the checkpoint the runtime runs the call again with the same id.
    """

    def __init__(
        self,
        name: str,
        ledger: Path,
        *,
        read_only: bool = True,
        needs_approval: bool = False,
        outcome: str | None = None,
        plant: str | None = None,
        fail_with: str | None = None,
        delay: float = 0,
    ):
        self.name = name
        self.description = f"Test tool {name}: looks something up for the agent."
        self.read_only = read_only
        self.needs_approval = needs_approval
        self.parameters = {"type": "object", "properties": {"query": {"type": "string"}}}
        self.ledger = ledger
        self.outcome = outcome
        self.plant = plant
        self.fail_with = fail_with
        self.delay = delay
        self._lock = threading.Lock()

    def run(self, ctx: Any, arguments: dict[str, Any]) -> Any:
        if self.fail_with:
            raise ToolError(self.fail_with)
        key = f"{ctx.run_id} {current_tool_call_id()} {self.name}"
        with self.ledger.with_suffix(".executions").open("a") as log:  # every execution, repeated or not
            log.write(f"{key}\t{time.time()}\t{os.getpid()}\n")
        with self._lock:
            self.ledger.parent.mkdir(parents=True, exist_ok=True)
            seen = self.ledger.read_text().splitlines() if self.ledger.exists() else []
            if key not in seen:
                with self.ledger.open("a") as handle:
                    handle.write(key + "\n")
                    handle.flush()
        if self.delay:  # work after the side effect: a crash here leaves it done but not checkpointed
            time.sleep(self.delay)
        text = f"{self.name} found 3 items for {arguments.get('query', '')!r} in tenant {ctx.tenant_id}."
        if self.plant:
            text += " " + self.plant
        return ToolResult(content=text, data={"items": 3}, outcome=self.outcome)


def ledger_entries(ledger: Path) -> list[str]:
    return ledger.read_text().splitlines() if ledger.exists() else []


APPROVAL_TOOLS = {"open_ticket": "ticket_opened", "post_message": "message_posted"}


def make_tools(ledger: Path, **overrides: dict[str, Any]) -> dict[str, LedgerTool]:
    """One LedgerTool under each built-in tool name (so configs validate), high-impact ones needing approval."""
    names = ["warehouse_query", "kb_search", "repo_inspect", "config_inspect", "fetch_page", *APPROVAL_TOOLS]
    tools = {}
    for name in names:
        options: dict[str, Any] = {}
        if name in APPROVAL_TOOLS:
            options = {"read_only": False, "needs_approval": True, "outcome": APPROVAL_TOOLS[name]}
        options |= overrides.get(name, {})
        tools[name] = LedgerTool(name, ledger, **options)
    return tools


def agent_entry(agent_id: str, agent_type: str, tools: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "id": agent_id,
        "name": agent_id.replace("-", " ").title(),
        "type": agent_type,
        "version": "1.0.0",
        "department": "ops",
        "owner": "admin@acme.example",
        "requirements": {"tier": "basic", "min_context_window": 1000},
        "tools": tools,
        "status": "active",
        **extra,
    }


def seven_agents() -> list[dict[str, Any]]:
    """One agent per built-in type, with the type's default tools minus those needing approval."""
    agents = []
    for kind in BUILT_IN:
        spec: AgentTypeSpec = kind.spec
        tools = [t for t in spec.default_tools if t not in APPROVAL_TOOLS]
        agents.append(agent_entry(f"acme-{kind.name.replace('_', '-')}", kind.name, tools))
    return agents


def runtime_config(
    root: Path,
    *,
    agents: list[dict[str, Any]],
    api_base: str | None = None,
    max_concurrent_runs: int = 4,
    policies: dict[str, Any] | None = None,
    extra_users: list[dict[str, Any]] | None = None,
    budget_hard: float = 100,
    gateway: dict[str, Any] | None = None,
) -> AdminConfig:
    """Tenant `acme` with the given agents, on one sandbox deployment or one loopback deployment."""
    model = deployment("agent-model", tier="advanced", context_window=200_000, api_base=api_base)
    users = [
        {"id": "admin@acme.example", "name": "Admin", "role": "tenant_admin"},
        {"id": "op@acme.example", "name": "Operator", "role": "agent_operator"},
        {"id": "li@acme.example", "name": "Analyst", "role": "analyst"},
        *(extra_users or []),
    ]
    tenant_body: dict[str, Any] = {
        "id": "acme",
        "display_name": "Acme",
        "region": "us",
        "plan": "enterprise",
        "max_concurrent_runs": max_concurrent_runs,
        "budget": {"monthly_hard_usd": budget_hard},
        "departments": [{"id": "ops", "name": "Operations", "cost_centre": "CC-1"}],
    }
    if policies:
        tenant_body["policies"] = policies
    other = {
        "tenant": {**tenant_body, "id": "globex", "display_name": "Globex", "budget": {"monthly_hard_usd": 100}},
        "users": [{"id": "admin@globex.example", "name": "G Admin", "role": "tenant_admin"}],
        "agents": [agent_entry("globex-agent", "qa_testing", ["kb_search"], owner="admin@globex.example")],
    }
    tenants = [{"tenant": tenant_body, "users": users, "agents": agents}, other]
    return write_config(root, [model], tenants, gateway=gateway)
