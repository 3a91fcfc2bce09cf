"""The example config's integrations through the real CLI, and connector checks in `validate`."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from agentprovision.cli import app
from agentprovision.store import connector_models as cm
from agentprovision.store import models as m
from agentprovision.store.db import make_engine

runner = CliRunner()


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args))


@pytest.fixture
def applied(config_dir: Path, state_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AGENTPROVISION_CONFIG_DIR", str(config_dir))
    monkeypatch.setenv("AGENTPROVISION_ACTOR", "tester@example.com")
    assert invoke("apply", str(config_dir)).exit_code == 0
    return state_env


def test_example_integrations_sync_offline_and_triggers_create_tasks_once(applied: Path) -> None:
    first = invoke("connectors", "sync", "--local-only")
    assert first.exit_code == 0, first.output
    for line in (
        "acme/acme-handbook: succeeded, 3 read, 3 new",
        "acme/acme-incidents: succeeded, 4 read, 4 new, 0 changed, 2 tasks",
        "globex/globex-positions: succeeded, 5 read, 5 new, 0 changed, 2 tasks",
        "initech/initech-handbook: succeeded, 2 read, 2 new",
    ):
        assert line in first.output, first.output
    assert "acme-jira" not in first.output, "remote integrations are not part of a local-only sync"
    second = invoke("connectors", "sync", "--local-only")
    assert second.exit_code == 0 and second.output.count("0 new") == 4, second.output

    engine = make_engine(f"sqlite:///{applied / 'ops.db'}")
    with engine.connect() as connection:
        tasks = sorted(connection.execute(select(m.Task.tenant_id, m.Task.agent_id, m.Task.source)))
    assert tasks == [
        ("acme", "acme-deploy-doctor", "trigger"),
        ("acme", "acme-deploy-doctor", "trigger"),
        ("globex", "globex-controls-reviewer", "trigger"),
        ("globex", "globex-controls-reviewer", "trigger"),
    ]
    found = invoke("connectors", "search", "acme", "roll back a failed deploy")
    assert "deploy-runbook.md > When a deploy fails" in found.output, found.output
    assert invoke("connectors", "search", "globex", "roll back a failed deploy").output.strip() == "no matches"
    history = invoke("connectors", "history", "acme", "acme-incidents")
    assert history.output.count("succeeded") == 2


def test_remote_integration_without_its_secret_fails_clearly(applied: Path) -> None:
    result = invoke("connectors", "check", "acme", "acme-jira")
    assert result.exit_code == 1
    assert "integration acme/acme-jira:" in result.output and "secret://acme/jira-token" in result.output
    assert "agentprovision secrets set acme acme/jira-token" in result.output
    assert "Traceback" not in result.output
    ok = invoke("connectors", "check", "acme", "acme-incidents")
    assert ok.exit_code == 0 and "acme/acme-incidents: ok (streams: incidents)" in ok.output
    unknown = invoke("connectors", "sync", "acme", "acme-nothing")
    assert unknown.exit_code == 1 and "tenant 'acme' has no active integration 'acme-nothing'" in unknown.output


def test_sync_and_check_need_integration_manage_and_refusals_are_audited(
    applied: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts = [
        ("fiona@acme.example", ["connectors", "sync", "acme", "--local-only"], "role finance does not allow"),
        ("fiona@acme.example", ["connectors", "check", "acme", "acme-incidents"], "role finance does not allow"),
        ("dana@acme.example", ["connectors", "sync", "globex", "--local-only"], "not globex"),
        ("dana@acme.example", ["connectors", "sync", "--local-only"], "may not integration.manage on the platform"),
        ("dana@acme.example", ["connectors", "check", "globex", "globex-positions"], "not globex"),
    ]
    for actor, args, reason in attempts:
        monkeypatch.setenv("AGENTPROVISION_ACTOR", actor)
        refused = invoke(*args)
        assert refused.exit_code == 1 and "may not integration.manage" in refused.output, (args, refused.output)
        assert reason in refused.output and "Traceback" not in refused.output
    engine = make_engine(f"sqlite:///{applied / 'ops.db'}")
    with engine.connect() as connection:
        denied = connection.execute(
            select(m.AuditRecord.actor, m.AuditRecord.tenant_id).where(
                m.AuditRecord.action == "integration.manage", m.AuditRecord.outcome == "denied"
            )
        ).all()
        synced = connection.execute(select(cm.SyncRun.sync_id)).all()
    assert sorted(map(tuple, denied), key=repr) == sorted(
        [("fiona@acme.example", "acme")] * 2 + [("dana@acme.example", "globex")] * 2 + [("dana@acme.example", None)],
        key=repr,
    )
    assert synced == []  # a refused sync reads nothing
    # The tenant's own admin may sync and check the tenant's integrations.
    monkeypatch.setenv("AGENTPROVISION_ACTOR", "dana@acme.example")
    own = invoke("connectors", "sync", "acme", "--local-only")
    assert own.exit_code == 0 and "acme/acme-incidents: succeeded" in own.output and "globex" not in own.output
    assert invoke("connectors", "check", "acme", "acme-incidents").exit_code == 0


def test_scaffold_and_list_commands(tmp_path: Path) -> None:
    made = invoke("connectors", "scaffold", "acme_crm", "--dir", str(tmp_path))
    assert made.exit_code == 0 and (tmp_path / "agentprovision-connector-acme-crm" / "pyproject.toml").exists()
    again = invoke("connectors", "scaffold", "acme_crm", "--dir", str(tmp_path))
    assert again.exit_code == 1 and "already exists" in again.output
    listed = invoke("connectors", "list")
    assert all(kind in listed.output for kind in ("files", "sql", "rest", "github", "jira", "slack", "docs"))


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            '        - {name: incidents, pattern: "*.jsonl", primary_key: [id]}',
            '        - {name: incidents, pattern: "*.jsonl"}',
            "connectors[2].settings.streams[0].primary_key: Field required (connector kind 'files')",
        ),
        (
            "    allowed_hosts: [acme.atlassian.example]",
            "    allowed_hosts: [evil.example]",
            "https://acme.atlassian.example is not covered by allowed_hosts ['evil.example']",
        ),
        (
            "        stream: incidents\n",
            "        stream: incident\n",
            "integration 'acme-incidents' has no stream 'incident'; its streams: incidents",
        ),
        (
            "    credential: secret://acme/jira-token\n",
            "",
            "kind 'jira' needs a credential",
        ),
        (
            "    settings: {path: tenant_files/acme/handbook}",
            "    settings: {path: tenant_files/acme/handbook, colour: blue}",
            "connectors[1].settings.colour: unknown setting",
        ),
    ],
)
def test_validate_reports_connector_problems_at_their_line(config_dir: Path, old: str, new: str, message: str) -> None:
    path = config_dir / "tenants" / "acme.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    result = invoke("validate", str(config_dir))
    assert result.exit_code == 2
    assert any(message in line and "acme.yaml:" in line for line in result.output.splitlines()), result.output
