"""Fixtures the dashboard tests share: a hand-made published warehouse and an ops store.

The hand-made warehouse holds the marts the dashboards read, in the column shapes of the dbt project
and of the mart contracts, with a small fixed data set whose dates are relative to today (so "runs
today" and "this month" always have rows). The ops store is the example config applied to SQLite:
its users are who the development sign-in offers.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select

from agentprovision.apply import apply_config
from agentprovision.config import load_config_dir
from agentprovision.events import PlatformEvent, write_events
from agentprovision.store import models as m
from agentprovision.store.agent_models import AgentApproval, AgentRunState
from agentprovision.store.db import make_engine, migrate, session_factory, transaction
from agentprovision.warehouse import load_raw, publish

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = REPO_ROOT / "config"
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"

# The core marts (dbt_project/models/marts/core and compliance), a subset of their columns.
MARTS_SQL = """
CREATE SCHEMA marts;
CREATE TABLE marts.dim_tenants (
    tenant_id VARCHAR, display_name VARCHAR, region VARCHAR, plan VARCHAR, status VARCHAR, is_active BOOLEAN,
    budget_hard_usd DECIMAL(18, 8), budget_soft_usd DECIMAL(18, 8),
    department_count INTEGER, user_count INTEGER, agent_count INTEGER, active_agent_count INTEGER
);
INSERT INTO marts.dim_tenants VALUES
    ('acme', 'Acme Manufacturing', 'us', 'enterprise', 'active', true, 1500, 1200, 2, 3, 3, 2),
    ('globex', 'Globex', 'eu', 'business', 'active', true, 800, 600, 1, 2, 1, 1),
    ('oldco', 'Oldco', 'us', 'starter', 'removed', false, 100, NULL, 0, 0, 0, 0);

CREATE TABLE marts.dim_departments (
    department_key VARCHAR, tenant_id VARCHAR, department_id VARCHAR, department_name VARCHAR,
    cost_centre VARCHAR, budget_hard_usd DECIMAL(18, 8), status VARCHAR, is_active BOOLEAN
);
INSERT INTO marts.dim_departments VALUES
    ('acme/engineering', 'acme', 'engineering', 'Engineering', 'CC-1100', 900, 'active', true),
    ('acme/platform-ops', 'acme', 'platform-ops', 'Platform Operations', 'CC-1200', 400, 'active', true),
    ('globex/research', 'globex', 'research', 'Research', 'GX-7', NULL, 'active', true),
    ('oldco/ops', 'oldco', 'ops', 'Ops', NULL, NULL, 'removed', false);

CREATE TABLE marts.dim_users (
    user_id VARCHAR, user_name VARCHAR, role VARCHAR, is_platform_user BOOLEAN, tenant_id VARCHAR,
    department_id VARCHAR, status VARCHAR, is_active BOOLEAN
);
INSERT INTO marts.dim_users VALUES
    ('root@platform.example', 'Root', 'platform_admin', true, NULL, NULL, 'active', true),
    ('dana@acme.example', 'Dana Reyes', 'tenant_admin', false, 'acme', NULL, 'active', true),
    ('omar@acme.example', 'Omar Haddad', 'agent_operator', false, 'acme', 'engineering', 'active', true),
    ('li@acme.example', 'Li Wei', 'analyst', false, 'acme', 'engineering', 'active', true),
    ('gone@acme.example', 'Gone', 'analyst', false, 'acme', NULL, 'removed', false),
    ('hank@globex.example', 'Hank Scorpio', 'tenant_admin', false, 'globex', NULL, 'active', true),
    ('sam@globex.example', 'Sam Lee', 'analyst', false, 'globex', 'research', 'active', true);

