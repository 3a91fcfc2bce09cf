"""The one entry point for model calls: route -> guardrails -> admission -> LiteLLM Router -> settle.

`Gateway.complete` (sync) and `Gateway.acomplete` (async) run the same steps; only the Router
call differs. Every refusal is a GatewayError with a readable message and a policy event; every
attempt the Router makes is one usage event, failed attempts and fallbacks included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import litellm
from sqlalchemy import Engine

from agentprovision.config.schema import AdminConfig, Agent, ModelRequirements, TenantFile
from agentprovision.events import INSERT_EVENT, EventWriter, PlatformEvent
from agents.gateway import guardrails, telemetry
from agents.gateway.attempts import CURRENT, Attempt, AttemptLog
from agents.gateway.budgets import (
    BudgetLedger,
    BudgetScope,
    Crossing,
    Reservation,
    budget_scopes,
    release_stale_reservations,
)
from agents.gateway.catalogue import Deployment, SecretResolver, build_catalogue, markup_for
from agents.gateway.errors import (
    BudgetExceeded,
    GatewayError,
    GuardrailBlocked,
    ProviderFailed,
    RateLimited,
    UnknownScope,
)
from agents.gateway.ledger import LedgerTransaction, LedgerWorker, ledger_transaction
from agents.gateway.pricing import Price, TokenUsage, cost, worst_case
from agents.gateway.ratelimits import Admission, RateLimiter, RateScope, rate_scopes
from agents.gateway.router import GatewayRouter
from agents.gateway.routing import RouteDecision, route
from agents.gateway.sandbox import register as register_sandbox
from agents.gateway.tokens import count_prompt

T = TypeVar("T")
logger = logging.getLogger(__name__)

# Our token count (LiteLLM's bundled tokenizer) can differ from a provider's; reserving a little
# more than we counted keeps the budget guarantee when the provider counts higher.
PROMPT_TOKEN_MARGIN = 1.10


@dataclass(frozen=True)
class CompletionRequest:
    """What an agent asks for. Requirements and department default to the agent's config."""

    tenant_id: str
    agent_id: str
    messages: list[dict[str, Any]]
    department_id: str | None = None
    run_id: str | None = None
    trace_id: str | None = None
    requirements: ModelRequirements | None = None
    model: str | None = None  # a model_name; must be allowed for the tenant. Usually left to routing.
    tools: list[dict[str, Any]] | None = None  # OpenAI tool format
    tool_choice: str | dict[str, Any] | None = None
    max_tokens: int = 1024
    temperature: float | None = None


@dataclass(frozen=True)
class CompletionResult:
    message: dict[str, Any]  # OpenAI assistant message: role, content, tool_calls
    finish_reason: str | None
    call_id: str
    trace_id: str
    deployment_id: str
    model_name: str
    provider: str
    region: str
    sandbox: bool
    usage: TokenUsage
    cost_usd: Decimal
    attempts: int
    fallback_depth: int
    guardrails: dict[str, Any] = field(default_factory=dict)

    @property
    def content(self) -> str | None:
        return self.message.get("content")

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        return list(self.message.get("tool_calls") or [])


@dataclass
class _Call:
    """Everything decided before the Router is called, and carried to settlement."""

    request: CompletionRequest
    call_id: str
    trace_id: str
    tenant_file: TenantFile
    agent: Agent | None
    department_id: str
    requirements: ModelRequirements
    prompt_scan: guardrails.ScanOutcome
    prompt_tokens: int
    decision: RouteDecision
    scopes: _Scopes
    reserved_usd: Decimal = Decimal(0)
    reservation: Reservation | None = None
    admission: Admission | None = None
    log: AttemptLog = field(default_factory=AttemptLog)

    @property
    def tenant_id(self) -> str:
        return self.tenant_file.tenant.id

    @property
    def budget_scopes(self) -> tuple[BudgetScope, ...]:
        return self.scopes.budgets

    @property
    def markup(self) -> Decimal:
        return self.scopes.markup


