"""The Streamlit dashboards, run headless with AppTest, per page and per role.

The warehouse is hand-made (tests/dashboard_fixtures.py) in the `marts` schema the dbt project uses,
at the path `published_duckdb_path` names when AGENTPROVISION_DUCKDB_PATH points into tmp_path. The
ops store is the example config applied to SQLite: the development sign-in offers its users, and the
role and tenant of the chosen user decide what every page shows.
"""

from __future__ import annotations

import io
import os
import shutil
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl
import pytest
import streamlit as st
from sqlalchemy import select, update
from streamlit.testing.v1 import AppTest

from agentprovision import reports
from agentprovision.apply import apply_config
from agentprovision.config import load_config_dir
from agentprovision.settings import load_settings
from agentprovision.store import models as m
from agentprovision.store.agent_models import AgentApproval
from agentprovision.store.db import make_engine, session_factory, transaction
from dashboards import auth, data, ops, ui
from governance.permissions import MATRIX, Action
from tests.dashboard_fixtures import (
    CONTRACT_MARTS_SQL,
    MARTS_SQL,
    build_ops_store,
    copy_ops_store,
    park_approval,
    write_warehouse,
)

APP = Path(__file__).resolve().parent.parent / "dashboards" / "streamlit_app.py"
TIMEOUT = 60  # the first run imports polars, altair and duckdb
# Read-only st.dataframe elements carry no key into AppTest's tree, so tables are found by page order.
AGENTS_TABLE = 0

PLATFORM_ADMIN = "ops@agentprovision.example"
PLATFORM_AUDITOR = "audit@agentprovision.example"
ACME_ADMIN = "dana@acme.example"
ACME_OPERATOR = "omar@acme.example"
ACME_FINANCE = "fiona@acme.example"
ACME_ANALYST = "li@acme.example"
GLOBEX_ADMIN = "greta@globex.example"
GLOBEX_AUDITOR = "hugo@globex.example"


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    st.cache_data.clear()
    yield
    st.cache_data.clear()


@pytest.fixture(scope="module")
def ops_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ops") / "ops.db"
    build_ops_store(path)
    return path


@pytest.fixture
def ops_url(tmp_path: Path, ops_template: Path) -> str:
    return copy_ops_store(ops_template, tmp_path / "ops.db")


