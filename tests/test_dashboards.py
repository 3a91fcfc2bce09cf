"""The Streamlit dashboards, run headless with AppTest over a small hand-made published warehouse.

The marts are created here with plain SQL (no dbt), in the `marts` schema the dbt project uses, in the
file `published_duckdb_path` names when AGENTPROVISION_DUCKDB_PATH points into tmp_path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from agentprovision.settings import load_settings
from dashboards import data, ui

APP = Path(__file__).resolve().parent.parent / "dashboards" / "streamlit_app.py"
TIMEOUT = 60  # the first run imports polars, altair and duckdb
# Read-only st.dataframe elements carry no key into AppTest's tree, so tables are found by page order.
AGENTS_TABLE = 0
AUDIT_TABLE, CONFIG_VERSIONS_TABLE = 0, 1

# The columns the dashboards read, in the shapes dbt_project/models/marts builds (a subset of them).
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
     'hank@globex.example', 'globex', false, 'approval.grant', 'approval', 'a-1'),
    (4, 'r4', '2025-01-04 10:00+00',
     'omar@acme.example', 'acme', false, 'approval.grant', 'approval', 'a-2');

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


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    st.cache_data.clear()
    yield
    st.cache_data.clear()


@pytest.fixture
def warehouse_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the settings at tmp_path; return where the published warehouse is expected (not yet created)."""
    monkeypatch.setenv("AGENTPROVISION_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("AGENTPROVISION_DUCKDB_PATH", str(tmp_path / "warehouse.duckdb"))
    published = load_settings().published_duckdb_path
    assert published == (tmp_path / "warehouse_published.duckdb").resolve()
    return published


@pytest.fixture
def published(warehouse_env: Path) -> Path:
    with duckdb.connect(str(warehouse_env)) as con:
        con.execute(MARTS_SQL)
    return warehouse_env


def _app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=TIMEOUT)


def _metrics(at: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in at.metric}


def _select_tenant(at: AppTest, tenant_id: str) -> AppTest:
    at.sidebar.selectbox(key=ui.TENANT_KEY).select(tenant_id).run()
    assert not at.exception
    return at


def test_overview_counts_everything_then_one_tenant(published: Path) -> None:
    at = _app().run()
    assert not at.exception, at.exception
    # removed tenants, departments and users don't count, retired agents don't, platform staff don't
    assert _metrics(at) == {
        "Tenants": "2",
        "Departments": "3",
        "Agents": "4",
        "Active agents": "3",
        "Users": "5",
    }
    tenant_box = at.sidebar.selectbox(key=ui.TENANT_KEY)
    assert tenant_box.options == [
        "All tenants",
        "Acme Manufacturing (acme)",
        "Globex (globex)",
        "Oldco (oldco) · removed",
    ]
    assert len(at.get("vega_lite_chart")) == 2  # agents by type, users by role
    assert list(at.dataframe[0].value["tenant_id"]) == ["acme", "globex", "oldco"]

    _select_tenant(at, "acme")
    assert _metrics(at) == {
        "Tenants": "1",
        "Departments": "2",
        "Agents": "3",
        "Active agents": "2",
        "Users": "3",
    }
    assert list(at.dataframe[0].value["tenant_id"]) == ["acme"]


def test_agents_table_follows_the_sidebar_tenant(published: Path) -> None:
    at = _app().run()
    at.switch_page("app_pages/agents.py").run()
    assert not at.exception, at.exception
    fleet = at.dataframe[AGENTS_TABLE].value
    assert sorted(fleet["agent_id"]) == [
        "acme-code-reviewer",
        "acme-deploy-doctor",
        "acme-old-bot",
        "acme-qa-triage",
        "globex-bi",
    ]  # every agent, retired too; and never the raw decoy
    assert {"agent_type", "agent_version", "status", "owner_user_id", "schedule", "department_name"} <= set(
        fleet.columns
    )

    _select_tenant(at, "globex")
    fleet = at.dataframe[AGENTS_TABLE].value
    assert list(fleet["agent_id"]) == ["globex-bi"]
    assert set(fleet["tenant_id"]) == {"globex"}
    # the detail picker only offers agents in scope
    assert at.selectbox(key="agents_detail").options == ["BI analyst (globex-bi)"]

    _select_tenant(at, "acme")
    fleet = at.dataframe[AGENTS_TABLE].value
    assert set(fleet["tenant_id"]) == {"acme"} and len(fleet) == 4