CREATE TABLE marts.dim_agents (
    agent_id VARCHAR, agent_name VARCHAR, agent_type VARCHAR, agent_version VARCHAR,
    tenant_id VARCHAR, tenant_display_name VARCHAR, department_id VARCHAR, department_name VARCHAR,
    cost_centre VARCHAR, owner_user_id VARCHAR, owner_name VARCHAR,
    status VARCHAR, is_active BOOLEAN, schedule VARCHAR, trigger_count INTEGER, tool_count INTEGER,
    required_tier VARCHAR, min_context_window INTEGER, max_steps INTEGER, max_tokens INTEGER,
    max_wall_seconds INTEGER, budget_hard_usd DECIMAL(18, 8), budget_soft_usd DECIMAL(18, 8),
    config_version INTEGER, updated_at TIMESTAMPTZ
);
INSERT INTO marts.dim_agents VALUES
    ('acme-code-reviewer', 'Code reviewer', 'full_stack_development', '1.2.0', 'acme', 'Acme Manufacturing',
     'engineering', 'Engineering', 'CC-1100', 'omar@acme.example', 'Omar Haddad', 'active', true,
     '0 7 * * 1-5', 0, 3, 'advanced', 100000, 12, 60000, 600, 300, 250, 2, '2025-01-05 10:00:00+00'),
    ('acme-deploy-doctor', 'Deploy doctor', 'devops_infrastructure', '0.9.1', 'acme', 'Acme Manufacturing',
     'platform-ops', 'Platform Operations', 'CC-1200', 'omar@acme.example', 'Omar Haddad', 'active', true,
     NULL, 1, 3, 'standard', NULL, 8, 20000, 300, NULL, NULL, 1, '2025-01-01 10:00:00+00'),
    ('acme-qa-triage', 'QA triage', 'qa_testing', '2.0.0', 'acme', 'Acme Manufacturing',
     'engineering', 'Engineering', 'CC-1100', 'omar@acme.example', 'Omar Haddad', 'paused', false,
     NULL, 0, 2, 'basic', NULL, 8, 20000, 300, NULL, NULL, 1, '2025-01-01 10:00:00+00'),
    ('acme-old-bot', 'Old bot', 'documentation', '0.1.0', 'acme', 'Acme Manufacturing',
     NULL, NULL, NULL, NULL, NULL, 'retired', false,
     NULL, 0, 1, 'basic', NULL, 4, 1000, 60, NULL, NULL, 1, '2025-01-01 10:00:00+00'),
    ('globex-bi', 'BI analyst', 'business_intelligence', '1.0.0', 'globex', 'Globex',
     'research', 'Research', 'GX-7', 'sam@globex.example', 'Sam Lee', 'active', true,
     '0 6 * * *', 0, 2, 'standard', NULL, 10, 40000, 600, 50, 40, 1, '2025-01-01 10:00:00+00');

CREATE TABLE marts.dim_models (
    deployment_id VARCHAR, model_name VARCHAR, provider VARCHAR, tier VARCHAR, regions_json VARCHAR,
    context_window INTEGER, tenant_id VARCHAR, status VARCHAR
);
INSERT INTO marts.dim_models VALUES
    ('sandbox-fast', 'fast', 'sandbox', 'basic', '["us","eu"]', 32000, NULL, 'active');

CREATE TABLE marts.fct_audit_events (
    seq BIGINT, record_id VARCHAR, occurred_at TIMESTAMPTZ, actor VARCHAR, tenant_id VARCHAR,
    is_platform_action BOOLEAN, action VARCHAR, target_type VARCHAR, target_id VARCHAR
);
INSERT INTO marts.fct_audit_events VALUES
    (1, 'r1', '2025-01-01 10:00+00',
     'root@platform.example', NULL, true, 'config.apply', 'config_version', '1'),
    (2, 'r2', '2025-01-02 10:00+00',
     'dana@acme.example', 'acme', false, 'agent.pause', 'agent', 'acme-qa-triage'),
    (3, 'r3', '2025-01-03 10:00+00',
     'hank@globex.example', 'globex', false, 'approval.approve', 'approval', 'a-1'),
    (4, 'r4', '2025-01-04 10:00+00',
     'omar@acme.example', 'acme', false, 'approval.approve', 'approval', 'a-2');

CREATE TABLE marts.fct_config_versions (
    config_version INTEGER, applied_at TIMESTAMPTZ, applied_by VARCHAR, summary VARCHAR, change_count INTEGER,
    is_rollback BOOLEAN, rollback_of_version INTEGER, is_current BOOLEAN
);
INSERT INTO marts.fct_config_versions VALUES
    (1, '2025-01-01 10:00:00+00', 'root@platform.example', '+3 tenants, +5 agents', 20, false, NULL, false),
    (2, '2025-01-05 10:00:00+00', 'root@platform.example', '~1 agent', 1, false, NULL, true);

-- a decoy below the marts with a mart's name: the dashboards must never read it
CREATE SCHEMA raw;
CREATE TABLE raw.dim_agents AS SELECT * FROM marts.dim_agents;
INSERT INTO raw.dim_agents (agent_id, agent_name, tenant_id, agent_type, status, is_active)
    VALUES ('raw-only', 'Raw only', 'acme', 'documentation', 'active', true);
