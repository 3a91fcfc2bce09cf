"""Alerts from the marts: a real published DuckDB warehouse, a real ops store, a real webhook receiver.

The warehouse is hand-made (the three marts the rules read, with the contract's columns) and
published with the pipeline's own `publish`; the dbt tests cover how the marts are computed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import Engine, select
from werkzeug import Request, Response

from agentprovision.alerting import AlertingSettings, configured_thresholds, evaluate_mart_alerts
from agentprovision.apply import apply_config
from agentprovision.config import load_config_dir
from agentprovision.config.schema import AlertChannel
from agentprovision.events import PlatformEvent, write_events
from agentprovision.marts import MartReader
from agentprovision.settings import load_settings
from agentprovision.store import models as m
from agentprovision.store.db import session_factory, transaction
from agentprovision.warehouse import publish
from connectors.alerts import route_alerts
from connectors.credentials import MappingVault, SecretResolver
from connectors.webhooks import WebhookPolicy
from orchestration.resources import OpsStoreResource
from orchestration.sensors import marts_alerting_sensor

NOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
PLATFORM_SIGNING = "whsec-platform-0123456789"
ACME_SIGNING = "whsec-acme-9876543210"
FAST = WebhookPolicy(max_attempts=2, backoff_base=0.01, backoff_max=0.05, timeout=5)
MART_ALERTS = ["budget_forecast_over", "budget_status_exceeded", "error_rate_high", "policy_violation"]

MARTS_DDL = """
CREATE SCHEMA marts;
CREATE TABLE marts.fct_budget_status (
    month_start DATE, budget_level VARCHAR, scope_id VARCHAR, tenant_id VARCHAR, department_id VARCHAR,
    agent_id VARCHAR, soft_limit_usd DECIMAL(18, 8), hard_limit_usd DECIMAL(18, 8), spend_mtd_usd DECIMAL(18, 8),
    days_elapsed INTEGER, days_in_month INTEGER, daily_burn_usd DECIMAL(18, 8),
    forecast_month_end_usd DECIMAL(18, 8), projected_soft_cross_date DATE, projected_hard_cross_date DATE,
    status VARCHAR, as_of_date DATE);
CREATE TABLE marts.fct_sla_daily (
    sla_date DATE, tenant_id VARCHAR, agent_id VARCHAR, model_name VARCHAR, calls BIGINT,
    latency_p50_ms DOUBLE, latency_p95_ms DOUBLE, latency_p99_ms DOUBLE,
    error_rate DOUBLE, fallback_rate DOUBLE, guardrail_rate DOUBLE);
CREATE TABLE marts.fct_policy_decisions (
    event_id VARCHAR, tenant_id VARCHAR, department_id VARCHAR, agent_id VARCHAR, run_id VARCHAR, call_id VARCHAR,
    occurred_at TIMESTAMPTZ, decision_date DATE, decision VARCHAR, action VARCHAR, is_denial BOOLEAN,
    reason VARCHAR, scanned_side VARCHAR, kinds VARCHAR);