def test_agents_filters_and_detail(published: Path) -> None:
    at = _app().run()
    at.switch_page("app_pages/agents.py").run()
    at.multiselect(key="agents_status_filter").select("paused").run()
    assert not at.exception, at.exception
    assert list(at.dataframe[AGENTS_TABLE].value["agent_id"]) == ["acme-qa-triage"]

    at.multiselect(key="agents_status_filter").unselect("paused").run()
    at.multiselect(key="agents_type_filter").select("devops_infrastructure").run()
    assert list(at.dataframe[AGENTS_TABLE].value["agent_id"]) == ["acme-deploy-doctor"]
    assert at.selectbox(key="agents_detail").value == "acme-deploy-doctor"
    assert {metric.label: metric.value for metric in at.metric} == {
        "Type": "devops_infrastructure",
        "Version": "0.9.1",
        "Status": "active",
    }
    detail = at.table[0].value
    text = detail.to_string()
    assert "Platform Operations (platform-ops)" in text
    assert "Omar Haddad (omar@acme.example)" in text
    assert "8 / 20000 / 300" in text


def test_compliance_audit_search_and_config_history(published: Path) -> None:
    at = _app().run()
    at.switch_page("app_pages/compliance.py").run()
    assert not at.exception, at.exception
    audit = at.dataframe[AUDIT_TABLE].value
    assert list(audit["seq"]) == [4, 3, 2, 1]  # newest first
    assert list(at.dataframe[CONFIG_VERSIONS_TABLE].value["config_version"]) == [2, 1]

    at.text_input(key="compliance_actor").input("ACME.example").run()
    assert list(at.dataframe[AUDIT_TABLE].value["actor"]) == [
        "omar@acme.example",
        "dana@acme.example",
    ]
    at.multiselect(key="compliance_actions").select("approval.grant").run()
    assert list(at.dataframe[AUDIT_TABLE].value["seq"]) == [4]

    at.text_input(key="compliance_actor").input("").run()
    _select_tenant(at, "globex")
    audit = at.dataframe[AUDIT_TABLE].value
    assert list(audit["seq"]) == [3] and set(audit["tenant_id"]) == {"globex"}
    # config versions are platform-wide, so they stay
    assert len(at.dataframe[CONFIG_VERSIONS_TABLE].value) == 2


def test_search_text_is_a_parameter_not_sql(published: Path) -> None:
    at = _app().run()
    at.switch_page("app_pages/compliance.py").run()
    at.text_input(key="compliance_actor").input("' OR 1=1 --").run()
    assert not at.exception, at.exception
    assert at.dataframe[AUDIT_TABLE].value.empty


@pytest.mark.parametrize("page", [None, "app_pages/agents.py", "app_pages/compliance.py"])
def test_missing_warehouse_shows_how_to_get_data(warehouse_env: Path, page: str | None) -> None:
    assert not warehouse_env.exists()
    at = _app().run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    assert [info.value for info in at.info] == [ui.NO_DATA_MESSAGE]
    assert "make run" in ui.NO_DATA_MESSAGE and "agentprovision demo --once" in ui.NO_DATA_MESSAGE
    assert not at.metric and not at.dataframe
    assert at.sidebar.selectbox(key=ui.TENANT_KEY).options == ["All tenants"]


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
        con.execute(f"CREATE TABLE dim_tenants ({dim_tenants_columns})")
    at = _app().run()
    assert not at.exception, at.exception
    assert len(at.warning) == 1
    assert named in at.warning[0].value and "dbt build" in at.warning[0].value


def test_republished_warehouse_is_read_without_waiting_for_the_ttl(published: Path) -> None:
    at = _app().run()
    assert _metrics(at)["Agents"] == "4"
    before = data.current_warehouse()

    # what agentprovision.warehouse.publish does: build a copy beside it, then os.replace
    staging = published.with_suffix(".tmp")
    with duckdb.connect(str(staging)) as con:
        con.execute(MARTS_SQL)
        con.execute("DELETE FROM marts.dim_agents WHERE agent_id = 'globex-bi'")
    os.replace(staging, published)

    assert data.current_warehouse() != before
    at.run()
    assert not at.exception, at.exception
    assert _metrics(at)["Agents"] == "3"


def test_marts_are_found_in_main_as_well(warehouse_env: Path) -> None:
    """dbt-duckdb's default schema is `main`; the queries must not care which one dbt used."""
    with duckdb.connect(str(warehouse_env)) as con:
        con.execute(MARTS_SQL.replace("CREATE SCHEMA marts;", "").replace("marts.", "main."))
    warehouse = data.current_warehouse()
    assert warehouse is not None
    assert data.fleet_counts(warehouse, "globex") == data.FleetCounts(
        tenants=1, departments=1, agents=1, active_agents=1, users=2
    )
    assert data.agent(warehouse, "globex", "acme-code-reviewer") is None  # out of scope
    assert data.agent(warehouse, None, "acme-code-reviewer")["owner_user_id"] == "omar@acme.example"
