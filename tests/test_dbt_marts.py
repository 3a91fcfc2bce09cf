"""The usage, cost, budget, chargeback, SLA and compliance marts, built by dbt on DuckDB from a fixed event set.

The event set is the example config's tenants and agents with synthetic runs (fixed seed) plus a few
hand-written non-sandbox calls that push acme over its budgets. One `dbt build` per session (shared with
test_warehouse_parity); the tests that change data (late events, invoices) work on a copy of the built warehouse.
"""

from __future__ import annotations

import json
import math
import shutil
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import numpy as np
import pytest
from dbt.cli.main import dbtRunner, dbtRunnerResult
from sqlalchemy import Engine

from agentprovision.apply import apply_config
from agentprovision.config import load_config_dir
from agentprovision.events import PlatformEvent, write_events
from agentprovision.store.db import make_engine, migrate, session_factory, transaction
from agentprovision.synthetic import write_to_store
from agentprovision.warehouse import load_raw

REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
EXAMPLE_CONFIG = REPO_ROOT / "config"
AS_OF = "2026-10-20"
CENT = Decimal("0.01")

# The contract other engineers read (/tmp/contracts.md "Warehouse marts"); marts may add columns.
CONTRACT_COLUMNS = {
    "fct_llm_calls": "event_id call_id trace_id tenant_id department_id agent_id run_id occurred_at call_date"
    " model_requested deployment_id model_name provider region is_sandbox attempt prompt_tokens completion_tokens"
    " cached_tokens reasoning_tokens total_tokens cost_usd latency_ms status error_class fallback_depth is_fallback"
    " guardrail_action",
    "fct_agent_runs": "run_id task_id tenant_id department_id agent_id agent_type agent_version config_hash status"
    " error_class started_at finished_at run_date duration_ms steps llm_calls tool_calls prompt_tokens"
    " completion_tokens cost_usd outcomes_count",
    "fct_tool_calls": "event_id tenant_id agent_id run_id task_id occurred_at tool_name status error_class latency_ms"
    " outcome",
    "fct_cost_daily": "cost_date tenant_id department_id agent_id model_name provider is_sandbox calls prompt_tokens"
    " completion_tokens cost_usd",
    "fct_budget_status": "month_start budget_level scope_id tenant_id department_id agent_id soft_limit_usd"
    " hard_limit_usd spend_mtd_usd days_elapsed days_in_month daily_burn_usd forecast_month_end_usd"
    " projected_soft_cross_date projected_hard_cross_date status",
    "rpt_chargeback_monthly": "BillingAccountId BillingAccountName BillingPeriodStart BillingPeriodEnd"
    " ChargePeriodStart ChargePeriodEnd ChargeCategory ChargeDescription BilledCost EffectiveCost ListCost"
    " ContractedCost BillingCurrency PricingQuantity PricingUnit ConsumedQuantity ConsumedUnit ProviderName"
    " PublisherName InvoiceIssuerName ServiceName ServiceCategory ResourceId ResourceName ResourceType RegionId"
    " SubAccountId SubAccountName Tags tenant_id department_id billing_month",
    "fct_sla_daily": "sla_date tenant_id agent_id model_name calls latency_p50_ms latency_p95_ms latency_p99_ms"
    " error_rate fallback_rate guardrail_rate",
    "fct_policy_decisions": "event_id tenant_id agent_id run_id occurred_at decision_date decision action reason kinds",
    "dim_agent_versions": "agent_id tenant_id version valid_from valid_to is_current",
    "fct_invoice_variance": "usage_date tenant_id provider model_name invoice_cost_usd gateway_cost_usd variance_usd"
    " variance_pct within_tolerance",
    "fct_cost_per_outcome": "tenant_id agent_id outcome runs outcomes cost_usd cost_per_outcome_usd",
}


# --- shared with tests/test_warehouse_parity.py ---------------------------------------------------------


