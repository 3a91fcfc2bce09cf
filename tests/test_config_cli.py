"""`agentprovision validate` and `apply` on good and bad config, through the real CLI."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from agentprovision.cli import app
from agentprovision.store import models as m
from agentprovision.store.db import make_engine

runner = CliRunner()


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args), catch_exceptions=False)


def line_of(path: Path, needle: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


def store_snapshot(url: str) -> dict[str, object]:
    engine = make_engine(url)
    with engine.connect() as connection:
        snapshot = {
            model.__tablename__: connection.execute(select(func.count()).select_from(model)).scalar_one()
            for model in (m.ConfigVersion, m.AuditRecord, m.Tenant, m.Agent, m.User)
        }
        snapshot["agent_states"] = sorted(connection.execute(select(m.Agent.agent_id, m.Agent.status, m.Agent.version)))
    engine.dispose()
    return snapshot


@pytest.fixture
def store_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    monkeypatch.setenv("AGENTPROVISION_DATABASE_URL", url)
    monkeypatch.setenv("AGENTPROVISION_ACTOR", "tester@example.com")
    return url


def test_example_config_is_valid() -> None:
    result = invoke("validate", "config")
    assert result.exit_code == 0, result.output
    assert "valid (3 tenants, 8 agents, 6 model deployments)" in result.output


def test_example_config_covers_the_mission() -> None:
    from agentprovision.config import load_config_dir

    config = load_config_dir("config").config
    assert config is not None
    regions = {t.tenant.region for t in config.tenants}
    types = {a.type for t in config.tenants for a in t.agents}
    assert len(config.tenants) == 3 and regions == {"us", "eu"}
    assert types == {
        "full_stack_development",
        "devops_infrastructure",
        "qa_testing",
        "data_analysis",
        "business_intelligence",
        "security_compliance",
        "documentation",
    }


@dataclass
class BadCase:
    name: str
    file: str  # relative to the config dir
    old: str
    new: str
    needle: str  # text on the line the error must point at (after the change)
    message: str

    def break_config(self, config_dir: Path) -> Path:
        path = config_dir / self.file
        text = path.read_text()
        assert self.old in text, f"{self.name}: {self.old!r} not found in {self.file}"
        path.write_text(text.replace(self.old, self.new, 1))
        return path


BAD_CASES = [
    BadCase(
        "malformed yaml",
        "tenants/acme.yaml",
        "  region: us\n",
        "  region: us: eu\n",
        "region: us: eu",
        "malformed YAML: mapping values are not allowed here",
    ),
    BadCase(
        "unknown field",
        "tenants/acme.yaml",
        "    version: 1.2.0\n",
        "    version: 1.2.0\n    colour: blue\n",
        "colour: blue",
        "agents[0].colour: unknown field",
    ),
    BadCase(
        "duplicate agent id across files",
        "tenants/initech.yaml",
        "id: initech-test-planner",
        "id: acme-qa-triage",
        "id: acme-qa-triage",
        "already defined in",
    ),
    BadCase(
        "duplicate key",
        "tenants/globex.yaml",
        "  plan: enterprise\n",
        "  plan: enterprise\n  plan: starter\n",
        "plan: starter",
        "duplicate key 'plan'",
    ),
    BadCase(
        "unknown tenant",
        "models.yaml",
        "      id: sandbox-deep-eu\n",
        "      id: sandbox-deep-eu\n      tenant: umbrella\n",
        "tenant: umbrella",
        "unknown tenant 'umbrella'",
    ),
    BadCase(
        "unknown model",
        "tenants/initech.yaml",
        "allowed_models: [fast, balanced]",
        "allowed_models: [fast, gpt-9]",
        "allowed_models",
        "unknown model 'gpt-9'",
    ),
    BadCase(
        "unknown agent type",
        "tenants/globex.yaml",
        "type: data_analysis",
        "type: fortune_telling",
        "type: fortune_telling",
        "unknown agent type 'fortune_telling'",
    ),
    BadCase(
        "unknown department",
        "tenants/globex.yaml",
        "    department: risk\n",
        "    department: legal\n",
        "department: legal",
        "unknown department 'legal'",
    ),
    BadCase(
        "invalid cron",
        "tenants/acme.yaml",
        'schedule: "0 7 * * 1-5"',
        'schedule: "every weekday"',
        "every weekday",
        "not a valid cron expression",
    ),
    BadCase(
        "negative budget",
        "tenants/initech.yaml",
        "monthly_hard_usd: 60,",
        "monthly_hard_usd: -60,",
        "monthly_hard_usd: -60",
        "greater than or equal to 0",
    ),
    BadCase(
        "department above tenant",
        "tenants/acme.yaml",
        "{monthly_hard_usd: 900, monthly_soft_usd: 700}",
        "{monthly_hard_usd: 9000, monthly_soft_usd: 700}",
        "monthly_hard_usd: 9000",
        "is above tenant 'acme''s budget",
    ),
    BadCase(
        "soft above hard",
        "tenants/globex.yaml",
        "{monthly_hard_usd: 400, monthly_soft_usd: 320}",
        "{monthly_hard_usd: 400, monthly_soft_usd: 520}",
        "monthly_soft_usd: 520",
        "soft threshold must be at or below the hard limit",
    ),
    BadCase(
        "inline secret under a secret field",
        "tenants/acme.yaml",
        "credential: secret://acme/jira-token",
        "credential: hunter2-plaintext",
        "hunter2-plaintext",
        "must be a reference",
    ),
    BadCase(
        "inline api key anywhere",
        "models.yaml",
        "      model: sandbox/fast-us\n",
        "      model: sandbox/fast-us\n      api_key: sk-proj-abcdefghijklmnopqrstuvwx\n",
        "api_key: sk-proj",
        "inline secret is not allowed",
    ),
    BadCase(
        "password in a url",
        "tenants/globex.yaml",
        'url: "${GLOBEX_WAREHOUSE_URL}"',
        'url: "postgresql://app:s3cret@db.globex.example/positions"',
        "s3cret",
        "a URL with a password in it",
    ),
    BadCase(
        "platform admin inside a tenant",
        "tenants/initech.yaml",
        "role: tenant_admin",
        "role: platform_admin",
        "role: platform_admin",
        "platform_admin is a platform-level role",
    ),
    BadCase(
        "unknown tool",
        "tenants/acme.yaml",
        "tools: [config_inspect, repo_inspect, open_ticket]",
        "tools: [config_inspect, rm_rf, open_ticket]",
        "rm_rf",
        "unknown tool 'rm_rf'",
    ),
    BadCase(
        "unknown tool in a tenant policy",
        "tenants/initech.yaml",
        "denied_tools: [post_message]",
        "denied_tools: [post_mesage]",
        "post_mesage",
        "unknown tool 'post_mesage'",
    ),
    BadCase(
        "unknown trigger connector",
        "tenants/acme.yaml",
        "      - connector: acme-jira\n        stream: issues\n        match: {labels: [qa]}",
        "      - connector: acme-servicenow\n        stream: issues\n        match: {labels: [qa]}",
        "acme-servicenow",
        "unknown connector 'acme-servicenow'",
    ),
]


@pytest.mark.parametrize("case", BAD_CASES, ids=[c.name for c in BAD_CASES])
def test_bad_config_is_refused_with_location_and_changes_nothing(
    case: BadCase, config_dir: Path, store_env: str
) -> None:
    assert invoke("apply", str(config_dir)).exit_code == 0
    before = store_snapshot(store_env)

    path = case.break_config(config_dir)
    expected_line = line_of(path, case.needle)

    validated = invoke("validate", str(config_dir))
    applied = invoke("apply", str(config_dir))

    for result in (validated, applied):
        assert result.exit_code == 2, result.output
        located = [line for line in result.output.splitlines() if f"{case.file}:{expected_line}:" in line]
        assert located, f"no error at {case.file}:{expected_line} in:\n{result.output}"
        assert any(case.message in line for line in located), result.output
        assert "Traceback" not in result.output
    assert store_snapshot(store_env) == before


def test_every_problem_is_reported_at_once(config_dir: Path) -> None:
    chosen = {c.name: c for c in BAD_CASES}
    for name in ("duplicate agent id across files", "unknown agent type", "password in a url", "unknown tool"):
        chosen[name].break_config(config_dir)
    result = invoke("validate", str(config_dir))
    assert result.exit_code == 2
    assert "4 problems found" in result.output
    for fragment in ("already defined in", "unknown agent type", "a URL with a password", "unknown tool"):
        assert fragment in result.output


@pytest.mark.parametrize(
    "layout",
    [
        "missing directory",
        "file instead of directory",
        "tenant file is a directory",
        "no tenants",
        "missing models file",
        "empty platform file",
    ],
)
def test_unusable_directories_are_explained(layout: str, config_dir: Path, tmp_path: Path) -> None:
    target = config_dir
    if layout == "missing directory":
        target = tmp_path / "nowhere"
    elif layout == "file instead of directory":
        target = config_dir / "platform.yaml"
    elif layout == "tenant file is a directory":
        (config_dir / "tenants" / "zeta.yaml").mkdir()
    elif layout == "no tenants":
        for path in (config_dir / "tenants").iterdir():
            path.unlink()
    elif layout == "missing models file":
        (config_dir / "models.yaml").unlink()
    elif layout == "empty platform file":
        (config_dir / "platform.yaml").write_text("")
    result = invoke("validate", str(target))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "problem" in result.output


def test_apply_diff_history_and_rollback(config_dir: Path, store_env: str) -> None:
    first = invoke("apply", str(config_dir))
    assert first.exit_code == 0 and "applied as config version 1" in first.output
    assert "+ agent acme-code-reviewer" in first.output

    again = invoke("apply", str(config_dir))
    assert again.exit_code == 0 and "no changes" in again.output

    acme = config_dir / "tenants" / "acme.yaml"
    acme.write_text(acme.read_text().replace("version: 1.2.0", "version: 1.3.0"))
    dry = invoke("apply", str(config_dir), "--dry-run")
    assert "~ agent acme-code-reviewer (version)" in dry.output and "dry run" in dry.output
    assert store_snapshot(store_env)["config_versions"] == 1

    second = invoke("apply", str(config_dir))
    assert "applied as config version 2" in second.output
    assert "~ agent acme-code-reviewer (version)" in second.output

    rolled = invoke("config", "rollback", "1")
    assert rolled.exit_code == 0 and "as config version 3" in rolled.output
    states = dict((a, v) for a, _, v in store_snapshot(store_env)["agent_states"])
    assert states["acme-code-reviewer"] == "1.2.0"

    history = invoke("config", "history")
    lines = [line for line in history.output.splitlines() if line.strip()]
    assert len(lines) == 3 and "tester@example.com" in lines[0] and "(rollback to 1)" in lines[2]

    missing = runner.invoke(app, ["config", "rollback", "42"])
    assert missing.exit_code != 0


def test_removed_tenant_keeps_its_history(config_dir: Path, store_env: str) -> None:
    invoke("apply", str(config_dir))
    (config_dir / "tenants" / "initech.yaml").unlink()
    result = invoke("apply", str(config_dir))
    assert "- tenant initech" in result.output
    engine = make_engine(store_env)
    with engine.connect() as connection:
        tenant = connection.execute(select(m.Tenant.status).where(m.Tenant.tenant_id == "initech")).scalar_one()
        agents = set(connection.execute(select(m.Agent.status).where(m.Agent.tenant_id == "initech")).scalars())
    assert tenant == "removed" and agents == {"retired"}


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentprovision.cli", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_real_command_never_shows_a_traceback(config_dir: Path, tmp_path: Path) -> None:
    import os

    env = {**os.environ, "AGENTPROVISION_DATABASE_URL": f"sqlite:///{tmp_path / 'ops.db'}"}
    (config_dir / "tenants" / "acme.yaml").write_text("tenant: [unclosed\n")
    invalid = run_cli("validate", str(config_dir), env=env)
    assert invalid.returncode == 2 and "malformed YAML" in invalid.stderr and "Traceback" not in invalid.stderr

    unreachable = {**env, "AGENTPROVISION_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    result = run_cli("config", "history", env=unreachable)
    assert result.returncode == 1
    assert "the ops store could not be used" in result.stderr and "Traceback" not in result.stderr

    bad_target = {**env, "AGENTPROVISION_WAREHOUSE_TARGET": "oracle"}
    result = run_cli("validate", "config", env=bad_target)
    assert result.returncode == 1 and "not a known warehouse target" in result.stderr
