"""The sync engine on SQLite and PostgreSQL: atomic batches, resume, triggers, isolation, secrets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from connector_peers import TOKEN, FakeRest
from pytest_httpserver import HTTPServer
from sqlalchemy import Engine, func, select, update

from agentprovision.store import connector_models as cm
from agentprovision.store import models as m
from agentprovision.store.db import session_factory, transaction
from connectors import kb
from connectors.credentials import MappingVault, SecretResolver
from connectors.errors import ConnectorError, IntegrationNotFound, SchemaMismatch, SyncConflict
from connectors.http import RetryPolicy
from connectors.sdk import TENANT_FILES_DIR
from connectors.sync import SyncOptions, build_connector, run_sync

FAST = SyncOptions(batch_size=2, retry=RetryPolicy(max_attempts=2, backoff_base=0.01, backoff_max=0.01))


def seed(engine: Engine, tenant_id: str, integrations: list[dict[str, Any]], agents: list[dict[str, Any]] = ()) -> None:
    with transaction(session_factory(engine)) as session:
        if session.get(m.Tenant, tenant_id) is None:
            session.add(
                m.Tenant(
                    tenant_id=tenant_id,
                    display_name=tenant_id,
                    region="us",
                    plan="business",
                    max_concurrent_runs=1,
                    budget_hard_usd=Decimal(100),
                    config_version=1,
                )
            )
            session.flush()
        for spec in integrations:
            session.add(
                m.Integration(
                    tenant_id=tenant_id, integration_id=spec["id"], kind=spec["kind"], config_version=1, spec=spec
                )
            )
        for agent in agents:
            session.add(
                m.Agent(
                    agent_id=agent["id"],
                    tenant_id=tenant_id,
                    name=agent["id"],
                    agent_type="qa_testing",
                    version="1.0.0",
                    department_id="eng",
                    owner="o@x.example",
                    status=agent.get("status", "active"),
                    config_version=1,
                    spec={"triggers": agent["triggers"]},
                )
            )


def count(engine: Engine, model: Any, **where: Any) -> int:
    with transaction(session_factory(engine)) as session:
        query = select(func.count()).select_from(model)
        for key, value in where.items():
            query = query.where(getattr(model, key) == value)
        return session.scalar(query)


def rest_spec(fake: FakeRest) -> dict[str, Any]:
    return {
        "id": "tickets",
        "kind": "rest",
        "credential": "secret://tickets-key",
        "allowed_hosts": ["localhost", "127.0.0.1"],
        "settings": {
            "base_url": fake.base_url + "/api",
            "auth": "api_key",
            "pagination": {"type": "page", "page_size": 2},
            "streams": [
                {
                    "name": "records",
                    "path": "records",
                    "records_path": "data",
                    "cursor_field": "updated_at",
                    "cursor_param": "since",
                    "sorted_by_cursor": True,
                    "fields": {"id": "integer", "title": "string", "updated_at": "timestamp"},
                }
            ],
        },
    }


def resolver(tenant: str = "acme") -> SecretResolver:
    return SecretResolver(MappingVault({(tenant, "tickets-key"): TOKEN}))


def test_schema_change_mid_stream_fails_the_batch_keeps_earlier_ones_and_resumes(
    store: Engine, httpserver: HTTPServer
) -> None:
    fake = FakeRest(httpserver)
    fake.add(6)
    fake.overrides = {2: {"priority": "high"}, 3: {"id": "not-a-number"}}  # page 2 adds a field, page 3 breaks one
    seed(store, "acme", [rest_spec(fake)])
    with pytest.raises(SchemaMismatch, match="field 'id': declared int64 but the source sent str 'not-a-number'"):
        run_sync(store, "acme", "tickets", resolver=resolver(), options=FAST)
    assert count(store, cm.SyncRecord) == 4, "pages 1 and 2 committed; page 3 not at all"
    with transaction(session_factory(store)) as session:
        run = session.scalar(select(cm.SyncRun))
        cursor = session.scalar(select(cm.SyncCursor.cursor))
    assert run.status == "failed" and run.error_class == "SchemaMismatch" and run.records_inserted == 4
    assert run.schema_changes == [{"stream": "records", "batch": 2, "added": ["priority"]}]
    assert cursor == {"value": "2024-03-01T00:04:00Z"}

    fake.overrides = {}
    resumed = run_sync(store, "acme", "tickets", resolver=resolver(), options=FAST)
    assert resumed.status == "succeeded" and resumed.inserted == 2
    assert "since=2024-03-01T00%3A04%3A00Z" in fake.requests[-2].query_string.decode() or any(
        r.args.get("since") == "2024-03-01T00:04:00Z" for r in fake.requests
    )
    assert count(store, cm.SyncRecord) == 6
    with transaction(session_factory(store)) as session:
        record = session.get(cm.SyncRecord, ("acme", "tickets", "records", "3"))
    assert record.data["priority"] == "high", "undeclared fields are kept with the record"


def test_a_sync_that_loses_its_lease_commits_nothing_more(store: Engine, httpserver: HTTPServer) -> None:
    fake = FakeRest(httpserver)
    fake.add(6)
    seed(store, "acme", [rest_spec(fake)])

    def thief(spec: dict, tenant: str, res: SecretResolver, options: SyncOptions) -> Any:
        connector = build_connector(spec, tenant, res, options)
        original = connector.read

        def read(stream: Any, cursor: Any) -> Iterator[Any]:
            for number, batch in enumerate(original(stream, cursor), 1):
                if number == 2:  # another worker takes the integration over between batches
                    with transaction(session_factory(store)) as session:
                        session.execute(update(cm.IntegrationSyncState).values(lease_sync_id="someone-else"))
                yield batch

        connector.read = read  # type: ignore[method-assign]
        return connector

    with pytest.raises(SyncConflict, match="lost its lease"):
        run_sync(store, "acme", "tickets", resolver=resolver(), options=FAST, connector_factory=thief)
    assert count(store, cm.SyncRecord) == 2


def test_a_held_lease_refuses_a_second_sync(store: Engine, tmp_path: Path) -> None:
    seed(store, "acme", [files_spec("drop")])
    with transaction(session_factory(store)) as session:
        session.add(
            cm.IntegrationSyncState(
                tenant_id="acme",
                integration_id="drop",
                lease_sync_id="other",
                lease_expires_at=datetime.now(UTC) + timedelta(minutes=5),
            )
        )
    with pytest.raises(SyncConflict, match="sync other holds the lease"):
        run_sync(store, "acme", "drop", options=SyncOptions(base_dir=tmp_path))


def area(base_dir: Path, tenant: str = "acme") -> Path:
    """A tenant's own file area: file-based integrations may read nothing outside it."""
    return base_dir / TENANT_FILES_DIR / tenant