@pytest.fixture
def warehouse_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ops_url: str) -> Path:
    """Point the settings at tmp_path; return where the published warehouse is expected (not yet created)."""
    monkeypatch.setenv("AGENTPROVISION_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("AGENTPROVISION_DUCKDB_PATH", str(tmp_path / "warehouse.duckdb"))
    monkeypatch.setenv("AGENTPROVISION_DATABASE_URL", ops_url)
    monkeypatch.delenv("AGENTPROVISION_WAREHOUSE_TARGET", raising=False)
    published = load_settings().published_duckdb_path
    assert published == (tmp_path / "warehouse_published.duckdb").resolve()
    return published


@pytest.fixture
def published(warehouse_env: Path) -> Path:
    return write_warehouse(warehouse_env)


def _app(user: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    if user is not None:
        at.session_state[auth.DEV_USER_KEY] = user
    return at


def _open(page: str | None, user: str | None = None) -> AppTest:
    at = _app(user).run()
    assert not at.exception, at.exception
    if page is not None:
        at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception, at.exception
    return at


def _metrics(at: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in at.metric}


def _frames(at: AppTest) -> list[pl.DataFrame]:
    return [pl.from_pandas(frame.value) for frame in at.dataframe]


def _text(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "info", "warning", "error", "success") for e in at.get(kind)]
    return "\n".join(str(p) for p in parts)


def _select_tenant(at: AppTest, tenant_id: str) -> AppTest:
    at.sidebar.selectbox(key=ui.TENANT_KEY).select(tenant_id).run()
    assert not at.exception
    return at


def _all_values(at: AppTest, column: str) -> set:
    found: set = set()
    for frame in _frames(at):
        if column in frame.columns:
            found |= set(frame[column].drop_nulls().to_list())
    return found


# --- platform admin (the development default) -------------------------------------------------------


def test_overview_counts_everything_then_one_tenant(published: Path) -> None:
    at = _open(None)
    metrics = _metrics(at)
    # removed tenants, departments and users don't count, retired agents don't, platform staff don't
    assert {k: metrics[k] for k in ("Tenants", "Departments", "Agents", "Active agents", "Users")} == {
        "Tenants": "2",
        "Departments": "3",
        "Agents": "4",
        "Active agents": "3",
        "Users": "5",
    }
    assert metrics["Runs today"] == "4"  # r-a1, r-a2, r-a3, r-g1; r-g2 was yesterday
    assert metrics["Success rate today"] == "75.0%"
    assert metrics["Spend month to date"] == "$8.25"
    assert metrics["Budget alerts"] == "1"  # acme's forecast goes over
    tenant_box = at.sidebar.selectbox(key=ui.TENANT_KEY)
    assert tenant_box.options == [
        "All tenants",
        "Acme Manufacturing (acme)",
        "Globex (globex)",
        "Oldco (oldco) · removed",
    ]
    assert len(at.get("vega_lite_chart")) == 2  # runs by day, agents by type

    _select_tenant(at, "acme")
    metrics = _metrics(at)
    assert metrics["Tenants"] == "1" and metrics["Agents"] == "3" and metrics["Users"] == "3"
    assert metrics["Runs today"] == "3" and metrics["Spend month to date"] == "$4.00"
    assert _all_values(at, "tenant_id") == {"acme"}


def test_agents_table_follows_the_sidebar_tenant(published: Path) -> None:
    at = _open("agents")
    fleet = at.dataframe[AGENTS_TABLE].value
    assert sorted(fleet["agent_id"]) == [
        "acme-code-reviewer",
        "acme-deploy-doctor",
        "acme-old-bot",
        "acme-qa-triage",
        "globex-bi",
    ]  # every agent, retired too; and never the raw decoy
    assert {"agent_type", "agent_version", "status", "owner_user_id", "schedule", "last_run_at", "cost_30d_usd"} <= set(
        fleet.columns
    )
    reviewer = fleet.set_index("agent_id").loc["acme-code-reviewer"]
    assert reviewer["runs_30d"] == 2 and float(reviewer["cost_30d_usd"]) == pytest.approx(3.5)

    _select_tenant(at, "globex")
    fleet = at.dataframe[AGENTS_TABLE].value
    assert list(fleet["agent_id"]) == ["globex-bi"]
    assert at.selectbox(key="agents_detail").options == ["BI analyst (globex-bi)"]


def test_agents_filters_detail_versions_and_runs(published: Path) -> None:
    at = _open("agents")
    at.multiselect(key="agents_status_filter").select("paused").run()
    assert list(at.dataframe[AGENTS_TABLE].value["agent_id"]) == ["acme-qa-triage"]

    at.multiselect(key="agents_status_filter").unselect("paused").run()
    at.multiselect(key="agents_type_filter").select("full_stack_development").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="agents_detail").value == "acme-code-reviewer"
    assert {"Type": "full_stack_development", "Version": "1.2.0", "Status": "active"}.items() <= _metrics(at).items()
    text = at.table[0].value.to_string()
    assert "Engineering (engineering)" in text and "12 / 60000 / 600" in text and "$300.00 / $250.00" in text
    frames = _frames(at)
    versions = next(f for f in frames if "valid_from" in f.columns)
    assert versions["version"].to_list() == ["1.2.0", "1.1.0"]
    runs = next(f for f in frames if "outcomes_count" in f.columns)
    assert sorted(runs["run_id"].to_list()) == ["r-a1", "r-a2"]


