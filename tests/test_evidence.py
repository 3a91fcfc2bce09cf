"""Evidence packs for the example tenants: content, controls, manifest and who may export them."""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from agentprovision.cli import app
from agentprovision.store import models as m
from agentprovision.store.db import make_engine, session_factory, transaction

runner = CliRunner()
PERIOD = f"{datetime.now(UTC):%Y-%m}"


@pytest.fixture
def applied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    monkeypatch.setenv("AGENTPROVISION_DATABASE_URL", url)
    monkeypatch.setenv("AGENTPROVISION_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("AGENTPROVISION_ACTOR", "ops@agentprovision.example")
    assert runner.invoke(app, ["apply", "config"]).exit_code == 0
    return url


@pytest.mark.parametrize("tenant", ["acme", "globex", "initech"])
def test_pack_for_each_example_tenant(applied: str, tmp_path: Path, tenant: str) -> None:
    result = runner.invoke(app, ["compliance", "evidence", "--tenant", tenant, "--period", PERIOD])
    assert result.exit_code == 0, result.output
    pack = tmp_path / "evidence" / tenant / PERIOD
    document = json.loads((pack / "evidence.json").read_text())
    sections = document["sections"]
    assert set(sections) == {
        "access_review",
        "audit_chain",
        "encryption",
        "agent_changes",
        "retention",
        "policy_decisions",
    }
    assert "SOC 2 CC6.1" in sections["access_review"]["controls"]
    assert "ISO 27001 A.8.15" in sections["audit_chain"]["controls"]
    users = {row["user_id"] for row in sections["access_review"]["rows"]}
    assert users and all(user.endswith(f"@{tenant}.example") for user in users)
    assert sections["audit_chain"]["rows"][0]["intact"] is True
    changed_agents = {row["change"].split()[2] for row in sections["agent_changes"]["rows"]}
    assert changed_agents and all(agent.startswith(f"{tenant}-") for agent in changed_agents)

    manifest = dict(reversed(line.split("  ")) for line in (pack / "MANIFEST.sha256").read_text().splitlines())
    for name, digest in manifest.items():
        assert hashlib.sha256((pack / name).read_bytes()).hexdigest() == digest
    with (pack / "access_review.csv").open() as handle:
        assert {row["user_id"] for row in csv.DictReader(handle)} == users
    assert "# Evidence pack" in (pack / "summary.md").read_text()


def test_only_permitted_users_export_and_refusals_are_audited(applied: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTPROVISION_ACTOR", "fiona@acme.example")  # finance: no evidence.export
    refused = runner.invoke(app, ["compliance", "evidence", "--tenant", "acme", "--period", PERIOD])
    assert refused.exit_code == 1 and "may not evidence.export" in refused.output
    monkeypatch.setenv("AGENTPROVISION_ACTOR", "hugo@globex.example")  # globex's auditor, asking for acme
    across = runner.invoke(app, ["compliance", "evidence", "--tenant", "acme", "--period", PERIOD])
    assert across.exit_code == 1 and "belongs to tenant globex" in across.output
    monkeypatch.setenv("AGENTPROVISION_ACTOR", "audit@agentprovision.example")  # platform auditor
    assert runner.invoke(app, ["compliance", "evidence", "--tenant", "acme", "--period", PERIOD]).exit_code == 0

    with transaction(session_factory(make_engine(applied))) as session:
        outcomes = session.execute(
            select(m.AuditRecord.actor, m.AuditRecord.outcome)
            .where(m.AuditRecord.action == "evidence.export")
            .order_by(m.AuditRecord.seq)
        ).all()
    assert outcomes == [
        ("fiona@acme.example", "denied"),
        ("hugo@globex.example", "denied"),
        ("audit@agentprovision.example", "success"),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tenant", "umbrella", "--period", PERIOD], "unknown tenant 'umbrella'"),
        (["--tenant", "acme", "--period", "2026-Q5"], "is not YYYY-Qn"),
    ],
)
def test_bad_input_is_explained(applied: str, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["compliance", "evidence", *args])
    assert result.exit_code == 1 and message in result.output
