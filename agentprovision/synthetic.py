"""Realistic synthetic platform events, for tests at small sizes and benchmarks at millions of rows.

The generator simulates agent runs: each run starts, makes a few model calls through the gateway (some
failing over to a fallback deployment, some failing outright), calls tools (some erroring, refused or
waiting for approval), passes guardrail checks (some masked or blocked) and finishes with a status and
the outcomes it produced. Runs fall on days with weekday seasonality (quiet weekends, a working-hours
peak), and every event carries the payload shape the gateway and agent runtime write (see
/tmp/contracts.md "Events" and docs/warehouse.md).

Everything is vectorised with numpy and polars so ten million events take seconds, not minutes; the
output is Arrow tables in the exact column layout of the warehouse's `raw.events` table, so they can be
inserted as they are. The same seed always gives the same events.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pyarrow as pa
from sqlalchemy import Engine

from agentprovision.config.schema import AdminConfig
from agentprovision.events import PlatformEvent, write_events
from agentprovision.warehouse import RAW_TABLES, arrow_schema

EVENTS_SCHEMA = arrow_schema(next(t for t in RAW_TABLES if t.name == "events"))
US_PER_SECOND = 1_000_000
US_PER_DAY = 86_400 * US_PER_SECOND
COST_UNITS_PER_USD = 100_000_000  # costs are integers of 1e-8 USD until formatted, so sums are exact

# Rough shape of a run, used to size batches: 2 lifecycle events + calls (with fallbacks) + guardrails + tools.
_EVENTS_PER_RUN = 2 + 3 * 1.07 + 3 + 1.5

_TOOLS = np.array(["warehouse_query", "kb_search", "repo_inspect", "config_inspect", "open_ticket", "post_message"])
_TOOL_OUTCOMES = {"open_ticket": "ticket_opened", "post_message": "message_posted"}
_AGENT_TYPES = ["full_stack_development", "devops_infrastructure", "qa_testing", "data_analysis", "documentation"]


@dataclass(frozen=True)
class SyntheticDeployment:
    deployment_id: str
    model_name: str
    provider: str
    region: str
    is_sandbox: bool
    input_per_mtok_usd: float
    output_per_mtok_usd: float
    base_latency_ms: float


@dataclass(frozen=True)
class SyntheticAgent:
    tenant_id: str
    department_id: str
    agent_id: str
    agent_type: str
    agent_version: str
    region: str


@dataclass(frozen=True)
class Universe:
    """Who makes the calls and what answers them."""

    agents: tuple[SyntheticAgent, ...]
    deployments: tuple[SyntheticDeployment, ...]


_DEFAULT_DEPLOYMENTS = (
    SyntheticDeployment("openai-fast", "fast", "openai", "us", False, 0.15, 0.60, 450.0),
    SyntheticDeployment("anthropic-balanced", "balanced", "anthropic", "us", False, 3.0, 15.0, 1400.0),
    SyntheticDeployment("openai-deep", "deep", "openai", "us", False, 2.5, 10.0, 2600.0),
    SyntheticDeployment("mistral-fast-eu", "fast", "mistral", "eu", False, 0.2, 0.6, 500.0),
    SyntheticDeployment("anthropic-balanced-eu", "balanced", "anthropic", "eu", False, 3.3, 16.5, 1500.0),
    SyntheticDeployment("sandbox-fast", "fast", "sandbox", "us", True, 0.15, 0.60, 50.0),
)


def synthetic_universe(tenants: int, agents_per_tenant: int) -> Universe:
    """Made-up tenants `tenant-0001`... with two departments and `agents_per_tenant` agents each."""
    if tenants < 1 or agents_per_tenant < 1:
        raise ValueError("tenants and agents_per_tenant must be at least 1")
    agents = []
    for t in range(1, tenants + 1):
        tenant_id = f"tenant-{t:04d}"
        region = "eu" if t % 3 == 0 else "us"
        for a in range(1, agents_per_tenant + 1):
            agents.append(
                SyntheticAgent(
                    tenant_id,
                    f"dept-{1 + a % 2}",
                    f"{tenant_id}-agent-{a:02d}",
                    _AGENT_TYPES[(t + a) % len(_AGENT_TYPES)],
                    f"1.{a % 4}.0",
                    region,
                )
            )
    return Universe(tuple(agents), _DEFAULT_DEPLOYMENTS)


def config_universe(config: AdminConfig) -> Universe:
    """The tenants, agents and model deployments of an admin config (draft and retired agents excluded)."""
    deployments = []
    for deployment in config.models.model_list:
        info = deployment.model_info
        price = info.contract_price
        for region in info.regions:
            deployments.append(
                SyntheticDeployment(
                    info.id,
                    deployment.model_name,
                    deployment.provider,
                    region,
                    deployment.provider == "sandbox",
                    float(price.input_per_mtok_usd) if price else 1.0,
                    float(price.output_per_mtok_usd) if price else 4.0,
                    {"basic": 400.0, "standard": 1200.0, "advanced": 2500.0}[info.tier],
                )
            )
    agents = [
        SyntheticAgent(tf.tenant.id, agent.department, agent.id, agent.type, agent.version, tf.tenant.region)
        for tf in config.tenants
        for agent in tf.agents
        if agent.status in ("active", "paused")
    ]
    if not agents:
        raise ValueError("the config has no active agents to generate events for")
    return Universe(tuple(agents), tuple(deployments))


def generate_events(
    tenants: int = 3,
    agents_per_tenant: int = 3,
    days: int = 30,
    events: int = 10_000,
    seed: int = 0,
    *,
    config: AdminConfig | None = None,
    start: date | None = None,
    batch_events: int = 1_000_000,
    first_seq: int = 1,
    loaded_at: datetime | None = None,
) -> Iterator[pa.Table]:
    """Yield Arrow tables of exactly `events` events in total, in `raw.events` column layout.

    With `config`, the tenants, agents and deployments come from that admin config (tenants and
    agents_per_tenant are then ignored). Days run from `start` (default: `days` days before today, UTC).
    `seq` numbers from `first_seq`; event ids are unique per seed. Runs near the end of a batch may be cut
    short (no run_finished), as in-flight runs are in a live system.
    """
    if days < 1 or events < 0 or batch_events < 1:
        raise ValueError("days and batch_events must be at least 1 and events not negative")
    universe = config_universe(config) if config is not None else synthetic_universe(tenants, agents_per_tenant)
    start = start or (datetime.now(UTC).date() - timedelta(days=days))
    start_us = int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp()) * US_PER_SECOND
    loaded = loaded_at or datetime(start.year, start.month, start.day, tzinfo=UTC) + timedelta(days=days)
    routes = _routes(universe, np.random.default_rng([seed, 0]))
    day_weights = _day_weights(start, days)

    prefix = f"{seed % 2**32:08x}"
    produced = 0
    batch = 0
    runs = 0  # run serials are sequential, so ids never collide
    while produced < events:
        want = min(batch_events, events - produced)
        rng = np.random.default_rng([seed, batch + 1])
        frames: list[pl.DataFrame] = []
        height = 0
        while height < want:  # a thin draw: top up with more runs
            n_runs = math.ceil((want - height) / _EVENTS_PER_RUN) + 8
            frames.append(_batch(universe, routes, rng, day_weights, start_us, runs, n_runs, prefix))
            runs += n_runs
            height += frames[-1].height
        frame = pl.concat(frames)
        frame = frame.sort("occurred_at", maintain_order=True).head(want)
        yield _finish(frame, seed, first_seq + produced, loaded)
        produced += want
        batch += 1


def _routes(universe: Universe, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Each agent's primary and fallback deployment, both serving the agent's region."""
    primary, fallback = [], []
    for agent in universe.agents:
        local = [i for i, d in enumerate(universe.deployments) if d.region == agent.region]
        if not local:
            raise ValueError(f"no model deployment serves region {agent.region!r} of agent {agent.agent_id!r}")
        first = int(rng.choice(local))
        others = [i for i in local if i != first] or [first]
        primary.append(first)
        fallback.append(int(rng.choice(others)))
    return np.array(primary), np.array(fallback)


