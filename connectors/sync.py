"""The sync engine: one incremental sync of one tenant's integration, committed batch by batch.

`run_sync(engine, tenant_id, integration_id)` is the entry point for the Dagster sync assets,
the CLI and tests. For every batch a connector yields, one ops-store transaction
- re-checks this sync's lease (a sync that lost it commits nothing),
- upserts the records by primary key (and knowledge-base documents for documentation streams),
- fires event triggers for records that are new, creating tasks,
- saves the stream's cursor, and
- adds the batch's counts to the sync history row.
So a batch is committed whole or not at all, and the cursor never runs ahead of its records: a
failed sync resumes from the last committed batch, and whatever it reads again is deduplicated.

Secrets: credentials are resolved before any transaction opens (the vault audits each use in its
own transaction), are handed to the connector in memory only, and every error message is
redacted against them before it is stored, emitted as an event or shown.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from agentprovision.events import PlatformEvent, write_events
from agentprovision.store.connector_models import IntegrationSyncState, SyncCursor, SyncRun
from agentprovision.store.db import session_factory, transaction
from agentprovision.store.models import Integration
from connectors import kb, records, triggers
from connectors.credentials import SecretResolver
from connectors.errors import ConnectorError, IntegrationNotFound, SyncConflict, redact
from connectors.http import RetryPolicy
from connectors.registry import connector_class
from connectors.sdk import Connector, ConnectorContext, conform, table_rows, wrap_error


@dataclass(frozen=True)
class SyncOptions:
    batch_size: int = 500
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    lease_seconds: int = 3600
    streams: tuple[str, ...] | None = None  # None: every stream
    base_dir: Path | None = None  # relative settings paths resolve here (the config directory)


@dataclass
class SyncResult:
    sync_id: str
    tenant_id: str
    integration_id: str
    kind: str
    status: str = "running"
    batches: int = 0
    read: int = 0
    inserted: int = 0
    updated: int = 0
    tasks_created: int = 0
    streams: dict[str, dict[str, Any]] = field(default_factory=dict)
    schema_changes: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def summary(self) -> str:
        text = (
            f"{self.tenant_id}/{self.integration_id}: {self.status}, {self.read} read, {self.inserted} new, "
            f"{self.updated} changed, {self.tasks_created} tasks"
        )
        return text + (f" ({self.error})" if self.error else "")


ConnectorFactory = Callable[[dict[str, Any], str, SecretResolver, SyncOptions], Connector]


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(moment: datetime | None) -> datetime | None:
    """SQLite hands datetimes back without their zone; every one we store is UTC."""
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def load_integration(session: Session, tenant_id: str, integration_id: str) -> Integration:
    row = session.get(Integration, (tenant_id, integration_id))
    if row is None or row.status != "active":
        state = "has been removed from config" if row is not None else "does not exist"
        raise IntegrationNotFound(
            f"tenant {tenant_id!r} has no active integration {integration_id!r} (it {state})",
            integration=f"{tenant_id}/{integration_id}",
        )
    return row


def build_connector(
    spec: dict[str, Any],
    tenant_id: str,
    resolver: SecretResolver,
    options: SyncOptions,
    cls: type[Connector] | None = None,
) -> Connector:
    """A connector instance for one integration spec, with its credential and settings references resolved.

    `cls` overrides entry-point lookup (the conformance kit tests classes that are not installed yet).
    """
    name = f"{tenant_id}/{spec['id']}"
    cls = cls or connector_class(spec["kind"])
    purpose = f"integration {name}"
    credential_ref = spec.get("credential")
    secret = resolver.resolve(tenant_id, credential_ref, purpose=purpose) if credential_ref else None
    settings = resolver.resolve_settings(tenant_id, spec.get("settings") or {}, purpose=purpose)
    context = ConnectorContext(
        tenant_id=tenant_id,
        integration_id=spec["id"],
        secret=secret,
        credential_ref=credential_ref,
        allowed_hosts=tuple(spec.get("allowed_hosts") or ()),
        base_dir=options.base_dir or Path.cwd(),
        retry=options.retry,
        batch_size=options.batch_size,
    )
    return cls(settings, context)


def run_sync(
    engine: Engine,
    tenant_id: str,
    integration_id: str,
    *,
    resolver: SecretResolver | None = None,
    options: SyncOptions | None = None,
    connector_factory: ConnectorFactory | None = None,
) -> SyncResult:
    """Run one incremental sync; returns its result or raises the (redacted) ConnectorError that ended it.

    Every attempt past the integration lookup leaves a row in `sync_runs` and a `sync` event.
    """
    options = options or SyncOptions()
    resolver = resolver or SecretResolver()
    factory = session_factory(engine)
    name = f"{tenant_id}/{integration_id}"
    with transaction(factory) as session:
        integration = load_integration(session, tenant_id, integration_id)
        spec, kind = dict(integration.spec), integration.kind
        spec.setdefault("id", integration_id)
    result = SyncResult(str(uuid.uuid4()), tenant_id, integration_id, kind)
    _acquire_lease(factory, result, options)
    try:
        connector = (connector_factory or build_connector)(spec, tenant_id, resolver, options)
        try:
            _sync_streams(factory, connector, result, options)
        finally:
            close = getattr(connector, "close", None)
            if callable(close):
                close()
    except BaseException as exc:
        error = wrap_error(exc, name) if isinstance(exc, Exception) else ConnectorError("interrupted")
        error.message = redact(error.message, resolver.revealed)
        result.status, result.error = "failed", redact(str(error), resolver.revealed)
        _finish(factory, result, type(exc).__name__ if not isinstance(exc, ConnectorError) else type(error).__name__)
        _emit(engine, result)
        if not isinstance(exc, Exception):
            raise
        raise error from None
    result.status = "succeeded"
    _finish(factory, result, None)
    _emit(engine, result)
    return result


def _acquire_lease(factory: Any, result: SyncResult, options: SyncOptions) -> None:
    now = utcnow()
    try:
        with transaction(factory) as session:
            key = (result.tenant_id, result.integration_id)
            state = session.get(IntegrationSyncState, key, with_for_update=True)
            if state is None:
                state = IntegrationSyncState(tenant_id=key[0], integration_id=key[1])
                session.add(state)
            elif state.lease_sync_id and (aware(state.lease_expires_at) or now) > now:
                raise SyncConflict(
                    f"sync {state.lease_sync_id} holds the lease until {aware(state.lease_expires_at):%H:%M:%S} UTC",
                    integration=f"{key[0]}/{key[1]}",
                )
            state.lease_sync_id = result.sync_id
            state.lease_expires_at = now + timedelta(seconds=options.lease_seconds)
            state.updated_at = now
            session.add(
                SyncRun(
                    sync_id=result.sync_id,
                    tenant_id=result.tenant_id,
                    integration_id=result.integration_id,
                    kind=result.kind,
                    status="running",
                    started_at=now,
                    streams={},
                    schema_changes=[],
                )
            )
    except IntegrityError:
        # Two first-ever syncs raced to create the state row; the other one won.
        raise SyncConflict(
            "another sync started at the same moment", integration=f"{result.tenant_id}/{result.integration_id}"
        ) from None


def _selected(connector: Connector, wanted: Sequence[str] | None) -> list[Any]:
    streams = connector.streams()
    if wanted is None:
        return streams
    return [connector.stream(name) for name in wanted]


def _sync_streams(factory: Any, connector: Connector, result: SyncResult, options: SyncOptions) -> None:
    with transaction(factory) as session:
        rules = triggers.load_rules(session, result.tenant_id, result.integration_id)
    for stream in _selected(connector, options.streams):
        counts = result.streams.setdefault(stream.name, {"read": 0, "inserted": 0, "updated": 0, "batches": 0})
        with transaction(factory) as session:
            saved = session.get(SyncCursor, (result.tenant_id, result.integration_id, stream.name))
            cursor = saved.cursor if saved else None
        # Fields the stream does not declare, as first seen; any that appear in a later batch are
        # a schema change mid-stream, reported in sync history (declared fields changing type fail instead).
        baseline: set[str] | None = None
        for number, batch in enumerate(connector.read(stream, cursor), 1):
            table, drift = conform(stream, batch.table())
            rows = table_rows(table)
            undeclared = set(drift) | {k for row in rows for k in row if k not in stream.schema.names}
            if baseline is None:
                baseline = undeclared if rows else None
            elif undeclared - baseline:
                added = sorted(undeclared - baseline)
                baseline |= undeclared
                result.schema_changes.append({"stream": stream.name, "batch": number, "added": added})
            _commit_batch(factory, result, stream, rows, batch.cursor, options, counts, rules)


def _commit_batch(
    factory: Any,
    result: SyncResult,
    stream: Any,
    rows: list[dict[str, Any]],
    cursor: dict[str, Any] | None,
    options: SyncOptions,
    counts: dict[str, int],
    rules: list[triggers.TriggerRule],
) -> None:
    tenant_id, integration_id = result.tenant_id, result.integration_id
    now = utcnow()
    with transaction(factory) as session:
        renewed = session.execute(
            update(IntegrationSyncState)
            .where(
                IntegrationSyncState.tenant_id == tenant_id,
                IntegrationSyncState.integration_id == integration_id,
                IntegrationSyncState.lease_sync_id == result.sync_id,
            )
            .values(lease_expires_at=now + timedelta(seconds=options.lease_seconds), updated_at=now)
        )
        if renewed.rowcount != 1:
            raise SyncConflict("this sync lost its lease to another one; its current batch was not committed")
        outcome = records.upsert_records(
            session,
            tenant_id=tenant_id,
            integration_id=integration_id,
            stream=stream.name,
            primary_key=stream.primary_key,
            rows=rows,
            sync_id=result.sync_id,
        )
        if stream.knowledge_base:
            kb.upsert_documents(
                session,
                tenant_id=tenant_id,
                integration_id=integration_id,
                rows=[row for _, row in outcome.inserted + outcome.updated],
            )
        created = triggers.fire(
            session,
            tenant_id=tenant_id,
            rules=rules,
            stream=stream.name,
            new_records=outcome.inserted,
            sync_id=result.sync_id,
        )
        if cursor is not None:
            saved = session.get(SyncCursor, (tenant_id, integration_id, stream.name))
            if saved is None:
                session.add(
                    SyncCursor(
                        tenant_id=tenant_id,
                        integration_id=integration_id,
                        stream=stream.name,
                        cursor=cursor,
                        sync_id=result.sync_id,
                        updated_at=now,
                    )
                )
            else:
                saved.cursor, saved.sync_id, saved.updated_at = cursor, result.sync_id, now
        # The history row's counts move with the data they count.
        counts["read"] += len(rows)
        counts["inserted"] += len(outcome.inserted)
        counts["updated"] += len(outcome.updated)
        counts["batches"] += 1
        run = session.get(SyncRun, result.sync_id)
        run.batches_committed += 1
        run.records_read += len(rows)
        run.records_inserted += len(outcome.inserted)
        run.records_updated += len(outcome.updated)
        run.tasks_created += created
        run.streams = {k: dict(v) for k, v in result.streams.items()}
        run.schema_changes = list(result.schema_changes)
    result.batches += 1
    result.read += len(rows)
    result.inserted += len(outcome.inserted)
    result.updated += len(outcome.updated)
    result.tasks_created += created


def _finish(factory: Any, result: SyncResult, error_class: str | None) -> None:
    now = utcnow()
    with transaction(factory) as session:
        run = session.get(SyncRun, result.sync_id)
        run.status = result.status
        run.finished_at = now
        run.error_class = error_class
        run.error = result.error
        run.schema_changes = list(result.schema_changes)
        state = session.get(IntegrationSyncState, (result.tenant_id, result.integration_id))
        if state is not None and state.lease_sync_id == result.sync_id:
            state.lease_sync_id = None
            state.lease_expires_at = None
            state.last_sync_id = result.sync_id
            state.last_status = result.status
            if result.status == "succeeded":
                state.last_success_at = now
            state.updated_at = now


def _emit(engine: Engine, result: SyncResult) -> None:
    event = PlatformEvent(
        tenant_id=result.tenant_id,
        kind="sync",
        name=f"sync.{result.status}",
        payload={
            "integration_id": result.integration_id,
            "connector_kind": result.kind,
            "sync_id": result.sync_id,
            "batches": result.batches,
            "records_read": result.read,
            "records_inserted": result.inserted,
            "records_updated": result.updated,
            "tasks_created": result.tasks_created,
            "schema_changes": result.schema_changes,
            "error": result.error,
        },
    )
    events = [event]
    if result.status == "failed":
        # Alert channels that list `sync_failed` receive this through the alert delivery sensor.
        events.append(
            PlatformEvent(
                tenant_id=result.tenant_id,
                kind="alert",
                name="sync_failed",
                payload={"integration_id": result.integration_id, "sync_id": result.sync_id, "error": result.error},
            )
        )
    write_events(engine, events)


def history(engine: Engine, tenant_id: str, integration_id: str, limit: int = 20) -> list[SyncRun]:
    with transaction(session_factory(engine)) as session:
        return list(
            session.scalars(
                select(SyncRun)
                .where(SyncRun.tenant_id == tenant_id, SyncRun.integration_id == integration_id)
                .order_by(SyncRun.started_at.desc())
                .limit(limit)
            )
        )


def active_integrations(engine: Engine, tenant_id: str | None = None) -> list[tuple[str, str, str]]:
    """(tenant, integration, kind) of every active integration, optionally of one tenant."""
    with transaction(session_factory(engine)) as session:
        query = select(Integration.tenant_id, Integration.integration_id, Integration.kind).where(
            Integration.status == "active"
        )
        if tenant_id is not None:
            query = query.where(Integration.tenant_id == tenant_id)
        return [
            tuple(row) for row in session.execute(query.order_by(Integration.tenant_id, Integration.integration_id))
        ]


def is_local(engine: Engine, tenant_id: str, integration_id: str) -> bool:
    """Whether an integration needs no network (local files, SQLite), judged from its settings alone."""
    with transaction(session_factory(engine)) as session:
        row = session.get(Integration, (tenant_id, integration_id))
        spec = dict(row.spec) if row else {}
    try:
        cls = connector_class(spec.get("kind", ""))
        return cls.is_local(cls.validate_settings(spec.get("settings") or {}))
    except ConnectorError:
        return False


def sync_all(
    engine: Engine,
    *,
    tenant_id: str | None = None,
    local_only: bool = False,
    resolver: SecretResolver | None = None,
    options: SyncOptions | None = None,
) -> list[tuple[str, str, SyncResult | ConnectorError]]:
    """One sync of every active integration (of one tenant, or only local ones); failures do not stop the rest."""
    outcomes: list[tuple[str, str, SyncResult | ConnectorError]] = []
    for tenant, integration, _kind in active_integrations(engine, tenant_id):
        if local_only and not is_local(engine, tenant, integration):
            continue
        try:
            outcomes.append(
                (tenant, integration, run_sync(engine, tenant, integration, resolver=resolver, options=options))
            )
        except ConnectorError as exc:
            outcomes.append((tenant, integration, exc))
    return outcomes
