"""Running a connector action (create_issue, post_message, ...) for an agent, and checking an integration.

Both load the integration from the applied config in the ops store, scoped by tenant, and leave
an audit record of who did what against which integration (never the credential or the full
parameters, which may hold customer data; only their names). Permission and approval checks
belong to the agent runtime, which calls these after deciding the action may run.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from agentprovision.store.audit import append_audit
from agentprovision.store.db import session_factory, transaction
from connectors.credentials import SecretResolver
from connectors.errors import ConnectorError, redact
from connectors.sdk import wrap_error
from connectors.sync import SyncOptions, build_connector, load_integration


def _spec(engine: Engine, tenant_id: str, integration_id: str) -> dict[str, Any]:
    with transaction(session_factory(engine)) as session:
        spec = dict(load_integration(session, tenant_id, integration_id).spec)
    spec.setdefault("id", integration_id)
    return spec


def run_action(
    engine: Engine,
    tenant_id: str,
    integration_id: str,
    action: str,
    params: dict[str, Any],
    *,
    actor: str,
    resolver: SecretResolver | None = None,
    options: SyncOptions | None = None,
) -> dict[str, Any]:
    resolver = resolver or SecretResolver()
    name = f"{tenant_id}/{integration_id}"
    spec = _spec(engine, tenant_id, integration_id)
    outcome: dict[str, Any] | None = None
    failure: ConnectorError | None = None
    try:
        connector = build_connector(spec, tenant_id, resolver, options or SyncOptions())
        outcome = connector.run_action(action, params)
    except Exception as exc:
        failure = wrap_error(exc, name)
        failure.message = redact(failure.message, resolver.revealed)
    with transaction(session_factory(engine)) as session:
        append_audit(
            session,
            actor=actor,
            action=f"integration.action.{action}",
            target_type="integration",
            target_id=name,
            tenant_id=tenant_id,
            details={
                "kind": spec["kind"],
                "params": sorted(params),
                "outcome": "failed" if failure else "succeeded",
                "error": redact(str(failure), resolver.revealed) if failure else None,
            },
        )
    if failure is not None:
        raise failure
    return outcome or {}


def check_integration(
    engine: Engine,
    tenant_id: str,
    integration_id: str,
    *,
    actor: str,
    resolver: SecretResolver | None = None,
    options: SyncOptions | None = None,
) -> list[str]:
    """Validate settings, resolve the credential and reach the service; returns the stream names.

    Raises the ConnectorError that stopped it (redacted). Either way an audit record says how it went.
    """
    resolver = resolver or SecretResolver()
    name = f"{tenant_id}/{integration_id}"
    spec = _spec(engine, tenant_id, integration_id)
    streams: list[str] = []
    failure: ConnectorError | None = None
    try:
        connector = build_connector(spec, tenant_id, resolver, options or SyncOptions())
        try:
            connector.check()
            streams = [s.name for s in connector.streams()]
        finally:
            close = getattr(connector, "close", None)
            if callable(close):
                close()
    except Exception as exc:
        failure = wrap_error(exc, name)
        failure.message = redact(failure.message, resolver.revealed)
    with transaction(session_factory(engine)) as session:
        append_audit(
            session,
            actor=actor,
            action="integration.check",
            target_type="integration",
            target_id=name,
            tenant_id=tenant_id,
            details={"kind": spec["kind"], "ok": failure is None, "error": str(failure) if failure else None},
        )
    if failure is not None:
        raise failure
    return streams