@dataclass(frozen=True)
class _Charge:
    """What an answered call is billed: who answered, the tokens used, and the price with markup."""

    answered: Attempt | None
    deployment: Deployment
    usage: TokenUsage
    cost: Decimal


@dataclass(frozen=True)
class _Scopes:
    """What follows from (tenant, department, agent) alone: derived once per process, not per call."""

    budgets: tuple[BudgetScope, ...]
    rates: tuple[RateScope, ...]
    markup: Decimal
    prices: dict[str, Price]  # deployment id -> this tenant's price


class Gateway:
    def __init__(
        self,
        config: AdminConfig,
        engine: Engine,
        *,
        events: EventWriter | None = None,
        resolve_secret: SecretResolver | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.config = config
        self.settings = config.platform.platform.gateway
        self.catalogue = build_catalogue(config, resolve_secret)
        self._by_id = {d.id: d for d in self.catalogue}
        self._tenants = {t.tenant.id: t for t in config.tenants}
        self._engine = engine
        self._scopes: dict[tuple[str, str, str], _Scopes] = {}
        # The gateway flushes its own writer itself, at the end of a call: an async call must not write
        # a batch of events on the event loop (see acomplete).
        self.events = events or EventWriter(engine, flush_when_full=False)
        self._owns_events = events is None
        self._ledger = LedgerWorker(engine)
        self._clock = clock
        self.budgets = BudgetLedger()
        self.rates = RateLimiter()
        if any(d.is_sandbox for d in self.catalogue):
            register_sandbox()
        litellm.suppress_debug_info = True
        self.router = GatewayRouter(
            model_list=[self._router_entry(d) for d in self.catalogue],
            num_retries=self.settings.num_retries,
            max_fallbacks=self.settings.max_fallbacks,
            timeout=self.settings.timeout_seconds,
            cooldown_time=self.settings.cooldown_seconds,
            allowed_fails=self.settings.allowed_fails,
            disable_cooldowns=self.settings.cooldown_seconds == 0,
        )

    # --- public entry points ---------------------------------------------------------------------

    def complete(self, request: CompletionRequest) -> CompletionResult:
        with telemetry.tracer().start_as_current_span("chat") as span:
            call = self._prepare(request, span)
            self._admit(call, span)
            try:
                response = self._invoke(call, lambda kwargs: self.router.completion(**kwargs))
            except BaseException as error:
                with self._store() as tx:
                    self._release(tx, call, self._clock())
                failure = self._failed(call, error, span)
                if isinstance(error, Exception):
                    raise failure from error
                raise
            charge = self._charge(call, response)
            with self._store() as tx:
                crossings = self._settle(tx, call, charge, self._clock())
            result = self._complete(call, response, span, charge, crossings)
        if self._events_full():
            self.events.flush()
        return result

    async def acomplete(self, request: CompletionRequest) -> CompletionResult:
        # The ledger transactions (and, once a batch is due, the event inserts) are queued with the
        # LedgerWorker, which commits those of concurrent calls together and never lets the event loop
        # wait on a lock. The checks, scans and events are short CPU work: handing them to a thread
        # cost more CPU than doing them.
        with telemetry.tracer().start_as_current_span("chat") as span:
            call = self._prepare(request, span)
            await self._aadmit(call, span)
            try:
                response = await self._ainvoke(call)
            except BaseException as error:
                now = self._clock()
                if isinstance(error, asyncio.CancelledError):
                    self._ledger.submit(lambda tx: self._release(tx, call, now))
                else:
                    await self._ledger.run(lambda tx: self._release(tx, call, now))
                failure = self._failed(call, error, span)
                if isinstance(error, Exception):
                    raise failure from error
                raise
            charge = self._charge(call, response)
            now = self._clock()
            # Cancelled while this is queued, the settlement still commits (queued jobs run whoever waits);
            # only its alerts and usage events are not written.
            crossings = await self._ledger.run(lambda tx: self._settle(tx, call, charge, now))
            result = self._complete(call, response, span, charge, crossings)
        if self._events_full():
            self._write_events_on_ledger()
        return result

    def release_stale_reservations(self) -> int:
        """Release reservations of crashed processes (see budgets.release_stale_reservations)."""
        return release_stale_reservations(
            self._engine, timedelta(minutes=self.settings.stale_reservation_minutes), self._clock()
        )

    def flush(self) -> int:
        return self.events.flush()

    def close(self) -> None:
        """Finish the queued ledger jobs, then write the events still buffered (raising if they cannot be)."""
        self._ledger.close()
        try:
            self.events.flush()
        finally:
            self.router.close_thread_loop()

    # --- steps -----------------------------------------------------------------------------------

    def _store(self) -> contextlib.AbstractContextManager[LedgerTransaction]:
        """One ledger transaction: committed on success, rolled back on error."""
        return ledger_transaction(self._engine)

    def _prepare(self, request: CompletionRequest, span: Any) -> _Call:
        """Resolve who is calling, scan the prompt and route. Raises before anything is reserved."""
        call_id = str(uuid.uuid4())
        trace_id = request.trace_id or _span_trace_id(span) or call_id
        tenant_file, agent, department_id = self._resolve(request)
        requirements = request.requirements or (agent.requirements if agent else ModelRequirements())
        span.update_name(f"chat {request.model or requirements.tier}")
        span.set_attributes(
            telemetry.start_attributes(
                request.model or requirements.tier,
                request.max_tokens,
                tenant_file.tenant.id,
                request.agent_id,
                request.run_id,
            )
        )
        base = {"call_id": call_id, "trace_id": trace_id, "department_id": department_id}
        tenant = tenant_file.tenant

        scan = guardrails.scan_messages(request.messages, tenant.policies, "prompt")
        self._policy(request, tenant.id, "guardrail", {**base, **scan.summary(), "reason": _scan_reason(scan, tenant)})
        if scan.action == "blocked":
            error = GuardrailBlocked("prompt", scan.kinds)
            telemetry.record_error(span, error, error.reason)
            raise error

        prompt_tokens = count_prompt(scan.messages, request.tools)
        try:
            decision = route(
                self.catalogue,
                tenant,
                requirements,
                prompt_tokens,
                request.max_tokens,
                self.settings.max_fallbacks,
                request.model,
            )
        except GatewayError as error:
            self._policy(request, tenant.id, "route", {**base, "decision": "refused", "reason": str(error)})
            telemetry.record_error(span, error, error.reason)
            raise
        self._policy(
            request,
            tenant.id,
            "route",
            {
                **base,
                "decision": "routed",
                "reason": decision.reason(),
                "model_requested": request.model,
                "requirements": requirements.model_dump(mode="json"),
                "region": tenant.region,
                "chain": [c.deployment.id for c in decision.chain],
                "rejected": decision.rejected,
            },
        )
        return _Call(
            request=request,
            call_id=call_id,
            trace_id=trace_id,
            tenant_file=tenant_file,
            agent=agent,
            department_id=department_id,
            requirements=requirements,
            prompt_scan=scan,
            prompt_tokens=prompt_tokens,
            decision=decision,
            scopes=self._scopes_of(tenant_file, agent, department_id),
        )

    def _admit(self, call: _Call, span: Any) -> None:
        now = self._clock()
        try:
            with self._store() as tx:
                self._hold(tx, call, now)
        except (RateLimited, BudgetExceeded) as error:
            self._refused(call, span, error)
            if isinstance(error, BudgetExceeded):
                with self._store() as tx:
                    crossings = self.budgets.note_refusal(tx, error, list(call.budget_scopes), now)
                self._alerts(call, crossings)
            raise
        self._held(call)

    async def _aadmit(self, call: _Call, span: Any) -> None:
        now = self._clock()
        try:
            await self._ledger.run(lambda tx: self._hold(tx, call, now))
        except asyncio.CancelledError:
            # The hold may still commit: queue its undo right behind it.
            self._ledger.submit(lambda tx: self._release(tx, call, now))
            raise
        except (RateLimited, BudgetExceeded) as error:
            self._refused(call, span, error)
            if isinstance(error, BudgetExceeded):
                refused = error
                crossings = await self._ledger.run(
                    lambda tx: self.budgets.note_refusal(tx, refused, list(call.budget_scopes), now)
                )
                self._alerts(call, crossings)
            raise
        self._held(call)

    def _hold(self, tx: LedgerTransaction, call: _Call, now: datetime) -> None:
        """Rate limits and the budget reservation, in one transaction: both hold or neither does."""
        reserve_tokens = math.ceil(call.prompt_tokens * PROMPT_TOKEN_MARGIN)
        # Any deployment in the chain may end up answering, so reserve for the dearest of them.
        prices = call.scopes.prices
        call.reserved_usd = max(
            worst_case(prices[d.id], reserve_tokens, call.request.max_tokens, call.markup)
            for d in call.decision.deployments
        )
        call.admission = self.rates.admit(
            tx, call.scopes.rates, reserve_tokens + call.request.max_tokens, now.timestamp()
        )
        call.reservation = self.budgets.reserve(
            tx,
            call.budget_scopes,
            call.reserved_usd,
            tenant_id=call.tenant_id,
            department_id=call.department_id,
            agent_id=call.request.agent_id,
            run_id=call.request.run_id,
            now=now,
        )

    def _held(self, call: _Call) -> None:
        self._policy(
            call.request,
            call.tenant_id,
            "budget",
            {
                **self._ids(call),
                "decision": "reserved",
                "reason": "within every budget",
                "reserved_usd": str(call.reserved_usd),
                "scopes": [s.scope for s in call.budget_scopes],
            },
        )

    def _refused(self, call: _Call, span: Any, error: RateLimited | BudgetExceeded) -> None:
        """Nothing was held (the admission transaction rolled back): record the refusal and why."""
        call.admission = call.reservation = None
        if isinstance(error, RateLimited):
            details: dict[str, Any] = {
                "scope": error.scope,
                "limit_kind": error.kind,
                "limit": error.limit,
                "retry_after_s": round(error.retry_after, 2),
            }
            name = "rate_limit"
        else:
            details = {
                "level": error.level,
                "scope": error.scope,
                "limit_usd": str(error.limit),
                "committed_usd": str(error.committed),
                "needed_usd": str(error.needed),
            }
            name = "budget"
        payload = {**self._ids(call), "decision": "refused", "reason": str(error), **details}
        self._policy(call.request, call.tenant_id, name, payload)
        telemetry.record_error(span, error, error.reason)

    @staticmethod
    def _ids(call: _Call) -> dict[str, Any]:
        return {"call_id": call.call_id, "trace_id": call.trace_id, "department_id": call.department_id}

    def _router_kwargs(self, call: _Call) -> dict[str, Any]:
        chain = call.decision.deployments
        primary = chain[0]
        bigger = [d.id for d in chain[1:] if d.context_window > primary.context_window]
        kwargs: dict[str, Any] = {
            "model": primary.id,
            "messages": call.prompt_scan.messages,
            "max_tokens": call.request.max_tokens,
            # Only deployments the routing step accepted: residency and allow-lists hold in fallbacks.
            "fallbacks": [{primary.id: [d.id for d in chain[1:]]}],
            "context_window_fallbacks": [{primary.id: bigger}] if bigger else None,
        }
        if call.request.tools:
            kwargs["tools"] = call.request.tools
            # LiteLLM checks tool lists for its proxy's MCP tools, which imports the optional `mcp`
            # package; the gateway never uses MCP tools through LiteLLM.
            kwargs["_skip_mcp_handler"] = True
        if call.request.tool_choice is not None:
            kwargs["tool_choice"] = call.request.tool_choice
        if call.request.temperature is not None:
            kwargs["temperature"] = call.request.temperature
        return kwargs

    def _invoke(self, call: _Call, send: Callable[[dict[str, Any]], T]) -> T:
        token = CURRENT.set(call.log)
        try:
            return send(self._router_kwargs(call))
        finally:
            CURRENT.reset(token)

    async def _ainvoke(self, call: _Call) -> Any:
        token = CURRENT.set(call.log)
        try:
            return await self.router.acompletion(**self._router_kwargs(call))
        finally:
            CURRENT.reset(token)

    def _charge(self, call: _Call, response: Any) -> _Charge:
        """What the answered call cost: the deployment that answered, its token usage and the price."""
        answered = next((a for a in reversed(call.log.attempts) if a.ok), None)
        deployment = self._by_id[answered.deployment_id] if answered else call.decision.primary
        usage = TokenUsage.from_response_usage(getattr(response, "usage", None))
        return _Charge(answered, deployment, usage, cost(call.scopes.prices[deployment.id], usage, call.markup))

    def _settle(self, tx: LedgerTransaction, call: _Call, charge: _Charge, now: datetime) -> list[Crossing]:
        """Everything a finished call writes, in the caller's one transaction."""
        if call.admission is not None:
            self.rates.correct(tx, call.admission, charge.usage.prompt + charge.usage.completion)
        if call.reservation is None:
            return []
        return self.budgets.settle(tx, call.reservation, charge.cost, now)

    def _complete(
        self, call: _Call, response: Any, span: Any, charge: _Charge, crossings: list[Crossing]
    ) -> CompletionResult:
        """After settlement: alerts, the output scan, usage events and the span; the caller's result."""
        tenant = call.tenant_file.tenant
        deployment, usage = charge.deployment, charge.usage
        self._alerts(call, crossings)
        choice = response.choices[0]
        message = _message_dict(choice.message)
        out_scan = guardrails.ScanOutcome("output", "clean")
        if tenant.policies.scan_output:
            out_scan = guardrails.scan_messages([message], tenant.policies, "output")
            self._policy(
                call.request,
                tenant.id,
                "guardrail",
                {**self._ids(call), **out_scan.summary(), "reason": _scan_reason(out_scan, tenant)},
            )
            message = out_scan.messages[0]
        summary = {"prompt": call.prompt_scan.summary(), "output": out_scan.summary()}
        fallback_depth = self._depth(call, deployment.id)
        self._usage_events(call, summary, final=(charge.answered, usage, charge.cost))
        telemetry.record_result(
            span,
            provider=deployment.provider,
            deployment_id=deployment.id,
            response_model=deployment.model,
            response_id=getattr(response, "id", None),
            finish_reason=choice.finish_reason,
            input_tokens=usage.prompt,
            output_tokens=usage.completion,
            cached_tokens=usage.cached,
            reasoning_tokens=usage.reasoning,
            cost_usd=float(charge.cost),
            attempts=len(call.log.sent),
            fallback_depth=fallback_depth,
            sandbox=deployment.is_sandbox,
        )
        if tenant.policies.store_prompts:
            telemetry.record_text(
                span,
                guardrails.masked_for_storage(call.prompt_scan.messages),
                guardrails.masked_for_storage([message])[0],
            )
        if out_scan.action == "blocked":
            error = GuardrailBlocked("output", out_scan.kinds)
            telemetry.record_error(span, error, error.reason)
            raise error  # the call is already settled: the tokens were spent
        return CompletionResult(
            message=message,
            finish_reason=choice.finish_reason,
            call_id=call.call_id,
            trace_id=call.trace_id,
            deployment_id=deployment.id,
            model_name=deployment.model_name,
            provider=deployment.provider,
            region=tenant.region,
            sandbox=deployment.is_sandbox,
            usage=usage,
            cost_usd=charge.cost,
            attempts=len(call.log.sent),
            fallback_depth=fallback_depth,
            guardrails=summary,
        )

    def _release(self, tx: LedgerTransaction, call: _Call, now: datetime) -> None:
        """Give back what a call that got no answer held."""
        # Rate windows before budget counters, the order admission and settlement lock them in.
        if call.admission is not None:
            # Failed attempts used no tokens we can know of; the request itself still counts.
            self.rates.correct(tx, call.admission, 0)
        if call.reservation is not None:
            self.budgets.release(tx, call.reservation, now)

    def _failed(self, call: _Call, error: BaseException, span: Any) -> ProviderFailed:
        """After the release: record the failed call's attempts and describe the failure."""
        self._usage_events(call, {"prompt": call.prompt_scan.summary()}, final=None)
        failure = ProviderFailed(len(call.log.sent), type(error).__name__, _short(error))
        telemetry.record_error(span, error, failure.reason)
        return failure

    def _events_full(self) -> bool:
        return self._owns_events and self.events.pending >= self.events.batch_size

    def _write_events_on_ledger(self) -> None:
        """Queue the buffered events into the ledger's next transaction; nobody waits for them.

        Flushed from a thread of their own, every call that ended before the flush took the buffer
        queued one more flush and transaction; here the batch is taken at once and rides a commit the
        ledger makes anyway (docs/benchmarks.md). A batch that does not land goes back to the buffer
        for the next flush, with a warning. Rows of a batch written here and of one flushed meanwhile
        by a sync caller may interleave; each batch keeps its order.
        """
        batch = self.events.take()
        dialect = self._engine.dialect
        arguments = [INSERT_EVENT.arguments(dialect, event.as_row()) for event in batch]

        def write(tx: LedgerTransaction) -> None:
            tx.execute_many(INSERT_EVENT, arguments)

        def put_back(error: BaseException) -> None:
            self.events.put_back(batch)
            logger.warning("%d gateway events kept for the next flush: writing them failed (%s)", len(batch), error)

        self._ledger.submit(write, on_failure=put_back)

    # --- events ----------------------------------------------------------------------------------

    def _usage_events(
        self, call: _Call, guardrail_summary: dict[str, Any], final: tuple[Attempt | None, TokenUsage, Decimal] | None
    ) -> None:
        tenant = call.tenant_file.tenant
        store_prompt = tenant.policies.store_prompts
        for number, attempt in enumerate(call.log.attempts, start=1):
            deployment = self._by_id.get(attempt.deployment_id)
            answered = final is not None and attempt is final[0]
            usage, charged = (final[1], final[2]) if answered and final else (TokenUsage(), Decimal(0))
            payload: dict[str, Any] = {
                "call_id": call.call_id,
                "trace_id": call.trace_id,
                "department_id": call.department_id,
                "attempt": number,
                "model_requested": call.request.model or f"tier:{call.requirements.tier}",
                "deployment_id": attempt.deployment_id,
                "model_name": deployment.model_name if deployment else None,
                "provider": deployment.provider if deployment else None,
                "region": tenant.region,
                "sandbox": bool(deployment and deployment.is_sandbox),
                "prompt_tokens": usage.prompt,
                "completion_tokens": usage.completion,
                "cached_tokens": usage.cached,
                "reasoning_tokens": usage.reasoning,
                "cost_usd": str(charged),
                "latency_ms": round(attempt.latency_ms, 2),
                "status": "ok" if attempt.ok else ("skipped" if not attempt.sent else "error"),
                "error_class": attempt.error_class,
                "fallback_depth": self._depth(call, attempt.deployment_id),
                "guardrails": guardrail_summary,
            }
            if answered and store_prompt:
                payload["prompt"] = guardrails.masked_for_storage(call.prompt_scan.messages)
            self._emit(call.request, tenant.id, "usage", "model_call", payload)

    def _policy(self, request: CompletionRequest, tenant_id: str, name: str, payload: dict[str, Any]) -> None:
        self._emit(request, tenant_id, "policy", name, payload)

    def _alerts(self, call: _Call, crossings: list[Crossing]) -> None:
        for crossing in crossings:
            self._emit(
                call.request,
                crossing.tenant_id,
                "alert",
                crossing.kind,
                {
                    "level": crossing.level,
                    "scope": crossing.scope,
                    "month": crossing.month,
                    "threshold_usd": str(crossing.threshold),
                    "committed_usd": str(crossing.committed),
                    "call_id": call.call_id,
                },
            )

    def _emit(
        self, request: CompletionRequest, tenant_id: str | None, kind: Any, name: str, payload: dict[str, Any]
    ) -> None:
        self.events.emit(
            PlatformEvent(
                tenant_id=tenant_id,
                kind=kind,
                name=name,
                agent_id=request.agent_id,
                run_id=request.run_id,
                payload=payload,
            )
        )

    # --- helpers ---------------------------------------------------------------------------------

    def _resolve(self, request: CompletionRequest) -> tuple[TenantFile, Agent | None, str]:
        tenant_file = self._tenants.get(request.tenant_id)
        if tenant_file is None:
            raise UnknownScope(f"unknown tenant {request.tenant_id!r}")
        agent = next((a for a in tenant_file.agents if a.id == request.agent_id), None)
        if agent is None:
            raise UnknownScope(f"agent {request.agent_id!r} is not an agent of tenant {request.tenant_id!r}")
        department_id = request.department_id or agent.department
        if department_id not in {d.id for d in tenant_file.tenant.departments}:
            raise UnknownScope(f"department {department_id!r} is not a department of tenant {request.tenant_id!r}")
        return tenant_file, agent, department_id

    def _scopes_of(self, tenant_file: TenantFile, agent: Agent | None, department_id: str) -> _Scopes:
        tenant = tenant_file.tenant
        agent_id = agent.id if agent else ""
        key = (tenant.id, department_id, agent_id)
        scopes = self._scopes.get(key)
        if scopes is None:  # config is fixed for the gateway's lifetime, so this never goes stale
            scopes = _Scopes(
                budgets=tuple(budget_scopes(self.config, tenant_file, department_id, agent_id)),
                rates=tuple(rate_scopes(tenant, agent_id, agent.limits if agent else None)),
                markup=markup_for(self.config, tenant),
                prices={d.id: d.price_for(tenant) for d in self.catalogue},
            )
            self._scopes[key] = scopes
        return scopes

    @staticmethod
    def _depth(call: _Call, deployment_id: str) -> int:
        ids = [d.id for d in call.decision.deployments]
        return ids.index(deployment_id) if deployment_id in ids else -1

    def _router_entry(self, deployment: Deployment) -> dict[str, Any]:
        params = dict(deployment.litellm_params)
        params.setdefault("timeout", self.settings.timeout_seconds)
        # One model group per deployment: the Router's retries and cooldowns then act on exactly
        # one deployment, and the fallback chain (built per call) decides where a call may go next.
        model_info = {"id": deployment.id, **deployment.price.litellm_model_info()}
        return {"model_name": deployment.id, "litellm_params": params, "model_info": model_info}


def _message_dict(message: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"role": "assistant", "content": getattr(message, "content", None)}
    tool_calls = getattr(message, "tool_calls", None)
    if tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.function.name, "arguments": call.function.arguments},
            }
            for call in tool_calls
        ]
    return out


def _scan_reason(scan: guardrails.ScanOutcome, tenant: Any) -> str:
    if scan.action == "clean":
        return "nothing found"
    found = ", ".join(f"{n} {k}" for k, n in sorted(scan.counts.items()))
    policy = f"pii={tenant.policies.pii}, secrets={tenant.policies.secrets}"
    return f"found {found}; tenant policy {policy}"


def _span_trace_id(span: Any) -> str | None:
    context = span.get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def _short(error: BaseException) -> str:
    """The first line of a provider error, bounded: enough to act on, never a request body."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:300]