def _day_weights(start: date, days: int) -> np.ndarray:
    """Weekdays busy, weekends quiet, a slow upward trend: how runs spread over the days."""
    weekday = np.array([(start + timedelta(days=d)).weekday() for d in range(days)])
    weights = np.where(weekday >= 5, 0.3, 1.0) * (1.0 + 0.3 * np.arange(days) / max(days, 1))
    return weights / weights.sum()


def _pick(values: list[str] | np.ndarray, index: np.ndarray) -> pl.Series:
    """values[index] as a string Series, gathered in polars (far faster than numpy object arrays)."""
    return pl.Series(values=list(values), dtype=pl.String).gather(pl.Series(index, dtype=pl.UInt32))


def _nullable(values: np.ndarray) -> pl.Series:
    """A string Series from a numpy array where None (or "") means NULL."""
    filled = np.where(values == None, "", values).astype(str)  # noqa: E711 - elementwise comparison
    series = pl.Series(values=filled, dtype=pl.String)
    return series.set(series == "", None)


def _quoted(expr: pl.Expr) -> pl.Expr:
    """A string column as a JSON value: quoted, or `null`."""
    return pl.when(expr.is_null()).then(pl.lit("null")).otherwise(pl.concat_str([pl.lit('"'), expr, pl.lit('"')]))


