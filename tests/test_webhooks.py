"""Outbound webhooks against a loopback receiver that verifies the signature independently."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import Engine, select
from typer.testing import CliRunner
from werkzeug import Request, Response

from agentprovision.cli import app
from agentprovision.config.schema import AlertChannel
from agentprovision.store import connector_models as cm
from agentprovision.store import models as m
from agentprovision.store.db import session_factory, transaction
from connectors import webhooks
from connectors.credentials import MappingVault, SecretResolver

SIGNING = "whsec-0123456789abcdef"
FAST = webhooks.WebhookPolicy(max_attempts=3, backoff_base=0.01, backoff_max=0.05, timeout=5)


class Receiver:
    """Verifies like a customer's endpoint would: HMAC-SHA256 over "<timestamp>.<body>", fresh timestamps."""

    def __init__(self, server: HTTPServer):
        self.received: list[dict] = []
        self.statuses: list[int] = []
        server.expect_request("/hooks/alerts", method="POST").respond_with_handler(self.handle)

    def handle(self, request: Request) -> Response:
        body = request.get_data()
        timestamp = request.headers["X-AgentProvision-Timestamp"]
        expected = "v1=" + hmac.new(SIGNING.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("X-AgentProvision-Signature", "")):
            return Response("bad signature", status=401)
        if abs(time.time() - int(timestamp)) > 300:
            return Response("stale", status=401)
        if self.statuses:
            return Response("not now", status=self.statuses.pop(0))
        self.received.append(json.loads(body))
        return Response("ok")


def channel() -> AlertChannel:
    return AlertChannel(
        id="oncall",
        kind="webhook",
        target="${ALERT_HOOK_URL}",
        signing_secret="secret://alert-signing",
        events=["sync_failed"],
    )