def seed_fixed_events(engine: Engine) -> None:
    """The example config applied, then a fixed, reproducible event set written through the event writer."""
    loaded = load_config_dir(EXAMPLE_CONFIG)
    assert loaded.ok, loaded.issues
    with transaction(session_factory(engine)) as session:
        apply_config(session, loaded.config, actor="test", source=str(EXAMPLE_CONFIG))
    write_to_store(engine, loaded.config, days=30, events=1500, seed=7, start=date(2026, 9, 25))
    write_events(
        engine, [openai_call("2026-10-03T10:00:00", "10.00000000"), openai_call("2026-10-05T09:00:00", "1250")]
    )


def openai_call(at: str, cost: str, *, tenant: str = "acme", agent: str = "acme-code-reviewer") -> PlatformEvent:
    """A real-provider (non-sandbox) call in the gateway's usage payload shape."""
    return PlatformEvent(
        tenant_id=tenant,
        kind="usage",
        name="model_call",
        occurred_at=datetime.fromisoformat(at).replace(tzinfo=UTC),
        agent_id=agent,
        payload={
            "call_id": f"call-{at}",
            "trace_id": "t",
            "department_id": "engineering",
            "attempt": 1,
            "model_requested": "fast",
            "deployment_id": "openai-fast",
            "model_name": "fast",
            "provider": "openai",
            "region": "us",
            "sandbox": False,
            "prompt_tokens": 1000,
            "completion_tokens": 500,
            "cached_tokens": 0,
            "reasoning_tokens": 0,
            "cost_usd": cost,
            "latency_ms": 321.5,
            "status": "ok",
            "error_class": None,
            "fallback_depth": 0,
            "guardrails": {"prompt": {"action": "clean", "found": {}, "where": "prompt"}},
        },
    )