"""


# The usage, cost and compliance marts of the mart contract. Tenants acme and globex; "oldco" has none.
CONTRACT_MARTS_SQL = """
CREATE TABLE marts.fct_agent_runs (
    run_id VARCHAR, task_id VARCHAR, tenant_id VARCHAR, department_id VARCHAR, agent_id VARCHAR,
    agent_type VARCHAR, agent_version VARCHAR, config_hash VARCHAR, status VARCHAR, error_class VARCHAR,
    started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ, run_date DATE, duration_ms BIGINT, steps INTEGER,
    llm_calls INTEGER, tool_calls INTEGER, prompt_tokens BIGINT, completion_tokens BIGINT,
    cost_usd DECIMAL(18, 8), outcomes_count INTEGER
);
INSERT INTO marts.fct_agent_runs VALUES
    ('r-a1', 't-a1', 'acme', 'engineering', 'acme-code-reviewer', 'full_stack_development', '1.2.0', 'h1',
     'succeeded', NULL, current_date + INTERVAL 1 HOUR, current_date + INTERVAL 61 MINUTE, current_date,
     60000, 4, 3, 2, 1000, 400, 1.50, 1),
    ('r-a2', 't-a2', 'acme', 'engineering', 'acme-code-reviewer', 'full_stack_development', '1.2.0', 'h1',
     'succeeded', NULL, current_date + INTERVAL 2 HOUR, current_date + INTERVAL 122 MINUTE, current_date,
     120000, 6, 4, 3, 1500, 600, 2.00, 2),
    ('r-a3', 't-a3', 'acme', 'platform-ops', 'acme-deploy-doctor', 'devops_infrastructure', '0.9.1', 'h2',
     'failed', 'tool', current_date + INTERVAL 3 HOUR, current_date + INTERVAL 181 MINUTE, current_date,
     60000, 2, 1, 1, 300, 100, 0.50, 0),
    ('r-g1', 't-g1', 'globex', 'research', 'globex-bi', 'business_intelligence', '1.0.0', 'h3',
     'succeeded', NULL, current_date + INTERVAL 1 HOUR, current_date + INTERVAL 65 MINUTE, current_date,
     300000, 5, 5, 2, 2000, 800, 4.00, 1),
    ('r-g2', 't-g2', 'globex', 'research', 'globex-bi', 'business_intelligence', '1.0.0', 'h3',
     'failed', 'model', current_date - INTERVAL 1 DAY, current_date - INTERVAL 1 DAY + INTERVAL 1 MINUTE,
     current_date - 1, 60000, 1, 1, 0, 100, 0, 0.25, 0);

CREATE TABLE marts.fct_sla_daily (
    sla_date DATE, tenant_id VARCHAR, agent_id VARCHAR, model_name VARCHAR, calls BIGINT,
    latency_p50_ms DOUBLE, latency_p95_ms DOUBLE, latency_p99_ms DOUBLE,
    error_rate DOUBLE, fallback_rate DOUBLE, guardrail_rate DOUBLE
);
INSERT INTO marts.fct_sla_daily VALUES
    (current_date, 'acme', 'acme-code-reviewer', 'fast', 10, 120, 300, 400, 0.1, 0.0, 0.2),
    (current_date - 1, 'acme', 'acme-code-reviewer', 'fast', 8, 110, 280, 390, 0.0, 0.0, 0.0),
    (current_date, 'globex', 'globex-bi', 'smart', 5, 200, 500, 600, 0.0, 0.2, 0.0);

CREATE TABLE marts.fct_cost_daily (
    cost_date DATE, tenant_id VARCHAR, department_id VARCHAR, agent_id VARCHAR, model_name VARCHAR,
    provider VARCHAR, is_sandbox BOOLEAN, calls BIGINT, prompt_tokens BIGINT, completion_tokens BIGINT,
    cost_usd DECIMAL(18, 8)
);
INSERT INTO marts.fct_cost_daily VALUES
    (current_date, 'acme', 'engineering', 'acme-code-reviewer', 'fast', 'sandbox', true, 10, 1000, 500, 3.50),
    (current_date, 'acme', 'platform-ops', 'acme-deploy-doctor', 'fast', 'sandbox', true, 2, 200, 100, 0.50),
    (current_date, 'globex', 'research', 'globex-bi', 'smart', 'openai', false, 5, 800, 400, 4.25);