def test_monitoring_rates_breakdown_and_failed_runs(published: Path) -> None:
    at = _open("monitoring")
    assert not at.exception, at.exception
    metrics = _metrics(at)
    assert metrics["Runs"] == "5" and metrics["Error rate"] == "40.0%"
    assert len(at.get("vega_lite_chart")) == 3  # runs, latency, rates
    assert at.selectbox(key="monitoring_breakdown").options == ["tenant", "agent", "agent type", "department"]
    frames = _frames(at)
    failed = next(f for f in frames if "error_class" in f.columns)
    assert sorted(failed["run_id"].to_list()) == ["r-a3", "r-g2"]
    breakdown = next(f for f in frames if "success_rate" in f.columns)
    assert breakdown.sort("group")["runs"].to_list() == [3, 2]
    sla = next(f for f in frames if "worst_day_p95_ms" in f.columns)
    assert sla.sort("group").select("group", "calls", "worst_day_p95_ms").rows() == [
        ("acme", 18, 300.0),
        ("globex", 5, 500.0),
    ]
    assert sla.sort("group")["error_rate"].to_list() == [pytest.approx(1 / 18), 0.0]

    at.selectbox(key="monitoring_window").select("Last 24 hours").run()
    assert _metrics(at)["Runs"] == "4"  # yesterday's globex failure drops out


def test_costs_spend_budgets_chargeback_and_invoices(published: Path) -> None:
    at = _open("costs")
    assert not at.exception, at.exception
    assert _metrics(at)["Spend"] == "$8.25"
    assert len(at.get("vega_lite_chart")) >= 3  # spend bars, daily spend, burn-down
    frames = _frames(at)
    budgets = next(f for f in frames if "budget_level" in f.columns)
    assert budgets["scope_id"].to_list() == ["platform", "acme", "globex", "acme/engineering"]
    chargeback = next(f for f in frames if "BilledCost" in f.columns)
    assert list(chargeback.columns) == list(reports.FOCUS_COLUMNS)
    assert sorted(chargeback["SubAccountId"].to_list()) == ["acme", "acme", "globex"]
    invoices = next(f for f in frames if "variance_usd" in f.columns)
    assert invoices.height == 3  # the platform-wide invoice line too
    downloads = at.get("download_button")
    assert len(downloads) == 2

    _select_tenant(at, "globex")
    frames = _frames(at)
    assert next(f for f in frames if "budget_level" in f.columns)["scope_id"].to_list() == ["globex"]
    assert next(f for f in frames if "BilledCost" in f.columns)["SubAccountId"].to_list() == ["globex"]
    assert next(f for f in frames if "variance_usd" in f.columns)["tenant_id"].to_list() == ["globex"]
    assert "tenant" not in at.selectbox(key="costs_spend_by").options


def test_chargeback_export_is_focus_csv_and_parquet(published: Path) -> None:
    warehouse = data.current_warehouse()
    assert warehouse is not None
    month = data.chargeback_months(warehouse, "acme")[0]
    lines = data.chargeback(warehouse, "acme", month)
    assert lines["SubAccountId"].unique().to_list() == ["acme"]
    # The download buttons carry the same files the CLI export writes: FOCUS columns and types.
    round_trip = pl.read_parquet(io.BytesIO(reports.focus_parquet_bytes(lines)))
    assert round_trip.columns == list(reports.FOCUS_COLUMNS) and round_trip.height == 2
    assert isinstance(round_trip.schema["BilledCost"], pl.Decimal)
    assert round_trip.schema["ChargePeriodStart"] == pl.Datetime("us", "UTC")
    csv_text = reports.focus_csv_bytes(lines).decode("utf-8")
    assert pl.read_csv(io.StringIO(csv_text)).columns == list(reports.FOCUS_COLUMNS)
    assert "T00:00:00Z" in csv_text


def test_compliance_audit_search_policy_guardrails_and_retention(published: Path) -> None:
    at = _open("compliance")
    audit = at.dataframe[0].value
    assert list(audit["seq"]) == [4, 3, 2, 1]  # newest first

    at.text_input(key="compliance_actor").input("ACME.example").run()
    assert list(at.dataframe[0].value["actor"]) == ["omar@acme.example", "dana@acme.example"]
    at.multiselect(key="compliance_actions").select("approval.approve").run()
    assert list(at.dataframe[0].value["seq"]) == [4]

    at.text_input(key="compliance_actor").input("").run()
    at.multiselect(key="compliance_actions").unselect("approval.approve").run()
    _select_tenant(at, "globex")
    assert list(at.dataframe[0].value["seq"]) == [3]
    frames = _frames(at)
    violations = next(f for f in frames if "reason" in f.columns and "kinds" in f.columns)
    assert violations["tenant_id"].to_list() == ["globex"] and violations["action"].to_list() == ["mask"]
    assert "No model calls in this window." in _text(at)  # globex's one call is older than the window
    retention = next(f for f in frames if "retention_days" in f.columns)
    assert retention["tenant_id"].to_list() == ["globex"]
    # globex's one model call is 400 days old, past its retention
    assert retention["status"].to_list() == ["data older than policy"]


