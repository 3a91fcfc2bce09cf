"""Retention: each tenant's data is pruned by its own policy, the run is audited, and the evidence reports it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from agentprovision.apply import apply_config
from agentprovision.cli import app
from agentprovision.config import load_config_dir
from agentprovision.events import PlatformEvent, write_events
from agentprovision.settings import Settings
from agentprovision.store import models as m
from agentprovision.store.audit import append_audit, verify_chain
from agentprovision.store.db import session_factory, transaction
from agentprovision.tasks import queue_task
from agentprovision.warehouse import load_raw, publish
from governance.evidence import Period, build_sections
from governance.retention import apply_retention

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
PROMPT = [{"role": "user", "content": "summarise the incident"}]


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def usage(tenant: str, days: float, prompt: bool = True) -> PlatformEvent:
    payload = {"call_id": f"{tenant}-{days}", "cost_usd": "0.01", **({"prompt": PROMPT} if prompt else {})}
    return PlatformEvent(tenant_id=tenant, kind="usage", name="model_call", occurred_at=ago(days), payload=payload)


def policy(tenant: str, days: float) -> PlatformEvent:
    return PlatformEvent(
        tenant_id=tenant, kind="policy", name="guardrail", occurred_at=ago(days), payload={"action": "masked"}
    )


@pytest.fixture
def deployed(store: Engine, config_dir: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    # globex gets a strict per-kind policy; acme keeps the defaults (prompts 30 d, usage 13 months) and 400 days.
    globex = config_dir / "tenants" / "globex.yaml"
    text = globex.read_text()
    assert "  policies:\n" in text
    globex.write_text(
        text.replace(
            "  policies:\n", "  policies:\n    retention: {prompts_days: 7, usage_days: 60, task_inputs_days: 10}\n", 1
        )
    )
    result = load_config_dir(config_dir)
    assert result.ok, result.issues
    with transaction(session_factory(store)) as session:
        apply_config(session, result.config, actor="root@platform.example", source="test")
        for tenant, days, status in [("acme", 500, "succeeded"), ("acme", 500, "queued"), ("acme", 5, "failed")]:
            agent = "acme-qa-triage"
            task, _ = queue_task(
                session,
                tenant_id=tenant,
                agent_id=agent,
                source="cli",
                idempotency_key=f"{days}-{status}",
                task_input={"instructions": "look"},
            )
            task.status, task.created_at = status, ago(days)
            if status != "queued":
                task.finished_at = ago(days)
    write_events(
        store,
        [
            usage("acme", 10),  # prompt kept (30 days)
            usage("acme", 40),  # prompt stripped, event kept
            usage("acme", 400),  # past 396 days: deleted
            policy("acme", 390),  # other events follow retention_days = 400: kept
            policy("acme", 410),  # deleted
            usage("globex", 3),  # kept whole
            usage("globex", 20),  # prompt stripped (7 days)
            usage("globex", 70),  # deleted (60 days)
        ],
    )
    settings = Settings(
        state_dir=tmp_path,
        database_url=str(store.url),
        config_dir=config_dir,
        warehouse_target="duckdb",
        duckdb_path=tmp_path / "warehouse.duckdb",
    )
    load_raw(store, settings.duckdb_path)
    publish(settings.duckdb_path, settings.published_duckdb_path)
    return result.config, settings


def payloads(store: Engine, tenant: str) -> dict[str, dict]:
    with transaction(session_factory(store)) as session:
        return {
            p["call_id"]: p
            for p in session.scalars(
                select(m.Event.payload).where(m.Event.tenant_id == tenant, m.Event.kind == "usage")
            )
        }


def test_each_tenant_is_pruned_by_its_own_policy(store: Engine, deployed) -> None:  # type: ignore[no-untyped-def]
    config, settings = deployed
    report = apply_retention(config, store, now=NOW, warehouse=settings)

    counts = {t.tenant_id: t for t in report.tenants}
    assert (counts["acme"].prompts_stripped, counts["acme"].usage_events_deleted) == (1, 1)
    assert (counts["acme"].other_events_deleted, counts["acme"].task_inputs_emptied) == (1, 1)
    assert (counts["globex"].prompts_stripped, counts["globex"].usage_events_deleted) == (1, 1)
    assert counts["acme"].policy_days == {"prompts": 30, "usage": 396, "events": 400, "task_inputs": 400}
    assert counts["globex"].policy_days["usage"] == 60
    assert counts["initech"].total == 0 or counts["initech"].policy_days["prompts"] == 30

    acme = payloads(store, "acme")
    assert set(acme) == {"acme-10", "acme-40"}
    assert "prompt" in acme["acme-10"] and "prompt" not in acme["acme-40"]
    assert acme["acme-40"]["cost_usd"] == "0.01"  # usage and cost survive the prompt
    globex = payloads(store, "globex")
    assert set(globex) == {"globex-3", "globex-20"} and "prompt" not in globex["globex-20"]
    with transaction(session_factory(store)) as session:
        policies = session.scalars(select(m.Event.occurred_at).where(m.Event.kind == "policy")).all()
        assert len(policies) == 1
        inputs = {t.idempotency_key: t.input for t in session.scalars(select(m.Task))}
        # Old finished task emptied; a queued task keeps its input however old; a recent one too.
        assert inputs == {
            "500-succeeded": {},
            "500-queued": {"instructions": "look"},
            "5-failed": {"instructions": "look"},
        }

    # The warehouse's raw copy follows the same rules, and the published copy is refreshed.
    assert counts["acme"].warehouse_events_deleted == 2 and counts["acme"].warehouse_prompts_stripped == 1
    for path in (settings.duckdb_path, settings.published_duckdb_path):
        with duckdb.connect(str(path), read_only=True) as con:
            rows = con.execute("SELECT tenant_id, payload FROM raw.events ORDER BY seq").fetchall()
        kept = {json.loads(p)["call_id"]: json.loads(p) for t, p in rows if "call_id" in p}
        assert set(kept) == {"acme-10", "acme-40", "globex-3", "globex-20"}
        assert "prompt" in kept["acme-10"] and "prompt" not in kept["acme-40"] and "prompt" not in kept["globex-20"]

    # Audited per tenant; the chains still verify; a second run finds nothing more to do.
    with transaction(session_factory(store)) as session:
        records = session.scalars(select(m.AuditRecord).where(m.AuditRecord.action == "retention.apply")).all()
        assert {r.tenant_id for r in records} == {"acme", "globex", "initech"}
        acme_record = next(r for r in records if r.tenant_id == "acme")
        assert acme_record.details["counts"]["usage_events_deleted"] == 1
        assert verify_chain(session).intact
    again = apply_retention(config, store, now=NOW, warehouse=settings)
    assert all(t.total == 0 for t in again.tenants)


def test_audit_records_are_never_pruned(store: Engine, deployed) -> None:  # type: ignore[no-untyped-def]
    config, _ = deployed
    with transaction(session_factory(store)) as session:
        append_audit(
            session, actor="dana@acme.example", action="test.old", target_type="x", target_id="1", tenant_id="acme"
        )
        before = session.scalar(select(func.count()).select_from(m.AuditRecord))
    apply_retention(config, store, now=NOW + timedelta(days=3650))  # ten years on: every policy has expired
    with transaction(session_factory(store)) as session:
        after = session.scalar(select(func.count()).select_from(m.AuditRecord))
        assert after == before + 3  # one retention.apply per tenant, nothing removed
        assert session.scalar(select(func.count()).select_from(m.Event)) == 0
        assert verify_chain(session).intact


def test_evidence_reports_the_runs_in_the_period(store: Engine, deployed) -> None:  # type: ignore[no-untyped-def]
    config, _ = deployed
    period = Period.parse(datetime.now(UTC).strftime("%Y-%m"))
    with transaction(session_factory(store)) as session:
        section = next(s for s in build_sections(session, "acme", period) if s.name == "retention")
    assert section.rows == [] and section.findings  # nothing enforced yet is itself a finding
    with transaction(session_factory(store)) as session:  # a refused attempt is listed but enforces nothing
        append_audit(
            session,
            actor="li@acme.example",
            action="retention.apply",
            target_type="tenant",
            target_id="acme",
            tenant_id="acme",
            source="cli",
            outcome="denied",
        )
    with transaction(session_factory(store)) as session:
        section = next(s for s in build_sections(session, "acme", period) if s.name == "retention")
    assert [row["outcome"] for row in section.rows] == ["denied"] and section.findings
    apply_retention(config, store, now=NOW)
    with transaction(session_factory(store)) as session:
        section = next(s for s in build_sections(session, "acme", period) if s.name == "retention")
    assert [row["outcome"] for row in section.rows] == ["denied", "success"] and section.findings == []
    assert json.loads(section.rows[1]["counts"])["prompts_stripped"] == 1
    assert section.rows[1]["retention_days"] == 400


def test_retention_command_checks_the_caller(tmp_path: Path, config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTPROVISION_STATE_DIR", str(tmp_path / "state"))
    for name in ("AGENTPROVISION_DATABASE_URL", "AGENTPROVISION_DUCKDB_PATH"):
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner()
    assert runner.invoke(app, ["apply", str(config_dir), "--actor", "root@platform.example"]).exit_code == 0
    monkeypatch.setenv("AGENTPROVISION_ACTOR", "dana@acme.example")  # tenant_admin: own tenant only
    refused = runner.invoke(app, ["retention", "apply"])
    assert refused.exit_code == 1 and "may not retention.apply on the platform" in refused.output
    result = runner.invoke(app, ["retention", "apply", "--tenant", "acme"])
    assert result.exit_code == 0, result.output
    assert "acme" in result.output and "globex" not in result.output
    assert runner.invoke(app, ["retention", "apply", "--tenant", "globex"]).exit_code == 1