CREATE TABLE marts.fct_budget_status (
    month_start DATE, budget_level VARCHAR, scope_id VARCHAR, tenant_id VARCHAR, department_id VARCHAR,
    agent_id VARCHAR, soft_limit_usd DECIMAL(18, 8), hard_limit_usd DECIMAL(18, 8), spend_mtd_usd DECIMAL(18, 8),
    days_elapsed INTEGER, days_in_month INTEGER, daily_burn_usd DECIMAL(18, 8),
    forecast_month_end_usd DECIMAL(18, 8), projected_soft_cross_date DATE, projected_hard_cross_date DATE,
    status VARCHAR
);
INSERT INTO marts.fct_budget_status VALUES
    (date_trunc('month', current_date), 'platform', 'platform', NULL, NULL, NULL, 4000, 5000, 8.25,
     1, 30, 8.25, 247.50, NULL, NULL, 'ok'),
    (date_trunc('month', current_date), 'tenant', 'acme', 'acme', NULL, NULL, 1200, 1500, 4.00,
     1, 30, 4.00, 1600.00, current_date + 20, current_date + 25, 'forecast_over'),
    (date_trunc('month', current_date), 'tenant', 'globex', 'globex', NULL, NULL, 600, 800, 4.25,
     1, 30, 4.25, 127.50, NULL, NULL, 'ok'),
    (date_trunc('month', current_date), 'department', 'acme/engineering', 'acme', 'engineering', NULL, NULL, 900,
     3.50, 1, 30, 3.50, 105.00, NULL, NULL, 'ok');

CREATE TABLE marts.rpt_chargeback_monthly (
    "BillingAccountId" VARCHAR, "BillingAccountName" VARCHAR, "BillingPeriodStart" TIMESTAMPTZ,
    "BillingPeriodEnd" TIMESTAMPTZ, "ChargePeriodStart" TIMESTAMPTZ, "ChargePeriodEnd" TIMESTAMPTZ,
    "ChargeCategory" VARCHAR, "ChargeDescription" VARCHAR, "BilledCost" DECIMAL(18, 8),
    "EffectiveCost" DECIMAL(18, 8), "ListCost" DECIMAL(18, 8), "ContractedCost" DECIMAL(18, 8),
    "BillingCurrency" VARCHAR, "PricingQuantity" DECIMAL(18, 4), "PricingUnit" VARCHAR,
    "ConsumedQuantity" DECIMAL(18, 4), "ConsumedUnit" VARCHAR, "ProviderName" VARCHAR, "PublisherName" VARCHAR,
    "InvoiceIssuerName" VARCHAR, "ServiceName" VARCHAR, "ServiceCategory" VARCHAR, "ResourceId" VARCHAR,
    "ResourceName" VARCHAR, "ResourceType" VARCHAR, "RegionId" VARCHAR, "SubAccountId" VARCHAR,
    "SubAccountName" VARCHAR, "Tags" VARCHAR, tenant_id VARCHAR, department_id VARCHAR, billing_month DATE
);
INSERT INTO marts.rpt_chargeback_monthly
SELECT 'agentprovision', 'agentprovision', date_trunc('month', current_date),
       date_trunc('month', current_date) + INTERVAL 1 MONTH, date_trunc('month', current_date),
       date_trunc('month', current_date) + INTERVAL 1 MONTH, 'Usage', 'Model calls of ' || agent,
       cost, cost, cost, cost, 'USD', tokens, 'Tokens', tokens, 'Tokens', provider, provider, 'agentprovision',
       'AI agents', 'AI and Machine Learning', agent, agent, 'agent', region, tenant, tenant_name,
       '{"cost_centre": "' || cc || '"}', tenant, dept, date_trunc('month', current_date)
FROM (VALUES
    ('acme-code-reviewer', 3.50, 1500, 'sandbox', 'us', 'acme', 'Acme Manufacturing', 'CC-1100', 'engineering'),
    ('acme-deploy-doctor', 0.50, 300, 'sandbox', 'us', 'acme', 'Acme Manufacturing', 'CC-1200', 'platform-ops'),
    ('globex-bi', 4.25, 1200, 'openai', 'eu', 'globex', 'Globex', 'GX-7', 'research')
) AS lines(agent, cost, tokens, provider, region, tenant, tenant_name, cc, dept);

