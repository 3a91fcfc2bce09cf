"""The dbt project end to end: example config -> ops store -> raw warehouse -> `dbt build` -> marts.

One build per module (it takes a few seconds), run in-process through dbt's programmatic API
against a private DuckDB file, with dbt's target and log paths in the temporary directory so
concurrent test runs never share state.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from dbt.cli.main import dbtRunner, dbtRunnerResult

from agentprovision.apply import apply_config
from agentprovision.config import load_config_dir
from agentprovision.store.db import make_engine, migrate, session_factory, transaction
from agentprovision.warehouse import load_raw

REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
EXAMPLE_CONFIG = REPO_ROOT / "config"


@dataclass
class BuiltWarehouse:
    duckdb_path: Path
    result: dbtRunnerResult

    def query(self, sql: str) -> list[tuple]:
        with duckdb.connect(str(self.duckdb_path)) as con:
            return con.execute(sql).fetchall()


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuiltWarehouse]:
    tmp = tmp_path_factory.mktemp("dbt")
    duckdb_path = tmp / "warehouse.duckdb"

    engine = make_engine(f"sqlite:///{tmp / 'ops.db'}")
    migrate(engine)
    loaded = load_config_dir(EXAMPLE_CONFIG)
    assert loaded.ok, loaded.issues
    with transaction(session_factory(engine)) as session:
        apply_config(session, loaded.config, actor="test", source=str(EXAMPLE_CONFIG))
    load_raw(engine, duckdb_path)
    engine.dispose()

    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("AGENTPROVISION_DUCKDB_PATH", str(duckdb_path))
        monkeypatch.delenv("AGENTPROVISION_WAREHOUSE_TARGET", raising=False)
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
                str(tmp / "target"),
                "--log-path",
                str(tmp / "logs"),
                "--log-level",
                "warn",
            ]
        )
    yield BuiltWarehouse(duckdb_path, result)


def test_dbt_build_passes_every_model_and_test(warehouse: BuiltWarehouse) -> None:
    result = warehouse.result
    assert result.exception is None, result.exception
    failed = [
        f"{r.node.unique_id}: {r.status} {r.message}" for r in result.result if str(r.status) not in ("success", "pass")
    ]
    assert result.success and not failed, failed
    kinds = {r.node.resource_type for r in result.result}
    assert {"model", "test", "unit_test"} <= {str(k) for k in kinds}
    built = {r.node.name for r in result.result if str(r.node.resource_type) == "model"}
    assert {
        "dim_tenants",
        "dim_departments",
        "dim_users",
        "dim_agents",
        "dim_models",
        "fct_audit_events",
        "fct_config_versions",
    } <= built


def test_dim_tenants_holds_the_example_tenants_with_counts(warehouse: BuiltWarehouse) -> None:
    rows = warehouse.query(
        "select tenant_id, region, plan, department_count, user_count, agent_count, active_agent_count,"
        " integration_count, is_active from marts.dim_tenants order by tenant_id"
    )
    assert rows == [
        ("acme", "us", "enterprise", 2, 4, 3, 3, 3, True),
        ("globex", "eu", "enterprise", 2, 4, 3, 3, 3, True),
        ("initech", "us", "business", 2, 3, 2, 1, 2, True),  # initech-test-planner is a draft
    ]


def test_dim_agents_covers_every_agent_type_with_its_cost_centre(warehouse: BuiltWarehouse) -> None:
    rows = warehouse.query("select agent_id, agent_type from marts.dim_agents")
    assert len(rows) == 8
    assert {agent_type for _, agent_type in rows} == {
        "full_stack_development",
        "devops_infrastructure",
        "qa_testing",
        "data_analysis",
        "business_intelligence",
        "security_compliance",
        "documentation",
    }
    reviewer = warehouse.query(
        "select tenant_display_name, department_name, cost_centre, owner_name, required_tier, max_steps,"
        " budget_hard_usd from marts.dim_agents where agent_id = 'acme-code-reviewer'"
    )
    assert reviewer == [("Acme Manufacturing", "Engineering", "CC-1100", "Omar Haddad", "advanced", 12, 300)]
    # The same department id could exist in two tenants: departments are matched within the agent's tenant.
    assert warehouse.query("select cost_centre from marts.dim_agents where agent_id = 'globex-controls-reviewer'") == [
        ("GX-700",)
    ]


def test_dim_models_and_dim_users(warehouse: BuiltWarehouse) -> None:
    models = warehouse.query(
        "select deployment_id, tier, tier_rank, contract_input_per_mtok_usd from marts.dim_models"
        " order by deployment_id"
    )
    assert len(models) == 6
    assert ("sandbox-deep-eu", "advanced", 3, 3.3) in [(d, t, r, float(p)) for d, t, r, p in models]
    platform_users = warehouse.query(
        "select user_id, role from marts.dim_users where is_platform_user order by user_id"
    )
    assert platform_users == [
        ("audit@agentprovision.example", "auditor"),
        ("ops@agentprovision.example", "platform_admin"),
    ]


def test_compliance_marts_record_the_config_apply(warehouse: BuiltWarehouse) -> None:
    audit = warehouse.query(
        "select seq, action, action_domain, target_type, config_version, is_platform_action, actor,"
        " prev_hash, record_id from marts.fct_audit_events"
    )
    assert len(audit) == 1
    seq, action, domain, target_type, version, is_platform, actor, prev_hash, record_id = audit[0]
    assert (seq, action, domain, target_type, version, is_platform, actor) == (
        1,
        "config.apply",
        "config",
        "config_version",
        1,
        True,
        "test",
    )
    assert prev_hash == "0" * 64

    versions = warehouse.query(
        "select config_version, versions_to_date, is_rollback, is_current, change_count, audit_record_id"
        " from marts.fct_config_versions"
    )
    assert versions == [(1, 1, False, True, 47, record_id)]  # every entity of the example config is a change
