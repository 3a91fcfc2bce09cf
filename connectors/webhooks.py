"""Outbound webhooks: signed JSON deliveries with retries, a dead-letter record, and replay.

Signing: `X-AgentProvision-Signature: v1=<hex>` where hex is HMAC-SHA256 with the channel's
signing secret over `"<timestamp>." + body`, and the timestamp travels in
`X-AgentProvision-Timestamp`. Receivers recompute it and refuse old timestamps (`verify()` does
both), which stops replays of captured requests.

Delivery: each attempt is recorded; network errors, 408, 429 (honouring Retry-After) and 5xx are
retried with exponential backoff; any other answer is final. After the last failed attempt the
delivery is marked dead and a dead-letter row is written in the same transaction. An operator
replays a dead letter from the CLI (`agentprovision webhooks replay ID`), which creates a new,
linked delivery and an audit record.

The target URL and signing secret are stored only as references and resolved at each attempt:
webhook URLs often carry tokens, and rotating a secret must not strand queued deliveries.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import Engine, select

from agentprovision.store.audit import append_audit
from agentprovision.store.connector_models import WebhookDeadLetter, WebhookDelivery
from agentprovision.store.db import session_factory, transaction
from connectors.credentials import SecretResolver
from connectors.errors import ConnectorError, redact
from connectors.http import is_loopback, retry_after_seconds

SIGNATURE_HEADER = "X-AgentProvision-Signature"
TIMESTAMP_HEADER = "X-AgentProvision-Timestamp"
DELIVERY_HEADER = "X-AgentProvision-Delivery"
EVENT_HEADER = "X-AgentProvision-Event"
PLATFORM = "platform"  # audit/tenant label for platform-level channels


class WebhookError(ConnectorError):
    hint = "see `agentprovision webhooks list --dead` for deliveries that need attention"


@dataclass(frozen=True)
class WebhookPolicy:
    max_attempts: int = 6
    backoff_base: float = 2.0
    backoff_max: float = 300.0
    timeout: float = 10.0

    def backoff(self, attempt: int) -> float:
        return min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def verify(
    secret: str, timestamp: str, signature: str, body: bytes, *, tolerance: int = 300, now: float | None = None
) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent."""
    try:
        sent = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - sent) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, sent, body), signature or "")