CREATE TABLE marts.fct_invoice_variance (
    usage_date DATE, tenant_id VARCHAR, provider VARCHAR, model_name VARCHAR, invoice_cost_usd DECIMAL(18, 8),
    gateway_cost_usd DECIMAL(18, 8), variance_usd DECIMAL(18, 8), variance_pct DOUBLE, within_tolerance BOOLEAN
);
INSERT INTO marts.fct_invoice_variance VALUES
    (current_date - 1, 'acme', 'sandbox', 'fast', 4.10, 4.00, 0.10, 2.5, true),
    (current_date - 1, 'globex', 'openai', 'smart', 5.00, 4.25, 0.75, 17.6, false),
    (current_date - 1, NULL, 'openai', 'smart', 9.00, 8.25, 0.75, 9.1, false);

CREATE TABLE marts.fct_cost_per_outcome (
    tenant_id VARCHAR, agent_id VARCHAR, outcome VARCHAR, runs BIGINT, outcomes BIGINT,
    cost_usd DECIMAL(18, 8), cost_per_outcome_usd DECIMAL(18, 8)
);
INSERT INTO marts.fct_cost_per_outcome VALUES
    ('acme', 'acme-code-reviewer', 'ticket_opened', 2, 3, 3.50, 1.16666667),
    ('globex', 'globex-bi', 'report_delivered', 1, 1, 4.00, 4.00);

CREATE TABLE marts.fct_policy_decisions (
    event_id VARCHAR, tenant_id VARCHAR, agent_id VARCHAR, run_id VARCHAR, occurred_at TIMESTAMPTZ,
    decision_date DATE, decision VARCHAR, action VARCHAR, reason VARCHAR, kinds VARCHAR
);
INSERT INTO marts.fct_policy_decisions VALUES
    ('p1', 'acme', 'acme-code-reviewer', 'r-a1', current_date + INTERVAL 1 HOUR, current_date,
     'guardrail', 'block', 'prompt holds a credit card number', 'credit_card'),
    ('p2', 'acme', 'acme-code-reviewer', 'r-a2', current_date + INTERVAL 2 HOUR, current_date,
     'routed', 'route', 'tier advanced', NULL),
    ('p3', 'globex', 'globex-bi', 'r-g1', current_date + INTERVAL 1 HOUR, current_date,
     'guardrail', 'mask', 'email address masked', 'email');

CREATE TABLE marts.fct_llm_calls (
    event_id VARCHAR, call_id VARCHAR, tenant_id VARCHAR, agent_id VARCHAR, run_id VARCHAR,
    occurred_at TIMESTAMPTZ, call_date DATE, model_name VARCHAR, provider VARCHAR, status VARCHAR,
    cost_usd DECIMAL(18, 8), latency_ms BIGINT, guardrail_action VARCHAR
);
INSERT INTO marts.fct_llm_calls VALUES
    ('c1', 'c1', 'acme', 'acme-code-reviewer', 'r-a1', current_date + INTERVAL 1 HOUR, current_date,
     'fast', 'sandbox', 'ok', 1.0, 120, 'block'),
    ('c2', 'c2', 'acme', 'acme-code-reviewer', 'r-a2', current_date + INTERVAL 2 HOUR, current_date,
     'fast', 'sandbox', 'ok', 1.0, 130, NULL),
    ('c3', 'c3', 'globex', 'globex-bi', 'r-g1', current_date - INTERVAL 400 DAY, current_date - 400,
     'smart', 'openai', 'ok', 1.0, 200, 'mask');

CREATE TABLE marts.fct_tool_calls (
    event_id VARCHAR, tenant_id VARCHAR, agent_id VARCHAR, run_id VARCHAR, task_id VARCHAR,
    occurred_at TIMESTAMPTZ, tool_name VARCHAR, status VARCHAR, error_class VARCHAR, latency_ms BIGINT,
    outcome VARCHAR
);

CREATE TABLE marts.dim_agent_versions (
    agent_id VARCHAR, tenant_id VARCHAR, version VARCHAR, valid_from TIMESTAMPTZ, valid_to TIMESTAMPTZ,
    is_current BOOLEAN
);
INSERT INTO marts.dim_agent_versions VALUES
    ('acme-code-reviewer', 'acme', '1.1.0', '2025-01-01 10:00+00', '2025-01-05 10:00+00', false),
    ('acme-code-reviewer', 'acme', '1.2.0', '2025-01-05 10:00+00', NULL, true),
    ('globex-bi', 'globex', '1.0.0', '2025-01-01 10:00+00', NULL, true);
