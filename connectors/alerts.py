"""Alert routing: alert events in the ops store go to the channels that subscribed to them.

An alert event (kind `alert`, named after the alert: `budget_soft`, `budget_hard`, ...) reaches
the alert channels of its own tenant and the platform's channels, each only if the channel lists
that event. Routing works from a cursor on the event sequence, so an evaluation that fails half
way is simply repeated: each (event, channel) pair is delivered at most once, keyed in the
delivery's payload.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select

from agentprovision.apply import current_version
from agentprovision.config import AdminConfig
from agentprovision.store.connector_models import WebhookDelivery
from agentprovision.store.db import session_factory, transaction
from agentprovision.store.models import Event
from connectors.credentials import SecretResolver
from connectors.webhooks import WebhookPolicy, send_alert

# Alerts are delivered from a sensor tick: a few quick attempts, then the dead-letter queue and replay.
ALERT_POLICY = WebhookPolicy(max_attempts=3, backoff_base=0.5, backoff_max=2.0, timeout=5.0)


@dataclass
class RoutingReport:
    cursor: int
    delivered: int = 0
    dead: int = 0
    skipped: int = 0  # channels of a kind this platform does not send to yet (slack, email)


def channels_for(config: AdminConfig, tenant_id: str | None, event_name: str) -> list[tuple[str | None, Any]]:
    """(owner tenant or None for the platform, channel) pairs subscribed to this event."""
    chosen: list[tuple[str | None, Any]] = [
        (None, channel) for channel in config.platform.alert_channels if event_name in channel.events
    ]
    for tenant_file in config.tenants:
        if tenant_file.tenant.id == tenant_id:
            chosen += [(tenant_id, c) for c in tenant_file.alert_channels if event_name in c.events]
    return chosen


def route_alerts(
    engine: Engine,
    after_seq: int,
    *,
    resolver: SecretResolver | None = None,
    policy: WebhookPolicy = ALERT_POLICY,
    limit: int = 500,
) -> RoutingReport:
    factory = session_factory(engine)
    with transaction(factory) as session:
        version = current_version(session)
        events = session.execute(
            select(Event.seq, Event.event_id, Event.tenant_id, Event.name, Event.occurred_at, Event.payload)
            .where(Event.kind == "alert", Event.seq > after_seq)
            .order_by(Event.seq)
            .limit(limit)
        ).all()
        # Deliveries already made for these events (a repeated evaluation after a crash).
        already = set()
        if events:
            since = events[0].occurred_at
            already = {
                (row.payload.get("event_id"), row.channel_id)
                for row in session.scalars(select(WebhookDelivery).where(WebhookDelivery.created_at >= since))
            }
    report = RoutingReport(cursor=events[-1].seq if events else after_seq)
    if version is None:
        return report
    config = AdminConfig.model_validate(version.content)
    for event in events:
        for owner, channel in channels_for(config, event.tenant_id, event.name):
            if channel.kind != "webhook":
                report.skipped += 1
                continue
            if (event.event_id, channel.id) in already:
                continue
            payload = {
                "event_id": event.event_id,
                "tenant_id": event.tenant_id,
                "alert": event.name,
                "occurred_at": event.occurred_at.isoformat(),
                **event.payload,
            }
            delivery = send_alert(
                engine, channel, tenant_id=owner, event=event.name, payload=payload, resolver=resolver, policy=policy
            )
            if delivery.status == "delivered":
                report.delivered += 1
            else:
                report.dead += 1
    return report