def body_of(delivery: WebhookDelivery) -> bytes:
    created = delivery.created_at if delivery.created_at.tzinfo else delivery.created_at.replace(tzinfo=UTC)
    document = {
        "id": delivery.delivery_id,
        "event": delivery.event,
        "tenant_id": delivery.tenant_id,
        "created_at": created.isoformat(),
        "data": delivery.payload,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def enqueue(
    engine: Engine,
    *,
    tenant_id: str | None,
    channel_id: str,
    event: str,
    payload: dict[str, Any],
    target_ref: str,
    signing_secret_ref: str | None,
    replay_of: str | None = None,
) -> str:
    delivery_id = str(uuid.uuid4())
    with transaction(session_factory(engine)) as session:
        session.add(
            WebhookDelivery(
                delivery_id=delivery_id,
                tenant_id=tenant_id,
                channel_id=channel_id,
                event=event,
                payload=payload,
                target_ref=target_ref,
                signing_secret_ref=signing_secret_ref,
                status="pending",
                attempts=0,
                replay_of=replay_of,
                created_at=datetime.now(UTC),
            )
        )
    return delivery_id


def send_alert(
    engine: Engine,
    channel: Any,
    *,
    tenant_id: str | None,
    event: str,
    payload: dict[str, Any],
    resolver: SecretResolver | None = None,
    policy: WebhookPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> WebhookDelivery:
    """Queue and deliver one alert to a webhook alert channel (config `alert_channels`, kind webhook)."""
    if channel.kind != "webhook":
        raise WebhookError(f"alert channel {channel.id!r} is kind {channel.kind!r}; only webhook channels sign here")
    delivery_id = enqueue(
        engine,
        tenant_id=tenant_id,
        channel_id=channel.id,
        event=event,
        payload=payload,
        target_ref=str(channel.target),
        signing_secret_ref=str(channel.signing_secret) if channel.signing_secret else None,
    )
    return deliver(engine, delivery_id, resolver=resolver, policy=policy, sleep=sleep)


def deliver(
    engine: Engine,
    delivery_id: str,
    *,
    resolver: SecretResolver | None = None,
    policy: WebhookPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> WebhookDelivery:
    """Attempt a pending delivery until it is delivered or dead; returns its final row."""
    resolver = resolver or SecretResolver()
    policy = policy or WebhookPolicy()
    factory = session_factory(engine)
    with transaction(factory) as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery is None:
            raise WebhookError(f"there is no webhook delivery {delivery_id}")
        if delivery.status != "pending":
            return delivery
    owner = delivery.tenant_id or PLATFORM
    try:
        url = resolver.resolve(owner, delivery.target_ref, purpose=f"webhook {delivery.channel_id}")
        secret = (
            resolver.resolve(owner, delivery.signing_secret_ref, purpose=f"webhook {delivery.channel_id}")
            if delivery.signing_secret_ref
            else None
        )
        _check_target(url)
    except ConnectorError as exc:
        return _record(factory, delivery_id, None, redact(str(exc), resolver.revealed), final=True, attempted=False)
    host = urlsplit(url).hostname
    body = body_of(delivery)
    with httpx.Client(timeout=policy.timeout, follow_redirects=False, trust_env=False) as client:
        for attempt in range(delivery.attempts + 1, delivery.attempts + policy.max_attempts + 1):
            timestamp = int(time.time())
            headers = {
                "Content-Type": "application/json",
                TIMESTAMP_HEADER: str(timestamp),
                DELIVERY_HEADER: delivery.delivery_id,
                EVENT_HEADER: delivery.event,
                "User-Agent": "agentprovision-webhooks/1",
            }
            if secret:
                headers[SIGNATURE_HEADER] = sign(secret, timestamp, body)
            wait: float | None = policy.backoff(attempt - delivery.attempts)
            try:
                response = client.post(url, content=body, headers=headers)
            except httpx.TransportError as exc:
                status, error, retry = None, f"could not reach {host}: {type(exc).__name__}", True
            else:
                status = response.status_code
                if response.is_success:
                    return _record(factory, delivery_id, status, None, delivered=True)
                retry = status >= 500 or status in (408, 429)
                error = f"{host} answered {status}"
                if status == 429:
                    asked = retry_after_seconds(response)
                    wait = min(asked, policy.backoff_max) if asked is not None else wait
            last = attempt - delivery.attempts >= policy.max_attempts
            if not retry or last:
                reason = error if retry else f"{error}; not retried (the receiver refused the message)"
                return _record(factory, delivery_id, status, reason, final=True)
            _record(factory, delivery_id, status, error)
            sleep(wait or 0)
    raise AssertionError("unreachable: the loop always returns")  # pragma: no cover


def _check_target(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookError("the webhook target is not an http(s) URL", hint="fix the channel's target")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise WebhookError(
            f"plain http to {parts.hostname} is refused: alerts must travel over https", hint="use an https:// URL"
        )


def _record(
    factory: Any,
    delivery_id: str,
    status: int | None,
    error: str | None,
    *,
    delivered: bool = False,
    final: bool = False,
    attempted: bool = True,
) -> WebhookDelivery:
    now = datetime.now(UTC)
    with transaction(factory) as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        delivery.attempts += 1 if attempted else 0
        delivery.last_status_code = status
        delivery.last_error = error
        if delivered:
            delivery.status, delivery.delivered_at = "delivered", now
        elif final:
            delivery.status = "dead"
            session.add(
                WebhookDeadLetter(
                    delivery_id=delivery_id,
                    tenant_id=delivery.tenant_id,
                    channel_id=delivery.channel_id,
                    failed_at=now,
                    attempts=delivery.attempts,
                    reason=error or "unknown",
                )
            )
        return delivery


def dead_letters(engine: Engine, tenant_id: str | None = None, *, include_replayed: bool = False) -> list[Any]:
    with transaction(session_factory(engine)) as session:
        query = select(WebhookDeadLetter).order_by(WebhookDeadLetter.failed_at)
        if tenant_id is not None:
            query = query.where(WebhookDeadLetter.tenant_id == tenant_id)
        if not include_replayed:
            query = query.where(WebhookDeadLetter.replayed_at.is_(None))
        return list(session.scalars(query))


def replay(
    engine: Engine,
    delivery_id: str,
    *,
    actor: str,
    resolver: SecretResolver | None = None,
    policy: WebhookPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> WebhookDelivery:
    """Deliver a dead letter again as a new delivery linked to it; audited, and only once per dead letter."""
    factory = session_factory(engine)
    new_id = str(uuid.uuid4())
    with transaction(factory) as session:
        letter = session.get(WebhookDeadLetter, delivery_id)
        if letter is None:
            raise WebhookError(f"delivery {delivery_id} is not a dead letter; only dead deliveries can be replayed")
        if letter.replayed_at is not None:
            raise WebhookError(
                f"delivery {delivery_id} was already replayed as {letter.replay_delivery_id} by {letter.replayed_by}"
            )
        original = session.get(WebhookDelivery, delivery_id)
        now = datetime.now(UTC)
        session.add(
            WebhookDelivery(
                delivery_id=new_id,
                tenant_id=original.tenant_id,
                channel_id=original.channel_id,
                event=original.event,
                payload=original.payload,
                target_ref=original.target_ref,
                signing_secret_ref=original.signing_secret_ref,
                status="pending",
                attempts=0,
                replay_of=delivery_id,
                created_at=now,
            )
        )
        letter.replayed_at, letter.replayed_by, letter.replay_delivery_id = now, actor, new_id
        append_audit(
            session,
            actor=actor,
            action="webhook.replay",
            target_type="webhook_delivery",
            target_id=delivery_id,
            tenant_id=original.tenant_id,
            details={"channel_id": original.channel_id, "event": original.event, "replay_delivery_id": new_id},
        )
    return deliver(engine, new_id, resolver=resolver, policy=policy, sleep=sleep)