"""


def write_warehouse(path: Path, *, with_contract_marts: bool = True) -> Path:
    """Create the hand-made published warehouse at `path` (what `agentprovision.warehouse.publish` leaves)."""
    import duckdb

    with duckdb.connect(str(path)) as con:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(MARTS_SQL)
        if with_contract_marts:
            con.execute(CONTRACT_MARTS_SQL)
    return path


def build_ops_store(path: Path) -> str:
    """An ops store at `path` with the example config applied; returns its URL."""
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    migrate(engine)
    loaded = load_config_dir(EXAMPLE_CONFIG)
    assert loaded.ok, loaded.issues
    with transaction(session_factory(engine)) as session:
        apply_config(session, loaded.config, actor="ops@agentprovision.example", source=str(EXAMPLE_CONFIG))
    engine.dispose()
    return url


def copy_ops_store(template: Path, target: Path) -> str:
    """A private copy of a built ops store (building one costs seconds; copying, milliseconds)."""
    shutil.copyfile(template, target)
    return f"sqlite:///{target}"


# --- a warehouse built by the real pipeline from fixed synthetic events ----------------------------------
# The screenshot test and the end-to-end AppTest read this: example config -> ops store -> events ->
# load_raw -> dbt build -> publish, exactly the pieces a pass of the platform runs.

SYNTHETIC_DAYS = 21  # today and the 20 days before it
SYNTHETIC_SEED = 8
PAID_PROVIDERS = {"fast": "openai", "balanced": "anthropic", "deep": "openai"}
# USD per 1,000 prompt / completion tokens, by model; a tenant's multiplier stands for heavier prompts.
PRICES = {"fast": (Decimal("0.15"), Decimal("0.60")), "balanced": (Decimal("0.30"), Decimal("1.50")),
          "deep": (Decimal("1.25"), Decimal("5.00"))}  # fmt: skip
TENANT_WEIGHT = {"acme": 1, "globex": 1, "initech": 3}


def synthetic_events(engine: Any, now: datetime) -> list[PlatformEvent]:
    """A fixed, seeded set of agent runs with their model calls, tool calls and policy decisions.

    Every active agent of the example config runs a few times a day over SYNTHETIC_DAYS days, with
    the same seed giving the same events (dates move with `now`, so "today" always has rows).
    """
    rng = random.Random(SYNTHETIC_SEED)
    with transaction(session_factory(engine)) as session:
        agents = [
            (a.agent_id, a.tenant_id, a.department_id, a.agent_type, a.version)
            for a in session.scalars(select(m.Agent).where(m.Agent.status == "active").order_by(m.Agent.agent_id))
        ]
        # The example config's deployments are all sandbox; the synthetic fleet is billed as a production
        # one would be, by paid providers, so invoices, chargeback and budgets have real money to show.
        deployments = [
            (d.deployment_id, d.model_name, PAID_PROVIDERS.get(d.model_name, "openai"), (d.regions or ["us"])[0])
            for d in session.scalars(select(m.ModelDeployment).order_by(m.ModelDeployment.deployment_id))
        ]
    events: list[PlatformEvent] = []
    for day in range(SYNTHETIC_DAYS - 1, -1, -1):
        for agent_id, tenant_id, department_id, agent_type, version in agents:
            for _ in range(rng.randint(1, 4)):
                start = now - timedelta(days=day, minutes=rng.randint(5, 600 if day else 180))
                events += _synthetic_run(
                    rng, start, tenant_id, agent_id, department_id, agent_type, version, deployments
                )
    return events


def _synthetic_run(
    rng: random.Random,
    start: datetime,
    tenant_id: str,
    agent_id: str,
    department_id: str,
    agent_type: str,
    version: str,
    deployments: list[tuple[str, str, str, str]],
) -> list[PlatformEvent]:
    run_id, task_id = str(uuid.UUID(int=rng.getrandbits(128))), str(uuid.UUID(int=rng.getrandbits(128)))
    base = {"task_id": task_id, "department_id": department_id, "agent_type": agent_type,
            "agent_version": version, "config_hash": "synthetic"}  # fmt: skip

    def event(kind: str, name: str, at: datetime, payload: dict[str, Any]) -> PlatformEvent:
        return PlatformEvent(
            event_id=str(uuid.UUID(int=rng.getrandbits(128))),
            tenant_id=tenant_id,
            kind=kind,
            name=name,
            occurred_at=at,
            agent_id=agent_id,
            run_id=run_id,
            payload=payload,
        )

    out = [event("run", "run_started", start, {**base, "source": "schedule"})]
    at = start
    calls = rng.randint(1, 4)
    failed = rng.random() < 0.12
    cost = Decimal(0)
    prompt_total = completion_total = 0
    for attempt in range(calls):
        deployment_id, model_name, provider, region = rng.choice(deployments)
        latency = int(rng.lognormvariate(6.2, 0.5))
        at += timedelta(milliseconds=latency + rng.randint(50, 2000))
        prompt, completion = rng.randint(300, 4000), rng.randint(50, 1200)
        prompt_price, completion_price = PRICES.get(model_name, PRICES["fast"])
        weight = TENANT_WEIGHT.get(tenant_id, 1)
        call_cost = (
            (Decimal(prompt) * prompt_price + Decimal(completion) * completion_price) * weight / 1000
        ).quantize(Decimal("0.00000001"))
        guard = rng.choices(["clean", "masked", "blocked"], weights=[90, 8, 2])[0]
        status = "error" if failed and attempt == calls - 1 else "ok"
        cost += call_cost if status == "ok" else 0
        prompt_total, completion_total = prompt_total + prompt, completion_total + completion
        call_id = str(uuid.UUID(int=rng.getrandbits(128)))
        out.append(
            event(
                "usage",
                "model_call",
                at,
                {
                    "call_id": call_id,
                    "trace_id": run_id,
                    "department_id": department_id,
                    "attempt": 1,
                    "model_requested": model_name,
                    "deployment_id": deployment_id,
                    "model_name": model_name,
                    "provider": provider,
                    "region": region,
                    "sandbox": False,
                    "prompt_tokens": prompt,
                    "completion_tokens": completion if status == "ok" else 0,
                    "cached_tokens": 0,
                    "reasoning_tokens": 0,
                    "cost_usd": str(call_cost if status == "ok" else Decimal(0)),
                    "latency_ms": latency,
                    "status": status,
                    "error_class": "RateLimitError" if status == "error" else None,
                    "fallback_depth": 1 if rng.random() < 0.05 else 0,
                    "guardrails": {"prompt": {"action": guard}, "output": {"action": "clean"}},
                },
            )
        )
        if guard != "clean":
            out.append(
                event(
                    "policy",
                    "guardrail",
                    at,
                    {
                        "call_id": call_id,
                        "department_id": department_id,
                        "where": "prompt",
                        "action": guard,
                        "found": {"email": 1},
                        "reason": "found email; tenant policy pii=mask",
                    },  # fmt: skip
                )
            )
    tools = rng.randint(0, 3)
    outcomes: dict[str, int] = {}
    for step in range(tools):
        tool, outcome = rng.choice(
            [
                ("kb_search", None),
                ("warehouse_query", None),
                ("open_ticket", "ticket_opened"),
                ("post_message", "message_posted"),
            ]  # fmt: skip
        )
        at += timedelta(milliseconds=rng.randint(20, 900))
        if outcome:
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        out.append(
            event(
                "tool",
                "tool_call",
                at,
                {
                    "task_id": task_id,
                    "step": step + 1,
                    "tool": tool,
                    "status": "ok",
                    "error_class": None,
                    "latency_ms": rng.randint(20, 900),
                    "outcome": outcome,
                    "department_id": department_id,
                },  # fmt: skip
            )
        )
    at += timedelta(milliseconds=rng.randint(100, 3000))
    out.append(
        event(
            "run",
            "run_finished",
            at,
            {
                **base,
                "status": "failed" if failed else "succeeded",
                "error_class": "model" if failed else None,
                "steps": calls + tools,
                "llm_calls": calls,
                "tool_calls": tools,
                "prompt_tokens": prompt_total,
                "completion_tokens": completion_total,
                "cost_usd": str(cost),
                "duration_ms": int((at - start).total_seconds() * 1000),
                "started_at": start.isoformat(),
                "outcomes": outcomes,
            },
        )
    )
    return out


def build_pipeline_warehouse(workdir: Path) -> tuple[Path, str]:
    """Ops store + synthetic events -> raw -> dbt build -> published copy; returns (published path, ops URL).

    dbt's failures are not fatal here: a mart still being written by its owner is simply absent, and the
    dashboards show its empty state. The dbt result is written to workdir/dbt_result.txt for the record.
    """
    from dbt.cli.main import dbtRunner

    ops_url = build_ops_store(workdir / "ops.db")
    engine = make_engine(ops_url)
    now = datetime.now(UTC)
    write_events(engine, synthetic_events(engine, now))
    park_approval(engine, "acme", "acme-deploy-doctor", "open_ticket", {"title": "Restart the payments service"})
    duckdb_path = workdir / "warehouse.duckdb"
    load_raw(engine, duckdb_path)
    engine.dispose()
    _add_invoice_lines(duckdb_path, now)
    # dbt's profile finds the DuckDB file through the same variable the code uses; set only for this call.
    previous = {
        name: os.environ.get(name) for name in ("AGENTPROVISION_DUCKDB_PATH", "AGENTPROVISION_WAREHOUSE_TARGET")
    }
    os.environ["AGENTPROVISION_DUCKDB_PATH"] = str(duckdb_path)
    os.environ.pop("AGENTPROVISION_WAREHOUSE_TARGET", None)
    try:
        result = dbtRunner().invoke(
            [
                "build",
                "--project-dir",
                str(DBT_PROJECT_DIR),
                "--profiles-dir",
                str(DBT_PROJECT_DIR),
                "--target",
                "duckdb",
                "--target-path",
                str(workdir / "dbt_target"),
                "--log-path",
                str(workdir / "dbt_logs"),
                "--log-level",
                "warn",
                "--vars",
                json.dumps({"as_of_date": now.date().isoformat()}),
            ]  # fmt: skip
        )
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    summary = [f"success={result.success} exception={result.exception}"]
    for node in getattr(result.result, "results", None) or result.result or []:
        if str(node.status) not in ("success", "pass"):
            summary.append(f"{node.node.unique_id}: {node.status} {node.message}")
    (workdir / "dbt_result.txt").write_text("\n".join(summary) + "\n")
    published = publish(duckdb_path, workdir / "warehouse_published.duckdb")
    return published, ops_url


def _add_invoice_lines(duckdb_path: Path, now: datetime) -> None:
    """What the invoice importer leaves in raw: the providers' own figures for the last week of usage."""
    import duckdb

    with duckdb.connect(str(duckdb_path)) as con:
        columns = {row[0] for row in con.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'raw' AND table_name = 'provider_invoice_lines'"
        ).fetchall()}  # fmt: skip
        if not columns:
            return
        con.execute(
            """
            INSERT INTO raw.provider_invoice_lines BY NAME
            SELECT usage_date, provider, model_name, tenant_id, cost_usd * factor AS cost_usd,
                   NULL::BIGINT AS input_tokens, NULL::BIGINT AS output_tokens,
                   'INV-' || strftime(usage_date, '%Y%m%d') AS invoice_id, $now AS imported_at
            FROM (
                SELECT CAST(occurred_at AS DATE) AS usage_date, tenant_id,
                       json_extract_string(payload, '$.provider') AS provider,
                       json_extract_string(payload, '$.model_name') AS model_name,
                       sum(CAST(json_extract_string(payload, '$.cost_usd') AS DECIMAL(18, 8))) AS cost_usd,
                       -- one provider overbills globex by 7 %: the reconciliation has something to find
                       CASE WHEN tenant_id = 'globex' THEN 1.07 ELSE 1.0 END AS factor
                FROM raw.events
                WHERE kind = 'usage' AND occurred_at >= $since
                GROUP BY ALL
            )
            """,
            {"now": now, "since": now - timedelta(days=7)},
        )


