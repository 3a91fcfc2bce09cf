"""One run of one agent: the tool-calling loop, from a checkpoint to the next, until the run ends.

The loop is written so that every decision can be re-made from the checkpointed conversation:
after a crash the next claim loads the messages and continues where they stop. A tool call
whose result was checkpointed is never executed again; one that was in flight when the worker
died is executed again with the same tool_call_id, which side-effecting tools use as their
idempotency key.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from agentprovision.config.schema import AdminConfig, TenantFile
from agentprovision.config.schema import Agent as AgentConfig
from agentprovision.settings import Settings
from agents.gateway import CompletionRequest, Gateway, GatewayError, guardrails
from agents.runtime import records, telemetry
from agents.runtime.context import initial_messages
from agents.runtime.failures import (
    MODEL_RETRIES,
    TOOL_RETRIES,
    RunFailure,
    backoff,
    classify_gateway_error,
    transient_tool_error,
)
from agents.runtime.tooling import (
    CURRENT_TOOL_CALL,
    ToolContext,
    ToolError,
    offered_tools,
    openai_tool,
    parse_arguments,
    permission,
    wrap_output,
)
from agents.tools.workspace import prepare_workdir
from agents.types import AgentType, AgentTypeError

MAX_TURN_TOKENS = 4096  # completion tokens asked for per model turn, within the run's remaining allowance
REPAIR_PROMPT = (
    "Your last answer was not accepted: {problem}. Reply again with only the JSON object the system prompt "
    "describes, and nothing else."
)


@dataclass
class RunEnv:
    """What every run of one execute_tasks call shares."""

    config: AdminConfig
    engine: Engine
    factory: sessionmaker[Session]
    gateway: Gateway
    settings: Settings
    tools: dict[str, Any]
    worker: str
    lease_seconds: float


@dataclass
class Ended:
    status: str  # succeeded | failed | rejected | cancelled | needs_approval | released
    error_class: str | None = None


class RunLoop:
    def __init__(
        self, env: RunEnv, record: records.RunRecord, tenant_file: TenantFile, agent: AgentConfig, kind: AgentType
    ):
        self.env = env
        self.record = record
        self.tenant_file = tenant_file
        self.agent = agent
        self.kind = kind
        self.limits = agent.limits
        self.policies = tenant_file.tenant.policies
        self._claimed_at = time.monotonic()
        self._active_base = record.active_ms
        self.trace_id: str | None = None

    # --- the loop --------------------------------------------------------------------------------

    async def run(self) -> Ended:
        attributes = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": self.agent.id,
            "agentprovision.tenant_id": self.record.tenant_id,
            "agentprovision.agent_id": self.agent.id,
            "agentprovision.agent_type": self.kind.name,
            "agentprovision.run_id": self.record.run_id,
            "agentprovision.task_id": self.record.task_id,
            "agentprovision.agent_version": self.record.agent_version,
        }
        with telemetry.tracer().start_as_current_span(f"invoke_agent {self.agent.id}", attributes=attributes) as span:
            self.trace_id = telemetry.trace_id_of(span)
            try:
                ended = await self._run()
            except RunFailure as failure:
                telemetry.fail(span, failure.error_class, str(failure))
                await self._finish("failed", failure.error_class, str(failure))
                ended = Ended("failed", failure.error_class)
            span.set_attribute("agentprovision.run_status", ended.status)
            return ended

    async def _run(self) -> Ended:
        if not self.record.messages:
            await self._start()
        while True:
            self._check_wall_clock()
            pending = self._pending_tool_calls()
            if pending:
                for call in pending:
                    ended = await self._tool_call(call)
                    if ended is not None:
                        return ended
                continue
            last = self.record.messages[-1]
            if last["role"] == "assistant":
                ended = await self._conclude(last)
                if ended is not None:
                    return ended
                continue
            await self._model_turn()

    async def _start(self) -> None:
        try:
            task_input = self.kind.parse_input(self.record.task_input)
        except AgentTypeError as error:
            raise RunFailure("validation", str(error)) from None
        messages = await asyncio.to_thread(
            initial_messages, self.env.engine, self.tenant_file, self.agent, self.kind, task_input, self.record.source
        )
        stored = []
        for message in messages:
            safe, blocked_kinds = self._as_sent(message)
            stored.append(safe)
            if blocked_kinds and message["role"] != "system":
                await self._checkpoint(stored)
                found = ", ".join(blocked_kinds)
                raise RunFailure("policy", f"blocked by guardrail: the task contains {found}, which the tenant blocks")
        await self._checkpoint(stored)

    def _pending_tool_calls(self) -> list[dict[str, Any]]:
        """Tool calls of the last assistant turn that have no checkpointed result yet."""
        for index in range(len(self.record.messages) - 1, -1, -1):
            message = self.record.messages[index]
            if message["role"] == "assistant":
                answered = {m.get("tool_call_id") for m in self.record.messages[index + 1 :] if m["role"] == "tool"}
                return [c for c in message.get("tool_calls") or [] if c.get("id") not in answered]
        return []

    # --- model turns -----------------------------------------------------------------------------

    async def _model_turn(self) -> None:
        if self.record.steps >= self.limits.max_steps:
            raise RunFailure("budget", f"step limit reached: {self.limits.max_steps} model turns")
        remaining_tokens = self.limits.max_tokens - self.record.tokens
        if remaining_tokens <= 0:
            raise RunFailure("budget", f"token limit reached: {self.record.tokens} of {self.limits.max_tokens}")
        step = self.record.steps + 1
        tools = offered_tools(self.agent, self.tenant_file, self.env.tools)
        request = CompletionRequest(
            tenant_id=self.record.tenant_id,
            agent_id=self.agent.id,
            messages=list(self.record.messages),
            department_id=self.record.department_id,
            run_id=self.record.run_id,
            trace_id=self.trace_id,
            requirements=self.agent.requirements,
            tools=[openai_tool(t) for t in tools] or None,
            max_tokens=max(1, min(MAX_TURN_TOKENS, remaining_tokens)),
        )
        with telemetry.tracer().start_as_current_span(
            f"step {step}", attributes={"agentprovision.run_id": self.record.run_id, "agentprovision.step": step}
        ) as span:
            attempt = 0
            while True:
                attempt += 1
                try:
                    result = await asyncio.wait_for(self.env.gateway.acomplete(request), timeout=self._wall_left())
                    break
                except TimeoutError:
                    telemetry.fail(span, "timeout", "wall-clock limit reached during a model call")
                    raise RunFailure(
                        "timeout", f"wall-clock limit of {self.limits.max_wall_seconds}s reached during a model call"
                    ) from None
                except GatewayError as error:
                    verdict = classify_gateway_error(error)
                    delay = backoff(attempt, verdict.wait_seconds)
                    if not verdict.retryable or attempt > MODEL_RETRIES or delay >= self._wall_left():
                        telemetry.fail(span, verdict.error_class, str(error))
                        raise RunFailure(verdict.error_class, str(error)) from None
                    await asyncio.sleep(delay)
            span.set_attribute("agentprovision.deployment_id", result.deployment_id)
        self.record.steps = step
        self.record.llm_calls += 1
        self.record.prompt_tokens += result.usage.prompt
        self.record.completion_tokens += result.usage.completion
        self.record.cost_usd += Decimal(result.cost_usd)
        message = {"role": "assistant", "content": result.message.get("content")}
        if result.tool_calls:
            used = {c.get("id") for m in self.record.messages for c in m.get("tool_calls") or []}
            message["tool_calls"] = _with_unique_ids(result.tool_calls, self.record.run_id, step, used)
        await self._checkpoint([message])

    async def _conclude(self, answer: dict[str, Any]) -> Ended | None:
        """The model answered without tool calls: accept the output, ask once for a repair, or fail."""
        try:
            output = self.kind.parse_output(answer.get("content"))
        except AgentTypeError as error:
            if self.record.repairs >= 1:
                raise RunFailure("validation", f"{error} (after one repair attempt)") from None
            self.record.repairs += 1
            await self._checkpoint([{"role": "user", "content": REPAIR_PROMPT.format(problem=error)}])
            return None
        await self._finish("succeeded", None, None, output.model_dump(mode="json"))
        return Ended("succeeded")

    # --- tool calls ------------------------------------------------------------------------------

    async def _tool_call(self, call: dict[str, Any]) -> Ended | None:
        function = call.get("function") or {}
        name = str(function.get("name") or "")
        call_id = str(call.get("id") or "")
        step = self.record.steps
        with telemetry.tracer().start_as_current_span(
            f"execute_tool {name}",
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": name,
                "gen_ai.tool.call.id": call_id,
                "agentprovision.run_id": self.record.run_id,
                "agentprovision.step": step,
            },
        ) as span:
            allowed = permission(self.agent, self.tenant_file, self.env.tools, name)
            if not allowed.allowed:
                telemetry.fail(span, "policy", allowed.reason)
                await self._tool_result(call_id, name, step, "refused", "policy", f"refused: {allowed.reason}", 0, None)
                return None
            tool = self.env.tools[name]
            try:
                arguments = parse_arguments(function.get("arguments"))
            except ValueError as error:
                await self._tool_result(call_id, name, step, "error", "validation", str(error), 0, None)
                return None
            if getattr(tool, "needs_approval", False):
                approval = await asyncio.to_thread(
                    records.approval_for, self.env.factory, self.record.tenant_id, self.record.run_id, call_id
                )
                if approval is None:
                    await asyncio.to_thread(
                        records.park_for_approval,
                        self.env.factory,
                        self.record,
                        self.env.worker,
                        tool=name,
                        tool_call_id=call_id,
                        arguments=arguments,
                        step=step,
                    )
                    self._account_time()
                    span.set_attribute("agentprovision.tool_status", "needs_approval")
                    return Ended("needs_approval")
                if approval.status != "approved":
                    # Pending or rejected: a decision elsewhere ends or resumes the run, not this worker.
                    await asyncio.to_thread(records.release, self.env.factory, self.record, self.env.worker)
                    return Ended("released")
            started = time.monotonic()
            status, error_class, content, outcome = await self._execute(tool, call_id, arguments)
            latency = int((time.monotonic() - started) * 1000)
            span.set_attribute("agentprovision.tool_status", status)
            if status != "ok":
                telemetry.fail(span, error_class or "tool", content)
            await self._tool_result(call_id, name, step, status, error_class, content, latency, outcome)
        return None

    async def _execute(self, tool: Any, call_id: str, arguments: dict[str, Any]) -> tuple[str, str | None, str, Any]:
        try:
            # The run's own copy of the tenant's working files (agent parameter `workspace`, default repo/).
            workdir = await asyncio.to_thread(
                prepare_workdir,
                self.env.settings,
                self.record.tenant_id,
                self.record.run_id,
                self.agent.parameters.get("workspace"),
            )
        except ToolError as error:
            return "error", getattr(error, "error_class", "policy"), f"error: {error}", None
        ctx = ToolContext(
            tenant_id=self.record.tenant_id,
            agent_id=self.agent.id,
            run_id=self.record.run_id,
            config=self.env.config,
            engine=self.env.engine,
            settings=self.env.settings,
            workdir=workdir,
            parameters=dict(self.agent.parameters),
        )
        attempt = 0
        while True:
            attempt += 1
            token = CURRENT_TOOL_CALL.set(call_id)
            try:
                result = await asyncio.wait_for(asyncio.to_thread(tool.run, ctx, arguments), timeout=self._wall_left())
                return "ok", None, str(result.content), getattr(result, "outcome", None)
            except TimeoutError:
                raise RunFailure(
                    "timeout", f"wall-clock limit of {self.limits.max_wall_seconds}s reached during tool {tool.name}"
                ) from None
            except ToolError as error:
                error_class = getattr(error, "error_class", "tool")
                return "error", error_class, f"error: {getattr(error, 'message', None) or error}", None
            except Exception as error:  # a tool's own bug or outage; the message is kept short
                retry = transient_tool_error(error) and attempt <= TOOL_RETRIES and getattr(tool, "read_only", False)
                if retry and backoff(attempt) < self._wall_left():
                    await asyncio.sleep(backoff(attempt))
                    continue
                detail = f"{type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}"
                if transient_tool_error(error):
                    raise RunFailure("tool", f"tool {tool.name} kept failing: {detail}") from None
                return "error", "tool", f"error: tool failed ({detail})", None
            finally:
                CURRENT_TOOL_CALL.reset(token)

    async def _tool_result(
        self,
        call_id: str,
        name: str,
        step: int,
        status: str,
        error_class: str | None,
        content: str,
        latency_ms: int,
        outcome: str | None,
    ) -> None:
        message, _ = self._as_sent(
            {"role": "tool", "tool_call_id": call_id, "content": wrap_output(name, status, content)}, mask_all=True
        )
        self.record.tool_calls += 1
        if outcome:
            self.record.outcomes[outcome] = self.record.outcomes.get(outcome, 0) + 1
        event = {
            **self.record.base_payload(),
            "step": step,
            "tool": name,
            "tool_call_id": call_id,
            "status": status,
            "error_class": error_class,
            "latency_ms": latency_ms,
            "outcome": outcome,
        }
        await self._checkpoint([message], [("tool", "tool_call", event)])

    # --- persistence and limits ------------------------------------------------------------------

    def _as_sent(self, message: dict[str, Any], mask_all: bool = False) -> tuple[dict[str, Any], list[str]]:
        """The message as the gateway will send it under the tenant's policy, and what would block it.

        Tool output is data the agent fetched, not something a person sent: where the policy would
        block the prompt, its findings are masked instead so the run can go on.
        """
        scan = guardrails.scan_messages([message], self.policies, "prompt")
        if scan.action == "blocked":
            return guardrails.masked_for_storage([message])[0], ([] if mask_all else scan.kinds)
        return scan.messages[0], []

    def _account_time(self) -> None:
        self.record.active_ms = self._active_base + int((time.monotonic() - self._claimed_at) * 1000)

    def _wall_left(self) -> float:
        self._account_time()
        return self.limits.max_wall_seconds - self.record.active_ms / 1000

    def _check_wall_clock(self) -> None:
        if self._wall_left() <= 0:
            raise RunFailure("timeout", f"wall-clock limit of {self.limits.max_wall_seconds}s reached")

    async def _checkpoint(
        self, messages: list[dict[str, Any]], events: list[tuple[str, str, dict[str, Any]]] | None = None
    ) -> None:
        self._account_time()
        await asyncio.to_thread(
            records.checkpoint,
            self.env.factory,
            self.record,
            self.env.worker,
            new_messages=messages,
            events=events or [],
            lease_seconds=self.env.lease_seconds,
        )

    async def _finish(
        self, status: str, error_class: str | None, error: str | None, output: dict[str, Any] | None = None
    ) -> None:
        self._account_time()
        await asyncio.to_thread(
            records.finish,
            self.env.factory,
            self.record,
            self.env.worker,
            status=status,
            error_class=error_class,
            error=error,
            output=output,
        )


def _with_unique_ids(calls: list[dict[str, Any]], run_id: str, step: int, used: set[Any]) -> list[dict[str, Any]]:
    """Tool-call ids key results and side effects, so each must be present and unique within the run.

    Some models number calls afresh each turn ("call_1" again); those get a run-unique id instead.
    """
    seen = set(used)
    out = []
    for index, call in enumerate(calls):
        call_id = str(call.get("id") or "")
        if not call_id or call_id in seen:
            call_id = f"call_{run_id[:8]}_{step}_{index}"
        seen.add(call_id)
        out.append({**call, "id": call_id})
    return out