def _number(expr: pl.Expr) -> pl.Expr:
    return pl.when(expr.is_null()).then(pl.lit("null")).otherwise(expr.cast(pl.String))


def _json_object(fields: dict[str, pl.Expr]) -> pl.Expr:
    """JSON object text from already-JSON-encoded field expressions, keys in the given order."""
    parts: list[pl.Expr] = [pl.lit("{")]
    for i, (key, value) in enumerate(fields.items()):
        parts += [pl.lit(("" if i == 0 else ", ") + f'"{key}": '), value]
    parts.append(pl.lit("}"))
    return pl.concat_str(parts)


def _money(units: pl.Expr) -> pl.Expr:
    """Integer 1e-8 USD units as a decimal string with eight places, e.g. '0.00123400'."""
    return pl.concat_str(
        [
            (units // COST_UNITS_PER_USD).cast(pl.String),
            pl.lit("."),
            (units % COST_UNITS_PER_USD).cast(pl.String).str.zfill(8),
        ]
    )


def _batch(
    universe: Universe,
    routes: tuple[np.ndarray, np.ndarray],
    rng: np.random.Generator,
    day_weights: np.ndarray,
    start_us: int,
    first_run: int,
    n_runs: int,
    prefix: str,
) -> pl.DataFrame:
    agents = universe.agents
    deployments = universe.deployments
    primary_of, fallback_of = routes

    # --- runs ---------------------------------------------------------------------------------------
    run_agent = rng.integers(0, len(agents), n_runs)
    run_day = rng.choice(len(day_weights), size=n_runs, p=day_weights)
    # Working-hours peak around 13:00 UTC.
    second_of_day = np.clip(rng.normal(13 * 3600, 3 * 3600, n_runs), 0, 86_399).astype(np.int64)
    run_start = start_us + run_day.astype(np.int64) * US_PER_DAY + second_of_day * US_PER_SECOND
    n_calls = rng.integers(1, 6, n_runs)
    n_tools = rng.integers(0, 4, n_runs)
    # Serials: runs number up to 10**11, calls are run * 10 + step (at most 5 calls a run), all 12 digits.
    run_serial = np.arange(first_run, first_run + n_runs, dtype=np.int64)
    run_ids = pl.Series(run_serial).cast(pl.String).str.zfill(12)
    run_id_values = (f"{prefix}-0000-4000-9000-" + run_ids).to_numpy()
    tenant_ids = [a.tenant_id for a in agents]
    department_ids = [a.department_id for a in agents]
    agent_ids = [a.agent_id for a in agents]

    # --- model calls and their attempts -------------------------------------------------------------
    call_run = np.repeat(np.arange(n_runs), n_calls)
    call_step = np.concatenate([np.arange(k) for k in n_calls]) if n_runs else np.array([], dtype=np.int64)
    n_call = len(call_run)
    call_time = run_start[call_run] + (2 * call_step + 1) * 2 * US_PER_SECOND + rng.integers(0, US_PER_SECOND, n_call)
    outcome_roll = rng.random(n_call)
    fell_back = outcome_roll < 0.06  # first deployment failed, the fallback answered
    failed = (outcome_roll >= 0.06) & (outcome_roll < 0.075)  # no deployment answered
    agent_of_call = run_agent[call_run]
    prompt = np.maximum(50, rng.lognormal(7.0, 0.7, n_call)).astype(np.int64)
    completion = np.maximum(10, rng.lognormal(5.6, 0.8, n_call)).astype(np.int64)
    cached = np.where(rng.random(n_call) < 0.3, (prompt * rng.random(n_call) * 0.5).astype(np.int64), 0)
    guard_roll = rng.random(n_call)
    prompt_action = np.where(guard_roll < 0.05, "masked", np.where(guard_roll < 0.08, "allowed", "clean"))
    output_action = np.where(rng.random(n_call) < 0.01, "blocked", "clean")

    # One row per attempt: the primary for every call, then a second attempt for each call that fell back.
    answered_primary = ~(fell_back | failed)
    att_call = np.concatenate([np.arange(n_call), np.nonzero(fell_back)[0]])
    att_number = np.concatenate([np.ones(n_call, dtype=np.int64), np.full(int(fell_back.sum()), 2)])
    att_ok = np.concatenate([answered_primary, np.ones(int(fell_back.sum()), dtype=bool)])
    att_deployment = np.concatenate([primary_of[agent_of_call], fallback_of[agent_of_call[fell_back]]])
    att_time = call_time[att_call] + (att_number - 1) * 3 * US_PER_SECOND
    in_price = np.array([d.input_per_mtok_usd for d in deployments])[att_deployment]
    out_price = np.array([d.output_per_mtok_usd for d in deployments])[att_deployment]
    att_prompt = np.where(att_ok, prompt[att_call], 0)
    att_completion = np.where(att_ok, completion[att_call], 0)
    att_cost = np.rint(att_prompt * in_price * 100 + att_completion * out_price * 100).astype(np.int64)
    base_latency = np.array([d.base_latency_ms for d in deployments])[att_deployment]
    att_latency = np.round(base_latency * rng.lognormal(0.0, 0.35, len(att_call)), 2)
    att_error = np.where(att_ok, None, np.where(rng.random(len(att_call)) < 0.7, "RateLimitError", "Timeout"))
    att_agent = agent_of_call[att_call]

    usage = pl.DataFrame(
        {
            "tenant_id": _pick(tenant_ids, att_agent),
            "agent_id": _pick(agent_ids, att_agent),
            "run_id": pl.Series(run_id_values[call_run[att_call]], dtype=pl.String),
            "occurred_at": att_time,
            "call_serial": run_serial[call_run[att_call]] * 10 + call_step[att_call],
            "department_id": _pick(department_ids, att_agent),
            "attempt": att_number,
            "model_requested": _pick([d.model_name for d in deployments], primary_of[att_agent]),
            "deployment_id": _pick([d.deployment_id for d in deployments], att_deployment),
            "model_name": _pick([d.model_name for d in deployments], att_deployment),
            "provider": _pick([d.provider for d in deployments], att_deployment),
            "region": _pick([d.region for d in deployments], att_deployment),
            "sandbox": np.array([d.is_sandbox for d in deployments])[att_deployment],
            "prompt_tokens": att_prompt,
            "completion_tokens": att_completion,
            "cached_tokens": np.where(att_ok, cached[att_call], 0),
            "cost_units": att_cost,
            "latency_ms": att_latency,
            "status": np.where(att_ok, "ok", "error"),
            "error_class": _nullable(att_error),
            "fallback_depth": att_number - 1,
            "prompt_action": prompt_action[att_call],
            "output_action": np.where(att_ok, output_action[att_call], "clean"),
        }
    )
    call_id = pl.concat_str([pl.lit(f"{prefix}-0000-4000-a000-"), pl.col("call_serial").cast(pl.String).str.zfill(12)])
    usage = usage.select(
        "tenant_id",
        pl.lit("usage").alias("kind"),
        pl.lit("model_call").alias("name"),
        "occurred_at",
        "agent_id",
        "run_id",
        _json_object(
            {
                "call_id": _quoted(call_id),
                "trace_id": _quoted(pl.col("call_serial").cast(pl.String).str.zfill(32)),
                "department_id": _quoted(pl.col("department_id")),
                "attempt": _number(pl.col("attempt")),
                "model_requested": _quoted(pl.col("model_requested")),
                "deployment_id": _quoted(pl.col("deployment_id")),
                "model_name": _quoted(pl.col("model_name")),
                "provider": _quoted(pl.col("provider")),
                "region": _quoted(pl.col("region")),
                "sandbox": pl.when(pl.col("sandbox")).then(pl.lit("true")).otherwise(pl.lit("false")),
                "prompt_tokens": _number(pl.col("prompt_tokens")),
                "completion_tokens": _number(pl.col("completion_tokens")),
                "cached_tokens": _number(pl.col("cached_tokens")),
                "reasoning_tokens": pl.lit("0"),
                "cost_usd": _quoted(_money(pl.col("cost_units"))),
                "latency_ms": _number(pl.col("latency_ms")),
                "status": _quoted(pl.col("status")),
                "error_class": _quoted(pl.col("error_class")),
                "fallback_depth": _number(pl.col("fallback_depth")),
                "guardrails": pl.concat_str(
                    [
                        pl.lit('{"output": {"action": "'),
                        pl.col("output_action"),
                        pl.lit('", "found": {}, "where": "output"}, "prompt": {"action": "'),
                        pl.col("prompt_action"),
                        pl.lit('", "found": {}, "where": "prompt"}}'),
                    ]
                ),
            }
        ).alias("payload"),
    )

    # --- guardrail decisions: one prompt scan per call ------------------------------------------------
    found = np.where(prompt_action == "clean", "{}", np.where(guard_roll < 0.03, '{"email": 1}', '{"phone": 2}'))
    policy = pl.DataFrame(
        {
            "tenant_id": _pick(tenant_ids, agent_of_call),
            "agent_id": _pick(agent_ids, agent_of_call),
            "run_id": pl.Series(run_id_values[call_run], dtype=pl.String),
            "occurred_at": call_time - 1000,
            "call_serial": run_serial[call_run] * 10 + call_step,
            "department_id": _pick(department_ids, agent_of_call),
            "action": prompt_action,
            "found": found,
        }
    ).select(
        "tenant_id",
        pl.lit("policy").alias("kind"),
        pl.lit("guardrail").alias("name"),
        "occurred_at",
        "agent_id",
        "run_id",
        _json_object(
            {
                "call_id": _quoted(
                    pl.concat_str(
                        [pl.lit(f"{prefix}-0000-4000-a000-"), pl.col("call_serial").cast(pl.String).str.zfill(12)]
                    )
                ),
                "department_id": _quoted(pl.col("department_id")),
                "where": pl.lit('"prompt"'),
                "action": _quoted(pl.col("action")),
                "found": pl.col("found"),
                "reason": _quoted(
                    pl.when(pl.col("action") == "clean")
                    .then(pl.lit("nothing found"))
                    .otherwise(pl.lit("personal data found"))
                ),
            }
        ).alias("payload"),
    )

    # --- tool calls ---------------------------------------------------------------------------------------
    tool_run = np.repeat(np.arange(n_runs), n_tools)
    tool_step = np.concatenate([np.arange(k) for k in n_tools]) if n_runs else np.array([], dtype=np.int64)
    n_tool = len(tool_run)
    tool_name = _TOOLS[rng.integers(0, len(_TOOLS), n_tool)]
    tool_roll = rng.random(n_tool)
    tool_status = np.where(
        tool_roll < 0.05,
        "error",
        np.where(tool_roll < 0.08, "refused", np.where(tool_roll < 0.1, "needs_approval", "ok")),
    )
    tool_error = np.where(tool_status == "error", "tool", np.where(tool_status == "refused", "policy", None))
    tool_outcome = np.array([_TOOL_OUTCOMES.get(name) for name in tool_name], dtype=object)
    tool_outcome = np.where(tool_status == "ok", tool_outcome, None)
    tool_agent = run_agent[tool_run]
    tool_time = run_start[tool_run] + (2 * tool_step + 2) * 2 * US_PER_SECOND
    tools = pl.DataFrame(
        {
            "tenant_id": _pick(tenant_ids, tool_agent),
            "agent_id": _pick(agent_ids, tool_agent),
            "run_id": pl.Series(run_id_values[tool_run], dtype=pl.String),
            "occurred_at": tool_time,
            "task_id": _task_ids(run_serial[tool_run], prefix),
            "step": n_calls[tool_run] + tool_step + 1,
            "tool": tool_name,
            "status": tool_status,
            "error_class": _nullable(tool_error),
            "latency_ms": np.round(rng.lognormal(5.0, 0.8, n_tool), 2),
            "outcome": _nullable(tool_outcome),
            "department_id": _pick(department_ids, tool_agent),
        }
    ).select(
        "tenant_id",
        pl.lit("tool").alias("kind"),
        pl.lit("tool_call").alias("name"),
        "occurred_at",
        "agent_id",
        "run_id",
        _json_object(
            {
                "task_id": _quoted(pl.col("task_id")),
                "step": _number(pl.col("step")),
                "tool": _quoted(pl.col("tool")),
                "status": _quoted(pl.col("status")),
                "error_class": _quoted(pl.col("error_class")),
                "latency_ms": _number(pl.col("latency_ms")),
                "outcome": _quoted(pl.col("outcome")),
                "department_id": _quoted(pl.col("department_id")),
            }
        ).alias("payload"),
    )

    # --- run lifecycle ------------------------------------------------------------------------------------
    def per_run(values: np.ndarray, index: np.ndarray) -> np.ndarray:
        out = np.zeros(n_runs, dtype=np.int64)
        np.add.at(out, index, values)
        return out

    run_prompt = per_run(att_prompt, call_run[att_call])
    run_completion = per_run(att_completion, call_run[att_call])
    run_cost = per_run(att_cost, call_run[att_call])
    tickets = per_run((tool_outcome == "ticket_opened").astype(np.int64), tool_run)
    messages = per_run((tool_outcome == "message_posted").astype(np.int64), tool_run)
    call_failures = per_run(failed.astype(np.int64), call_run)
    tool_errors = per_run((tool_status == "error").astype(np.int64), tool_run)
    rejected = per_run((tool_status == "needs_approval").astype(np.int64), tool_run) > 0
    status_roll = rng.random(n_runs)
    run_status = np.where(
        call_failures > 0,
        "failed",
        np.where(
            tool_errors > 0,
            "failed",
            np.where(
                rejected & (status_roll < 0.5), "rejected", np.where(status_roll < 0.02, "cancelled", "succeeded")
            ),
        ),
    )
    run_error = np.where(
        call_failures > 0,
        "model",
        np.where(tool_errors > 0, "tool", np.where(run_status == "rejected", "policy", None)),
    )
    reports = np.where((run_status == "succeeded") & (status_roll > 0.7), 1, 0)
    run_end = run_start + (2 * (n_calls + n_tools) + 3) * 2 * US_PER_SECOND + rng.integers(0, US_PER_SECOND, n_runs)
    run_common = {
        "tenant_id": _pick(tenant_ids, run_agent),
        "agent_id": _pick(agent_ids, run_agent),
        "run_id": pl.Series(run_id_values, dtype=pl.String),
        "task_id": _task_ids(run_serial, prefix),
        "department_id": _pick(department_ids, run_agent),
        "agent_type": _pick([a.agent_type for a in agents], run_agent),
        "agent_version": _pick([a.agent_version for a in agents], run_agent),
    }
    identity = {
        "task_id": _quoted(pl.col("task_id")),
        "department_id": _quoted(pl.col("department_id")),
        "agent_type": _quoted(pl.col("agent_type")),
        "agent_version": _quoted(pl.col("agent_version")),
        "config_hash": _quoted(pl.concat_str([pl.col("agent_id"), pl.lit("@"), pl.col("agent_version")])),
    }
    started = pl.DataFrame({**run_common, "occurred_at": run_start}).select(
        "tenant_id",
        pl.lit("run").alias("kind"),
        pl.lit("run_started").alias("name"),
        "occurred_at",
        "agent_id",
        "run_id",
        _json_object({**identity, "source": pl.lit('"schedule"')}).alias("payload"),
    )
    finished = pl.DataFrame(
        {
            **run_common,
            "occurred_at": run_end,
            "started_at": pl.Series(run_start)
            .cast(pl.Datetime("us", "UTC"))
            .dt.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00"),
            "status": run_status,
            "error_class": _nullable(run_error),
            "steps": n_calls + n_tools,
            "llm_calls": n_calls,
            "tool_calls": n_tools,
            "prompt_tokens": run_prompt,
            "completion_tokens": run_completion,
            "cost_units": run_cost,
            "duration_ms": (run_end - run_start) // 1000,
            "tickets": tickets,
            "messages": messages,
            "reports": reports,
        }
    ).select(
        "tenant_id",
        pl.lit("run").alias("kind"),
        pl.lit("run_finished").alias("name"),
        "occurred_at",
        "agent_id",
        "run_id",
        _json_object(
            {
                **identity,
                "status": _quoted(pl.col("status")),
                "error_class": _quoted(pl.col("error_class")),
                "steps": _number(pl.col("steps")),
                "llm_calls": _number(pl.col("llm_calls")),
                "tool_calls": _number(pl.col("tool_calls")),
                "prompt_tokens": _number(pl.col("prompt_tokens")),
                "completion_tokens": _number(pl.col("completion_tokens")),
                "cost_usd": _quoted(_money(pl.col("cost_units"))),
                "duration_ms": _number(pl.col("duration_ms")),
                "started_at": _quoted(pl.col("started_at")),
                "outcomes": _json_object(
                    {
                        "message_posted": _number(pl.col("messages")),
                        "report_delivered": _number(pl.col("reports")),
                        "ticket_opened": _number(pl.col("tickets")),
                    }
                ),
            }
        ).alias("payload"),
    )
    return pl.concat([started, policy, usage, tools, finished])


def _task_ids(serials: np.ndarray, prefix: str) -> pl.Series:
    return f"{prefix}-0000-4000-b000-" + pl.Series(serials).cast(pl.String).str.zfill(12)


def _finish(frame: pl.DataFrame, seed: int, first_seq: int, loaded_at: datetime) -> pa.Table:
    """Give the batch its stream identity (seq, event ids) and the raw table's column layout."""
    n = frame.height
    seq = pl.Series("seq", np.arange(first_seq, first_seq + n, dtype=np.int64))
    prefix = f"{seed % 2**32:08x}-0000-4000-8000-"
    occurred = pl.col("occurred_at").cast(pl.Datetime("us", "UTC"))
    out = frame.with_columns(seq).select(
        "seq",
        (pl.lit(prefix) + pl.col("seq").cast(pl.String).str.zfill(12)).alias("event_id"),
        "tenant_id",
        "kind",
        "name",
        occurred.alias("occurred_at"),
        (occurred + pl.duration(milliseconds=250)).alias("recorded_at"),
        "agent_id",
        "run_id",
        "payload",
        pl.lit(loaded_at).cast(pl.Datetime("us", "UTC")).alias("_loaded_at"),
    )
    return out.to_arrow().cast(EVENTS_SCHEMA)


def write_to_store(
    engine: Engine,
    config: AdminConfig,
    *,
    days: int = 7,
    events: int = 2_000,
    seed: int = 0,
    start: date | None = None,
) -> int:
    """Write synthetic events for the config's tenants and agents into the ops store (small end-to-end tests).

    Goes through the platform's own event writer, so the events then flow through `load_raw` and dbt as
    real ones would. Returns how many were written.
    """
    written = 0
    for table in generate_events(days=days, events=events, seed=seed, config=config, start=start):
        rows = table.select(["event_id", "tenant_id", "kind", "name", "occurred_at", "agent_id", "run_id", "payload"])
        batch = [
            PlatformEvent(
                event_id=row["event_id"],
                tenant_id=row["tenant_id"],
                kind=row["kind"],
                name=row["name"],
                occurred_at=row["occurred_at"],
                agent_id=row["agent_id"],
                run_id=row["run_id"],
                payload=json.loads(row["payload"]),
            )
            for row in rows.to_pylist()
        ]
        written += write_events(engine, batch)
    return written