def test_guardrail_statistics_count_masked_and_blocked_calls(published: Path) -> None:
    at = _open("compliance")
    assert _metrics(at)["Calls masked or blocked"] == "1 of 2"  # acme's blocked call; the clean one does not count


def test_config_diff_shows_a_tenant_only_its_own_changes(published: Path, ops_url: str, config_dir: Path) -> None:
    for name, old, new in (
        ("acme", "version: 1.2.0", "version: 1.3.0"),
        ("globex", "version: 3.1.0", "version: 3.2.0"),
    ):
        path = config_dir / "tenants" / f"{name}.yaml"
        path.write_text(path.read_text().replace(old, new, 1))
    loaded = load_config_dir(config_dir)
    assert loaded.ok, loaded.issues
    engine = make_engine(ops_url)
    with transaction(session_factory(engine)) as session:
        apply_config(session, loaded.config, actor=PLATFORM_ADMIN, source=str(config_dir))
    assert ops.config_diff(engine, 1, 2, None) == [
        "~ agent acme-code-reviewer (version)",
        "~ agent globex-analyst (version)",
    ]
    assert ops.config_diff(engine, 1, 2, "acme") == ["~ agent acme-code-reviewer (version)"]
    with pytest.raises(LookupError, match="config version 7"):
        ops.config_diff(engine, 1, 7, "acme")
    engine.dispose()

    at = _open("admin", ACME_ADMIN)  # the hand-made warehouse lists versions 2 and 1
    assert [c.value for c in at.code] == ["~ agent acme-code-reviewer (version)"]
    assert _all_values(at, "tenant_id") <= {"acme"}


def test_compliance_verifies_the_live_audit_chain(published: Path) -> None:
    at = _open("compliance")
    at.button(key="compliance_verify").click().run()
    assert not at.exception, at.exception
    assert [s.value for s in at.success][0].startswith("Audit trail intact:")


def test_search_text_is_a_parameter_not_sql(published: Path) -> None:
    at = _open("compliance")
    at.text_input(key="compliance_actor").input("' OR 1=1 --").run()
    assert not at.exception, at.exception
    assert at.dataframe[0].value.empty


def test_admin_shows_users_integrations_and_config_versions(published: Path) -> None:
    at = _open("admin")
    frames = _frames(at)
    users = next(f for f in frames if "user_name" in f.columns)
    assert "root@platform.example" in users["user_id"].to_list()  # platform staff, platform-wide only
    integrations = next(f for f in frames if "health" in f.columns)
    assert set(integrations["tenant_id"]) == {"acme", "globex", "initech"}
    assert set(integrations["health"]) == {"never synced"}
    versions = next(f for f in frames if "config_version" in f.columns)
    assert versions["config_version"].to_list() == [2, 1]


# --- roles and tenant scoping --------------------------------------------------------------------------


@pytest.mark.parametrize("page", [None, "monitoring", "agents"])
def test_a_tenant_analyst_never_sees_another_tenant(published: Path, page: str | None) -> None:
    at = _open(page, ACME_ANALYST)
    tenant_box = at.sidebar.selectbox(key=ui.TENANT_KEY)
    assert tenant_box.options == ["acme"] and tenant_box.disabled
    assert _all_values(at, "tenant_id") <= {"acme"}
    everything = " ".join(str(v) for frame in _frames(at) for v in frame.to_dicts())
    assert "globex" not in everything and "r-g1" not in everything


EVERY_USER = {
    PLATFORM_ADMIN: None,
    PLATFORM_AUDITOR: None,
    ACME_ADMIN: "acme",
    ACME_OPERATOR: "acme",
    ACME_FINANCE: "acme",
    ACME_ANALYST: "acme",
    GLOBEX_ADMIN: "globex",
    GLOBEX_AUDITOR: "globex",
    "sara@globex.example": "globex",
}