def park_approval(engine: Any, tenant_id: str, agent_id: str, tool: str, arguments: dict[str, Any]) -> str:
    """A run parked for approval as the runtime leaves it: task, run state and a pending request."""
    now = datetime.now(UTC)
    run_id, task_id, approval_id = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    with transaction(session_factory(engine)) as session:
        agent = session.get(m.Agent, agent_id)
        session.add(
            m.Task(
                task_id=task_id,
                tenant_id=tenant_id,
                agent_id=agent_id,
                source="cli",
                idempotency_key=f"test:{task_id}",
                status="needs_approval",
                input={"instructions": f"use {tool}"},
                run_id=run_id,
            )
        )
        session.flush()
        session.add(
            AgentRunState(
                run_id=run_id,
                tenant_id=tenant_id,
                task_id=task_id,
                agent_id=agent_id,
                agent_type=agent.agent_type,
                agent_version=agent.version,
                config_hash="test",
                department_id=agent.department_id,
                source="cli",
                status="needs_approval",
                outcomes={},
                started_at=now,
            )
        )
        session.add(
            AgentApproval(
                approval_id=approval_id,
                tenant_id=tenant_id,
                run_id=run_id,
                task_id=task_id,
                agent_id=agent_id,
                tool=tool,
                tool_call_id="call-1",
                arguments=arguments,
                status="pending",
                requested_at=now,
            )
        )
    return approval_id
