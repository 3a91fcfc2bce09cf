"""The CLI holds configured users to the permission matrix; bootstrap and operator access are explicit and audited."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from agentprovision.cli import app
from agentprovision.store import models as m
from agentprovision.store.db import make_engine, session_factory, transaction
from governance.access import ENV_STRICT

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    monkeypatch.setenv("AGENTPROVISION_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("AGENTPROVISION_DATABASE_URL", url)
    monkeypatch.delenv(ENV_STRICT, raising=False)
    return url


def run(monkeypatch: pytest.MonkeyPatch, actor: str, *args: str):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("AGENTPROVISION_ACTOR", actor)
    result = runner.invoke(app, list(args))
    message = str(result.exception) if result.exception and not isinstance(result.exception, SystemExit) else ""
    return result.exit_code, result.output + message


def audit(url: str) -> list[tuple[str, str, str]]:
    engine = make_engine(url)
    with transaction(session_factory(engine)) as session:
        rows = session.execute(select(m.AuditRecord.actor, m.AuditRecord.action, m.AuditRecord.outcome)).all()
    engine.dispose()
    return [tuple(r) for r in rows]


def test_bootstrap_then_the_matrix(env: str, config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No users yet: the first apply is a recorded bootstrap, whoever runs it.
    code, output = run(monkeypatch, "installer@example.com", "apply", str(config_dir))
    assert code == 0, output
    assert ("installer@example.com", "cli.bootstrap_access", "success") in audit(env)

    # A configured user is held to their role: a tenant admin may not apply platform config or roll it back.
    code, output = run(monkeypatch, "dana@acme.example", "apply", str(config_dir))
    assert code != 0 and "may not config.apply" in output
    code, output = run(monkeypatch, "dana@acme.example", "config", "rollback", "1")
    assert code != 0 and "may not config.rollback" in output
    code, output = run(monkeypatch, "fiona@acme.example", "secrets", "set", "acme", "jira-token")
    assert code == 1 and "may not secret.manage" in output
    code, output = run(monkeypatch, "dana@acme.example", "secrets", "list", "globex")
    assert code == 1 and "not globex" in output
    denied = [(actor, action) for actor, action, outcome in audit(env) if outcome == "denied"]
    assert denied == [
        ("dana@acme.example", "config.apply"),
        ("dana@acme.example", "config.rollback"),
        ("fiona@acme.example", "secret.manage"),
        ("dana@acme.example", "secret.manage"),
    ]
    # The platform admin applies without any special access record.
    before = len(audit(env))
    code, output = run(monkeypatch, "ops@agentprovision.example", "config", "rollback", "1")
    assert code == 0, output
    assert not [a for a in audit(env)[before:] if a[1].startswith("cli.")]


def test_operator_access_is_recorded_and_strict_mode_refuses_it(
    env: str, config_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(monkeypatch, "ops@agentprovision.example", "apply", str(config_dir))[0] == 0
    code, output = run(monkeypatch, "root", "config", "rollback", "1")
    assert code == 0, output
    assert ("root", "cli.operator_access", "success") in audit(env)
    monkeypatch.setenv(ENV_STRICT, "1")
    code, output = run(monkeypatch, "root", "config", "rollback", "1")
    assert code != 0 and ENV_STRICT in output
    assert run(monkeypatch, "ops@agentprovision.example", "config", "rollback", "1")[0] == 0