@pytest.mark.parametrize("user", list(EVERY_USER))
def test_every_page_for_every_role_renders_in_scope(published: Path, user: str) -> None:
    """Each page the user's role lists renders without an exception, an error, or another tenant's rows."""
    at = _open(None, user)
    engine = make_engine(os.environ["AGENTPROVISION_DATABASE_URL"])
    who = ops.principal_for(engine, user)
    engine.dispose()
    listed = [file for _, file, _, _, action in streamlit_app_pages() if action in MATRIX[who.role]]
    assert listed[0] == "overview.py" and len(listed) >= 3
    for file in listed:
        at.switch_page(f"app_pages/{file}").run()
        assert not at.exception, (user, file, at.exception)
        assert not at.error, (user, file, [e.value for e in at.error])
        tenant = EVERY_USER[user]
        if tenant is not None:
            assert _all_values(at, "tenant_id") <= {tenant}, (user, file)
            assert _all_values(at, "SubAccountId") <= {tenant}, (user, file)


def streamlit_app_pages() -> tuple:
    """The entry file's page table, read without running the app (it calls Streamlit at import)."""
    import ast

    tree = ast.parse(APP.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "PAGES":
            return tuple(
                (e.elts[0].value, e.elts[1].value, e.elts[2].value, e.elts[3].value, Action[e.elts[4].attr])
                for e in node.value.elts
            )
    raise AssertionError("PAGES not found in streamlit_app.py")


def test_pages_are_listed_by_role(published: Path) -> None:
    # A page the role cannot open is not registered with st.navigation at all.
    for user, hidden in ((ACME_ANALYST, "costs"), (ACME_FINANCE, "compliance"), (ACME_OPERATOR, "admin")):
        at = _app(user).run()
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            at.switch_page(f"app_pages/{hidden}.py")
    for user, shown in ((ACME_FINANCE, "costs"), (GLOBEX_AUDITOR, "compliance"), (ACME_ADMIN, "admin")):
        at = _open(shown, user)
        assert at.title[0].value != "Overview", (user, shown)


def test_analyst_sees_no_money(published: Path) -> None:
    at = _open(None, ACME_ANALYST)
    assert "Spend month to date" not in _metrics(at)
    assert not {"budget_hard_usd", "budget_soft_usd"} & set(at.dataframe[-1].value.columns)
    at.switch_page("app_pages/agents.py").run()
    assert "cost_30d_usd" not in at.dataframe[AGENTS_TABLE].value.columns
    at.switch_page("app_pages/monitoring.py").run()
    assert all("cost_usd" not in frame.columns for frame in _frames(at))


def test_finance_sees_costs_but_no_prompts(published: Path, ops_url: str) -> None:
    _queue_acme_task(ops_url, "summarise the incident for the CFO")
    at = _open("costs", ACME_FINANCE)
    assert _metrics(at)["Spend"] == "$4.00"
    assert _all_values(at, "SubAccountId") == {"acme"}
    at.switch_page("app_pages/agents.py").run()
    assert not at.exception, at.exception
    queue = next(f for f in _frames(at) if "submitted_by" in f.columns)
    assert queue.height == 1 and "instructions" not in queue.columns
    assert "summarise the incident" not in str(_frames(at))
    assert not at.get("text_area")  # finance cannot submit tasks

    at = _open("agents", ACME_ANALYST)  # an analyst may read prompts
    queue = next(f for f in _frames(at) if "submitted_by" in f.columns)
    assert queue["instructions"].to_list() == ["summarise the incident for the CFO"]


def test_only_approvers_see_the_approval_controls(published: Path, ops_url: str) -> None:
    approval_id = _pending_approval(ops_url)
    assert _metrics(_open(None, ACME_OPERATOR))["Open approvals"] == "1"
    assert _metrics(_open(None, GLOBEX_ADMIN))["Open approvals"] == "0"
    operator = _open("agents", ACME_OPERATOR)
    approvals = next(f for f in _frames(operator) if "approval_id" in f.columns)
    assert approvals["approval_id"].to_list() == [approval_id] and "arguments" in approvals.columns
    assert {f"approve_{approval_id}", f"reject_{approval_id}"} <= {b.key for b in operator.button}

    for viewer in (ACME_FINANCE, ACME_ANALYST):
        at = _open("agents", viewer)
        assert not any(b.key.startswith(("approve_", "reject_")) for b in at.button if b.key)
        assert "only approvers" in _text(at)
    finance = _open("agents", ACME_FINANCE)
    assert "arguments" not in next(f for f in _frames(finance) if "approval_id" in f.columns).columns

    operator.text_input(key=f"approval_reason_{approval_id}").input("not during the freeze")
    operator.button(key=f"reject_{approval_id}").click().run()
    assert not operator.exception, operator.exception
    assert [s.value for s in operator.success] == ["Rejected."]
    engine = make_engine(ops_url)
    with transaction(session_factory(engine)) as session:
        decided = session.get(AgentApproval, approval_id)
        assert (decided.status, decided.decided_by, decided.reason) == (
            "rejected",
            ACME_OPERATOR,
            "not during the freeze",
        )
        record = session.scalar(select(m.AuditRecord).where(m.AuditRecord.action == "approval.reject"))
        assert record.actor == ACME_OPERATOR and record.source == "dashboard" and record.target_id == approval_id
    engine.dispose()

    globex = _open("agents", GLOBEX_ADMIN)  # an approver, but of another tenant
    assert not any("approval_id" in f.columns for f in _frames(globex))
    assert not any(b.key.startswith(("approve_", "reject_")) for b in globex.button if b.key)


def test_approval_decisions_are_audited_under_the_runtimes_names_allowed_or_denied(ops_url: str) -> None:
    """Evidence and the compliance page search one pair of action names, whoever decided and however it ended:
    the agent runtime's `approval.approve` / `approval.reject`, also for refusals written by the dashboards."""
    from governance.permissions import PermissionDenied, Principal

    approval_id = _pending_approval(ops_url)
    engine = make_engine(ops_url)
    for user, role, tenant, approve in (
        (ACME_FINANCE, "finance", "acme", True),  # not an approver
        (GLOBEX_ADMIN, "tenant_admin", "globex", False),  # an approver of another tenant
    ):
        with pytest.raises(PermissionDenied):
            ops.decide(engine, Principal(user, role, tenant), "acme", approval_id, approve, "")
    ops.decide(engine, Principal(ACME_OPERATOR, "agent_operator", "acme"), "acme", approval_id, True, "ok")
    with transaction(session_factory(engine)) as session:
        records = session.execute(
            select(m.AuditRecord.actor, m.AuditRecord.action, m.AuditRecord.outcome)
            .where(m.AuditRecord.target_id == approval_id)
            .order_by(m.AuditRecord.seq)
        ).all()
    engine.dispose()
    assert [tuple(r) for r in records] == [
        (ACME_FINANCE, "approval.approve", "denied"),
        (GLOBEX_ADMIN, "approval.reject", "denied"),
        (ACME_OPERATOR, "approval.approve", "success"),
    ]


def test_an_operator_submits_a_task_and_it_is_audited(published: Path, ops_url: str) -> None:
    at = _open("agents", ACME_OPERATOR)
    at.selectbox(key="agents_detail").select("acme-code-reviewer").run()
    at.text_area(key="agents_submit_text").input("review PR 42")  # held by the form until submitted
    at.button(key="agents_submit_button").click().run()
    assert not at.exception, at.exception
    assert any(s.value.startswith("Queued task") for s in at.success)
    engine = make_engine(ops_url)
    with transaction(session_factory(engine)) as session:
        task = session.scalar(select(m.Task).where(m.Task.source == "dashboard"))
        assert task is not None and task.agent_id == "acme-code-reviewer" and task.tenant_id == "acme"
        assert task.input == {"instructions": "review PR 42", "submitted_by": ACME_OPERATOR}
        audit = session.scalar(select(m.AuditRecord).where(m.AuditRecord.action == "task.submit"))
        assert audit.actor == ACME_OPERATOR and audit.source == "dashboard" and audit.target_id == task.task_id
    engine.dispose()


def test_a_task_for_another_tenants_agent_is_refused_and_audited(published: Path, ops_url: str) -> None:
    engine = make_engine(ops_url)
    omar = ops.principal_for(engine, ACME_OPERATOR)
    with pytest.raises(ops.PermissionDenied):
        ops.submit_task(engine, omar, "globex", "globex-analyst", "exfiltrate")
    with pytest.raises(ValueError, match="empty"):
        ops.submit_task(engine, omar, "acme", "acme-code-reviewer", "   ")
    with transaction(session_factory(engine)) as session:
        denied = session.scalar(select(m.AuditRecord).where(m.AuditRecord.outcome == "denied"))
        assert denied.actor == ACME_OPERATOR and denied.action == "task.submit" and denied.tenant_id == "acme"
        assert session.scalar(select(m.Task)) is None
    engine.dispose()


def test_an_auditor_downloads_an_evidence_pack(published: Path, ops_url: str) -> None:
    at = _open("compliance", GLOBEX_AUDITOR)
    assert at.sidebar.selectbox(key=ui.TENANT_KEY).options == ["globex"]
    at.button(key="compliance_evidence_build").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    name, payload = at.session_state["compliance_evidence"][1:]
    assert name.startswith("evidence-globex-")
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        names = archive.namelist()
    assert any(n.endswith("MANIFEST.sha256") for n in names) and any(n.endswith("evidence.json") for n in names)
    engine = make_engine(ops_url)
    with transaction(session_factory(engine)) as session:
        record = session.scalar(select(m.AuditRecord).where(m.AuditRecord.action == "evidence.export"))
        assert record.actor == GLOBEX_AUDITOR and record.tenant_id == "globex" and record.source == "dashboard"
    engine.dispose()


# --- sign-in -------------------------------------------------------------------------------------------


def test_production_refuses_the_development_sign_in(published: Path, ops_url: str) -> None:
    engine = make_engine(ops_url)
    with transaction(session_factory(engine)) as session:
        version = session.scalar(select(m.ConfigVersion).order_by(m.ConfigVersion.version.desc()))
        content = dict(version.content)
        content["platform"] = {**content["platform"], "platform": {**content["platform"]["platform"]}}
        content["platform"]["platform"]["environment"] = "production"
        session.execute(
            update(m.ConfigVersion).where(m.ConfigVersion.version == version.version).values(content=content)
        )
    engine.dispose()
    at = _app(PLATFORM_ADMIN).run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == [auth.PRODUCTION_REFUSAL]
    assert not at.dataframe and not at.metric and not at.sidebar.selectbox


def test_oidc_sign_in_maps_the_identity_to_a_platform_user(published: Path) -> None:
    at = _app()
    at.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x"}
    at.user = {"is_logged_in": False}
    at.run()
    assert not at.exception, at.exception
    assert [b.key for b in at.button] == ["oidc_sign_in"] and not at.dataframe

    at.user = {"is_logged_in": True, "email": ACME_ANALYST}
    at.run()
    assert not at.exception, at.exception
    assert at.sidebar.selectbox(key=ui.TENANT_KEY).options == ["acme"]
    assert not any(box.key == auth.DEV_USER_KEY for box in at.sidebar.selectbox)

    at.user = {"is_logged_in": True, "email": "mallory@evil.example"}
    at.run()
    assert "not an active user" in at.error[0].value and not at.dataframe


# --- reliability ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", [None, "monitoring", "agents", "costs", "compliance", "admin"])
def test_missing_warehouse_shows_how_to_get_data(warehouse_env: Path, page: str | None) -> None:
    assert not warehouse_env.exists()
    at = _open(page)
    assert [info.value for info in at.info] == [ui.NO_DATA_MESSAGE]
    assert "make run" in ui.NO_DATA_MESSAGE and "agentprovision demo --once" in ui.NO_DATA_MESSAGE
    assert not at.metric and not at.dataframe
    assert at.sidebar.selectbox(key=ui.TENANT_KEY).options == ["All tenants"]


@pytest.mark.parametrize("page", [None, "monitoring", "agents", "costs", "compliance"])
def test_marts_not_built_yet_are_empty_states(warehouse_env: Path, page: str | None) -> None:
    write_warehouse(warehouse_env, with_contract_marts=False)
    at = _open(page)
    assert not at.error, [e.value for e in at.error]
    assert any("mart is not in the published warehouse" in info.value for info in at.info)


def test_no_ops_store_yet_is_an_empty_state(warehouse_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTPROVISION_DATABASE_URL", f"sqlite:///{warehouse_env.parent / 'absent' / 'ops.db'}")
    at = _app().run()
    assert not at.exception, at.exception
    assert "no ops store yet" in at.info[0].value


@pytest.mark.parametrize(
    ("dim_tenants_columns", "named"),
    [
        ("tenant_id VARCHAR, display_name VARCHAR, is_active BOOLEAN", "dim_departments"),  # a mart missing
        ("tenant_id VARCHAR, display_name VARCHAR", "is_active"),  # a column missing
    ],
)
def test_a_warehouse_without_the_marts_is_a_warning_not_a_crash(
    warehouse_env: Path, dim_tenants_columns: str, named: str
) -> None:
    with duckdb.connect(str(warehouse_env)) as con:
        con.execute(f"CREATE SCHEMA marts; CREATE TABLE marts.dim_tenants ({dim_tenants_columns})")
    at = _app().run()
    assert not at.exception, at.exception
    assert len(at.warning) == 1
    assert named in at.warning[0].value and "dbt build" in at.warning[0].value


def test_a_failing_query_is_a_short_message_and_logged(
    published: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(data, "runs_by_day", broken)
    at = _open("monitoring")
    assert [e.value for e in at.error] == ["Could not load runs. The error is in the server log."]
    assert "disk on fire" not in _text(at)
    assert any("loading runs failed" in r.getMessage() for r in caplog.records)
    assert at.dataframe  # the rest of the page still rendered


def test_republished_warehouse_is_read_without_waiting_for_the_ttl(published: Path) -> None:
    at = _open(None)
    assert _metrics(at)["Agents"] == "4"
    before = data.current_warehouse()

    # what agentprovision.warehouse.publish does: build a copy beside it, then os.replace
    staging = published.with_suffix(".tmp")
    with duckdb.connect(str(staging)) as con:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(MARTS_SQL)
        con.execute(CONTRACT_MARTS_SQL)
        con.execute("DELETE FROM marts.dim_agents WHERE agent_id = 'globex-bi'")
    os.replace(staging, published)

    assert data.current_warehouse() != before
    at.run()
    assert not at.exception, at.exception
    assert _metrics(at)["Agents"] == "3"


def test_pages_keep_working_while_the_warehouse_is_republished(published: Path) -> None:
    """A pipeline pass replaces the published copy under the readers' feet; no page may notice."""
    fresh = published.with_name("fresh.duckdb")
    shutil.copyfile(published, fresh)
    stop = threading.Event()
    swaps = 0

    def publisher() -> None:
        nonlocal swaps
        while not stop.is_set():
            staging = published.with_suffix(".tmp")
            shutil.copyfile(fresh, staging)  # what agentprovision.warehouse.publish does
            os.replace(staging, published)
            swaps += 1
            time.sleep(0.005)

    thread = threading.Thread(target=publisher, daemon=True)
    thread.start()
    try:
        for page in (None, "monitoring", "costs", "agents", "compliance", "admin"):
            at = _open(page)
            assert not at.warning and not at.error, [m.value for m in (*at.warning, *at.error)]
            assert at.dataframe
    finally:
        stop.set()
        thread.join()
    assert swaps > 10  # the reads really did overlap with replacements


# --- helpers that put live state into the ops store ----------------------------------------------------


def _queue_acme_task(ops_url: str, instructions: str) -> None:
    engine = make_engine(ops_url)
    with transaction(session_factory(engine)) as session:
        session.add(
            m.Task(
                task_id=str(uuid.uuid4()),
                tenant_id="acme",
                agent_id="acme-code-reviewer",
                source="cli",
                idempotency_key=str(uuid.uuid4()),
                status="queued",
                input={"instructions": instructions, "submitted_by": ACME_OPERATOR},
            )
        )
    engine.dispose()


def _pending_approval(ops_url: str) -> str:
    engine = make_engine(ops_url)
    approval_id = park_approval(
        engine, "acme", "acme-deploy-doctor", "open_ticket", {"title": "restart the payments service"}
    )
    engine.dispose()
    return approval_id