"""


def build_warehouse(path: Path, today: date) -> None:
    """Rows around `today`: some over their thresholds, some just under, some outside the period."""
    month = today.replace(day=1)
    last_month = (month - timedelta(days=1)).replace(day=1)
    yesterday, old = today - timedelta(days=1), today - timedelta(days=3)
    budgets = [
        # level, scope, tenant, department, agent, soft, hard, spend, forecast, status, month
        ("platform", "platform", None, None, None, 4000, 5000, 1200, 3100, "ok", month),
        ("tenant", "acme", "acme", None, None, 800, 1000, 450.5, 1090.25, "forecast_over", month),
        ("department", "acme/engineering", "acme", "engineering", None, 100, 200, 210, 480, "hard_exceeded", month),
        ("tenant", "globex", "globex", None, None, 800, 1000, 100, 240, "ok", month),
        ("agent", "globex-analyst", "globex", None, "globex-analyst", 50, 80, 55, 120, "soft_exceeded", month),
        ("tenant", "initech", "initech", None, None, 100, 200, 250, 250, "hard_exceeded", last_month),
    ]
    sla = [
        # date, tenant, agent, model, calls, error_rate
        (today, "acme", "acme-qa-triage", "gpt-small", 40, 0.25),
        (yesterday, "acme", "acme-code-reviewer", "gpt-large", 10, 0.5),  # too few calls
        (today, "globex", "globex-analyst", "gpt-small", 100, 0.01),  # under the rate
        (yesterday, "globex", "globex-analyst", "gpt-large", 30, 0.1),
        (old, "initech", "initech-docs-writer", "gpt-small", 100, 0.9),  # before yesterday
    ]
    decisions = (
        [("acme", today, "guardrail", "blocked")] * 12
        + [("acme", today, "refused", "refused")] * 2
        + [("acme", today, "guardrail", "masked")] * 20  # masking is not a denial
        + [("globex", yesterday, "guardrail", "blocked")] * 9  # one under the threshold
        + [("initech", yesterday, "model_blocked", "refused")] * 10  # exactly the threshold
        + [("initech", old, "guardrail", "blocked")] * 30  # before yesterday
    )
    with duckdb.connect(str(path)) as con:
        con.execute(MARTS_DDL)
        con.executemany(
            "INSERT INTO marts.fct_budget_status VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 24, 30, ?, ?, NULL, NULL, ?, ?)",
            [
                (mo, lvl, scope, tenant, dept, agent, soft, hard, spend, spend / 24, forecast, status, today)
                for lvl, scope, tenant, dept, agent, soft, hard, spend, forecast, status, mo in budgets
            ],
        )
        con.executemany(
            "INSERT INTO marts.fct_sla_daily VALUES (?, ?, ?, ?, ?, 100, 400, 900, ?, 0.05, 0.02)",
            sla,
        )
        con.executemany(
            "INSERT INTO marts.fct_policy_decisions VALUES "
            "(?, ?, NULL, NULL, NULL, NULL, ?, ?, ?, ?, ? IN ('blocked', 'refused'), 'test', 'prompt', NULL)",
            [
                (f"e{i}", tenant, datetime.combine(day, datetime.min.time(), UTC), day, decision, action, action)
                for i, (tenant, day, decision, action) in enumerate(decisions)
            ],
        )


@pytest.fixture
def settings_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "AGENTPROVISION_STATE_DIR": str(tmp_path / "state"),
        "AGENTPROVISION_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb"),
        "AGENTPROVISION_WAREHOUSE_TARGET": "duckdb",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def published_reader(env: dict[str, str], today: date) -> MartReader:
    settings = load_settings(env)
    build_warehouse(settings.duckdb_path, today)
    publish(settings.duckdb_path, settings.published_duckdb_path)
    return MartReader(settings)


def by_rule(events: list[PlatformEvent]) -> dict[tuple[str, str | None, str], PlatformEvent]:
    """Events keyed by (alert name, tenant, scope or agent/model): easy to assert on as a whole."""
    keyed = {}
    for event in events:
        scope = event.payload["scope"]
        what = scope.get("scope_id") or (f"{scope['agent_id']}/{scope['model_name']}" if "model_name" in scope else "")
        keyed[(event.name, event.tenant_id, what)] = event
    return keyed


def test_each_rule_fires_once_for_the_right_scope_with_its_figures(store: Engine, settings_env: dict) -> None:
    reader = published_reader(settings_env, NOW.date())
    events = evaluate_mart_alerts(reader, store, NOW, AlertingSettings())
    alerts = by_rule(events)
    assert sorted(alerts) == [
        ("budget_forecast_over", "acme", "acme"),
        ("budget_status_exceeded", "acme", "acme/engineering"),
        ("budget_status_exceeded", "globex", "globex-analyst"),
        ("error_rate_high", "acme", "acme-qa-triage/gpt-small"),
        ("error_rate_high", "globex", "globex-analyst/gpt-large"),
        ("policy_violation", "acme", ""),
        ("policy_violation", "initech", ""),
    ]
    assert all(e.kind == "alert" and e.occurred_at == NOW for e in events)

    forecast = alerts[("budget_forecast_over", "acme", "acme")].payload
    assert forecast["period"] == {"month_start": "2026-11-01"} and forecast["status"] == "forecast_over"
    assert forecast["scope"]["level"] == "tenant"
    assert forecast["figures"]["spend_mtd_usd"] == "450.50000000"
    assert forecast["figures"]["forecast_month_end_usd"] == "1090.25000000"
    assert forecast["figures"]["hard_limit_usd"] == "1000.00000000"
    assert forecast["dedupe_key"] == "budget_forecast_over:tenant:acme:forecast_over:2026-11-01"
    engineering = alerts[("budget_status_exceeded", "acme", "acme/engineering")].payload
    assert (engineering["status"], engineering["scope"]["department_id"]) == ("hard_exceeded", "engineering")
    analyst = alerts[("budget_status_exceeded", "globex", "globex-analyst")].payload
    assert (analyst["status"], analyst["scope"]["agent_id"]) == ("soft_exceeded", "globex-analyst")

    triage = alerts[("error_rate_high", "acme", "acme-qa-triage/gpt-small")].payload
    assert triage["period"] == {"date": "2026-11-24"}
    assert triage["figures"] == {
        "calls": 40,
        "error_rate": 0.25,
        "fallback_rate": 0.05,
        "guardrail_rate": 0.02,
        "threshold": 0.05,
    }
    assert alerts[("error_rate_high", "globex", "globex-analyst/gpt-large")].payload["period"] == {"date": "2026-11-23"}

    acme_policy = alerts[("policy_violation", "acme", "")].payload
    assert acme_policy["period"] == {"date": "2026-11-24"}
    assert acme_policy["figures"] == {
        "denials": 14,
        "by_decision": {"guardrail/blocked": 12, "refused/refused": 2},
        "threshold": 10,
    }
    assert alerts[("policy_violation", "initech", "")].payload["figures"]["denials"] == 10
    # Every payload names the tenant of the row it came from, never another's.
    assert all(e.payload["tenant_id"] == e.tenant_id for e in events)


def test_a_second_evaluation_raises_nothing_new_until_the_status_changes(store: Engine, settings_env: dict) -> None:
    reader = published_reader(settings_env, NOW.date())
    first = evaluate_mart_alerts(reader, store, NOW)
    write_events(store, first)
    assert evaluate_mart_alerts(reader, store, NOW + timedelta(minutes=5)) == []

    # acme's tenant budget moves from a forecast to exceeding its soft limit: that is news, once.
    settings = load_settings(settings_env)
    with duckdb.connect(str(settings.duckdb_path)) as con:
        con.execute(
            "UPDATE marts.fct_budget_status SET status = 'soft_exceeded', spend_mtd_usd = 812 WHERE scope_id = 'acme'"
        )
    publish(settings.duckdb_path, settings.published_duckdb_path)
    later = evaluate_mart_alerts(MartReader(settings), store, NOW + timedelta(minutes=10))
    assert [(e.name, e.tenant_id, e.payload["status"]) for e in later] == [
        ("budget_status_exceeded", "acme", "soft_exceeded")
    ]
    assert later[0].payload["figures"]["spend_mtd_usd"] == "812.00000000"
    write_events(store, later)
    assert evaluate_mart_alerts(MartReader(settings), store, NOW + timedelta(minutes=15)) == []

    # The next day is a new period for the daily rules; yesterday's figures were already raised.
    tomorrow = evaluate_mart_alerts(MartReader(settings), store, NOW + timedelta(days=1))
    assert tomorrow == []


def test_nothing_fires_under_the_thresholds(store: Engine, settings_env: dict) -> None:
    reader = published_reader(settings_env, NOW.date())
    strict = AlertingSettings(error_rate=0.3, error_rate_min_calls=50, policy_denials_per_day=15)
    names = {(e.name, e.tenant_id) for e in evaluate_mart_alerts(reader, store, NOW, strict)}
    # Only the budget rules remain: error rates are under 0.3 (or under 50 calls), denials under 15.
    assert names == {
        ("budget_forecast_over", "acme"),
        ("budget_status_exceeded", "acme"),
        ("budget_status_exceeded", "globex"),
    }
    # A month with no rows in the marts (the old month's hard_exceeded is not this month's news).
    next_month = datetime(2026, 12, 10, tzinfo=UTC)
    assert evaluate_mart_alerts(reader, store, next_month) == []


def test_thresholds_come_from_the_applied_config(store: Engine) -> None:
    assert configured_thresholds(store) == AlertingSettings()  # nothing applied yet
    config = load_config_dir("config").config
    platform = config.platform.platform.model_copy(
        update={"alerting": AlertingSettings(error_rate=0.2, policy_denials_per_day=3)}
    )
    config = config.model_copy(update={"platform": config.platform.model_copy(update={"platform": platform})})
    with transaction(session_factory(store)) as session:
        apply_config(session, config, actor="t@example.com", source="config")
    assert configured_thresholds(store) == AlertingSettings(error_rate=0.2, policy_denials_per_day=3)


def test_alerting_block_is_validated_with_a_clear_message() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="error_rate"):
        AlertingSettings(error_rate=1.5)
    # The new alert names are ones a channel may subscribe to; a typo is still refused.
    AlertChannel(id="ops", kind="webhook", target="${HOOK}", events=MART_ALERTS)
    with pytest.raises(ValidationError, match="events"):
        AlertChannel(id="ops", kind="webhook", target="${HOOK}", events=["error_rate_hihg"])


class Receiver:
    """An endpoint that checks the signature with its own secret, as a customer's would."""

    def __init__(self, server: HTTPServer, path: str, secret: str):
        self.secret = secret
        self.received: list[dict] = []
        server.expect_request(path, method="POST").respond_with_handler(self.handle)

    def handle(self, request: Request) -> Response:
        body = request.get_data()
        timestamp = request.headers["X-AgentProvision-Timestamp"]
        signed = timestamp.encode() + b"." + body
        expected = "v1=" + hmac.new(self.secret.encode(), signed, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("X-AgentProvision-Signature", "")):
            return Response("bad signature", status=401)
        if abs(time.time() - int(timestamp)) > 300:
            return Response("stale", status=401)
        self.received.append(json.loads(body))
        return Response("ok")