def files_spec(integration: str, tenant: str = "acme") -> dict[str, Any]:
    return {
        "id": integration,
        "kind": "files",
        "settings": {
            "path": f"{TENANT_FILES_DIR}/{tenant}/drop",
            "streams": [{"name": "incidents", "pattern": "*.jsonl", "primary_key": ["id"]}],
        },
    }


def write_incidents(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_triggers_create_one_task_per_matching_record_and_never_twice(store: Engine, tmp_path: Path) -> None:
    rule = {"connector": "drop", "stream": "incidents", "match": {"category": "deploy-failure"}}
    seed(
        store,
        "acme",
        [files_spec("drop")],
        agents=[{"id": "doctor", "triggers": [rule]}, {"id": "sleeper", "status": "paused", "triggers": [rule]}],
    )
    options = SyncOptions(base_dir=tmp_path)
    write_incidents(
        area(tmp_path) / "drop" / "a.jsonl",
        [
            {"id": "I-1", "category": "deploy-failure"},
            {"id": "I-2", "category": "latency"},
        ],
    )
    assert run_sync(store, "acme", "drop", options=options).tasks_created == 1
    # The same file rewritten (new mtime): its records are read again but are not new.
    write_incidents(
        area(tmp_path) / "drop" / "a.jsonl",
        [
            {"id": "I-1", "category": "deploy-failure"},
            {"id": "I-2", "category": "latency"},
        ],
    )
    again = run_sync(store, "acme", "drop", options=options)
    assert again.read == 2 and again.inserted == 0 and again.tasks_created == 0
    write_incidents(area(tmp_path) / "drop" / "b.jsonl", [{"id": "I-3", "category": "deploy-failure"}])
    assert run_sync(store, "acme", "drop", options=options).tasks_created == 1
    with transaction(session_factory(store)) as session:
        tasks = list(session.scalars(select(m.Task).order_by(m.Task.idempotency_key)))
    assert [(t.agent_id, t.source, t.input["record"]["id"]) for t in tasks] == [
        ("doctor", "trigger", "I-1"),
        ("doctor", "trigger", "I-3"),
    ]
    assert count(store, cm.TriggerFiring) == 2


def test_tenants_never_see_each_others_integrations(store: Engine, tmp_path: Path) -> None:
    rule = {"connector": "drop", "stream": "incidents", "match": {"category": "deploy-failure"}}
    seed(
        store,
        "acme",
        [files_spec("drop"), {"id": "docs", "kind": "docs", "settings": {"path": f"{TENANT_FILES_DIR}/acme/docs"}}],
    )
    seed(store, "globex", [files_spec("drop", "globex")], agents=[{"id": "gx-bot", "triggers": [rule]}])
    write_incidents(area(tmp_path) / "drop" / "a.jsonl", [{"id": "A-1", "category": "deploy-failure"}])
    write_incidents(area(tmp_path, "globex") / "drop" / "g.jsonl", [{"id": "G-1", "category": "latency"}])
    (area(tmp_path) / "docs").mkdir()
    (area(tmp_path) / "docs" / "secret-plan.md").write_text("# Merger plan\n\nAcme acquires Initech in Q3.\n")
    options = SyncOptions(base_dir=tmp_path)
    run_sync(store, "acme", "drop", options=options)
    run_sync(store, "acme", "docs", options=options)
    run_sync(store, "globex", "drop", options=options)

    with transaction(session_factory(store)) as session:
        keys = set(session.execute(select(cm.SyncRecord.tenant_id, cm.SyncRecord.record_key)))
    assert keys == {("acme", "A-1"), ("acme", "secret-plan.md"), ("globex", "G-1")}
    assert count(store, m.Task) == 0, "globex's rule must not fire on acme's deploy failure"
    assert [h.doc_id for h in kb.search(store, "acme", "merger Initech")] == ["secret-plan.md"]
    assert kb.search(store, "globex", "merger Initech") == []
    with pytest.raises(IntegrationNotFound, match="tenant 'globex' has no active integration 'docs'"):
        run_sync(store, "globex", "docs", options=options)


def test_secrets_never_reach_history_events_or_errors(store: Engine, httpserver: HTTPServer) -> None:
    fake = FakeRest(httpserver)
    seed(store, "acme", [rest_spec(fake)])

    def leaky(spec: dict, tenant: str, res: SecretResolver, options: SyncOptions) -> Any:
        build_connector(spec, tenant, res, options)  # resolves the credential
        raise RuntimeError(f"driver said: login with {TOKEN} failed")

    with pytest.raises(ConnectorError) as raised:
        run_sync(store, "acme", "tickets", resolver=resolver(), options=FAST, connector_factory=leaky)
    assert TOKEN not in str(raised.value) and "***" in str(raised.value)
    with transaction(session_factory(store)) as session:
        run = session.scalar(select(cm.SyncRun))
        event = session.scalar(select(m.Event).where(m.Event.kind == "sync"))
    assert run.status == "failed" and TOKEN not in (run.error or "") and "login with ***" in run.error
    assert event.name == "sync.failed" and TOKEN not in json.dumps(event.payload)


def test_missing_credential_is_a_clear_failure_in_history(store: Engine, httpserver: HTTPServer) -> None:
    seed(store, "acme", [rest_spec(FakeRest(httpserver))])
    with pytest.raises(
        ConnectorError, match="integration acme/tickets: secret://tickets-key could not be read|no credential store"
    ):
        run_sync(store, "acme", "tickets", resolver=SecretResolver(), options=FAST)
    assert count(store, cm.SyncRun, status="failed") == 1
    assert count(store, cm.IntegrationSyncState, lease_sync_id=None) == 1, "a failed sync releases its lease"
    with transaction(session_factory(store)) as session:
        alert = session.scalar(select(m.Event).where(m.Event.kind == "alert"))
    assert (alert.tenant_id, alert.name, alert.payload["integration_id"]) == ("acme", "sync_failed", "tickets")


def test_success_emits_a_sync_event_with_counts(store: Engine, tmp_path: Path) -> None:
    seed(store, "acme", [files_spec("drop")])
    write_incidents(area(tmp_path) / "drop" / "a.jsonl", [{"id": "I-1"}, {"id": "I-2"}])
    result = run_sync(store, "acme", "drop", options=SyncOptions(base_dir=tmp_path))
    with transaction(session_factory(store)) as session:
        event = session.scalar(select(m.Event).where(m.Event.kind == "sync"))
        state = session.get(cm.IntegrationSyncState, ("acme", "drop"))
    assert event.name == "sync.succeeded" and event.payload["records_inserted"] == 2
    assert event.payload["sync_id"] == result.sync_id and state.last_status == "succeeded"