def run_dbt(args: list[str], work: Path, env: dict[str, str], *, target: str = "duckdb") -> dbtRunnerResult:
    """dbt in-process against a private target/log path; `env` sets the profile's variables for the call."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return dbtRunner().invoke(
            [
                *args,
                "--project-dir",
                str(DBT_PROJECT_DIR),
                "--profiles-dir",
                str(DBT_PROJECT_DIR),
                "--target",
                target,
                "--target-path",
                str(work / "target"),
                "--log-path",
                str(work / "logs"),
                "--log-level",
                "warn",
            ]
        )


def failures(result: dbtRunnerResult) -> list[str]:
    assert result.exception is None, result.exception
    return [
        f"{r.node.unique_id}: {r.status} {r.message}" for r in result.result if str(r.status) not in ("success", "pass")
    ]


def vars_arg(**values: object) -> list[str]:
    return ["--vars", json.dumps({"as_of_date": AS_OF, **values})]


# --- the DuckDB build -------------------------------------------------------------------------------------


@dataclass
class Built:
    path: Path
    work: Path
    result: dbtRunnerResult

    def query(self, sql: str, params: list | None = None) -> list[tuple]:
        # Not read_only: dbt-duckdb keeps its own connection to the file open in this process, and DuckDB
        # refuses a second connection with a different configuration.
        with duckdb.connect(str(self.path)) as con:
            return con.execute(sql, params or []).fetchall()

    def env(self, path: Path | None = None) -> dict[str, str]:
        return {"AGENTPROVISION_DUCKDB_PATH": str(path or self.path), "AGENTPROVISION_WAREHOUSE_TARGET": "duckdb"}


def build_fixed_events(work: Path) -> Built:
    """The fixed event set in an ops store (work/ops.db), loaded into DuckDB and built by dbt.

    Built once per session by the `fixed_events_build` fixture (conftest.py): this module and
    test_warehouse_parity only read it.
    """
    engine = make_engine(f"sqlite:///{work / 'ops.db'}")
    migrate(engine)
    seed_fixed_events(engine)
    path = work / "warehouse.duckdb"
    load_raw(engine, path)
    engine.dispose()
    env = {"AGENTPROVISION_DUCKDB_PATH": str(path), "AGENTPROVISION_WAREHOUSE_TARGET": "duckdb"}
    return Built(path, work, run_dbt(["build", *vars_arg()], work, env))


@pytest.fixture
def built(fixed_events_build: Built) -> Built:
    return fixed_events_build


def copy_of(built: Built, tmp_path: Path) -> Path:
    # Same file name: DuckDB views name their catalog after the file, so a renamed copy breaks the staging views.
    target = tmp_path / "copy" / built.path.name
    target.parent.mkdir()
    with duckdb.connect(str(built.path)) as con:
        con.execute("CHECKPOINT")  # dbt's connection may still hold the build in the WAL
    shutil.copyfile(built.path, target)
    return target


def raw_usage(built: Built) -> list[dict]:
    rows = built.query("select tenant_id, occurred_at, payload from raw.events where kind = 'usage'")
    return [{"tenant_id": t, "occurred_at": at, **json.loads(p)} for t, at, p in rows]


def test_build_passes_every_model_snapshot_and_test(built: Built) -> None:
    assert failures(built.result) == []
    ran = {(str(r.node.resource_type), r.node.name) for r in built.result.result}
    assert {("model", mart) for mart in CONTRACT_COLUMNS} <= ran
    assert ("snapshot", "snap_ops__agents") in ran
    unit_tests = {name for kind, name in ran if kind == "unit_test"}
    assert {
        "test_fct_budget_status_forecasts_burn_and_crossing_dates",
        "test_rpt_chargeback_monthly_rolls_days_into_one_focus_row",
        "test_fct_sla_daily_percentiles_and_rates",
        "test_fct_llm_calls_incremental_picks_up_late_events",
        "test_fct_llm_calls_first_incremental_takes_all",
    } <= unit_tests
    singular = {name for kind, name in ran if kind == "test"}
    assert {"assert_cost_marts_reconcile_to_raw_usage", "assert_invoice_variance_within_tolerance"} <= singular


@pytest.mark.parametrize("mart", sorted(CONTRACT_COLUMNS))
def test_every_mart_has_the_contract_columns(built: Built, mart: str) -> None:
    found = [
        r[0]
        for r in built.query(
            "select column_name from information_schema.columns where table_schema = 'marts' and table_name = ?",
            [mart],
        )
    ]
    missing = [c for c in CONTRACT_COLUMNS[mart].split() if c not in found]
    assert missing == []


def test_every_cost_mart_reconciles_with_raw_usage_to_the_cent(built: Built) -> None:
    expected: dict[str, Decimal] = defaultdict(Decimal)
    for event in raw_usage(built):
        expected[event["tenant_id"]] += Decimal(event["cost_usd"])
    assert expected["acme"] > Decimal(1260)  # the hand-written calls are in
    for mart, cost in [
        ("fct_llm_calls", "cost_usd"),
        ("fct_cost_daily", "cost_usd"),
        ("rpt_chargeback_monthly", '"BilledCost"'),
    ]:
        totals = dict(built.query(f"select tenant_id, sum({cost}) from marts.{mart} group by tenant_id"))
        assert {t: v.quantize(CENT) for t, v in totals.items()} == {t: v.quantize(CENT) for t, v in expected.items()}, (
            mart
        )


def test_sandbox_calls_stay_labelled_into_the_marts(built: Built) -> None:
    real = sum(1 for e in raw_usage(built) if not e["sandbox"])
    assert real == 2
    assert built.query("select count(*) from marts.fct_llm_calls where not is_sandbox") == [(real,)]
    assert built.query("select distinct provider from marts.fct_cost_daily where not is_sandbox") == [("openai",)]
    assert built.query("select distinct provider from marts.fct_cost_daily where is_sandbox") == [("sandbox",)]
    tags = built.query("select distinct \"Tags\" from marts.rpt_chargeback_monthly where provider = 'openai'")
    assert [json.loads(t)["sandbox"] for (t,) in tags] == [False]


def test_budget_status_reports_levels_limits_and_forecasts(built: Built) -> None:
    columns = (
        "budget_level, scope_id, soft_limit_usd, hard_limit_usd, spend_mtd_usd, days_elapsed, days_in_month,"
        " daily_burn_usd, forecast_month_end_usd, projected_soft_cross_date, projected_hard_cross_date, status"
    )
    rows = {
        (r[0], r[1]): r
        for r in built.query(f"select {columns} from marts.fct_budget_status where month_start = '2026-10-01'")
    }
    assert {level for level, _ in rows} == {"platform", "tenant", "department", "agent"}
    platform = rows[("platform", "platform")]
    assert platform[2:4] == (Decimal(4000), Decimal(5000))  # from platform.yaml, via the applied config
    acme = rows[("tenant", "acme")]
    assert acme[2:4] == (Decimal(1200), Decimal(1500)) and acme[-1] == "soft_exceeded"
    assert rows[("agent", "acme-code-reviewer")][-1] == "hard_exceeded"  # 300 hard limit
    assert rows[("department", "acme/engineering")][-1] == "hard_exceeded"  # 900 hard limit

    # Recompute acme's forecast and projected hard-limit date from its spend, as finance would.
    spend, elapsed, days = acme[4], acme[5], acme[6]
    assert (elapsed, days) == (20, 31)
    burn = spend / elapsed
    assert acme[7] == burn.quantize(Decimal("1e-8"))
    assert abs(acme[8] - burn * days) < Decimal("0.0001")
    steps = math.ceil((Decimal(1500) - spend) / burn)
    expected_hard = date(2026, 10, 20) + timedelta(days=steps) if steps <= days - elapsed else None
    assert acme[9] is None and acme[10] == expected_hard

    globex = rows[("tenant", "globex")]
    assert globex[-1] == "ok" and globex[9] is None  # far below its limits at its burn rate
    # Spend after as_of_date is not month-to-date.
    assert built.query("select count(*) from marts.fct_budget_status where as_of_date <> cast(? as date)", [AS_OF]) == [
        (0,)
    ]


def test_chargeback_follows_focus_names_and_types(built: Built) -> None:
    types = dict(
        built.query(
            "select column_name, data_type from information_schema.columns"
            " where table_schema = 'marts' and table_name = 'rpt_chargeback_monthly'"
        )
    )
    for cost in ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost"):
        assert types[cost].startswith("DECIMAL"), cost
    for period in ("BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd"):
        assert types[period] == "TIMESTAMP WITH TIME ZONE", period
    rows = built.query(
        'select "BillingPeriodStart", "BillingPeriodEnd", "ChargeCategory", "BillingCurrency", "SubAccountId",'
        ' "ResourceId", "PublisherName" from marts.rpt_chargeback_monthly'
        " where tenant_id = 'acme' and provider = 'openai'"
    )
    assert len(rows) == 1
    start, end, category, currency, sub_account, resource, publisher = rows[0]
    assert (start.astimezone(UTC), end.astimezone(UTC)) == (
        datetime(2026, 10, 1, tzinfo=UTC),
        datetime(2026, 11, 1, tzinfo=UTC),
    )
    assert (category, currency, sub_account, resource, publisher) == (
        "Usage",
        "USD",
        "acme/engineering",
        "acme-code-reviewer",
        "openai",
    )


def test_sla_percentiles_match_linear_interpolation(built: Built) -> None:
    group = built.query(
        "select sla_date, agent_id, model_name, latency_p50_ms, latency_p95_ms, latency_p99_ms, error_rate, calls"
        " from marts.fct_sla_daily where tenant_id = 'acme' order by calls desc limit 1"
    )[0]
    sla_date, agent, model, p50, p95, p99, error_rate, calls = group
    latencies = built.query(
        "select latency_ms, status from marts.fct_llm_calls where call_date = ? and agent_id = ? and model_name = ?"
        " and status <> 'skipped'",
        [sla_date, agent, model],
    )
    values = np.array([lat for lat, _ in latencies])
    assert calls == len(values) > 3
    for got, q in ((p50, 50), (p95, 95), (p99, 99)):
        assert got == Decimal(str(round(float(np.percentile(values, q)), 2))).quantize(CENT), q
    errors = sum(1 for _, status in latencies if status == "error")
    assert error_rate == Decimal(errors / len(values)).quantize(Decimal("1e-6"))


def test_runs_outcomes_and_cost_per_outcome(built: Built) -> None:
    raw_runs = built.query("select count(distinct run_id) from raw.events where kind = 'run'")[0][0]
    assert built.query("select count(*) from marts.fct_agent_runs") == [(raw_runs,)]
    finished = [json.loads(p) for (p,) in built.query("select payload from raw.events where name = 'run_finished'")]
    produced: dict[str, int] = defaultdict(int)
    for payload in finished:
        for outcome, n in payload["outcomes"].items():
            produced[outcome] += n
    by_outcome = dict(built.query("select outcome, sum(outcomes) from marts.fct_cost_per_outcome group by outcome"))
    assert by_outcome == {k: v for k, v in produced.items() if v}
    for cost, outcomes, per in built.query(
        "select cost_usd, outcomes, cost_per_outcome_usd from marts.fct_cost_per_outcome"
    ):
        assert abs(per - cost / outcomes) < Decimal("1e-8")
    statuses = dict(built.query("select status, count(*) from marts.fct_agent_runs group by status"))
    assert statuses["succeeded"] > statuses.get("failed", 0) > 0


def test_policy_decisions_unpack_guardrail_findings(built: Built) -> None:
    raw = dict(
        built.query(
            "select json_extract_string(payload, '$.action'), count(*) from raw.events where kind = 'policy' group by 1"
        )
    )
    assert dict(built.query("select action, count(*) from marts.fct_policy_decisions group by action")) == raw
    kinds = built.query("select distinct kinds from marts.fct_policy_decisions where action = 'masked'")
    assert {k for (k,) in kinds} <= {"email", "phone"} and kinds
    assert built.query("select count(*) from marts.fct_policy_decisions where action = 'clean' and kinds is not null")[
        0
    ] == (0,)


def test_agent_versions_come_from_the_snapshot(built: Built) -> None:
    rows = built.query("select agent_id, version, is_current, valid_to, version_seq from marts.dim_agent_versions")
    assert len(rows) == 8
    assert all(current and valid_to is None and seq == 1 for _, _, current, valid_to, seq in rows)
    assert ("acme-code-reviewer", "1.2.0", True, None, 1) in rows


def test_late_events_land_in_the_incremental_facts_exactly_once(built: Built, tmp_path: Path) -> None:
    path = copy_of(built, tmp_path)
    before = built.query("select count(*), sum(cost_usd) from marts.fct_llm_calls")[0]
    late = openai_call("2026-09-26T08:00:00", "2.50", tenant="globex", agent="globex-analyst")
    with duckdb.connect(str(path)) as con:
        # A load after the build brings an event that happened weeks before the lookback window.
        con.execute(
            "insert into raw.events select max(seq) + 1, ?, 'globex', 'usage', 'model_call', ?, now(),"
            " 'globex-analyst', null, ?, now() from raw.events",
            [late.event_id, late.occurred_at, json.dumps(late.payload)],
        )
    models = ["--select", "fct_llm_calls", "fct_tool_calls", "fct_agent_runs"]
    for _ in range(2):  # the second run must not duplicate anything
        assert failures(run_dbt(["run", *models, *vars_arg()], tmp_path, built.env(path))) == []
        with duckdb.connect(str(path)) as con:
            count, total = con.execute("select count(*), sum(cost_usd) from marts.fct_llm_calls").fetchone()
            dupes = con.execute(
                "select count(*) from (select event_id from marts.fct_llm_calls group by 1 having count(*) > 1)"
            ).fetchone()[0]
            runs = con.execute("select count(*), count(distinct run_id) from marts.fct_agent_runs").fetchone()
        assert (count, total, dupes) == (before[0] + 1, before[1] + Decimal("2.5"), 0)
        assert runs[0] == runs[1]


def test_invoice_variance_check_fails_only_above_tolerance(built: Built, tmp_path: Path) -> None:
    path = copy_of(built, tmp_path)
    with duckdb.connect(str(path)) as con:
        # acme's openai calls: 10.00 on 3 Oct, 1250.00 on 5 Oct; the provider bills 1% and 4% more.
        con.execute(
            "insert into raw.provider_invoice_lines values"
            " ('2026-10-03', 'openai', 'fast', 'acme', 10.10, 1000, 500, 'inv-1', now()),"
            " ('2026-10-05', 'openai', 'fast', 'acme', 1300.00, 1000, 500, 'inv-1', now())"
        )
    select = ["--select", "stg_invoices__provider_invoice_lines+"]
    strict = run_dbt(["build", *select, *vars_arg()], tmp_path, built.env(path))
    failed = failures(strict)
    assert len(failed) == 1 and "assert_invoice_variance_within_tolerance" in failed[0]
    with duckdb.connect(str(path)) as con:
        rows = con.execute(
            "select usage_date, tenant_id, invoice_cost_usd, gateway_cost_usd, variance_pct, within_tolerance"
            " from marts.fct_invoice_variance order by usage_date"
        ).fetchall()
    assert rows == [
        (date(2026, 10, 3), "acme", Decimal("10.1"), Decimal("10"), Decimal("1.0"), True),
        (date(2026, 10, 5), "acme", Decimal("1300"), Decimal("1250"), Decimal("4.0"), False),
    ]
    lenient = run_dbt(["build", *select, *vars_arg(invoice_tolerance_pct=5)], tmp_path, built.env(path))
    assert failures(lenient) == []


def test_a_reapplied_agent_config_opens_a_new_version(built: Built, tmp_path: Path) -> None:
    path = copy_of(built, tmp_path)
    with duckdb.connect(str(path)) as con:
        applied_at = con.execute("select max(updated_at) from raw.agents").fetchone()[0]
        changed_at = applied_at.astimezone(UTC) + timedelta(hours=1)
        # What the next load brings after an apply that bumped the code reviewer to 1.3.0 in config version 2.
        con.execute(
            "update raw.agents set version = '1.3.0', config_version = 2, updated_at = ?"
            " where agent_id = 'acme-code-reviewer'",
            [changed_at],
        )
    assert failures(run_dbt(["snapshot", *vars_arg()], tmp_path, built.env(path))) == []
    selected = ["--select", "dim_agent_versions", *vars_arg()]
    assert failures(run_dbt(["run", *selected], tmp_path, built.env(path))) == []
    with duckdb.connect(str(path)) as con:
        rows = con.execute(
            "select version, config_version, valid_to, is_current, version_seq from marts.dim_agent_versions"
            " where agent_id = 'acme-code-reviewer' order by version_seq"
        ).fetchall()
        others = con.execute("select count(*) from marts.dim_agent_versions where agent_id <> 'acme-code-reviewer'")
        assert others.fetchone() == (7,)  # untouched agents keep their single version
    assert [(v, c, current, seq) for v, c, _, current, seq in rows] == [("1.2.0", 1, False, 1), ("1.3.0", 2, True, 2)]
    assert rows[0][2].astimezone(UTC) == changed_at and rows[1][2] is None