def test_sensor_raises_alerts_that_reach_subscribed_webhooks_once(
    store_url: str, settings_env: dict, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    today = datetime.now(UTC).date()
    published_reader(settings_env, today)
    platform_hook = Receiver(httpserver, "/hooks/platform", PLATFORM_SIGNING)
    acme_hook = Receiver(httpserver, "/hooks/acme", ACME_SIGNING)
    monkeypatch.setenv("PLATFORM_ALERT_WEBHOOK_URL", httpserver.url_for("/hooks/platform"))
    monkeypatch.setenv("ACME_ALERT_WEBHOOK_URL", httpserver.url_for("/hooks/acme"))

    # The platform's on-call hears every mart alert; acme adds its own webhook for error rates.
    config = load_config_dir("config").config
    oncall = config.platform.alert_channels[0].model_copy(update={"events": MART_ALERTS})
    platform_file = config.platform.model_copy(update={"alert_channels": [oncall]})
    acme_channel = AlertChannel(
        id="acme-oncall",
        kind="webhook",
        target="${ACME_ALERT_WEBHOOK_URL}",
        signing_secret="secret://acme-signing",
        events=["error_rate_high"],
    )
    tenants = [
        t.model_copy(update={"alert_channels": [*t.alert_channels, acme_channel]}) if t.tenant.id == "acme" else t
        for t in config.tenants
    ]
    config = config.model_copy(update={"platform": platform_file, "tenants": tenants})

    resources = {"ops_store": OpsStoreResource(database_url=store_url)}
    engine = resources["ops_store"].engine
    with transaction(session_factory(engine)) as session:
        apply_config(session, config, actor="t@example.com", source="config")

    with dg.instance_for_test() as instance:
        result = marts_alerting_sensor(dg.build_sensor_context(instance=instance, resources=resources))
        assert isinstance(result, dg.SkipReason) and "2 error_rate_high" in result.skip_message
        again = marts_alerting_sensor(dg.build_sensor_context(instance=instance, resources=resources))
        assert again.skip_message == "alerts raised from the marts: none"

    with transaction(session_factory(engine)) as session:
        written = session.scalars(select(m.Event).where(m.Event.kind == "alert")).all()
        written = [(e.name, e.tenant_id) for e in written]
    assert sorted(written) == [
        ("budget_forecast_over", "acme"),
        ("budget_status_exceeded", "acme"),
        ("budget_status_exceeded", "globex"),
        ("error_rate_high", "acme"),
        ("error_rate_high", "globex"),
        ("policy_violation", "acme"),
        ("policy_violation", "initech"),
    ]

    vault = MappingVault(
        {("platform", "platform-alert-signing"): PLATFORM_SIGNING, ("acme", "acme-signing"): ACME_SIGNING}
    )
    report = route_alerts(engine, 0, resolver=SecretResolver(vault), policy=FAST)
    assert (report.delivered, report.dead) == (8, 0)
    assert sorted((r["event"], r["data"]["tenant_id"]) for r in platform_hook.received) == sorted(written)
    # acme's own webhook gets acme's error-rate alert and nothing of globex's.
    (acme_alert,) = acme_hook.received
    assert (acme_alert["event"], acme_alert["data"]["tenant_id"]) == ("error_rate_high", "acme")
    assert acme_alert["data"]["scope"] == {"agent_id": "acme-qa-triage", "model_name": "gpt-small"}
    assert acme_alert["data"]["figures"]["calls"] == 40

    replayed = route_alerts(engine, 0, resolver=SecretResolver(vault), policy=FAST)
    assert replayed.delivered == 0 and len(platform_hook.received) == 7 and len(acme_hook.received) == 1


def test_sensor_skips_with_advice_before_any_warehouse_is_published(
    tmp_path: Path, settings_env: dict, store_url: str
) -> None:
    resources = {"ops_store": OpsStoreResource(database_url=store_url)}
    with dg.instance_for_test() as instance:
        result = marts_alerting_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert isinstance(result, dg.SkipReason) and "no published warehouse" in result.skip_message