@pytest.fixture
def receiver(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> Receiver:
    monkeypatch.setenv("ALERT_HOOK_URL", httpserver.url_for("/hooks/alerts"))
    return Receiver(httpserver)


def resolver() -> SecretResolver:
    return SecretResolver(MappingVault({("acme", "alert-signing"): SIGNING, ("platform", "alert-signing"): SIGNING}))


def send(store: Engine, **kwargs) -> cm.WebhookDelivery:  # type: ignore[no-untyped-def]
    return webhooks.send_alert(
        store,
        channel(),
        tenant_id="acme",
        event="sync_failed",
        payload={"integration": "acme-jira"},
        resolver=resolver(),
        policy=FAST,
        **kwargs,
    )


def test_signed_delivery_after_retries(store: Engine, receiver: Receiver) -> None:
    receiver.statuses = [503, 500]
    slept: list[float] = []
    delivery = send(store, sleep=slept.append)
    assert delivery.status == "delivered" and delivery.attempts == 3
    assert slept == [0.01, 0.02]
    assert receiver.received[0]["event"] == "sync_failed" and receiver.received[0]["data"] == {
        "integration": "acme-jira"
    }
    assert receiver.received[0]["id"] == delivery.delivery_id


def test_verify_refuses_tampering_and_old_timestamps() -> None:
    body = b'{"a":1}'
    now = int(time.time())
    signature = webhooks.sign(SIGNING, now, body)
    assert webhooks.verify(SIGNING, str(now), signature, body)
    assert not webhooks.verify(SIGNING, str(now), signature, b'{"a":2}')
    assert not webhooks.verify("other-secret", str(now), signature, body)
    assert not webhooks.verify(SIGNING, str(now - 3600), webhooks.sign(SIGNING, now - 3600, body), body)


def test_last_failure_dead_letters_and_cli_replay_delivers(
    store: Engine, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver.statuses = [500, 500, 500]
    dead = send(store, sleep=lambda _: None)
    assert dead.status == "dead" and dead.attempts == 3 and "answered 500" in dead.last_error
    letters = webhooks.dead_letters(store)
    assert [letter.delivery_id for letter in letters] == [dead.delivery_id]

    replayed = webhooks.replay(store, dead.delivery_id, actor="ops@x.example", resolver=resolver(), policy=FAST)
    assert replayed.status == "delivered" and replayed.replay_of == dead.delivery_id
    assert webhooks.dead_letters(store) == []
    with transaction(session_factory(store)) as session:
        audit = session.scalar(select(m.AuditRecord).where(m.AuditRecord.action == "webhook.replay"))
    assert audit.target_id == dead.delivery_id and audit.actor == "ops@x.example"
    with pytest.raises(webhooks.WebhookError, match="already replayed"):
        webhooks.replay(store, dead.delivery_id, actor="ops@x.example", resolver=resolver(), policy=FAST)


def test_a_refusal_is_not_retried_and_the_target_url_is_never_stored(store: Engine, receiver: Receiver) -> None:
    receiver.statuses = [410]
    dead = send(store, sleep=lambda _: None)
    assert dead.status == "dead" and dead.attempts == 1 and "not retried" in dead.last_error
    with transaction(session_factory(store)) as session:
        row = session.get(cm.WebhookDelivery, dead.delivery_id)
    assert row.target_ref == "${ALERT_HOOK_URL}" and "hooks/alerts" not in json.dumps(
        {"error": row.last_error, "ref": row.target_ref}
    )


def test_unset_target_is_dead_lettered_with_advice(store: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALERT_HOOK_URL", raising=False)
    dead = send(store)
    assert dead.status == "dead" and dead.attempts == 0
    assert "environment variable ALERT_HOOK_URL" in dead.last_error


def test_cli_replay_end_to_end(tmp_path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    from agentprovision.store.db import make_engine, migrate

    url = f"sqlite:///{tmp_path / 'ops.db'}"
    monkeypatch.setenv("AGENTPROVISION_DATABASE_URL", url)
    monkeypatch.setenv("AGENTPROVISION_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("ALERT_SIGNING", SIGNING)
    engine = make_engine(url)
    migrate(engine)
    receiver.statuses = [500, 500, 500]
    dead = webhooks.send_alert(
        engine,
        AlertChannel(
            id="oncall",
            kind="webhook",
            target="${ALERT_HOOK_URL}",
            signing_secret="${ALERT_SIGNING}",
            events=["run_failed"],
        ),
        tenant_id=None,
        event="run_failed",
        payload={"run": "r1"},
        policy=FAST,
        sleep=lambda _: None,
    )
    runner = CliRunner()
    listed = runner.invoke(app, ["webhooks", "list", "--dead"])
    assert dead.delivery_id in listed.output and "platform/oncall" in listed.output
    result = runner.invoke(app, ["webhooks", "replay", dead.delivery_id, "--actor", "ops@x.example"])
    assert result.exit_code == 0 and "delivered" in result.output, result.output
    missing = runner.invoke(app, ["webhooks", "replay", "no-such-id"])
    assert missing.exit_code == 1 and "is not a dead letter" in missing.output and "Traceback" not in missing.output


def test_alert_events_reach_subscribed_channels_once(
    store: Engine, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentprovision.apply import apply_config
    from agentprovision.config import load_config_dir
    from agentprovision.events import PlatformEvent, write_events
    from connectors.alerts import route_alerts

    receiver = Receiver(httpserver)
    monkeypatch.setenv("PLATFORM_ALERT_WEBHOOK_URL", httpserver.url_for("/hooks/alerts"))
    platform_signing = SecretResolver(MappingVault({("platform", "platform-alert-signing"): SIGNING}))
    with transaction(session_factory(store)) as session:
        apply_config(session, load_config_dir("config").config, actor="t@example.com", source="config")
    write_events(
        store,
        [
            PlatformEvent(tenant_id="acme", kind="alert", name="budget_hard", payload={"level": "tenant"}),
            PlatformEvent(tenant_id="acme", kind="alert", name="budget_soft", payload={"level": "department"}),
            PlatformEvent(tenant_id="acme", kind="usage", name="model_call", payload={}),
        ],
    )

    report = route_alerts(store, 0, resolver=platform_signing, policy=FAST)
    # budget_hard: the platform webhook (delivered) and acme's e-mail channel (not sent yet);
    # budget_soft: only acme's e-mail channel.
    assert (report.delivered, report.dead, report.skipped) == (1, 0, 2)
    delivered = [(r["event"], r["data"]["tenant_id"], r["data"]["level"]) for r in receiver.received]
    assert delivered == [("budget_hard", "acme", "tenant")]

    again = route_alerts(store, report.cursor, resolver=platform_signing, policy=FAST)
    replayed = route_alerts(store, 0, resolver=platform_signing, policy=FAST)  # a repeated window after a crash
    assert again.delivered == replayed.delivered == 0 and len(receiver.received) == 1


def test_cli_replay_checks_the_callers_permission_on_the_deliverys_tenant(
    tmp_path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    from agentprovision.apply import apply_config
    from agentprovision.config import load_config_dir
    from agentprovision.store.db import make_engine, migrate

    url = f"sqlite:///{tmp_path / 'ops.db'}"
    monkeypatch.setenv("AGENTPROVISION_DATABASE_URL", url)
    monkeypatch.setenv("AGENTPROVISION_STATE_DIR", str(tmp_path / "state"))
    engine = make_engine(url)
    migrate(engine)
    with transaction(session_factory(engine)) as session:
        apply_config(session, load_config_dir("config").config, actor="t@example.com", source="config")
    receiver.statuses = [500, 500, 500]
    dead = send(engine, sleep=lambda _: None)
    assert dead.status == "dead"
    runner = CliRunner()
    for actor, reason in (
        ("greta@globex.example", "belongs to tenant globex, not acme"),  # another tenant's admin
        ("fiona@acme.example", "role finance does not allow webhook.replay"),
    ):
        refused = runner.invoke(app, ["webhooks", "replay", dead.delivery_id, "--actor", actor])
        assert refused.exit_code == 1 and "may not webhook.replay on tenant acme" in refused.output, refused.output
        assert reason in refused.output and "Traceback" not in refused.output
    with transaction(session_factory(engine)) as session:
        denied = session.scalars(
            select(m.AuditRecord.actor).where(
                m.AuditRecord.action == "webhook.replay", m.AuditRecord.outcome == "denied"
            )
        ).all()
        assert sorted(denied) == ["fiona@acme.example", "greta@globex.example"]
        letter = session.get(cm.WebhookDeadLetter, dead.delivery_id)
        assert letter is not None and letter.replayed_at is None  # nothing was replayed by a refused caller
    # An operator of acme may replay it (the permission check passes; the replay itself then runs).
    allowed = runner.invoke(app, ["webhooks", "replay", dead.delivery_id, "--actor", "omar@acme.example"])
    assert "may not" not in allowed.output and "Traceback" not in allowed.output
    with transaction(session_factory(engine)) as session:
        assert session.get(cm.WebhookDeadLetter, dead.delivery_id).replayed_by == "omar@acme.example"
